"""End-to-end tests of `jobmatch serve`: the real server on a free port, against
a SQLite file and against a real PostgreSQL server (tests/run.sh starts one and
sets JM_TEST_PG_URL / JM_PG_DIR; without them the PostgreSQL half counts as
failed unless JM_ALLOW_NO_PG=1).

Covers every endpoint and its error paths (docs/api.md), auth (writes refused
without keys, wrong and right keys, --auth-reads), PUT/DELETE reflected in the
next recommendation, the OpenAI-shaped embeddings equal to embed-text, the
access log (JSON, request ids, never the key), /metrics, 503 busy with
Retry-After when the only worker is taken, slow clients cut off, graceful
shutdown with a request in flight, and the database stopped and restarted
under a running server (degraded /readyz, recommendations from memory, writes
503, reconnection). Standard library only."""
import base64
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from jmtest import BIN, MODEL, ONET, PG_DIR, PG_URL, ROOT, check, free_port, run, summary

TMP = tempfile.mkdtemp(prefix="jm_server_")
KEY = "test-key-0123456789"


class Server:
    def __init__(self, url, *extra, keys=KEY, tag="s"):
        self.port = free_port()
        self.log = os.path.join(TMP, "%s-%d.log" % (tag, self.port))
        env = dict(os.environ, JOBMATCH_MODEL=MODEL)
        env.pop("JOBMATCH_API_KEYS", None)
        if keys:
            env["JOBMATCH_API_KEYS"] = keys
        self.logf = open(self.log, "w")
        self.p = subprocess.Popen([BIN, "serve", "--db", url, "--port", str(self.port), "--host", "127.0.0.1"] +
                                  list(extra), stdout=self.logf, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        self.ready = False
        deadline = time.time() + 60
        while time.time() < deadline and self.p.poll() is None:
            try:
                st, _, _ = self.req("GET", "/healthz")
                if st == 200:
                    self.ready = True
                    break
            except OSError:
                time.sleep(0.05)
        check(self.ready, "server on %s started (see %s)" % (url, self.log))

    def req(self, method, path, body=None, headers=None, raw=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        try:
            doc = json.loads(payload) if payload else None
        except ValueError:
            doc = payload
        return r.status, doc, hdrs

    def stop(self, sig=signal.SIGTERM, timeout=40):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()
        return self.p.returncode

    def log_text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()


def is_error(st, doc, hdrs, status, code):
    return (st == status and isinstance(doc, dict) and set(doc) == {"error"} and doc["error"].get("code") == code
            and isinstance(doc["error"].get("message"), str) and doc["error"]["message"] != ""
            and hdrs.get("content-type") == "application/json" and hdrs.get("x-request-id"))


# ---------- the store ----------

def make_store(url, n=80):
    """n O*NET occupations with locations, remote flags and salaries, embedded."""
    import csv
    path = os.path.join(TMP, "jobs-%d.csv" % n)
    occ = open(os.path.join(ONET, "Occupation Data.txt"), encoding="utf-8").read().splitlines()[1:]
    skills = {}
    for line in open(os.path.join(ONET, "Technology Skills.txt"), encoding="utf-8").read().splitlines()[1:]:
        f = line.split("\t")
        skills.setdefault(f[0], []).append(f[1])
    # software occupations included, so "python, sql" has answers
    chosen = [l for l in occ if l.startswith("15-12")] + [l for l in occ if not l.startswith("15-12")][:n]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "description", "skills", "location", "remote", "salary_min", "salary_max",
                    "company"])
        for i, line in enumerate(chosen[:n]):
            code, title, desc = line.split("\t")[:3]
            w.writerow([code, title, desc, ", ".join(dict.fromkeys(skills.get(code, []))),
                        "Berlin" if i % 2 else "Boston, MA", "true" if i % 3 == 0 else "false",
                        str(40000 + 1000 * i), str(60000 + 1000 * i), "Acme" if i % 4 == 0 else "Globex %d" % i])
    rc, out, err = run("import", path, db=url)
    check(rc == 0, "import: %s %s" % (out, err))
    rc, out, err = run("embed", "--progress", "none", db=url)
    check(rc == 0, "embed: %s %s" % (out, err))


# ---------- scenarios ----------

def t_health_and_static(s, tag):
    st, doc, h = s.req("GET", "/healthz")
    check(st == 200 and doc == {"status": "ok"}, "%s healthz: %s %s" % (tag, st, doc))
    st, doc, h = s.req("GET", "/readyz")
    check(st == 200 and doc.get("status") == "ready" and doc.get("database") == "ok" and doc.get("jobs") == 80,
          "%s readyz: %s %s" % (tag, st, doc))
    st, doc, h = s.req("GET", "/v1/info")
    check(st == 200 and doc.get("jobs") == 80 and doc.get("with_vectors") == 80 and doc.get("dim") == 384 and
          doc.get("database") == tag and doc.get("corpus") is None and doc.get("index_lists") == 0 and
          doc.get("index_probe") == 0, "%s info: %s" % (tag, doc))
    st, doc, h = s.req("GET", "/")
    check(st == 200 and h.get("content-type", "").startswith("text/html") and b"<html" in doc.lower()
          and "default-src 'none'" in h.get("content-security-policy", ""), "%s page at /: %s %s" % (tag, st, h))
    st, doc, h = s.req("GET", "/openapi.json")
    check(st == 200 and doc.get("openapi", "").startswith("3.") and "/v1/recommend" in doc.get("paths", {}),
          "%s openapi.json served" % tag)
    with open(os.path.join(ROOT, "docs", "openapi.json"), encoding="utf-8") as f:
        check(json.load(f) == doc, "%s /openapi.json is docs/openapi.json" % tag)
    st, doc, h = s.req("GET", "/healthz", headers={"X-Request-Id": "my-req.42"})
    check(h.get("x-request-id") == "my-req.42", "%s a valid X-Request-Id is echoed" % tag)
    st, doc, h = s.req("GET", "/healthz", headers={"X-Request-Id": "bad id with spaces"})
    check(h.get("x-request-id") and h["x-request-id"] != "bad id with spaces", "%s an invalid one is replaced" % tag)


