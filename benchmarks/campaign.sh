#!/bin/sh
# The issue-4 campaign benchmark: a campaign of DURATION (default 10m) with
# two workers on a throwaway database. The summary it prints holds cases/s,
# executions/s per target and the CPU split between Cranelift and the harness.
#   benchmarks/campaign.sh [DURATION] [JOBS]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cp -r "$here/corpus" "$work/corpus"  # the campaign adds cases to its corpus
rm -rf "$work/corpus/generated"
cd "$work"
exec "$here/.venv/bin/callfuzz" fuzz --duration "${1:-10m}" --jobs "${2:-2}" --seed 1 \
    --db "sqlite:///$work/bench.sqlite" --corpus "$work/corpus" --status-every 60
