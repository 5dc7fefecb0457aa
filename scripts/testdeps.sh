#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, skipping what is
# already there: Debian packages (the real tools our outputs are checked
# against) and cached fixtures that live outside git.
set -euo pipefail

# command -> Debian package that provides it
declare -A need=(
  [veritysetup]=cryptsetup-bin
  [mkfs.erofs]=erofs-utils
  [sgdisk]=gdisk
  [qemu-system-x86_64]=qemu-system-x86
  [cpio]=cpio
  [debootstrap]=debootstrap
  [zstd]=zstd
  [xz]=xz-utils
  [modinfo]=kmod
  [busybox]=busybox-static
  [python3]=python3
  [containerd]=containerd           # pkg/payload: `containerd config dump` of our drop-in and install's edits
  [docker-registry]=docker-registry # pkg/payload: push and pull through a real registry
)
[ -x /usr/bin/time ] || missing_time=1

missing=()
for cmd in $(printf '%s\n' "${!need[@]}" | sort); do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ -n "${missing_time:-}" ] && missing+=(time)

if [ ${#missing[@]} -gt 0 ]; then
  echo "testdeps: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Fixtures cached outside git (a Debian kernel, a debootstrap'd root) are
# prepared by scripts/fixtures/*.sh, each idempotent.
for f in "$(dirname "$0")"/fixtures/*.sh; do
  [ -e "$f" ] || continue
  bash "$f"
done
