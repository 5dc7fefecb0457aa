#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time each.
#
# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" when -fuzztime ends while a worker is mid-call, having
# found nothing (go.dev/issue/75804, fixed in Go 1.27). Such a run, one that
# wrote no new input under testdata/fuzz, is run again, up to twice; a third
# such failure, or any failure that wrote an input, fails the script.
set -euo pipefail
fuzztime=${1:-10s}

corpus_files() { find "$1/testdata/fuzz/$2" -type f 2>/dev/null | sort || true; }

for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    for attempt in 1 2 3; do
      echo "fuzz: $pkg $target ($fuzztime)"
      before=$(corpus_files "$dir" "$target")
      log=$(mktemp)
      status=0
      go test -run "^$" -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$pkg" 2>&1 | tee "$log" || status=$?
      after=$(corpus_files "$dir" "$target")
      coordinator_race=0
      if [ "$status" -ne 0 ] && [ "$before" = "$after" ] &&
        grep -q '^    context deadline exceeded$' "$log" &&
        ! grep -q -e 'Failing input written' -e '^panic:' -e '_test.go:[0-9]' "$log"; then
        coordinator_race=1
      fi
      rm -f "$log"
      if [ "$status" -eq 0 ]; then break; fi
      if [ "$coordinator_race" -eq 1 ] && [ "$attempt" -lt 3 ]; then
        echo "fuzz: $target: bare 'context deadline exceeded', no input written (go.dev/issue/75804); running it again"
        continue
      fi
      exit "$status"
    done
  done
done