def t_recommend(s, tag):
    st, doc, h = s.req("POST", "/v1/recommend", {"skills": ["python", "sql", "docker"], "top_k": 5})
    ok = check(st == 200 and isinstance(doc.get("results"), list) and 1 <= len(doc["results"]) <= 5,
               "%s recommend: %s %s" % (tag, st, str(doc)[:300]))
    if not ok:
        return
    r0 = doc["results"][0]
    check(doc["skills"] == ["python", "sql", "docker"] and doc["considered"] == 80 and doc["took_ms"] > 0,
          "%s recommend header fields: %s" % (tag, {k: doc[k] for k in ("skills", "considered", "took_ms")}))
    check(set(r0) >= {"id", "title", "score", "parts", "matched", "missing", "alignment"} and
          set(r0["parts"]) == {"query", "coverage", "semantic", "keyword"}, "%s result fields: %s" % (tag, list(r0)))
    scores = [r["score"] for r in doc["results"]]
    check(scores == sorted(scores, reverse=True), "%s results by score: %s" % (tag, scores))
    check(any(m["user_skill"] == "python" and m["kind"] == "exact" for m in r0["matched"]),
          "%s the best job matched python exactly: %s" % (tag, r0["matched"][:5]))
    check(len(r0["alignment"]) == len(r0["matched"]) + len(r0["missing"]),
          "%s alignment = matched + missing" % tag)
    st2, doc2, _ = s.req("POST", "/v1/recommend", {"skills": "python, sql; docker", "top_k": 5, "explain": False})
    check(st2 == 200 and [r["id"] for r in doc2["results"]] == [r["id"] for r in doc["results"]] and
          all("alignment" not in r for r in doc2["results"]), "%s string skills, explain false" % tag)
    # filters
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["python"], "top_k": 20, "filters": {"remote": True}})
    ids = [r["id"] for r in doc.get("results", [])]
    remote_ok = all(s.req("GET", "/v1/jobs/" + i)[1].get("remote") is True for i in ids)
    check(st == 200 and ids and remote_ok and doc["considered"] < 80, "%s remote filter: %s" % (tag, ids))
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["python"], "top_k": 20,
                                                 "filters": {"location": "berlin", "salary_min": 70000}})
    check(st == 200 and all(r["location"] == "Berlin" for r in doc["results"]), "%s location filter" % tag)
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["python"], "filters": {"location": "Atlantis"}})
    check(st == 200 and doc["results"] == [] and doc["considered"] == 0, "%s filter excluding all: empty" % tag)
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["python"], "top_k": 20, "per_company": 1})
    comps = [r["company"] for r in doc["results"]]
    check(st == 200 and len(comps) == len(set(comps)), "%s per_company 1: %s" % (tag, comps))
    first = s.req("POST", "/v1/recommend", {"skills": ["python"], "top_k": 3})[1]["results"][0]["id"]
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["python"], "top_k": 3, "filters": {"exclude": [first]}})
    check(st == 200 and first not in [r["id"] for r in doc["results"]], "%s exclude filter" % tag)


