#!/usr/bin/env bash
# Times the launch digest of a 64 MiB IGVM file (pkg/measure, both
# profiles, file read from the page cache) against the bound: SHA-384 over
# the same 4 KiB pages already in memory, on one core. The benchmark runs
# the three interleaved and reports the ratio of the best times; the target
# is <= 1.25.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(go test -run '^$' -bench 'MeasureIGVMRatio' -benchtime 8x -cpu 1 ./pkg/measure)
line=$(echo "$out" | grep '^BenchmarkMeasureIGVMRatio')
echo "$line"
echo "$line" | awk '{
  for (i = 1; i <= NF; i++) { if ($i == "mshv/sha384") m = $(i-1); if ($i == "kvm/sha384") k = $(i-1); if ($i == "sha384-ms") s = $(i-1) }
  printf "sha384 over 64 MiB of pages: %d ms; measure igvm: mshv %.3fx, kvm %.3fx (bound 1.25x)\n", s, m, k
  if (m > 1.25 || k > 1.25) { print "FAIL: above the 1.25x bound"; exit 1 }
}'
