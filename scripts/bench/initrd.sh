#!/usr/bin/env bash
# Times a gzip initrd of a ~50 MB tree: imagebuilder (default gzip level 6,
# parallel) against `find | sort | cpio -o -H newc --reproducible | gzip -9n`,
# in the same run, and prints both times, sizes and the ratio (target >= 2x).
# Also shows imagebuilder at --level 9 for the size/speed trade-off.
set -euo pipefail
cd "$(dirname "$0")/../.."
ib=bin/imagebuilder
[ -x "$ib" ] || make -s build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A 50 MB tree of real files (binaries and libraries from /usr), in name order.
tree=$work/tree
mkdir -p "$tree"
total=0
limit=$((50 * 1024 * 1024))
while IFS= read -r f; do
  s=$(stat -c %s "$f")
  [ $((total + s)) -gt $limit ] && continue
  d=$tree/$(dirname "${f#/}")
  mkdir -p "$d"
  cp -p "$f" "$d/"
  total=$((total + s))
  [ $total -ge $((limit - 65536)) ] && break
done < <(find /usr/lib /usr/bin /usr/share -type f -size -8M 2>/dev/null | LC_ALL=C sort)
files=$(find "$tree" -type f | wc -l)

now() { date +%s.%N; }
t0=$(now)
"$ib" initrd build --dir "$tree" --compress gzip -o "$work/ours.img" >/dev/null
t1=$(now)
(cd "$tree" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet | gzip -9n >"$work/ref.img")
t2=$(now)
"$ib" initrd build --dir "$tree" --compress gzip --level 9 -o "$work/ours9.img" >/dev/null
t3=$(now)

calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
ours=$(calc "$t1 - $t0")
ref=$(calc "$t2 - $t1")
ours9=$(calc "$t3 - $t2")
size() { stat -c %s "$1"; }
printf 'tree: %d files, %d bytes; %d CPUs\n' "$files" "$total" "$(nproc)"
printf 'imagebuilder initrd build --compress gzip (level 6): %6.2f s  %10d bytes\n' "$ours" "$(size "$work/ours.img")"
printf 'find|sort|cpio --reproducible|gzip -9n:              %6.2f s  %10d bytes\n' "$ref" "$(size "$work/ref.img")"
printf 'imagebuilder initrd build --compress gzip --level 9: %6.2f s  %10d bytes\n' "$ours9" "$(size "$work/ours9.img")"
printf 'ratio (reference / imagebuilder): %.2fx (target >= 2x)\n' "$(calc "$ref / $ours")"
printf 'ratio at equal level 9 (reference / imagebuilder --level 9): %.2fx\n' "$(calc "$ref / $ours9")"
