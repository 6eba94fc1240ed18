#!/bin/sh
# bench_serve.sh - the HTTP service under load: `jobmatch serve` on a
# 100,000-job SQLite store, driven by wrk (Debian's) on POST /v1/recommend.
#
#   sh bench/bench_serve.sh            (bench/run.sh serve makes the store first)
#
# Prints, for the server: what /v1/info reports (version, model, index), the
# time from start to the first successful /readyz (polled every 10 ms), its RSS
# (VmRSS) when ready and after each run; for each run (fixed 5-skill body, and
# bodies varied per request from O*NET skill sets; 16 and 64 connections; 2
# wrk threads; --latency): requests/s, p50, p99 and errors (non-2xx, and socket
# errors: connect, read, write, timeout).
#
# Environment:
#   JM_BENCH_DB           the store (default $BUILD/bench-100k.db, made by bench_rank)
#   JM_BENCH_ONET_DB      the O*NET store the skill sets are drawn from ($BUILD/bench-onet.db)
#   JM_BENCH_DURATION     seconds per wrk run (default 30)
#   JM_BENCH_CONNECTIONS  connection counts (default "16 64")
#   JM_BENCH_MODES        body modes (default "fixed varied")
#   JM_BENCH_THREADS      the server's --threads (default: its own default, the CPU count)
#   JM_BENCH_LONG         if set to N > 0: afterwards, varied bodies at 16 connections
#                         until N requests have been answered, RSS printed after every
#                         JM_BENCH_LONG_STEP seconds (default 60) of load: RSS growth
#   JM_BIN                the binary (default $BUILD/jobmatch)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=${JM_BIN:-$BUILD/jobmatch}
DB=${JM_BENCH_DB:-$BUILD/bench-100k.db}
ONET_DB=${JM_BENCH_ONET_DB:-$BUILD/bench-onet.db}
DURATION=${JM_BENCH_DURATION:-30}
CONNS=${JM_BENCH_CONNECTIONS:-16 64}
MODES=${JM_BENCH_MODES:-fixed varied}
LONG=${JM_BENCH_LONG:-0}
LONG_STEP=${JM_BENCH_LONG_STEP:-60}
WRK=${WRK:-/usr/bin/wrk}
LUA=bench/wrk_recommend.lua