def t_recommend_errors(s, tag):
    cases = [
        ({"top_k": 3}, "no skills field"),
        ({"skills": []}, "empty skills"),
        ({"skills": " , ;"}, "only separators"),
        ({"skills": ["s%d" % i for i in range(201)]}, "201 skills"),
        ({"skills": ["x" * 201]}, "skill of 201 characters"),
        ({"skills": "a, " + "y" * 201}, "long skill in a string"),
        ({"skills": ["python"], "top_k": 0}, "top_k 0"),
        ({"skills": ["python"], "top_k": 101}, "top_k 101"),
        ({"skills": ["python"], "top_k": 2.5}, "top_k 2.5"),
        ({"skills": ["python"], "top_k": "5"}, "top_k as a string"),
        ({"skills": ["python"], "top_k": True}, "top_k true"),
        ({"skills": [1, 2]}, "skills of numbers"),
        ({"skills": {"a": 1}}, "skills an object"),
        ({"skills": ["python"], "bogus": 1}, "unknown field"),
        ({"skills": ["python"], "filters": {"nope": 1}}, "unknown filter"),
        ({"skills": ["python"], "filters": {"salary_min": -5}}, "negative salary"),
        ({"skills": ["python"], "filters": {"salary_min": 9, "salary_max": 1}}, "salary_min > salary_max"),
        ({"skills": ["python"], "filters": {"posted_since": "yesterday"}}, "bad date"),
        ({"skills": ["python"], "filters": {"remote": "yes"}}, "remote not a bool"),
        ({"skills": ["python"], "filters": []}, "filters an array"),
        ({"skills": ["python"], "explain": 1}, "explain not a bool"),
    ]
    for body, what in cases:
        st, doc, h = s.req("POST", "/v1/recommend", body)
        check(is_error(st, doc, h, 400, "invalid_request"), "%s %s -> 400 invalid_request: %s %s" % (tag, what, st, doc))
    for raw, code, what in [(b'{"skills": ["python"', "invalid_json", "truncated JSON"),
                            (b'["python"]', "invalid_json", "an array body"),
                            (b'', "invalid_json", "empty body"),
                            (b'{"skills": ["\xff\xfe"]}', "invalid_utf8", "invalid UTF-8"),
                            (b'{"skills": ["\xed\xa0\x80"]}', "invalid_utf8", "an encoded surrogate"),
                            (b'{"skills": ["a"]}\x00junk', "invalid_json", "a NUL byte"),
                            (b'{"skills": ["a"]} {"x": 1}', "invalid_json", "two documents"),
                            (b'{"skills": ["\\ud800"]}', "invalid_json", "a lone surrogate escape"),
                            (b'{"skills": ["py\\u0000thon"]}', "invalid_request", "a NUL escape")]:
        st, doc, h = s.req("POST", "/v1/recommend", raw=raw)
        check(is_error(st, doc, h, 400, code), "%s %s -> 400 %s: %s %s" % (tag, what, code, st, doc))
    # Content-Length over the limit: answered 413 before the body is read (the
    # client may see the connection close while it still sends)
    c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    body = b'{"skills": ["a"], "pad": "' + b"x" * (1 << 20) + b'"}'
    c.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    try:
        c.sendall(body[:65536])
    except OSError:
        pass
    resp = b""
    try:
        while b"\r\n\r\n" not in resp:
            chunk = c.recv(65536)
            if not chunk:
                break
            resp += chunk
    except OSError:
        pass
    c.close()
    check(resp.startswith(b"HTTP/1.1 413") and b"payload_too_large" in resp or resp.startswith(b"HTTP/1.1 413"),
          "%s Content-Length over 1 MiB -> 413: %r" % (tag, resp[:80]))
    # a chunked body (no Content-Length) over the limit
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    c.putrequest("POST", "/v1/recommend")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    try:
        for _ in range(40):
            chunk = b"x" * 65536
            c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        st = r.status
        r.read()
    except OSError:
        st = 413  # the server may answer and close before the rest is sent
    c.close()
    check(st == 413, "%s chunked body over 1 MiB -> 413: %s" % (tag, st))
    st, doc, h = s.req("GET", "/v1/recommend")
    check(is_error(st, doc, h, 405, "method_not_allowed") and h.get("allow") == "POST", "%s GET recommend -> 405" % tag)
    st, doc, h = s.req("GET", "/v2/nothing")
    check(is_error(st, doc, h, 404, "not_found"), "%s unknown route -> 404" % tag)
    st, doc, h = s.req("PATCH", "/v1/jobs/x")
    check(is_error(st, doc, h, 405, "method_not_allowed"), "%s PATCH a job -> 405" % tag)


def t_gap(s, tag):
    st, doc, _ = s.req("POST", "/v1/skill-gap", {"skills": ["Python", "MySQL", "Adobe Photoshop"],
                                                  "job_id": "15-1252.00"})
    ok = check(st == 200 and doc.get("mode") == "job" and doc["job"]["id"] == "15-1252.00",
               "%s gap for one job: %s %s" % (tag, st, str(doc)[:200]))
    if ok:
        by = {i["skill"]: i for i in doc["items"]}
        check(by.get("Python", {}).get("status") == "have", "%s Python is have" % tag)
        check(by.get("PostgreSQL", {}).get("status") == "partial" and by["PostgreSQL"]["user_skill"] == "MySQL",
              "%s PostgreSQL is partial via MySQL: %s" % (tag, by.get("PostgreSQL")))
        check(doc["have"] + doc["partial"] + doc["missing_count"] == len(doc["items"]) and
              len(doc["missing"]) == doc["missing_count"] and 0 < doc["readiness"] < 1,
              "%s gap counts and readiness" % tag)
    st, doc, h = s.req("POST", "/v1/skill-gap", {"skills": ["python"], "job_id": "no-such-job"})
    check(is_error(st, doc, h, 404, "not_found"), "%s gap of an unknown job -> 404: %s" % (tag, doc))
    st, doc, h = s.req("POST", "/v1/skill-gap", {"skills": ["python"], "job_id": "15-1252.00", "top_n": 5})
    check(is_error(st, doc, h, 400, "invalid_request"), "%s job_id with top_n -> 400" % tag)
    st, doc, _ = s.req("POST", "/v1/skill-gap", {"skills": ["python", "sql"], "top_n": 10, "readiness": 0.5})
    ok = check(st == 200 and doc.get("mode") == "career" and doc["top_n"] == 10 and len(doc["jobs"]) == 10 and
               doc["learn_next"], "%s career gap: %s %s" % (tag, st, str(doc)[:200]))
    if ok:
        w = [x["weighted"] for x in doc["learn_next"]]
        check(w == sorted(w, reverse=True) and all(x["jobs_missing"] >= 1 for x in doc["learn_next"]),
              "%s learn_next ordered by weighted demand" % tag)
    st, doc, _ = s.req("POST", "/v1/skill-gap", {"skills": ["python"], "top_n": 3, "readiness": 1e-50})
    check(st == 200 and doc["target"] >= 0 and doc["ready_now"] == doc["top_n"],
          "%s a tiny positive readiness is a valid target: %s %s" % (tag, st, str(doc)[:120]))
    for body, what in [({"skills": ["python"], "readiness": 0}, "readiness 0"),
                       ({"skills": ["python"], "readiness": 1.5}, "readiness 1.5"),
                       ({"skills": ["python"], "top_n": 101}, "top_n 101"),
                       ({"skills": ["python"], "job_id": 5}, "job_id a number")]:
        st, doc, h = s.req("POST", "/v1/skill-gap", body)
        check(is_error(st, doc, h, 400, "invalid_request"), "%s gap %s -> 400: %s" % (tag, what, doc))


