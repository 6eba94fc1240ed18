"""Shared by the Python end-to-end tests: where things are, the pass/fail
tally, running the CLI, and a free port. Each test prints one final
"N passed, N failed" line (summary()), which tests/run.sh adds up."""
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, os.environ.get("JM_BIN", "build/jobmatch"))
MODEL = os.path.join(ROOT, os.environ.get("JM_TEST_MODEL", "models/all-MiniLM-L6-v2"))
ONET = os.environ.get("JM_ONET_DIR", os.path.join(ROOT, "..", "shared", "data", "onet"))
PG_URL = os.environ.get("JM_TEST_PG_URL", "")
PG_DIR = os.environ.get("JM_PG_DIR", "")

# print "ok - ..." for passing checks too (the browser and schema tests do)
VERBOSE = False
passed = failed = 0


def check(cond, what, detail=""):
    """Count one check; print it when it fails (or always with VERBOSE)."""
    global passed, failed
    if cond:
        passed += 1
        if VERBOSE:
            print("ok - %s" % what, flush=True)
    else:
        failed += 1
        print("FAIL - %s%s" % (what, (": " + str(detail)) if detail != "" else ""), flush=True)
    return bool(cond)


def summary(prefix=""):
    """The final line; returns the exit status."""
    print("%s%d passed, %d failed" % (prefix, passed, failed), flush=True)
    return 1 if failed else 0


def run(*args, db=None, timeout=600, env=None):
    """Run the jobmatch CLI: (exit status, stdout, stderr)."""
    cmd = [BIN] + list(args) + (["--db", db] if db else [])
    e = dict(os.environ, JOBMATCH_MODEL=MODEL)
    if env:
        e.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def required(*names):
    return [{"name": n, "required": True} for n in names]


def nice(*names):
    return [{"name": n, "required": False} for n in names]


def exit_with_summary(prefix=""):
    sys.exit(summary(prefix))
