#!/bin/sh
# Runs the benchmarks and prints their figures. Run on an idle machine.
set -eu
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
ONET=${JOBMATCH_ONET:-../shared/data/onet}
"$BUILD"/bench/bench_embed --onet "$ONET" "$@"
sh bench/bench_store.sh
