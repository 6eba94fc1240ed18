"""End-to-end tests of the store commands, run against the real binary on a
SQLite file and on a real PostgreSQL server (tests/run.sh starts one and sets
JM_TEST_PG_URL / JM_PG_DIR; without them the PostgreSQL half counts as failed
unless JM_ALLOW_NO_PG=1).

Covers: import-onet, import (CSV, JSONL, bad rows), status, embed (dry run,
recommend and gap from the command line (JSON, tables, bad input, stream mode),
limit, resume, staleness after a change, model change), the stored text and
vector equal to embed-text, a Python-written float32 embedding read back bit
for bit, kill -9 at random moments then resume (every job embedded exactly
once, counted by a trigger), 3 concurrent workers on PostgreSQL (exactly
once), the server going away mid-run and coming back, an unreachable server
(password masked), and attach to a pre-existing table.

Standard library only; PostgreSQL is driven with psql."""
import json
import math
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time

from jmtest import BIN, MODEL, ONET, PG_DIR, PG_URL, ROOT, check, run, summary

TMP = tempfile.mkdtemp(prefix="jm_store_")


def status(db):
    rc, out, err = run("status", "--json", db=db)
    if not check(rc == 0, "status exit %d: %s" % (rc, err)):
        return {}
    return json.loads(out)


# ---------- backends ----------

class Sqlite:
    name = "sqlite"

    def __init__(self, tag):
        self.path = os.path.join(TMP, tag + ".db")
        self.url = self.path

    def sql(self, q, params=()):
        c = sqlite3.connect(self.path, timeout=60)
        try:
            cur = c.execute(q, params)
            rows = cur.fetchall()
            c.commit()
            return rows
        finally:
            c.close()

    def script(self, s):
        c = sqlite3.connect(self.path, timeout=60)
        c.executescript(s)
        c.commit()
        c.close()

    def add_log_trigger(self, table="jobs", idcol="id"):
        self.script("CREATE TABLE IF NOT EXISTS embed_log(id TEXT);"
                    "CREATE TRIGGER IF NOT EXISTS embed_log_t AFTER UPDATE OF embedding ON %s "
                    "WHEN new.embedding IS NOT NULL BEGIN INSERT INTO embed_log VALUES (new.%s); END;" % (table, idcol))

    def set_blob(self, jid, data):
        self.sql("UPDATE jobs SET embedding = ? WHERE id = ?", (data, jid))


class Postgres:
    name = "postgresql"

    def __init__(self, tag):
        out = subprocess.run(["sh", os.path.join(ROOT, "tests/pg.sh"), "createdb", PG_DIR, "jm_" + tag],
                             capture_output=True, text=True, check=True).stdout.strip()
        self.url = out.splitlines()[-1]

    def psql(self, q):
        p = subprocess.run(["psql", self.url, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", q], capture_output=True,
                           text=True)
        if p.returncode:
            raise RuntimeError(p.stderr)
        return p.stdout

    def sql(self, q, params=()):
        assert not params
        out = self.psql(q)
        return [tuple(line.split("|")) for line in out.splitlines() if line]

    def script(self, s):
        self.psql(s)

    def add_log_trigger(self, table="jobs", idcol="id"):
        self.psql("CREATE TABLE IF NOT EXISTS embed_log(id TEXT);"
                  "CREATE OR REPLACE FUNCTION embed_log_f() RETURNS trigger AS $$ BEGIN "
                  "INSERT INTO embed_log VALUES (NEW.%s::text); RETURN NEW; END $$ LANGUAGE plpgsql;"
                  "DROP TRIGGER IF EXISTS embed_log_t ON %s;"
                  "CREATE TRIGGER embed_log_t AFTER UPDATE OF embedding ON %s FOR EACH ROW "
                  "WHEN (NEW.embedding IS NOT NULL) EXECUTE FUNCTION embed_log_f();" % (idcol, table, table))

    def set_blob(self, jid, data):
        self.psql("UPDATE jobs SET embedding = decode('%s', 'hex') WHERE id = '%s'" % (data.hex(), jid))


def exactly_once(be, n_expected, what):
    rows = be.sql("SELECT id, count(*) FROM embed_log GROUP BY id")
    twice = [r for r in rows if int(r[1]) != 1]
    check(len(rows) == n_expected, "%s: %d distinct jobs embedded, expected %d" % (what, len(rows), n_expected))
    check(not twice, "%s: jobs embedded more than once: %s" % (what, twice[:5]))


# ---------- scenarios ----------

def onet_subset_csv(path, n, offset=0):
    """A CSV of n O*NET occupations (title, description, skills), written by us."""
    import csv
    occ = open(os.path.join(ONET, "Occupation Data.txt"), encoding="utf-8").read().splitlines()[1:]
    skills = {}
    for line in open(os.path.join(ONET, "Technology Skills.txt"), encoding="utf-8").read().splitlines()[1:]:
        f = line.split("\t")
        skills.setdefault(f[0], []).append(f[1])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "description", "skills", "location", "remote", "salary_min"])
        for i, line in enumerate(occ[offset:offset + n]):
            code, title, desc = line.split("\t")[:3]
            w.writerow([code, title, desc, ", ".join(dict.fromkeys(skills.get(code, []))), "Boston, MA",
                        "true" if i % 3 == 0 else "false", str(40000 + 1000 * i)])


