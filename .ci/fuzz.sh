#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time (default 8s each).
# Targets are discovered with `go test -list`, so a new one is never forgotten.
# A failure that leaves a new crasher under testdata/fuzz fails the run; a
# failure without one (the fuzz coordinator sometimes reports its own
# deadline as an error, golang/go#48127-style) is retried once.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-8s}
count=0
nfiles() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
for pkg in $(go list ./...); do
  targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for t in $targets; do
    echo "--- fuzz $pkg $t ($fuzztime)"
    before=$(nfiles "$dir/testdata/fuzz/$t")
    if ! go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" "$pkg"; then
      after=$(nfiles "$dir/testdata/fuzz/$t")
      if [ "$after" -gt "$before" ]; then
        echo "fuzz target $t found a failing input (see $dir/testdata/fuzz/$t)" >&2
        exit 1
      fi
      echo "fuzz target $t failed without a failing input; retrying once" >&2
      go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" "$pkg"
    fi
    count=$((count + 1))
  done
done
echo "fuzzed $count targets"
if [ "$count" -eq 0 ]; then
  echo "no fuzz targets found" >&2
  exit 1
fi
