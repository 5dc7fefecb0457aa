#!/usr/bin/env bash
# make bench: runs every benchmark script under scripts/bench/ in name
# order. Each one times our tool against the reference tool in the same
# run and prints both times and the ratio. The outputs are collected in
# BENCHMARKS.md (written whole at the end, so an interrupted run leaves the
# previous file as it was).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.out"' EXIT
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (scripts/bench.sh) at revision $rev on $(nproc) CPUs ($cpu)."
  echo "Each section is the output of one script under scripts/bench/: our tool and the"
  echo "reference tool timed in the same run on the same input. Timings on a shared"
  echo "machine vary from run to run; the ratios are the point."
} >"$tmp"
for b in scripts/bench/*.sh; do
  [ -e "$b" ] || continue
  name=$(basename "$b" .sh)
  echo "== $name"
  bash "$b" 2>&1 | tee "$tmp.out"
  {
    echo
    echo "## $name"
    echo
    echo '```'
    cat "$tmp.out"
    echo '```'
  } >>"$tmp"
done
mv "$tmp" BENCHMARKS.md
trap - EXIT
rm -f "$tmp.out"
echo "wrote BENCHMARKS.md"