def scenario_basic(be):
    tag = be.name
    rc, out, err = run("import-onet", ONET, db=be.url)
    check(rc == 0 and "1016 occupations imported" in out, "%s import-onet: %d %s %s" % (tag, rc, out, err))
    st = status(be.url)
    check(st.get("jobs") == 1016 and st.get("missing") == 1016 and st.get("schema_version") == 2,
          "%s status after import: %s" % (tag, st))
    rc, out, err = run("embed", "--dry-run", db=be.url)
    check(rc == 0 and "1016 jobs would be embedded" in out, "%s dry run: %s %s" % (tag, out, err))
    check(status(be.url).get("missing") == 1016, "%s dry run wrote nothing" % tag)
    rc, out, err = run("embed", "--limit", "100", "--batch", "32", "--progress", "log", db=be.url)
    st = status(be.url)
    check(rc == 0 and st.get("embedded") == 100 and st.get("missing") == 916,
          "%s embed --limit 100: %d %s %s %s" % (tag, rc, st, out, err))
    check("embed: jobs" in out, "%s: a log line is printed when stdout is not a terminal" % tag)
    rc, out, err = run("embed", "--batch", "64", db=be.url)
    st = status(be.url)
    check(rc == 0 and st.get("embedded") == 1016 and st.get("stale") == 0 and st.get("missing") == 0,
          "%s embed all: %d %s %s" % (tag, rc, st, err))
    check(st.get("skills", 0) > 5000 and st.get("skills_pending") == 0, "%s skills embedded: %s" % (tag, st))
    check("embedded 916 jobs" in out, "%s resume embedded exactly the rest: %s" % (tag, out))
    rc, out, err = run("embed", db=be.url)
    check(rc == 0 and "embedded 0 jobs and 0 skills" in out, "%s second run is a no-op: %s" % (tag, out))

    # The stored vector is the embedding of the documented job text.
    row = be.sql("SELECT title, description, skill_names FROM jobs WHERE id = '15-1252.00'")[0]
    text = "%s. %s Skills: %s" % row
    rc, out, _ = run("embed-text", text)
    ref = json.loads(out)
    rc2, out2, err2 = run("get-embedding", "15-1252.00", db=be.url)
    got = json.loads(out2) if rc2 == 0 else []
    check(len(got) == 384 and max(abs(a - b) for a, b in zip(got, ref)) < 1e-6,
          "%s stored vector equals embed-text of the documented text (%s)" % (tag, err2))
    check(abs(math.sqrt(sum(x * x for x in got)) - 1) < 1e-5 if got else False, "%s stored vector is unit" % tag)

    # A change makes exactly that job stale; bad rows are reported with their line.
    csv_path = os.path.join(TMP, tag + "_change.csv")
    with open(csv_path, "w", encoding="utf-8") as f:
        f.write("id,title,description,skills\n")
        f.write('15-1252.00,Software Developers,"Design, build and test software.\nNew line.","Python, Rust"\n')
        f.write(",No id,x,y\n")
        f.write('x-1,Salary,desc,"a"\n')
    rc, out, err = run("import", csv_path, db=be.url)
    check(rc == 3, "%s import with a bad row exits 3 (got %d: %s)" % (tag, rc, err))
    check(":4:" in err and "id" in err, "%s bad row reported with its line: %s" % (tag, err))
    st = status(be.url)
    check(st.get("stale") == 1 and st.get("missing") == 1 and st.get("jobs") == 1017,
          "%s one stale, one new: %s" % (tag, st))
    rc, out, err = run("embed", db=be.url)
    check(rc == 0 and "embedded 2 jobs" in out, "%s only the changed and the new job re-embedded: %s" % (tag, out))
    jl = os.path.join(TMP, tag + ".jsonl")
    with open(jl, "w") as f:
        f.write(json.dumps({"id": "j-1", "title": "Welder", "skills": ["MIG welding", "Blueprint reading"],
                            "salary_min": "30000", "remote": False}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"id": "j-2", "title": "Chef", "salary_min": "lots"}) + "\n")
    rc, out, err = run("import", jl, db=be.url)
    check(rc == 3 and ":2:" in err and ":3:" in err and "salary_min" in err,
          "%s JSONL bad lines reported: %d %s" % (tag, rc, err))
    check(status(be.url).get("jobs") == 1018, "%s JSONL good row imported" % tag)

    # A model with another id makes everything stale (only the id matters to status).
    rc, out, err = run("status", "--json", "--model", "/x/other-model", db=be.url)
    st = json.loads(out) if rc == 0 else {}
    check(st.get("stale") == 1017 and st.get("missing") == 1, "%s other model id: all stale: %s" % (tag, st))

    # A vector written by Python (numpy's '<f4' layout) reads back bit for bit.
    vec = [random.Random(7).uniform(-1, 1) for _ in range(384)]
    data = struct.pack("<384f", *vec)
    be.set_blob("11-1011.00", data)
    rc, out, err = run("get-embedding", "11-1011.00", db=be.url)
    back = struct.pack("<384f", *json.loads(out)) if rc == 0 else b""
    check(back == data, "%s Python-written float32 bytes read back bit-exactly (%s)" % (tag, err))
    rc, out, err = run("get-embedding", "no-such-job", db=be.url)
    check(rc == 1 and "no-such-job" in err, "%s unknown id: %d %s" % (tag, rc, err))


