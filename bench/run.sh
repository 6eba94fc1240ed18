#!/bin/sh
# Runs every benchmark and prints its figures (BENCHMARKS.md records them).
# Run on an idle machine: nothing else building or testing.
#   sh bench/run.sh [embed|store|quality|calibrate|idx|rank|serve ...]   (default: all)
set -eu
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
ONET=${JOBMATCH_ONET:-../shared/data/onet}
what=${*:-embed store quality calibrate idx rank serve}
onet_db=$BUILD/bench-onet.db

onet_store() { # the O*NET jobs, embedded (made once, reused)
    "$BUILD"/jobmatch import-onet --db "$onet_db" "$ONET" >/dev/null
    "$BUILD"/jobmatch embed --db "$onet_db" --progress none >/dev/null
}

store_100k() { # the 100,000-job store derived from O*NET by bench_rank (made once, reused)
    onet_store
    [ -f "$BUILD/bench-100k.db" ] || "$BUILD"/bench/bench_rank --onet-db "$onet_db" --db "$BUILD/bench-100k.db" --jobs 100000 --queries 5 >/dev/null
}

for w in $what; do
    echo "## $w"
    case $w in
    embed) "$BUILD"/bench/bench_embed --onet "$ONET" ;;
    store) sh bench/bench_store.sh ;;
    quality) onet_store; "$BUILD"/bench/quality --db "$onet_db" --onet "$ONET" --draws 5 ;;
    calibrate) "$BUILD"/bench/calibrate --onet "$ONET" 2>/dev/null ;;
    idx) "$BUILD"/bench/bench_idx ;;
    rank)
        # the first run generates the 100,000-job store; then one run that
        # scans it (and writes the engine snapshot, the index calibrated on
        # its queries), one that loads the snapshot, and one that measures
        # the index's top 10 against a brute force (--recall, other queries;
        # its buffers make its RSS figures meaningless); JM_BENCH_1M=1 does
        # the same at 1,000,000 jobs (the store is generated once: ~7 GB,
        # most of an hour)
        store_100k
        rm -f "$BUILD/bench-100k.snapshot"
        "$BUILD"/bench/bench_rank --onet-db "$onet_db" --db "$BUILD/bench-100k.db" --jobs 100000 --queries 1000 --snapshot "$BUILD/bench-100k.snapshot"
        "$BUILD"/bench/bench_rank --onet-db "$onet_db" --db "$BUILD/bench-100k.db" --jobs 100000 --queries 1000 --stream 20 --snapshot "$BUILD/bench-100k.snapshot"
        "$BUILD"/bench/bench_rank --onet-db "$onet_db" --db "$BUILD/bench-100k.db" --jobs 100000 --queries 10 --recall 1000 --snapshot "$BUILD/bench-100k.snapshot"
        if [ -n "${JM_BENCH_1M:-}" ]; then
            rm -f "$BUILD/bench-1m.snapshot"
            for run in scan snapshot; do
                "$BUILD"/bench/bench_rank --onet-db "$onet_db" --db "$BUILD/bench-1m.db" --jobs 1000000 --queries 1000 --snapshot "$BUILD/bench-1m.snapshot"
            done
            "$BUILD"/bench/bench_rank --onet-db "$onet_db" --db "$BUILD/bench-1m.db" --jobs 1000000 --queries 10 --recall 300 --snapshot "$BUILD/bench-1m.snapshot"
        fi ;;
    serve)
        # `jobmatch serve` on the same store under wrk (bench/bench_serve.sh)
        store_100k
        JM_BENCH_DB="$BUILD/bench-100k.db" JM_BENCH_ONET_DB="$onet_db" sh bench/bench_serve.sh ;;
    *) echo "bench/run.sh: unknown benchmark $w" >&2; exit 2 ;;
    esac
done
