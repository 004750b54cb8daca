#!/bin/sh
# run.sh - run Petal's tests and add up their results.
#
# usage: tests/run.sh [-k PATTERN] TEST...
# A TEST is a C test binary or an executable script (.sh, .py). Each prints
# lines "PASS: name" / "FAIL: name" (or "SKIP: name reason"); a test that
# exits non-zero without printing a FAIL line counts as one failure.
# Ends with the line "N passed, N failed" (", N skipped" when some were).
pattern=
if [ "$1" = "-k" ]; then pattern=$2; shift 2; fi
BUILD=${BUILD:-build}
export BUILD
logdir=$BUILD/test-logs
mkdir -p "$logdir"
pass=0; fail=0; skip=0; failed_names=
for t in "$@"; do
    case "$t" in *"$pattern"*) ;; *) continue ;; esac
    name=$(basename "$t")
    log=$logdir/$name.log
    start=$(date +%s)
    case "$t" in
        *.sh) sh "$t" >"$log" 2>&1 ;;
        *) "$t" >"$log" 2>&1 ;;
    esac
    rc=$?
    secs=$(( $(date +%s) - start ))
    p=$(grep -c '^PASS: ' "$log"); f=$(grep -c '^FAIL: ' "$log"); s=$(grep -c '^SKIP: ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1; echo "FAIL: $name (exit status $rc)" >>"$log"
    fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    if [ "$f" -gt 0 ]; then
        echo "--- $name: $p passed, $f failed (${secs}s) ---"
        grep -v '^PASS: ' "$log" | tail -n 40
        failed_names="$failed_names $name"
    else
        echo "$name: $p passed${s:+, $s skipped} (${secs}s)" | sed 's/, 0 skipped//'
    fi
done
[ -n "$failed_names" ] && echo "failed:$failed_names (logs in $logdir)"
if [ "$skip" -gt 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
