#!/usr/bin/env bash
# Times extracting the cached Debian kernel package (70 MB .deb, 392 MiB
# data.tar.xz in 17 xz blocks, ~4900 entries): pkg/deb's Extract against
# `dpkg-deb -x`, once each in the same run, and prints both times, our peak
# RSS and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${IMAGEBUILDER_CACHE:-$HOME/.cache/imagebuilder}
scripts/fixtures/debian-kernel.sh
deb=$cache/debian-kernel/$(cat "$cache/debian-kernel/package")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/deb.test" ./pkg/deb

now() { date +%s.%N; }
t0=$(now)
/usr/bin/time -f '%M' -o "$work/rss" "$work/deb.test" -test.run '^$' -test.bench '^BenchmarkExtractKernelDeb$' -test.benchtime 1x >"$work/bench.out"
t1=$(now)
dpkg-deb -x "$deb" "$work/ref"
t2=$(now)
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
ours=$(awk '/^BenchmarkExtractKernelDeb/ { printf "%.3f", $3 / 1e9 }' "$work/bench.out")
ref=$(calc "$t2 - $t1")
printf '%s: %d bytes; %d CPUs\n' "$(basename "$deb")" "$(stat -c %s "$deb")" "$(nproc)"
printf 'pkg/deb Extract:  %6.2f s  peak RSS %d MiB (test binary)\n' "$ours" "$(($(cat "$work/rss") / 1024))"
printf 'dpkg-deb -x:      %6.2f s\n' "$ref"
printf 'ratio (dpkg-deb / pkg/deb): %.2fx\n' "$(calc "$ref / $ours")"
