#!/bin/sh
# run_fuzz.sh - run libFuzzer targets for a bounded time and tabulate them.
#
#   tests/fuzz/run_fuzz.sh BUILD SECONDS NAME...
#
# For each NAME: copies tests/fuzz/corpus/NAME and tests/fuzz/regress/NAME
# into a scratch corpus BUILD/fuzz/work/NAME/corpus (the grown corpus stays
# there; the committed seeds are never touched), runs BUILD/fuzz/fuzz_NAME
# for SECONDS with -print_final_stats=1 (log: BUILD/fuzz/work/NAME/log),
# crash/leak/timeout inputs go to BUILD/fuzz/work/NAME/artifacts/. One target
# runs at a time. Prints a table: executed units, exec/s, coverage (cov =
# edges, ft = features), corpus size, result. Exits 1 if any target failed.
BUILD=$1
SECS=$2
shift 2
cd "$(dirname "$0")/../.." || exit 1
: "${FUZZ_TIMEOUT:=10}"
: "${FUZZ_RSS_MB:=2048}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
table=$BUILD/fuzz/summary.txt
mkdir -p "$BUILD/fuzz"
printf '%-14s %6s %11s %8s %6s %7s %6s  %s\n' target secs execs exec/s cov ft corpus result \
    >"$table"
bad=0
for name in "$@"; do
    bin=$BUILD/fuzz/fuzz_$name
    work=$BUILD/fuzz/work/$name
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    for src in tests/fuzz/corpus/$name tests/fuzz/regress/$name; do
        [ -d "$src" ] && find "$src" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$work/corpus/" \;
    done
    dict=
    [ -f "tests/fuzz/dict/$name.dict" ] && dict="-dict=tests/fuzz/dict/$name.dict"
    echo "fuzz: $name for ${SECS}s ..."
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$SECS" -print_final_stats=1 -timeout="$FUZZ_TIMEOUT" \
        -rss_limit_mb="$FUZZ_RSS_MB" -artifact_prefix="$work/artifacts/" $dict \
        $FUZZ_ARGS "$work/corpus" >"$work/log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -n 1)
    last=$(grep -E '^#[0-9]+.* cov: ' "$work/log" | tail -n 1)
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
    # slow-unit-* files are information (-report_slow_units), not failures
    arts=$(find "$work/artifacts" -type f ! -name 'slow-unit-*' | wc -l)
    slow=$(find "$work/artifacts" -type f -name 'slow-unit-*' | wc -l)
    if [ "$rc" -eq 0 ] && [ "$arts" -eq 0 ]; then
        result=ok
        [ "$slow" -gt 0 ] && result="ok ($slow slow-unit: $work/artifacts)"
    else
        result="FAILED rc=$rc: $(find "$work/artifacts" -type f | head -n 3 | tr '\n' ' ')"
        bad=1
        grep -m1 -E 'ERROR: (Address|Leak)Sanitizer|ERROR: libFuzzer|runtime error|property' \
            "$work/log" | sed 's/^/  /'
    fi
    printf '%-14s %6s %11s %8s %6s %7s %6s  %s\n' "$name" "$SECS" "${execs:--}" "${eps:--}" \
        "${cov:--}" "${ft:--}" "${corp:--}" "$result" >>"$table"
done
echo
cat "$table"
exit $bad