def t_jobs_and_skills(s, tag):
    st, doc, _ = s.req("GET", "/v1/jobs/15-1252.00")
    check(st == 200 and doc["title"] == "Software Developers" and doc["embedded"] is True and
          isinstance(doc["skills"], list) and doc["skills"] and doc["salary_min"] is not None,
          "%s get job: %s" % (tag, str(doc)[:200]))
    st, doc, h = s.req("GET", "/v1/jobs/nope")
    check(is_error(st, doc, h, 404, "not_found"), "%s get unknown job -> 404" % tag)
    st, doc, h = s.req("GET", "/v1/jobs/%FF%FE")
    check(is_error(st, doc, h, 400, "invalid_utf8"), "%s invalid UTF-8 id -> 400: %s" % (tag, doc))
    st, doc, _ = s.req("GET", "/v1/jobs?limit=5&offset=0")
    check(st == 200 and doc["total"] == 80 and len(doc["jobs"]) == 5, "%s list jobs: %s" % (tag, str(doc)[:200]))
    st, doc2, _ = s.req("GET", "/v1/jobs?limit=5&offset=5")
    check(st == 200 and not set(j["id"] for j in doc["jobs"]) & set(j["id"] for j in doc2["jobs"]),
          "%s pages do not overlap" % tag)
    st, doc, _ = s.req("GET", "/v1/jobs?q=SOFTWARE&limit=100")
    check(st == 200 and doc["total"] >= 2 and all("software" in (j["title"] or "").lower() or
                                                  "software" in (j["company"] or "").lower() for j in doc["jobs"]),
          "%s q filters case-insensitively: %s" % (tag, doc.get("total")))
    for q, what in [("limit=0", "limit 0"), ("limit=101", "limit 101"), ("limit=abc", "limit abc"),
                    ("offset=-1", "offset -1"), ("bogus=1", "unknown parameter"), ("q=%FF", "invalid UTF-8 q"),
                    ("q=soft%00ware", "a NUL in q")]:
        st, doc, h = s.req("GET", "/v1/jobs?" + q)
        check(st == 400 and "error" in doc, "%s list %s -> 400: %s" % (tag, what, doc))
    st, doc, _ = s.req("GET", "/v1/skills?prefix=pyth&limit=5")
    names = [x["name"] for x in doc.get("skills", [])]
    check(st == 200 and names and names[0] == "Python" and all(x["jobs"] >= 0 for x in doc["skills"]),
          "%s autocomplete pyth: %s" % (tag, names))
    st, doc, _ = s.req("GET", "/v1/skills?prefix=sql")
    names = [x["name"].lower() for x in doc.get("skills", [])]
    check(st == 200 and names and all(n.startswith("sql") or " sql" in n or "-sql" in n or "(sql" in n or
                                      "/sql" in n for n in names), "%s autocomplete word prefix: %s" % (tag, names))
    st, doc, h = s.req("GET", "/v1/skills")
    check(is_error(st, doc, h, 400, "invalid_request"), "%s autocomplete without prefix -> 400" % tag)


