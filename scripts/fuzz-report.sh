#!/usr/bin/env bash
# Replays the corpus a fuzz target has gathered (the seeds, testdata/fuzz
# and the go fuzz cache) and prints its slowest and most allocating
# inputs, with the peak RSS of the replay:
#   scripts/fuzz-report.sh ./pkg/erofs FuzzWalk
# The targets log "... read N, allocated M" for each input.
set -euo pipefail
pkg=${1:?package} target=${2:?fuzz target}
cd "$(dirname "$0")/.."
cache="$(go env GOCACHE)/fuzz/$(go list "$pkg")/$target"
dst="$pkg/testdata/fuzz/$target"
added=()
cleanup() { for f in "${added[@]}"; do rm -f "$f"; done; rmdir -p "$dst" 2>/dev/null || true; }
trap cleanup EXIT
if [ -d "$cache" ]; then
  mkdir -p "$dst"
  for f in "$cache"/*; do
    [ -e "$dst/$(basename "$f")" ] && continue
    cp "$f" "$dst/" && added+=("$dst/$(basename "$f")")
  done
fi
out=$(mktemp)
# Cache entries of an older signature of the target are dropped.
for _ in $(seq 100); do
  if /usr/bin/time -v go test -count=1 -run "^$target\$" -v "$pkg" >"$out" 2>&1; then break; fi
  stale=$(sed -nE 's/.*"testdata\/fuzz\/[^/]+\/([0-9a-f]+)": mismatched types in corpus entry.*/\1/p' "$out" | head -1)
  [ -n "$stale" ] || { grep -vE $'^\t' "$out" | grep -v -- '--- PASS' | tail -20; exit 1; }
  rm -f "$dst/$stale"
done
n=$(grep -c -- "--- PASS: $target/" "$out" || true)
echo "$target: $n inputs replayed, peak RSS $(awk -F': ' '/Maximum resident/ {print int($2/1024)}' "$out") MiB"
echo "slowest:"
grep -- "--- PASS: $target/" "$out" | sed -E 's/.*--- PASS: ([^ ]+) \(([0-9.]+)s\)/\2 \1/' | sort -rn | head -3 | sed 's/^/  /'
echo "most allocating:"
awk -v t="$target" '/^=== RUN/ {name=$3} /allocated/ {for (i=1;i<=NF;i++) if ($i=="allocated") print $(i+1), name, $0}' "$out" |
  sort -rn | head -3 | cut -d' ' -f2- | sed -E 's/ +[a-z_]+\.go:[0-9]+:/:/' | sed 's/^/  /'
rm -f "$out"
