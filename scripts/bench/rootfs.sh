#!/usr/bin/env bash
# Times `imagebuilder rootfs build` on the Debian bookworm systemd fixture
# against the reference tools on the same tree, extracted:
#   mkfs.erofs -T0 --all-root + veritysetup format + sgdisk (+ dd into the disk)
# and prints both times, the ratio (ours / reference, lower is better) and
# our peak memory (target < 256 MiB). Each side runs 3 times; the best counts.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/fixtures/debian-systemd.sh
fix="${IMAGEBUILDER_CACHE:-$HOME/.cache/imagebuilder}/debian-systemd"
ib=${IMAGEBUILDER:-bin/imagebuilder}
[ -x "$ib" ] || { echo "bench: build $ib first (make build)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#!/bin/sh\n' >"$work/kata-agent"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
mkdir "$work/tree"
$sudo tar -xf "$fix/rootfs.tar" -C "$work/tree" --numeric-owner --xattrs --xattrs-include='*'
cat "$fix/rootfs.tar" >/dev/null # warm the page cache for both sides

now() { date +%s.%N; }
best() { sort -g | head -n1; }

# ours SOURCE [FLAG...]: one build; with --json it prints the description
# instead of the summary, so it skips the summary's sha256 read-back.
ours() {
  /usr/bin/time -v -o "$work/time.txt" "$ib" rootfs build --source "$@" \
    --agent "$work/kata-agent" --seed bench -o "$work/ours.img" >/dev/null
}
reference() {
  mkfs.erofs -T0 --all-root -U 2a1b3c4d-0000-4000-8000-000000000001 --quiet "$work/ref.erofs" "$work/tree" >/dev/null
  veritysetup format --salt=00 --uuid=2a1b3c4d-0000-4000-8000-000000000002 \
    "$work/ref.erofs" "$work/ref.hash" >"$work/vs.txt"
  root=$(awk '/Root hash:/ {print $3}' "$work/vs.txt")
  dsz=$(stat -c %s "$work/ref.erofs"); hsz=$(( ($(stat -c %s "$work/ref.hash") + 4095) / 4096 * 4096 ))
  truncate -s $((1048576 + dsz + hsz + 20480)) "$work/ref.img"
  sgdisk -a 8 -n 1:2048:+$((dsz / 512)) -t 1:4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 -u 1:"${root:0:32}" \
    -n 2:0:+$((hsz / 512)) -t 2:2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5 -u 2:"${root:32:32}" "$work/ref.img" >/dev/null
  dd if="$work/ref.erofs" of="$work/ref.img" bs=1M seek=1 conv=notrunc status=none
  dd if="$work/ref.hash" of="$work/ref.img" bs=4096 seek=$(( (1048576 + dsz) / 4096 )) conv=notrunc status=none
  rm -f "$work/ref.erofs" "$work/ref.hash" "$work/ref.img"
}

declare -a t_oci t_dir t_ref t_json
mem=0
for i in 1 2 3; do
  s=$(now); ours "oci-layout:$fix/oci"; e=$(now); t_oci+=("$(awk -v a="$s" -v b="$e" 'BEGIN{print b-a}')")
  m=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt"); [ "$m" -gt "$mem" ] && mem=$m
  s=$(now); ours "dir:$work/tree"; e=$(now); t_dir+=("$(awk -v a="$s" -v b="$e" 'BEGIN{print b-a}')")
  m=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt"); [ "$m" -gt "$mem" ] && mem=$m
  s=$(now); reference; e=$(now); t_ref+=("$(awk -v a="$s" -v b="$e" 'BEGIN{print b-a}')")
  s=$(now); ours "oci-layout:$fix/oci" --json; e=$(now); t_json+=("$(awk -v a="$s" -v b="$e" 'BEGIN{print b-a}')")
done
oci=$(printf '%s\n' "${t_oci[@]}" | best)
dir=$(printf '%s\n' "${t_dir[@]}" | best)
ref=$(printf '%s\n' "${t_ref[@]}" | best)
json=$(printf '%s\n' "${t_json[@]}" | best)
printf 'tree: %s in %s files\n' "$(du -sh --apparent-size "$work/tree" | cut -f1)" "$(find "$work/tree" | wc -l)"
printf 'reference (mkfs.erofs + veritysetup format + sgdisk + dd): %.2fs\n' "$ref"
printf 'imagebuilder rootfs build, oci-layout source:          %.2fs  ratio %.2f\n' "$oci" "$(awk -v a="$oci" -v b="$ref" 'BEGIN{print a/b}')"
printf 'imagebuilder rootfs build, dir source (same tree):     %.2fs  ratio %.2f\n' "$dir" "$(awk -v a="$dir" -v b="$ref" 'BEGIN{print a/b}')"
printf 'of which the summary line'"'"'s sha256 read-back:          %.2fs  (oci-layout with --json, no read-back: %.2fs)\n' "$(awk -v a="$oci" -v b="$json" 'BEGIN{d=a-b; print d<0?0:d}')" "$json"
printf 'imagebuilder peak RSS: %d MiB (target < 256 MiB)\n' $((mem / 1024))
[ $((mem / 1024)) -lt 256 ] || { echo "bench: peak memory over 256 MiB" >&2; exit 1; }
