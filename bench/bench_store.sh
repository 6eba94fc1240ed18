#!/bin/sh
# bench_store.sh - the store's figures, printed:
#   1. `jobmatch embed` over all O*NET occupations with 2 threads, on SQLite and
#      on PostgreSQL: wall time, jobs/s, and the database's share of the time;
#   2. `jobmatch import` of a generated 100,000-row CSV: rows/s, both backends.
# Starts its own PostgreSQL server (tests/pg.sh). Run on an idle machine.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-build/jobmatch}
ONET=${JOBMATCH_ONET:-../shared/data/onet}
tmp=$(mktemp -d /tmp/jm-bench-store.XXXXXX)
chmod 755 "$tmp"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sh tests/pg.sh start "$tmp/pg" "$port" >/dev/null
trap 'sh tests/pg.sh stop "$tmp/pg" >/dev/null 2>&1; rm -rf "$tmp"' EXIT

python3 - "$ONET" "$tmp/jobs100k.csv" <<'PY'
import csv, random, sys
onet, out = sys.argv[1], sys.argv[2]
occ = [l.split("\t") for l in open(onet + "/Occupation Data.txt", encoding="utf-8").read().splitlines()[1:]]
sk = {}
for l in open(onet + "/Technology Skills.txt", encoding="utf-8").read().splitlines()[1:]:
    f = l.split("\t"); sk.setdefault(f[0], []).append(f[1])
cities = ["Boston, MA", "Austin, TX", "Denver, CO", "Seattle, WA", "Chicago, IL", "Remote"]
r = random.Random(42)
with open(out, "w", newline="", encoding="utf-8") as fh:
    w = csv.writer(fh)
    w.writerow(["id", "title", "company", "location", "remote", "salary_min", "salary_max", "description", "skills"])
    for i in range(100000):
        code, title, desc = occ[r.randrange(len(occ))][:3]
        s = sk.get(code, [])
        s = r.sample(s, min(len(s), r.randint(3, 12)))
        lo = r.randrange(30, 150) * 1000
        w.writerow(["job-%06d" % i, title, "Company %d" % r.randrange(5000), r.choice(cities),
                    "true" if r.random() < 0.2 else "false", lo, lo + r.randrange(5, 60) * 1000, desc, ", ".join(s)])
PY

echo "# bench_store: $(nproc) CPUs, $($BIN version)"
for backend in sqlite postgresql; do
    if [ $backend = sqlite ]; then db=$tmp/onet.db; db100=$tmp/import.db
    else db=$(sh tests/pg.sh createdb "$tmp/pg" bench_onet); db100=$(sh tests/pg.sh createdb "$tmp/pg" bench_import); fi
    $BIN import-onet --db "$db" "$ONET" >/dev/null
    line=$($BIN embed --db "$db" --threads 2 --progress none)
    echo "embed O*NET, $backend, 2 threads: $line"
    out=$($BIN import --db "$db100" "$tmp/jobs100k.csv")
    rows=$(echo "$out" | awk '{print $2}'); secs=$(echo "$out" | awk '{print $(NF-1)}')
    echo "import 100,000-row CSV, $backend: $secs s, $(python3 -c "print(round($rows / $secs))") rows/s"
done
