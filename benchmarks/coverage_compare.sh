#!/bin/sh
# Side by side, at the same time (so both see the same load): a `random`
# campaign and an `atheris --coverage` one, DURATION each (default 30m) with
# JOBS workers each (default 2), each on a throwaway database and its own
# copy of the corpus. Then both are measured the same way: their cases are
# replayed on the instrumented bridge (`callfuzz coverage replay`: random's
# seeds, atheris's libFuzzer corpus, and each one's corpus copy). Prints each
# summary (cases/s, buckets) and each replayed coverage; the work directory
# stays for `callfuzz coverage report --db sqlite:///DIR/ENGINE/bench.sqlite`.
#   benchmarks/coverage_compare.sh [DURATION] [JOBS]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
duration=${1:-30m}
jobs=${2:-2}
callfuzz="$here/.venv/bin/callfuzz"
"$callfuzz" coverage build
work=$(mktemp -d)
echo "work directory: $work"
for engine in random atheris; do
    mkdir -p "$work/$engine"
    cp -r "$here/corpus" "$work/$engine/corpus"
    rm -rf "$work/$engine/corpus/generated"
done
run() {
    engine=$1
    shift
    cd "$work/$engine"
    "$callfuzz" fuzz --engine "$engine" "$@" --duration "$duration" --jobs "$jobs" --seed 1 \
        --db "sqlite:///$work/$engine/bench.sqlite" --corpus "$work/$engine/corpus" \
        --status-every 300 --reduce-time 0 >"$work/$engine/summary.txt" 2>"$work/$engine/stderr.txt" || true
}
run random &
run atheris --coverage &
wait
for engine in random atheris; do
    echo "== $engine: campaign"
    cat "$work/$engine/summary.txt"
    echo "== $engine: replayed on the instrumented bridge"
    "$callfuzz" coverage replay --db "sqlite:///$work/$engine/bench.sqlite" \
        --corpus "$work/$engine/corpus" --jobs "$jobs"
done
