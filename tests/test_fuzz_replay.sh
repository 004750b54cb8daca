#!/bin/sh
# test_fuzz_replay.sh - replay every fuzz target's seed corpus and saved
# regression inputs (tests/fuzz/corpus/<name>/, tests/fuzz/regress/<name>/)
# through the target's LLVMFuzzerTestOneInput, built with the normal compiler
# and flags ($BUILD/fuzz/replay_<name>; under ASan+UBSan in build-san).
# Prints one PASS/FAIL line per target.
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
fail=0
for dir in tests/fuzz/corpus/*/; do
    name=$(basename "$dir")
    bin=$BUILD/fuzz/replay_$name
    if [ ! -x "$bin" ]; then
        echo "FAIL: fuzz_replay_$name (missing $bin)"
        fail=1
        continue
    fi
    log=$BUILD/test-logs/fuzz_replay_$name.log
    mkdir -p "$BUILD/test-logs"
    "$bin" "$name" "tests/fuzz/corpus/$name" "tests/fuzz/regress/$name" >"$log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && grep -q "^PASS: " "$log"; then
        grep "^PASS: " "$log"
    else
        echo "FAIL: fuzz_replay_$name (exit status $rc)"
        tail -n 30 "$log"
        fail=1
    fi
done
exit $fail