def scenario_rank_cli(be):
    """recommend and gap from the command line, on the embedded O*NET store."""
    tag = be.name + " recommend/gap"
    rc, out, err = run("recommend", "--skills", "python, sql, machine learning", "-k", "3", "--json", db=be.url)
    res = json.loads(out) if rc == 0 else {}
    rs = res.get("results", [])
    check(rc == 0 and len(rs) == 3, "%s: 3 results (%d %s)" % (tag, rc, err))
    check(res.get("skills") == ["python", "sql", "machine learning"] and res.get("considered", 0) >= 1016,
          "%s: skills and considered: %s" % (tag, {k: res.get(k) for k in ("skills", "considered")}))
    ok = all(set(r) >= {"id", "title", "score", "parts", "alignment", "missing"} and
             set(r["parts"]) == {"query", "coverage", "semantic", "keyword"} for r in rs)
    check(ok, "%s: every result has its parts and explanation" % tag)
    check(all(rs[i]["score"] >= rs[i + 1]["score"] for i in range(len(rs) - 1)), "%s: sorted" % tag)
    al = [a for r in rs for a in r["alignment"]]
    check(any(a["job_skill"] == "Python" and a["kind"] == "exact" and a["status"] == "have" for a in al),
          "%s: an exact Python match is explained" % tag)
    check(all((a["status"] == "missing") == (a["user_skill"] is None) for a in al), "%s: missing = no user skill" % tag)
    check(all(set(r["missing"]) == {a["job_skill"] for a in r["alignment"] if a["status"] == "missing"} for r in rs),
          "%s: missing lists agree with the alignment" % tag)
    rc, out2, err = run("recommend", "--skills", "python, sql, machine learning", "-k", "3", "--json", "--index",
                        "stream", db=be.url)
    st = json.loads(out2) if rc == 0 else {}
    check([r["id"] for r in st.get("results", [])] == [r["id"] for r in rs], "%s: stream mode ranks alike" % tag)
    rc, out, err = run("recommend", "--skills", "python", "-k", "2", db=be.url)
    check(rc == 0 and "matched:" in out and "score" in out, "%s: a table on the terminal: %s" % (tag, out[:200]))
    rc, out, err = run("gap", "--skills", "python, mysql", "--job", "15-2051.00", "--json", db=be.url)
    g = json.loads(out) if rc == 0 else {}
    check(rc == 0 and g.get("job", {}).get("id") == "15-2051.00" and 0 < g.get("readiness", 0) < 1,
          "%s: gap for one job: %s" % (tag, err))
    items = g.get("items", [])
    check(any(i["skill"] == "Python" and i["status"] == "have" for i in items) and
          g.get("missing_count") == len(g.get("missing", [])) and
          g.get("have", 0) + g.get("partial", 0) + g.get("missing_count", 0) == len(items),
          "%s: have/partial/missing add up" % tag)
    rc, out, err = run("gap", "--skills", "python, sql", "--top", "5", "--json", db=be.url)
    c = json.loads(out) if rc == 0 else {}
    check(rc == 0 and c.get("top_n") == 5 and len(c.get("jobs", [])) == 5 and c.get("learn_next") and
          all(1 <= x["jobs_missing"] <= 5 for x in c["learn_next"]), "%s: career gap: %s" % (tag, err))
    for args, code, word in [(["recommend"], 2, "--skills"), (["recommend", "--skills", " , "], 2, "no skills"),
                             (["recommend", "--skills", "python", "-k", "-1"], 2, "-k"),
                             (["recommend", "--skills", "python", "--salary-min", "lots"], 2, "salary"),
                             (["recommend", "--skills", "python", "--posted-since", "yesterday"], 1, "posted_since"),
                             (["gap", "--skills", "python", "--job", "no-such-job"], 1, "no-such-job"),
                             (["gap", "--skills", "python", "--readiness", "2"], 2, "readiness")]:
        rc, out, err = run(*args, db=be.url)
        check(rc == code and word in err, "%s: %s -> exit %d, %s" % (tag, " ".join(args), rc, err.strip()))
    rc, out, err = run("recommend", "--skills", "python", "--location", "Atlantis", "--json", db=be.url)
    check(rc == 0 and json.loads(out).get("results") == [], "%s: no match is an empty list" % tag)


