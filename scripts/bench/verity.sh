#!/usr/bin/env bash
# Benchmark of `imagebuilder verity format` against `veritysetup format` on
# the same 1 GiB file (sha256, 4 KiB blocks, superblock, same salt and
# UUID), and against the raw bound: crypto/sha256 hashing the same 4 KiB
# blocks on all cores from memory (scripts/bench/verityraw). The three are
# run RUNS times, interleaved, and the best wall time of each counts (the
# machine may be shared); CPU time (user + system) is shown as well. Peak
# memory of our format is from /usr/bin/time -v.
#
#   VERITY_BENCH_SIZE=1073741824 RUNS=5 scripts/bench/verity.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${VERITY_BENCH_SIZE:-1073741824}
runs=${RUNS:-5}
bin=bin/imagebuilder
[ -x "$bin" ] || make -s build
work=$(mktemp -d "${TMPDIR:-/tmp}/verity-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
go build -o "$work/verityraw" ./scripts/bench/verityraw

salt=$(printf 'imagebuilder-bench' | sha256sum | cut -d' ' -f1)
uuid=2b1e4a9c-0d3f-4c8e-9a51-7e6d5c4b3a29
# Reproducible pseudo-random data (not compressible, not zeros).
"$work/verityraw" gen "$work/data" "$size"
echo "data: $size bytes, sha256, 4096-byte blocks, superblock, $(nproc) cores, best of $runs runs"
cat "$work/data" >/dev/null # into the page cache for everyone

tv() { /usr/bin/time -f '%e %U %S %M' -o "$work/t" "$@"; read -r wall user sys rss <"$work/t"; cpu=$(awk "BEGIN{print $user + $sys}"); }
minf() { awk "BEGIN{print ($1 < $2) ? $1 : $2}"; }
b_vs=1e9 b_ours=1e9 b_raw=1e9 c_vs=1e9 c_ours=1e9 c_raw=1e9 peak=0
for i in $(seq "$runs"); do
  tv veritysetup format "$work/data" "$work/hash.vs" --salt="$salt" --uuid="$uuid" >"$work/vs.out"
  vs=$wall; vs_cpu=$cpu
  tv "$bin" verity format "$work/data" "$work/hash.ours" --salt="$salt" --uuid="$uuid" >"$work/ours.out"
  ours=$wall; ours_cpu=$cpu; peak=$(( rss > peak ? rss : peak ))
  read -r raw raw_cpu < <("$work/verityraw" hash "$work/data" "$salt")
  printf '  run %d: veritysetup %.3f s (cpu %.2f s), ours %.3f s (cpu %.2f s), raw bound %.3f s (cpu %.2f s)\n' \
    "$i" "$vs" "$vs_cpu" "$ours" "$ours_cpu" "$raw" "$raw_cpu"
  b_vs=$(minf "$vs" "$b_vs"); b_ours=$(minf "$ours" "$b_ours"); b_raw=$(minf "$raw" "$b_raw")
  c_vs=$(minf "$vs_cpu" "$c_vs"); c_ours=$(minf "$ours_cpu" "$c_ours"); c_raw=$(minf "$raw_cpu" "$c_raw")
done
cmp -s "$work/hash.vs" "$work/hash.ours" || { echo "FAIL: our hash file differs from veritysetup's"; exit 1; }
echo "hash files identical; $(grep '^Root hash' "$work/ours.out" | tr -s ' \t' ' ')"
printf 'veritysetup format:         %.3f s (cpu %.2f s)\n' "$b_vs" "$c_vs"
printf 'imagebuilder verity format: %.3f s (cpu %.2f s)  %.2fx faster than veritysetup (target >= 1.3x)\n' \
  "$b_ours" "$c_ours" "$(awk "BEGIN{print $b_vs / $b_ours}")"
printf 'raw bound, sha256 of the blocks on %d cores from memory: %.3f s (cpu %.2f s)\n' "$(nproc)" "$b_raw" "$c_raw"
printf '  ours vs raw bound: %+.0f%% wall time, %+.0f%% cpu time (target <= +15%%)\n' \
  "$(awk "BEGIN{print ($b_ours / $b_raw - 1) * 100}")" "$(awk "BEGIN{print ($c_ours / $c_raw - 1) * 100}")"
echo "peak RSS of imagebuilder verity format: $((peak / 1024)) MiB ($peak KiB, GNU time maximum resident set size as -v reports it; target < 64 MiB)"
