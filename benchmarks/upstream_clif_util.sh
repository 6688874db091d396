#!/bin/sh
# Does a `callfuzz triage draft` reproduce with upstream's own clif-util?
# For each BUCKET: writes the draft (`triage draft BUCKET`), takes its
# ```clif block (the `triage export` filetest), runs `CLIF_UTIL test` on it
# and says whether the finding reproduces. Compile-time findings only (the
# block says `test compile`: they reproduce on any host); other buckets are
# skipped, saying why. A compile panic reproduces when clif-util exits
# non-zero with a panic whose message starts as the bucket's does; the panic
# location (file:line in cranelift-codegen) is compared too, but only
# reported: a different upstream release may move the line (and lines of
# ISLE-generated code depend on the build, so only their file is compared).
#
# CLIF_UTIL is an already built upstream clif-util (crate cranelift-tools of
# a wasmtime checkout, ideally the release whose Cranelift the bridge pins);
# this script does not build it.
#   benchmarks/upstream_clif_util.sh CLIF_UTIL DB BUCKET...
#   e.g. benchmarks/upstream_clif_util.sh ~/wasmtime/target/release/clif-util \
#            sqlite:////tmp/draftcheck.sqlite 20 26
# Keeps the drafts, filetests and clif-util output in a printed directory.
# Exit status: 0 every bucket checked reproduces, 1 some does not, 2 bad usage.
set -eu
if [ $# -lt 3 ]; then
    sed -n '2,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
clif_util=$1
db=$2
shift 2
[ -x "$clif_util" ] || { echo "not an executable: $clif_util" >&2; exit 2; }
callfuzz="$here/.venv/bin/callfuzz"
work=$(mktemp -d)
echo "work directory: $work"
failed=0
for bucket in "$@"; do
    draft="$work/bucket-$bucket.md"
    file="$work/bucket-$bucket.clif"
    out="$work/bucket-$bucket.out"
    if ! (cd "$here" && "$callfuzz" triage draft "$bucket" --db "$db" -o "$draft") >/dev/null; then
        echo "bucket $bucket: triage draft failed"
        failed=1
        continue
    fi
    awk '/^```clif/ { f = 1; next } /^```/ { f = 0 } f' "$draft" >"$file"
    # first line: `; TARGET: VERDICT: MESSAGE (FILE:LINE)`
    title=$(sed -n '1s/^; //p' "$file")
    if ! grep -qx 'test compile' "$file"; then
        echo "bucket $bucket: skipped, not a compile-time finding ($title)"
        continue
    fi
    status=0
    RUST_BACKTRACE=0 "$clif_util" test "$file" >"$out" 2>&1 || status=$?
    verdict=$(printf '%s\n' "$title" | sed 's/^[^:]*: \([^:]*\):.*/\1/')
    message=$(printf '%s\n' "$title" | sed 's/^[^:]*: [^:]*: //; s/ ([^()]*)$//' | cut -c1-40)
    location=$(printf '%s\n' "$title" | sed -n 's/.*(cranelift-codegen\/\([^()]*\))$/\1/p')
    case $verdict in
    "compile panic") kind=panicked ;;
    *) kind= ;;
    esac
    if [ "$status" -ne 0 ] && { [ -z "$kind" ] || grep -q "$kind" "$out"; } && grep -qF -- "$message" "$out"; then
        result=reproduces
    else
        result="does NOT reproduce"
        failed=1
    fi
    case $location in
    out/*)
        # ISLE-generated code (OUT_DIR): its line numbers depend on the build
        generated=${location#out/}
        generated=${generated%:*}
        if grep -qF -- "/out/$generated:" "$out"; then
            where="same generated file ($generated; its lines are not comparable)"
        else
            where="location differs from $location"
        fi
        ;;
    *)
        if [ -n "$location" ] && grep -qF -- "$location" "$out"; then
            where="same location ($location)"
        else
            where="location differs from $location"
        fi
        ;;
    esac
    echo "bucket $bucket: $result: clif-util exit $status; $where"
    echo "  bucket:    $title"
    grep -m1 -e panicked -e "$message" "$out" | sed 's/^/  clif-util: /' || true
done
exit $failed
