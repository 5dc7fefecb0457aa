#!/usr/bin/env bash
# make demo: builds the demo pod-VM image that examples/podvm.yaml
# describes, with `imagebuilder build`, and prints its summary table.
#
# On a fresh Debian machine it first gets what the demo needs, and only
# that (each step does nothing when its result is there):
#   - debootstrap and kmod, from Debian, if missing;
#   - the fixtures, cached under ${IMAGEBUILDER_CACHE:-~/.cache/imagebuilder}:
#     Debian's current kernel package (scripts/fixtures/debian-kernel.sh)
#     and a debootstrap'd bookworm root with systemd kept as an OCI layout
#     (scripts/fixtures/debian-systemd.sh);
#   - bin/imagebuilder, bin/guest-init and bin/kata-agent-standin
#     (make build, run by the Makefile before this script).
# The output goes to ${DEMO_OUT:-out/demo}; the stage cache makes a second
# run reuse every stage (docs/build.md).
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A need=([debootstrap]=debootstrap [depmod]=kmod)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "demo: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash scripts/fixtures/debian-kernel.sh
bash scripts/fixtures/debian-systemd.sh
[ -x bin/imagebuilder ] && [ -x bin/guest-init ] && [ -x bin/kata-agent-standin ] || make -s build

out=${DEMO_OUT:-out/demo}
mkdir -p "$(dirname "$out")"
echo "\$ bin/imagebuilder build -f examples/podvm.yaml -o $out"
exec bin/imagebuilder build -f examples/podvm.yaml -o "$out"
