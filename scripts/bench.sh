#!/usr/bin/env bash
# Runs every benchmark script under scripts/bench/ in name order. Each one
# times our tool against the reference tool in the same run and prints both
# times and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in scripts/bench/*.sh; do
  [ -e "$b" ] || continue
  echo "== $(basename "$b" .sh)"
  bash "$b"
done