def t_writes(s, tag):
    auth = {"Authorization": "Bearer " + KEY}
    job = {"title": "Quantum basket weaver", "description": "Weaves baskets with qubits.",
           "skills": ["Qubit weaving", {"name": "Basketry", "required": False}], "location": "Oslo",
           "remote": True, "salary_min": 1000, "salary_max": 2000, "posted_at": "2026-11-01"}
    st, doc, h = s.req("PUT", "/v1/jobs/qw-1", job)
    check(is_error(st, doc, h, 401, "unauthorized") and h.get("www-authenticate") == "Bearer",
          "%s PUT without a key -> 401" % tag)
    st, doc, h = s.req("PUT", "/v1/jobs/qw-1", job, headers={"Authorization": "Bearer wrong-key-123456"})
    check(is_error(st, doc, h, 401, "unauthorized"), "%s PUT with a wrong key -> 401" % tag)
    st, doc, h = s.req("PUT", "/v1/jobs/qw-1", job, headers={"Authorization": "Basic " + KEY})
    check(is_error(st, doc, h, 401, "unauthorized"), "%s PUT with another scheme -> 401" % tag)
    st, doc, _ = s.req("PUT", "/v1/jobs/qw-1", job, headers=auth)
    check(st == 201 and doc.get("created") is True and doc.get("embedded") is True, "%s PUT creates: %s %s" %
          (tag, st, doc))
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["qubit weaving"], "top_k": 1})
    check(st == 200 and doc["results"] and doc["results"][0]["id"] == "qw-1" and
          doc["results"][0]["matched"][0]["kind"] == "exact", "%s the new job is recommended at once: %s" %
          (tag, str(doc)[:300]))
    st, doc, _ = s.req("GET", "/v1/jobs/qw-1")
    check(st == 200 and doc["embedded"] is True and doc["remote"] is True and
          {"name": "Basketry", "required": False} in doc["skills"], "%s GET the new job: %s" % (tag, doc))
    st, doc, _ = s.req("POST", "/v1/skill-gap", {"skills": ["qubit weaving"], "job_id": "qw-1"})
    check(st == 200 and doc["have"] == 1, "%s gap of the new job: %s" % (tag, doc))
    job["title"] = "Senior quantum basket weaver"
    st, doc, _ = s.req("PUT", "/v1/jobs/qw-1", job, headers=auth)
    check(st == 200 and doc.get("created") is False, "%s PUT replaces -> 200: %s" % (tag, doc))
    check(s.req("GET", "/v1/jobs/qw-1")[1].get("title") == "Senior quantum basket weaver", "%s replaced" % tag)
    for body, what in [({"description": "no title"}, "no title"), ({"title": 5}, "title a number"),
                       ({"title": "x", "skills": "a, b"}, "skills a string"), ({"title": "x", "wat": 1}, "unknown"),
                       ({"title": "x", "id": "other"}, "id differs"), ({"title": "x", "posted_at": "soon"}, "date"),
                       ({"title": "x", "skills": [{"name": "a", "level": 3}]}, "unknown skill field"),
                       ({"title": "x", "posted_at": "2026-01-01junk"}, "date with junk"),
                       ({"title": "a\u0000b"}, "a NUL in the title")]:
        st, doc, h = s.req("PUT", "/v1/jobs/qw-2", body, headers=auth)
        check(is_error(st, doc, h, 400, "invalid_request"), "%s PUT %s -> 400: %s" % (tag, what, doc))
    st, doc, h = s.req("PUT", "/v1/jobs/" + "x" * 201, {"title": "x"}, headers=auth)
    check(is_error(st, doc, h, 400, "invalid_request"), "%s PUT id of 201 characters -> 400" % tag)
    st, doc, h = s.req("DELETE", "/v1/jobs/qw-1")
    check(is_error(st, doc, h, 401, "unauthorized"), "%s DELETE without a key -> 401" % tag)
    st, doc, h = s.req("DELETE", "/v1/jobs/qw-1", headers=auth)
    check(st == 204 and doc is None, "%s DELETE -> 204" % tag)
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["qubit weaving"], "top_k": 100})
    check(st == 200 and "qw-1" not in [r["id"] for r in doc["results"]], "%s deleted job gone at once" % tag)
    st, doc, h = s.req("DELETE", "/v1/jobs/qw-1", headers=auth)
    check(is_error(st, doc, h, 404, "not_found"), "%s DELETE again -> 404" % tag)
    check(s.req("GET", "/v1/jobs/qw-1")[0] == 404, "%s GET deleted -> 404" % tag)


def t_embeddings(s, tag):
    text = "Senior data engineer with Python and Kafka"
    st, doc, _ = s.req("POST", "/v1/embeddings", {"input": [text, "second"], "model": "all-MiniLM-L6-v2"})
    ok = check(st == 200 and doc.get("object") == "list" and len(doc.get("data", [])) == 2 and
               doc["data"][1]["index"] == 1 and doc["usage"]["prompt_tokens"] > 5,
               "%s embeddings: %s %s" % (tag, st, str(doc)[:200]))
    rc, out, err = run("embed-text", text)
    ref = json.loads(out) if rc == 0 else []
    if ok and ref:
        v = doc["data"][0]["embedding"]
        check(len(v) == 384 and max(abs(a - b) for a, b in zip(v, ref)) < 1e-6,
              "%s API embedding equals embed-text" % tag)
    st, doc, _ = s.req("POST", "/v1/embeddings", {"input": text, "encoding_format": "base64"})
    if check(st == 200 and isinstance(doc["data"][0]["embedding"], str), "%s base64 embeddings" % tag) and ref:
        v = struct.unpack("<384f", base64.b64decode(doc["data"][0]["embedding"]))
        check(max(abs(a - b) for a, b in zip(v, ref)) < 1e-6, "%s base64 decodes to the same vector" % tag)
    for body, what in [({"input": []}, "no inputs"), ({"input": ["a"] * 65}, "65 inputs"),
                       ({"input": "a", "model": "text-embedding-3-small"}, "another model"),
                       ({"input": "a", "encoding_format": "hex"}, "bad format"), ({"input": 5}, "input a number"),
                       ({"input": "a", "dimensions": 128}, "other dimensions"), ({"input": "x" * 10001}, "too long"),
                       ({}, "no input")]:
        st, doc, h = s.req("POST", "/v1/embeddings", body)
        check(is_error(st, doc, h, 400, "invalid_request"), "%s embeddings %s -> 400: %s" % (tag, what, doc))


