#!/bin/sh
# Runs every test program and script, adds up their "N passed, N failed" lines,
# and ends with one such line for the whole run. Exit status 1 if anything failed.
#   BUILD=build/asan JM_ASAN=1 sh tests/run.sh   runs the C tests under the sanitizers.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
pass=0; fail=0
log=$(mktemp); trap 'rm -f "$log"' EXIT
export JM_TEST_MODEL=${JM_TEST_MODEL:-models/all-MiniLM-L6-v2}
export JM_BIN=${JM_BIN:-$BUILD/jobmatch}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

tally() { # name status: adds the counts from the last "N passed, N failed" line in $log
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | awk '{for(i=1;i<NF;i++) if($(i+1) ~ /^passed/) print $i}')
        f=$(echo "$line" | awk '{for(i=1;i<NF;i++) if($(i+1) ~ /^failed/) print $i}')
        pass=$((pass + p)); fail=$((fail + f))
        if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then fail=$((fail + 1)); echo "  $1 exited $2"; fi
    else
        fail=$((fail + 1)); echo "  $1 printed no result (exit $2)"
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    echo "== $name"
    "$t" >"$log" 2>&1; st=$?
    grep -E 'FAIL|ERROR|passed' "$log" | head -n 40
    tally "$name" $st
done

for t in tests/test_*.py; do
    [ -f "$t" ] || continue
    name=$(basename "$t")
    if [ -n "${JM_ASAN:-}" ] && grep -q 'jm-skip-under-asan' "$t"; then continue; fi
    echo "== $name"
    python3 "$t" >"$log" 2>&1; st=$?
    grep -E 'FAIL|Error|passed' "$log" | head -n 40
    tally "$name" $st
done

for t in tests/test_*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t")
    echo "== $name"
    sh "$t" >"$log" 2>&1; st=$?
    grep -E 'FAIL|passed' "$log" | head -n 40
    tally "$name" $st
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