def scenario_kill9(be):
    """kill -9 at random moments, then resume: each job embedded exactly once."""
    tag = be.name + " kill -9"
    csv_path = os.path.join(TMP, be.name + "_k.csv")
    onet_subset_csv(csv_path, 300)
    rc, out, err = run("import", csv_path, db=be.url)
    check(rc == 0, "%s import: %s" % (tag, err))
    be.add_log_trigger()
    rnd = random.Random(1)
    kills = 0
    # Each run is killed at a random moment after its first committed batch:
    # a moment fixed in seconds let a fast machine finish all 300 first.
    def embedded():  # polled, so not a check each time
        rc, out, err = run("status", "--json", db=be.url)
        return json.loads(out).get("embedded", 0) if rc == 0 else -1
    for _ in range(4):
        before = status(be.url).get("embedded", 0)
        p = subprocess.Popen([BIN, "embed", "--batch", "8", "--no-skills", "--db", be.url],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, JOBMATCH_MODEL=MODEL), cwd=ROOT)
        deadline = time.time() + 120
        while p.poll() is None and time.time() < deadline and embedded() <= before:
            time.sleep(0.02)
        time.sleep(rnd.uniform(0.0, 0.3))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    check(kills >= 2, "%s: killed %d runs mid-way" % (tag, kills))
    mid = status(be.url)
    check(0 < mid.get("embedded", 0) < 300, "%s: partial progress was kept: %s" % (tag, mid))
    rc, out, err = run("embed", "--no-skills", db=be.url)
    st = status(be.url)
    check(rc == 0 and st.get("embedded") == 300 and st.get("missing") == 0, "%s resume: %s %s" % (tag, st, err))
    exactly_once(be, 300, tag)


