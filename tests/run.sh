#!/bin/sh
# Runs every test program and script, adds up their "N passed, N failed" lines,
# and ends with one such line for the whole run. Exit status 1 if anything failed.
#
#   sh tests/run.sh                       C tests of build/, then the scripts
#   BUILDS="build build/asan" sh tests/run.sh
#                                         C tests of both builds (the second under
#                                         AddressSanitizer + UBSan), then the scripts
set -u
cd "$(dirname "$0")/.."
BUILDS=${BUILDS:-${BUILD:-build}}
MAIN_BUILD=${BUILDS%% *}
pass=0; fail=0
log=$(mktemp); trap 'rm -f "$log"' EXIT
export JM_TEST_MODEL=${JM_TEST_MODEL:-models/all-MiniLM-L6-v2}
export BUILD=$MAIN_BUILD
export JM_BIN=${JM_BIN:-$MAIN_BUILD/jobmatch}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

tally() { # name status: adds the counts from the last "N passed, N failed" line in $log
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | awk '{for(i=1;i<NF;i++) if($(i+1) ~ /^passed/) print $i}')
        f=$(echo "$line" | awk '{for(i=1;i<NF;i++) if($(i+1) ~ /^failed/) print $i}')
        pass=$((pass + p)); fail=$((fail + f))
        if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then fail=$((fail + 1)); echo "  $1 exited $2"; fi
    else
        fail=$((fail + 1)); echo "  $1 printed no result (exit $2)"; tail -n 20 "$log"
    fi
}

# A private PostgreSQL server for the store tests (tests/pg.sh), unless
# JM_TEST_PG_URL already names one. Stopped again at the end.
if [ -z "${JM_TEST_PG_URL:-}" ] && [ -z "${JM_NO_PG:-}" ]; then
    JM_PG_DIR=$(mktemp -d /tmp/jm-pg.XXXXXX)
    chmod 755 "$JM_PG_DIR"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if JM_TEST_PG_URL=$(sh tests/pg.sh start "$JM_PG_DIR" "$port" 2>"$log"); then
        export JM_TEST_PG_URL JM_PG_DIR
        trap 'sh tests/pg.sh stop "$JM_PG_DIR" >/dev/null 2>&1; rm -rf "$JM_PG_DIR" "$log"' EXIT
        echo "== PostgreSQL test server on port $port"
    else
        echo "== could not start a PostgreSQL test server:"; cat "$log"
        fail=$((fail + 1)); unset JM_TEST_PG_URL
    fi
fi

for b in $BUILDS; do
    for t in "$b"/tests/test_*; do
        [ -x "$t" ] || continue
        name="$b/$(basename "$t")"
        echo "== $name"
        start=$(date +%s)
        "$t" >"$log" 2>&1; st=$?
        grep -E 'FAIL|ERROR|Sanitizer|runtime error|passed|test_embed:' "$log" | head -n 40
        tally "$name" $st
        echo "   ($(( $(date +%s) - start )) s)"
    done
done

for t in tests/test_*.py; do
    [ -f "$t" ] || continue
    name=$(basename "$t")
    echo "== $name"
    "$PY" "$t" >"$log" 2>&1; st=$?
    grep -E 'FAIL|Error|passed' "$log" | head -n 40
    tally "$name" $st
done

# The HTTP service again on the AddressSanitizer + UBSan binary, when it was
# built: leaks and memory errors in the server fail its clean-exit checks.
case " $BUILDS " in
*" build/asan "*)
    echo "== test_server.py (build/asan/jobmatch)"
    JM_BIN=build/asan/jobmatch "$PY" tests/test_server.py >"$log" 2>&1; st=$?
    grep -E 'FAIL|Error|passed' "$log" | head -n 40
    tally "test_server.py (asan)" $st
    ;;
esac

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
