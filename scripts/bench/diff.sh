#!/usr/bin/env bash
# Times `imagebuilder diff` on two root disks that `imagebuilder rootfs
# build` makes from the cached Debian bookworm systemd fixture, the second
# with /etc/motd changed, against the reference way of finding the same
# answer by hand: fsck.erofs --extract of both file systems, then
# diff -r --no-dereference of the two trees. Prints both times (best of
# three), the ratio (ours / reference), our peak RSS (targets: under 2 s and
# 256 MiB) and how much of each disk the diff read against its size (once
# suffices: every file's content once, plus metadata). Then the same for a
# disk against an identical rebuild of itself (read whole, byte for byte).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/fixtures/debian-systemd.sh
fix="${IMAGEBUILDER_CACHE:-$HOME/.cache/imagebuilder}/debian-systemd"
ib=${IMAGEBUILDER:-bin/imagebuilder}
[ -x "$ib" ] || { echo "bench: build $ib first (make build)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#!/bin/sh\n' >"$work/kata-agent"
printf 'changed for the diff benchmark\n' >"$work/motd"

build() {
  "$ib" rootfs build --source "oci-layout:$fix/oci" --agent "$work/kata-agent" --seed bench "$@" >/dev/null
}
build -o "$work/a.img"
build --file "$work/motd:/etc/motd:644" -o "$work/b.img"
build -o "$work/a2.img"
cat "$work/a.img" "$work/b.img" "$work/a2.img" >/dev/null # warm the page cache for both sides

now() { date +%s.%N; }
best() { sort -g | head -n1; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{print b-a}'; }

# ours A B: one diff; exit status 1 (different) or 0 (identical) expected.
ours() {
  local rc=0
  /usr/bin/time -v -o "$work/time.txt" "$ib" diff "$1" "$2" >"$work/ours.txt" || rc=$?
  [ "$rc" -eq "$3" ] || { echo "bench: imagebuilder diff exited $rc, want $3" >&2; cat "$work/ours.txt" >&2; exit 1; }
}

# The reference: extract both file systems, diff the trees.
part() { # DISK N OUT: partition N of DISK into OUT
  local off end
  off=$(sgdisk -i "$2" "$1" | awk '/First sector/ {print $3}')
  end=$(sgdisk -i "$2" "$1" | awk '/Last sector/ {print $3}')
  dd if="$1" of="$3" bs=512 skip="$off" count=$((end - off + 1)) status=none
}
part "$work/a.img" 1 "$work/a.erofs"
part "$work/b.img" 1 "$work/b.erofs"
reference() {
  rm -rf "$work/ta" "$work/tb"
  fsck.erofs --extract="$work/ta" "$work/a.erofs" >/dev/null 2>&1
  fsck.erofs --extract="$work/tb" "$work/b.erofs" >/dev/null 2>&1
  LC_ALL=C diff -r --no-dereference "$work/ta" "$work/tb" >"$work/ref.txt" 2>&1 || true
}

declare -a t_ours t_ref t_same
mem=0
for i in 1 2 3; do
  s=$(now); ours "$work/a.img" "$work/b.img" 1; e=$(now); t_ours+=("$(secs "$s" "$e")")
  m=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt"); [ "$m" -gt "$mem" ] && mem=$m
  s=$(now); ours "$work/a.img" "$work/a2.img" 0; e=$(now); t_same+=("$(secs "$s" "$e")")
  m=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt"); [ "$m" -gt "$mem" ] && mem=$m
  s=$(now); reference; e=$(now); t_ref+=("$(secs "$s" "$e")")
done
grep -q '^  /etc/motd content: ' <("$ib" diff "$work/a.img" "$work/b.img" || true) ||
  { echo "bench: the diff does not name /etc/motd" >&2; exit 1; }
grep -q 'motd' "$work/ref.txt" || { echo "bench: the reference diff does not name motd" >&2; exit 1; }
"$ib" diff "$work/a.img" "$work/b.img" --json >"$work/ours.json" || true
read -r size_a read_a size_b read_b < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["bytes_read"]
print(r["size_a"], r["read_a"], r["size_b"], r["read_b"])' "$work/ours.json")
ours_t=$(printf '%s\n' "${t_ours[@]}" | best)
same_t=$(printf '%s\n' "${t_same[@]}" | best)
ref_t=$(printf '%s\n' "${t_ref[@]}" | best)
verdict() { awk -v t="$1" -v m="$2" 'BEGIN{print (t < 2 && m < 256*1024) ? "within" : "OVER"}'; }
printf 'disks: %d MiB each, %s files\n' $((size_a >> 20)) "$(tar -tf "$fix/rootfs.tar" | wc -l)"
printf 'diff of two disks, one file changed: %.2fs (peak RSS %d MiB, %s the 2 s / 256 MiB targets); fsck.erofs --extract x2 + diff -r: %.2fs; ratio %.2f\n' \
  "$ours_t" $((mem / 1024)) "$(verdict "$ours_t" "$mem")" "$ref_t" "$(awk -v a="$ours_t" -v b="$ref_t" 'BEGIN{print (b > 0) ? a/b : 0}')"
printf 'read: A %d of %d bytes (%.2fx), B %d of %d bytes (%.2fx)\n' "$read_a" "$size_a" \
  "$(awk -v a="$read_a" -v b="$size_a" 'BEGIN{print a/b}')" "$read_b" "$size_b" "$(awk -v a="$read_b" -v b="$size_b" 'BEGIN{print a/b}')"
printf 'diff of a disk and its identical rebuild: %.2fs\n' "$same_t"
