#!/bin/sh
# The campaign benchmark: a campaign of DURATION (default 10m) with JOBS
# workers (default 2) on a throwaway database and a copy of the corpus. The
# summary it prints holds cases/s, executions/s per target and the CPU split
# between Cranelift and the harness. Further arguments go to `callfuzz fuzz`
# (e.g. --no-contract, to measure what the call contract checks cost).
#   benchmarks/campaign.sh [DURATION] [JOBS] [FUZZ OPTIONS...]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
duration=${1:-10m}
jobs=${2:-2}
if [ $# -ge 2 ]; then shift 2; else shift $#; fi
work=$(mktemp -d)
cp -r "$here/corpus" "$work/corpus"  # the campaign adds cases to its corpus
rm -rf "$work/corpus/generated"
cd "$work"
exec "$here/.venv/bin/callfuzz" fuzz --duration "$duration" --jobs "$jobs" --seed 1 \
    --db "sqlite:///$work/bench.sqlite" --corpus "$work/corpus" --status-every 60 "$@"