die() { echo "bench_serve: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "no binary $BIN (run make)"
[ -x "$WRK" ] || die "no $WRK (apt-get install wrk)"
[ -f "$DB" ] || die "no store $DB: run 'sh bench/run.sh serve', which makes it"
[ -f "$ONET_DB" ] || die "no O*NET store $ONET_DB: run 'sh bench/run.sh serve'"
command -v curl >/dev/null || die "needs curl"
command -v python3 >/dev/null || die "needs python3 (to draw the skill sets)"

TMP=$(mktemp -d /tmp/jm-bench-serve.XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# JM_BENCH_BODIES (default 100,000) distinct request bodies of 3-5 skills,
# each drawn from one O*NET occupation's skills (fixed seed), one JSON body a
# line: more than a run sends, so no body repeats and no cache of query
# embeddings can help the varied runs.
python3 - "$ONET_DB" "$TMP/bodies.jsonl" "${JM_BENCH_BODIES:-100000}" <<'EOF'
import json, random, sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("SELECT skills FROM jobs WHERE skills IS NOT NULL").fetchall()
occ = [[s["name"] for s in json.loads(r[0])] for r in rows]
occ = [o for o in occ if len(o) >= 3]
if not occ:
    sys.exit("bench_serve: no O*NET skills in " + sys.argv[1])
rnd = random.Random(2026)
seen = set()
with open(sys.argv[2], "w") as f:
    while len(seen) < int(sys.argv[3]):
        o = rnd.choice(occ)
        body = json.dumps({"skills": rnd.sample(o, min(len(o), rnd.randint(3, 5))), "top_k": 10})
        if body not in seen:
            seen.add(body)
            f.write(body + "\n")
EOF

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$port

rss() { awk '/^VmRSS:/ { printf "%.1f MB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo "?"; }
now() { date +%s.%N; }

set -- serve --db "$DB" --host 127.0.0.1 --port "$port"
[ -n "${JM_BENCH_THREADS:-}" ] && set -- "$@" --threads "$JM_BENCH_THREADS"
t0=$(now)
"$BIN" "$@" >"$TMP/server.log" 2>&1 &
pid=$!
ready=""
while kill -0 "$pid" 2>/dev/null; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL/readyz" 2>/dev/null || true)
    if [ "$code" = 200 ]; then ready=$(now); break; fi
    t=$(now)
    if awk "BEGIN { exit !($t - $t0 > 120) }"; then break; fi
    sleep 0.01
done
if [ -z "$ready" ]; then
    cat "$TMP/server.log" >&2
    die "the server did not become ready (see its log above)"
fi
echo "# bench_serve: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
echo "server: $(curl -s "$URL/v1/info")"
printf "ready after %.0f ms (start to first 200 from /readyz, polled every 10 ms); RSS %s\n" \
    "$(awk "BEGIN { print ($ready - $t0) * 1000 }")" "$(rss)"

# one wrk run: mode connections seconds; prints its line and leaves the figures in $TMP/last
run() {
    mode=$1; conns=$2; secs=$3
    if [ "$mode" = varied ]; then extra="varied $TMP/bodies.jsonl"; else extra=fixed; fi
    # shellcheck disable=SC2086
    "$WRK" -t 2 -c "$conns" -d "${secs}s" --timeout 10s --latency -s "$LUA" "$URL/v1/recommend" -- $extra \
        >"$TMP/wrk.out" 2>&1 || { cat "$TMP/wrk.out" >&2; die "wrk failed"; }
    line=$(grep '^RESULT ' "$TMP/wrk.out" | tail -n 1)
    [ -n "$line" ] || { cat "$TMP/wrk.out" >&2; die "wrk printed no RESULT line"; }
    echo "$line" >"$TMP/last"
    eval "$(echo "$line" | sed 's/^RESULT //')" # requests= seconds= rps= p50_ms= ...
    errors=$((non2xx + connect + read + write + timeout))
    printf "%-6s %3d conns %4ss: %8.1f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d (non-2xx %d, connect %d, read %d, write %d, timeout %d)  RSS %s\n" \
        "$mode" "$conns" "$secs" "$rps" "$p50_ms" "$p99_ms" "$errors" "$non2xx" "$connect" "$read" "$write" "$timeout" "$(rss)"
}

# warm-up (not reported): touches the pages of the index and the model
"$WRK" -t 2 -c 4 -d 2s -s "$LUA" "$URL/v1/recommend" -- varied "$TMP/bodies.jsonl" >/dev/null 2>&1 || true
echo "after a 2 s warm-up: RSS $(rss)"

for mode in $MODES; do
    for c in $CONNS; do
        run "$mode" "$c" "$DURATION"
    done
done

if [ "$LONG" -gt 0 ]; then
    echo "long run: varied bodies, 16 connections, until $LONG requests (RSS every ${LONG_STEP} s of load)"
    total=0
    first_rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    while [ "$total" -lt "$LONG" ]; do
        run varied 16 "$LONG_STEP" >/dev/null
        eval "$(sed 's/^RESULT //' "$TMP/last")"
        total=$((total + requests))
        printf "  %10d requests  %8.1f req/s  p99 %6.2f ms  errors %d  RSS %s\n" \
            "$total" "$rps" "$p99_ms" $((non2xx + connect + read + write + timeout)) "$(rss)"
    done
    last_rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    printf "RSS growth over %d requests: %+.1f MB\n" "$total" "$(awk "BEGIN { print ($last_rss - $first_rss) / 1024 }")"
fi

kill -TERM "$pid"
t=$(now)
wait "$pid" || echo "bench_serve: the server exited with status $? on SIGTERM" >&2
printf "stopped %.0f ms after SIGTERM\n" "$(awk "BEGIN { print ($(now) - $t) * 1000 }")"
pid=""