def t_metrics_and_log(s, tag):
    st, doc, h = s.req("GET", "/metrics")
    text = doc.decode() if isinstance(doc, bytes) else ""
    check(st == 200 and h.get("content-type", "").startswith("text/plain"), "%s metrics served" % tag)
    import re
    m = re.search(r'jobmatch_requests_total\{route="/v1/recommend",status="200"\} (\d+)', text)
    check(m and int(m.group(1)) >= 8, "%s recommend 200s counted: %s" % (tag, m and m.group(1)))
    check(re.search(r'jobmatch_requests_total\{route="/v1/recommend",status="400"\} \d+', text),
          "%s recommend 400s counted" % tag)
    check('jobmatch_request_duration_seconds_bucket{route="/v1/recommend",le="+Inf"}' in text and
          "jobmatch_index_jobs 80" in text and "jobmatch_db_up 1" in text and "process_resident_memory_bytes" in text
          and "jobmatch_embeddings_pending 0" in text, "%s metrics families present" % tag)
    lines = [l for l in s.log_text().splitlines() if l.startswith("{")]
    docs = []
    for l in lines:
        try:
            docs.append(json.loads(l))
        except ValueError:
            check(False, "%s access log line is JSON: %s" % (tag, l[:200]))
    check(len(docs) > 50 and all({"time", "request_id", "method", "path", "status", "ms"} <= set(d) for d in docs),
          "%s access log: %d JSON lines with the fields" % (tag, len(docs)))
    check(any(d["request_id"] == "my-req.42" for d in docs), "%s the client's request id is logged" % tag)
    check(KEY not in s.log_text(), "%s the API key never reaches the log" % tag)


def t_no_keys_and_auth_reads(url, tag):
    s = Server(url, keys="", tag=tag + "-nokeys")
    st, doc, h = s.req("PUT", "/v1/jobs/a", {"title": "x"}, headers={"Authorization": "Bearer " + KEY})
    check(is_error(st, doc, h, 403, "writes_disabled"), "%s no keys: PUT -> 403: %s" % (tag, doc))
    st, doc, h = s.req("DELETE", "/v1/jobs/15-1252.00")
    check(is_error(st, doc, h, 403, "writes_disabled"), "%s no keys: DELETE -> 403" % tag)
    check(s.stop() == 0, "%s server stops cleanly" % tag)
    keyfile = os.path.join(TMP, "keys.txt")
    with open(keyfile, "w") as f:
        f.write("# keys\nfile-key-abcdefgh\n\n")
    s = Server(url, "--auth-reads", "--api-keys-file", keyfile, keys="", tag=tag + "-authreads")
    st, doc, h = s.req("POST", "/v1/recommend", {"skills": ["python"]})
    check(is_error(st, doc, h, 401, "unauthorized"), "%s auth-reads: recommend without a key -> 401" % tag)
    st, doc, h = s.req("POST", "/v1/recommend", {"skills": ["python"]},
                       headers={"Authorization": "Bearer file-key-abcdefgh"})
    check(st == 200, "%s auth-reads: with the file's key -> 200" % tag)
    check(s.req("GET", "/healthz")[0] == 200 and s.req("GET", "/readyz")[0] == 200 and s.req("GET", "/")[0] == 200,
          "%s auth-reads: health and page stay open" % tag)
    s.stop()
    p = subprocess.run([BIN, "serve", "--db", url, "--port", "0"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, JOBMATCH_MODEL=MODEL, JOBMATCH_API_KEYS="short"))
    check(p.returncode == 2 and "shorter than 8" in p.stderr, "%s a too-short key is refused: %s" % (tag, p.stderr))


def long_embed_body():
    return {"input": ["skill " * 240] * 64}


def t_busy(url, tag):
    s = Server(url, "--threads", "1", "--queue", "0", tag=tag + "-busy")
    out = {}

    def slow():
        out["r"] = s.req("POST", "/v1/embeddings", long_embed_body(), timeout=120)

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.4)
    st, doc, h = s.req("POST", "/v1/recommend", {"skills": ["python"]})
    check(is_error(st, doc, h, 503, "busy") and h.get("retry-after") == "1", "%s busy -> 503 Retry-After: %s %s" %
          (tag, st, doc))
    check(s.req("GET", "/healthz")[0] == 200, "%s health answers while the worker is busy" % tag)
    th.join()
    check(out["r"][0] == 200, "%s the long request still finished" % tag)
    check(s.req("POST", "/v1/recommend", {"skills": ["python"]})[0] == 200, "%s free again -> 200" % tag)
    m = s.req("GET", "/metrics")[1].decode()
    check("jobmatch_busy_rejections_total 1" in m, "%s busy rejections counted" % tag)
    s.stop()


def t_slow_client(url, tag):
    s = Server(url, "--timeout", "2", tag=tag + "-slow")
    c = socket.create_connection(("127.0.0.1", s.port))
    c.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"sk")
    c.settimeout(10)
    t0 = time.time()
    try:
        data = c.recv(100)
    except socket.timeout:
        data = b"timeout"
    check(data != b"timeout" and time.time() - t0 < 8, "%s a stalled client is cut off (%.1f s, %r)" %
          (tag, time.time() - t0, data[:40]))
    c.close()
    check(s.req("GET", "/healthz")[0] == 200, "%s server fine after the cut" % tag)
    s.stop()