def scenario_workers(be):
    """3 concurrent workers on PostgreSQL share the work: each job exactly once."""
    tag = "3 workers"
    csv_path = os.path.join(TMP, "w.csv")
    onet_subset_csv(csv_path, 240)
    rc, out, err = run("import", csv_path, db=be.url)
    be.add_log_trigger()
    procs = [subprocess.Popen([BIN, "embed", "--threads", "1", "--batch", "4", "--no-skills", "--progress", "none",
                               "--db", be.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, JOBMATCH_MODEL=MODEL), cwd=ROOT) for _ in range(3)]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        check(p.returncode == 0, "%s: worker exit %d %s" % (tag, p.returncode, err))
        words = out.split()
        done.append(int(words[words.index("embedded") + 1]) if "embedded" in words else -1)
    check(sum(done) == 240, "%s: the workers embedded %s jobs in all (expected 240)" % (tag, done))
    check(sum(1 for d in done if d > 0) >= 2, "%s: the work was shared: %s" % (tag, done))
    exactly_once(be, 240, tag)
    check(status(be.url).get("embedded") == 240, "%s: all embedded" % tag)


def scenario_db_drop(be):
    """The server goes away mid-run: clear error, committed batches kept, rerun finishes."""
    tag = "server restart"
    csv_path = os.path.join(TMP, "d.csv")
    onet_subset_csv(csv_path, 300)
    run("import", csv_path, db=be.url)
    be.add_log_trigger()
    p = subprocess.Popen([BIN, "embed", "--batch", "8", "--no-skills", "--progress", "none", "--db", be.url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, JOBMATCH_MODEL=MODEL), cwd=ROOT)
    time.sleep(2.0)
    subprocess.run(["sh", os.path.join(ROOT, "tests/pg.sh"), "stop", PG_DIR], capture_output=True)
    out, err = p.communicate(timeout=120)
    check(p.returncode == 1, "%s: embed exits 1 when the server goes (got %d)" % (tag, p.returncode))
    check("jobmatch:" in err and "run embed again" in err and "jmpass" not in err,
          "%s: clear message without the password: %s" % (tag, err))
    port = open(os.path.join(PG_DIR, "port")).read().strip()
    subprocess.run(["sh", os.path.join(ROOT, "tests/pg.sh"), "start", PG_DIR, port], capture_output=True, check=True)
    mid = status(be.url)
    check(0 < mid.get("embedded", 0) < 300, "%s: committed batches kept: %s" % (tag, mid))
    rc, out, err = run("embed", "--no-skills", db=be.url)
    check(rc == 0 and status(be.url).get("embedded") == 300, "%s: rerun finishes: %s" % (tag, err))
    exactly_once(be, 300, tag)


