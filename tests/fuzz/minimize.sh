#!/bin/sh
# minimize.sh - keep a small set of the inputs a `make fuzz` run found.
#
#   tests/fuzz/minimize.sh [BUILD] NAME...     (BUILD defaults to build-fuzz)
#
# Merges BUILD/fuzz/work/NAME/corpus (the grown scratch corpus) against the
# committed seeds with libFuzzer's -merge=1, which keeps only inputs that add
# coverage, and copies at most FUZZ_KEEP (default 40) of the new ones, smallest
# first and none over 16 KiB, into tests/fuzz/corpus/NAME/ as min-<sha1>.
# Review and commit them with the target's seeds.
BUILD=build-fuzz
case "$1" in build*) BUILD=$1; shift ;; esac
cd "$(dirname "$0")/../.." || exit 1
: "${FUZZ_KEEP:=40}"
for name in "$@"; do
    work=$BUILD/fuzz/work/$name
    bin=$BUILD/fuzz/fuzz_$name
    [ -d "$work/corpus" ] || { echo "minimize: no $work/corpus (run make fuzz first)"; continue; }
    out=$work/merged
    rm -rf "$out"
    mkdir -p "$out"
    # Seeds first so that only what they do not cover is kept as new.
    cp tests/fuzz/corpus/"$name"/* "$out"/ 2>/dev/null
    "$bin" -merge=1 -timeout=10 "$out" "$work/corpus" >"$work/merge.log" 2>&1 || {
        echo "minimize: $name: merge failed (see $work/merge.log)"
        continue
    }
    n=0
    for f in $(ls -S -r "$out"); do
        [ -f "tests/fuzz/corpus/$name/$f" ] && continue
        [ -f "tests/fuzz/corpus/$name/min-$f" ] && continue
        [ "$(wc -c <"$out/$f")" -gt 16384 ] && continue
        cmp -s "$out/$f" /dev/null && continue
        cp "$out/$f" "tests/fuzz/corpus/$name/min-$f"
        n=$((n + 1))
        [ "$n" -ge "$FUZZ_KEEP" ] && break
    done
    echo "minimize: $name: kept $n new inputs"
done