def t_graceful(url, tag):
    s = Server(url, tag=tag + "-graceful")
    out = {}

    def slow():
        try:
            out["r"] = s.req("POST", "/v1/embeddings", long_embed_body(), timeout=120)
        except OSError as e:
            out["r"] = (0, str(e), {})

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.4)
    s.p.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = False
    try:
        s.req("GET", "/healthz", timeout=2)
    except OSError:
        refused = True
    check(refused, "%s no new connections after SIGTERM" % tag)
    th.join()
    check(out["r"][0] == 200 and len(out["r"][1]["data"]) == 64, "%s the request in flight finished: %s" %
          (tag, str(out["r"][:2])[:200]))
    rc = s.p.wait(30)
    check(rc == 0, "%s exit status 0 after SIGTERM: %s" % (tag, rc))
    check("stopped" in s.log_text(), "%s said it stopped" % tag)
    s.logf.close()


def t_db_restart(url, tag):
    s = Server(url, "--refresh-secs", "1", tag=tag + "-dbdown")
    auth = {"Authorization": "Bearer " + KEY}
    check(s.req("GET", "/readyz")[0] == 200, "%s ready before the stop" % tag)
    subprocess.run(["sh", os.path.join(ROOT, "tests/pg.sh"), "stop", PG_DIR], capture_output=True)
    time.sleep(2.5)
    st, doc, _ = s.req("GET", "/readyz")
    check(st == 503 and doc.get("status") == "degraded" and doc.get("database") != "ok",
          "%s readyz degraded with the database down: %s %s" % (tag, st, doc))
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["python", "sql"], "top_k": 3})
    check(st == 200 and len(doc["results"]) == 3, "%s recommendations go on from memory: %s %s" %
          (tag, st, str(doc)[:200]))
    check(s.req("POST", "/v1/skill-gap", {"skills": ["python"], "job_id": "15-1252.00"})[0] == 200,
          "%s gaps go on from memory" % tag)
    st, doc, h = s.req("PUT", "/v1/jobs/while-down", {"title": "x"}, headers=auth)
    check(is_error(st, doc, h, 503, "unavailable") and h.get("retry-after"), "%s PUT while down -> 503: %s" %
          (tag, doc))
    st, doc, h = s.req("GET", "/v1/jobs/15-1252.00")
    check(is_error(st, doc, h, 503, "unavailable"), "%s GET job while down -> 503" % tag)
    check("jobmatch_db_up 0" in s.req("GET", "/metrics")[1].decode(), "%s metrics db_up 0" % tag)
    port = PG_URL.split("@")[-1].split("/")[0].split(":")[-1] if PG_URL else "5432"
    subprocess.run(["sh", os.path.join(ROOT, "tests/pg.sh"), "start", PG_DIR, port], capture_output=True)
    deadline = time.time() + 20
    st = 0
    while time.time() < deadline:
        st = s.req("GET", "/readyz")[0]
        if st == 200:
            break
        time.sleep(0.2)
    check(st == 200, "%s ready again after the database returned" % tag)
    st, doc, _ = s.req("PUT", "/v1/jobs/after-restart", {"title": "Back online", "skills": ["Reconnection"]},
                       headers=auth)
    check(st == 201, "%s writes work after reconnecting: %s %s" % (tag, st, doc))
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["reconnection"], "top_k": 1})
    check(st == 200 and doc["results"] and doc["results"][0]["id"] == "after-restart",
          "%s and are recommended" % tag)
    s.req("DELETE", "/v1/jobs/after-restart", headers=auth)
    check(s.stop() == 0, "%s clean stop" % tag)


def t_attached_read_only(tag):
    """A job board's own table, attached: the API does not write to it."""
    import sqlite3
    path = os.path.join(TMP, "board.db")
    c = sqlite3.connect(path)
    c.executescript("CREATE TABLE board(id INTEGER PRIMARY KEY, title TEXT, body TEXT, tags TEXT);"
                    "INSERT INTO board VALUES (1, 'Data engineer', 'Pipelines in Python', 'Python, SQL'),"
                    "(2, 'Designer', 'Posters and logos', 'Adobe Photoshop');")
    c.commit()
    c.close()
    rc, out, err = run("attach", "--table", "board", "--text-columns", "title,body", "--skills-column", "tags",
                       db=path)
    check(rc == 0, "attach: %s %s" % (out, err))
    rc, out, err = run("embed", "--progress", "none", db=path)
    s = Server(path, tag=tag + "-attached")
    auth = {"Authorization": "Bearer " + KEY}
    st, doc, h = s.req("PUT", "/v1/jobs/3", {"title": "x"}, headers=auth)
    check(is_error(st, doc, h, 403, "read_only"), "%s PUT on an attached table -> 403 read_only: %s" % (tag, doc))
    st, doc, h = s.req("DELETE", "/v1/jobs/1", headers=auth)
    check(is_error(st, doc, h, 403, "read_only"), "%s DELETE on an attached table -> 403 read_only" % tag)
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["python"], "top_k": 2})
    check(st == 200 and doc["results"] and doc["results"][0]["id"] == "1", "%s recommend over the attached table: %s"
          % (tag, str(doc)[:200]))
    c = sqlite3.connect(path)
    check(c.execute("SELECT count(*) FROM board").fetchone()[0] == 2, "%s the board's rows are untouched" % tag)
    c.close()
    s.stop()