def scenario_attach(be):
    tag = be.name + " attach"
    be.script("CREATE TABLE skill_job1 (job_id TEXT PRIMARY KEY, title TEXT, skills TEXT, description TEXT, "
              "extra INTEGER)")
    occ = open(os.path.join(ONET, "Occupation Data.txt"), encoding="utf-8").read().splitlines()[1:41]
    for i, line in enumerate(occ):
        code, title, desc = line.split("\t")[:3]
        title = title.replace("'", "''")
        desc = desc.replace("'", "''")
        be.script("INSERT INTO skill_job1 VALUES ('%s', '%s', 'Excel; Word; Skill %d', '%s', %d)"
                  % (code, title, i % 5, desc, i))
    with open(os.path.join(TMP, "attach.csv"), "w") as f:
        f.write("id,title\nz-1,Baker\n")
    rc, out, err = run("attach", "--table", "skill_job1", "--id-column", "job_id", "--text-columns",
                       "title,nosuch", db=be.url)
    check(rc == 1 and "nosuch" in err, "%s: a missing column is refused: %s" % (tag, err))
    rc, out, err = run("attach", "--table", "nosuch_table", "--id-column", "job_id", "--text-columns", "title",
                       db=be.url)
    check(rc == 1 and "nosuch_table" in err, "%s: a missing table is refused: %s" % (tag, err))
    rc, out, err = run("attach", "--table", "skill_job1", "--id-column", "job_id", "--text-columns",
                       "title,skills,description", "--skills-column", "skills", db=be.url)
    check(rc == 0, "%s: %s %s" % (tag, out, err))
    st = status(be.url)
    check(st.get("attached") is True and st.get("jobs") == 40 and st.get("missing") == 40, "%s status: %s" % (tag, st))
    rc, out, err = run("embed", db=be.url)
    st = status(be.url)
    check(rc == 0 and st.get("embedded") == 40, "%s embed: %s %s" % (tag, st, err))
    check(st.get("skills") == 7, "%s: skills from the attached column (Excel, Word, Skill 0-4): %s" % (tag, st))
    rows = be.sql("SELECT job_id, extra, title FROM skill_job1 ORDER BY job_id")
    check(len(rows) == 40 and sorted(int(r[1]) for r in rows) == list(range(40)),
          "%s: the user's rows and columns are untouched" % tag)
    rc, out, err = run("import", os.path.join(TMP, "attach.csv"), db=be.url)
    check(rc == 1 and "attached" in err, "%s: import refuses to write into an attached table: %s" % (tag, err))
    # Changing a row in the user's table makes it stale; nothing else is.
    be.script("UPDATE skill_job1 SET title = 'Chief Executive Officer' WHERE job_id = '11-1011.00'")
    st = status(be.url)
    check(st.get("stale") == 1 and st.get("embedded") == 39, "%s: the changed row is stale: %s" % (tag, st))
    rc, out, err = run("attach", "--table", "skill_job1", "--id-column", "job_id", "--text-columns",
                       "title,skills,description", "--skills-column", "skills", db=be.url)
    check(rc == 0 and status(be.url).get("stale") == 1, "%s: attaching again is a no-op" % tag)
    if be.name == "postgresql":
        # The board's application, under a role of its own with rights on its
        # table only, keeps writing it: the change-log trigger runs as its owner.
        subprocess.run(["sh", os.path.join(ROOT, "tests/pg.sh"), "createrole", PG_DIR, "board_app", "boardpw"],
                       capture_output=True, check=True)
        be.script("GRANT USAGE ON SCHEMA public TO board_app;"
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON skill_job1 TO board_app;")
        app_url = be.url.replace("jm:jmpass@", "board_app:boardpw@", 1)
        p = subprocess.run(["psql", app_url, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c",
                            "INSERT INTO skill_job1(job_id, title) VALUES ('app-1', 'Baker');"
                            "UPDATE skill_job1 SET title = 'Head baker' WHERE job_id = 'app-1';"
                            "DELETE FROM skill_job1 WHERE job_id = '11-1011.00';"], capture_output=True, text=True)
        check(p.returncode == 0, "%s: the board's own role writes its table after attach: %s" % (tag, p.stderr))
        logged = be.sql("SELECT id, deleted FROM job_changes WHERE id IN ('app-1', '11-1011.00') ORDER BY id")
        check([(r[0], r[1]) for r in logged] == [("11-1011.00", "t"), ("app-1", "f")],
              "%s: and its changes are logged: %s" % (tag, logged))


def scenario_unreachable():
    rc, out, err = run("status", db="postgresql://jm:s3cretpw@127.0.0.1:1/nowhere")
    check(rc == 1, "unreachable server: exit %d" % rc)
    check("127.0.0.1" in err and "s3cretpw" not in err and "***" in err,
          "unreachable server: clear message, password masked: %s" % err)
    rc, out, err = run("status", db="/nonexistent/dir/x.db")
    check(rc == 1 and "/nonexistent/dir/x.db" in err, "unopenable SQLite file: %s" % err)


def main():
    if not os.path.isdir(ONET):
        check(False, "O*NET data not found at %s" % ONET)
    else:
        basic = Sqlite("basic")
        scenario_basic(basic)
        scenario_rank_cli(basic)
        scenario_attach(Sqlite("attach"))
        scenario_kill9(Sqlite("kill"))
        scenario_unreachable()
        if PG_URL and PG_DIR:
            pgbasic = Postgres("basic")
            scenario_basic(pgbasic)
            scenario_rank_cli(pgbasic)
            scenario_attach(Postgres("attach"))
            scenario_kill9(Postgres("kill"))
            scenario_workers(Postgres("workers"))
            scenario_db_drop(Postgres("drop"))
        elif os.environ.get("JM_ALLOW_NO_PG") != "1":
            check(False, "no PostgreSQL server for the tests (JM_TEST_PG_URL / JM_PG_DIR unset)")
    subprocess.run(["rm", "-rf", TMP])
    return summary("test_store: ")


if __name__ == "__main__":
    sys.exit(main())
