#!/usr/bin/env bash
# Usage: scripts/fuzz.sh BUDGET
# Runs every Fuzz* target of every package, one at a time (go test -fuzz takes
# one target per run), for BUDGET each: a duration (30s) or a count of
# executions (3000x). Crashers land in the package's testdata/fuzz/<FuzzName>/
# and become regression seeds that plain `go test` replays.
#
# A duration budget can end in a bare "context deadline exceeded" with no
# failing input: Go's fuzz coordinator races its own deadline
# (golang/go#75804, fixed in Go 1.27, not in 1.26). Such a run found nothing
# and is reported, not failed. A failing input, a panic or a test error
# fails. A count budget has no deadline to race, which is why make test uses one.
set -euo pipefail
budget=${1:?usage: scripts/fuzz.sh BUDGET}
go=${GO:-go}
cd "$(dirname "$0")/.."

$go test -list '^Fuzz' ./... |
  awk '/^Fuzz/ { f[n++] = $1; next } /^ok / { for (i = 0; i < n; i++) print $2, f[i]; n = 0 }' |
  while read -r pkg target; do
    echo "fuzz $pkg $target for $budget"
    log=$(mktemp)
    if $go test -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" "$pkg" </dev/null >"$log" 2>&1; then
      cat "$log"
      rm -f "$log"
      continue
    fi
    cat "$log"
    if grep -q 'context deadline exceeded' "$log" &&
      ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
      echo "fuzz: $target stopped on the fuzz coordinator's deadline race (golang/go#75804) with no failing input: not a finding"
      rm -f "$log"
      continue
    fi
    rm -f "$log"
    echo "fuzz: $target failed" >&2
    exit 1
  done