def wait_log(s, text, secs=20):
    deadline = time.time() + secs
    while time.time() < deadline:
        if text in s.log_text():
            return True
        time.sleep(0.1)
    return False


def t_snapshot(url, tag):
    """The engine snapshot: written after a start that scanned and at a clean
    stop, read at the next start, the changes since applied; a damaged one is
    not used."""
    snap = os.path.join(TMP, tag + ".snapshot")
    auth = {"Authorization": "Bearer " + KEY}
    q = {"skills": ["python", "sql", "excel"], "top_k": 8}

    def answers(s):
        st, doc, _ = s.req("POST", "/v1/recommend", q)
        return st == 200 and [(r["id"], r["score"]) for r in doc["results"]]

    s = Server(url, "--snapshot", snap, "--refresh-secs", "1", tag=tag + "-snap1")
    check(wait_log(s, "wrote the engine snapshot"), "%s a start that scanned writes the snapshot" % tag)
    check(os.path.exists(snap) and os.path.getsize(snap) > 1000, "%s the snapshot file exists" % tag)
    before = answers(s)
    st, doc, _ = s.req("PUT", "/v1/jobs/snap-new", {"title": "Snapshot keeper", "skills": ["Snapshotting"]},
                       headers=auth)
    check(st == 201, "%s PUT a job: %s %s" % (tag, st, doc))
    time.sleep(2.5)  # refreshed: the new job's skill counts in the corpus statistics
    after = answers(s)
    check(s.stop() == 0, "%s clean stop" % tag)
    check(s.log_text().count("wrote the engine snapshot") == 2, "%s a clean stop after a change writes it again" % tag)
    s = Server(url, "--snapshot", snap, "--refresh-secs", "1", tag=tag + "-snap2")
    check("engine loaded from the snapshot" in s.log_text(), "%s the next start reads it" % tag)
    check(answers(s) == after, "%s and answers as the server that wrote it" % tag)
    st, doc, _ = s.req("POST", "/v1/recommend", {"skills": ["snapshotting"], "top_k": 1})
    check(st == 200 and doc["results"] and doc["results"][0]["id"] == "snap-new", "%s with the job put last: %s" %
          (tag, str(doc)[:200]))
    check(s.req("DELETE", "/v1/jobs/snap-new", headers=auth)[0] == 204, "%s DELETE the job" % tag)
    s.p.kill()  # no clean stop: the snapshot still has the job
    s.p.wait()
    s.logf.close()
    s = Server(url, "--snapshot", snap, tag=tag + "-snap3")
    check("engine loaded from the snapshot" in s.log_text(), "%s an older snapshot is read too" % tag)
    st, doc, _ = s.req("GET", "/v1/jobs/snap-new")
    st2, doc2, _ = s.req("POST", "/v1/recommend", {"skills": ["snapshotting"], "top_k": 3})
    check(st == 404 and st2 == 200 and all(r["id"] != "snap-new" for r in doc2["results"]),
          "%s the deletion since it was written is applied at start" % tag)
    check(answers(s) == before, "%s answers as before" % tag)
    s.stop()
    with open(snap, "r+b") as f:
        f.truncate(os.path.getsize(snap) // 2)
    s = Server(url, "--snapshot", snap, tag=tag + "-snap4")
    check("engine scanned from the store" in s.log_text() and "truncated" in s.log_text(),
          "%s a damaged snapshot is not used, and the log says why: %s" % (tag, s.log_text()[-400:]))
    check(answers(s) == before, "%s the scan answers the same" % tag)
    check(wait_log(s, "wrote the engine snapshot"), "%s and writes a good one" % tag)
    s.stop()
    s = Server(url, "--snapshot", "off", tag=tag + "-snap5")
    check("snapshot" not in s.log_text(), "%s --snapshot off: no snapshot" % tag)
    s.stop()
    os.unlink(snap)


def backend(url, tag, pg):
    make_store(url)
    s = Server(url, tag=tag)
    if not s.ready:
        s.stop()
        return
    try:
        t_health_and_static(s, tag)
        t_recommend(s, tag)
        t_recommend_errors(s, tag)
        t_gap(s, tag)
        t_jobs_and_skills(s, tag)
        t_writes(s, tag)
        t_embeddings(s, tag)
        t_metrics_and_log(s, tag)
    finally:
        check(s.stop() == 0, "%s exit status 0 on SIGTERM" % tag)
    t_no_keys_and_auth_reads(url, tag)
    t_busy(url, tag)
    t_slow_client(url, tag)
    t_graceful(url, tag)
    t_snapshot(url, tag)
    if pg:
        t_db_restart(url, tag)


def main():
    if not os.path.isdir(ONET):
        check(False, "O*NET data not found at " + ONET)
        return summary()
    backend(os.path.join(TMP, "server.db"), "sqlite", False)
    t_attached_read_only("sqlite")
    if PG_URL and PG_DIR:
        out = subprocess.run(["sh", os.path.join(ROOT, "tests/pg.sh"), "createdb", PG_DIR, "jm_server"],
                             capture_output=True, text=True)
        if check(out.returncode == 0, "createdb: %s" % out.stderr):
            backend(out.stdout.strip().splitlines()[-1], "postgresql", True)
    elif not os.environ.get("JM_ALLOW_NO_PG"):
        check(False, "no PostgreSQL server (JM_TEST_PG_URL / JM_PG_DIR unset)")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
