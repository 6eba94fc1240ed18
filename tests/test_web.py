"""The web page (web/index.html, served by `jobmatch serve` at "/") in a real
headless browser: Debian's chromium and chromedriver, driven by PyPI selenium.

Builds its own store (30 jobs written here as JSON Lines, imported and
embedded with $JM_BIN), starts `$JM_BIN serve` on a free port, and checks: the
page is self-contained and its CSP holds (no console errors); Tab reaches the
skill box; autocomplete and chips (Enter, comma, Backspace, the remove
button); the ranked jobs equal the CLI's `recommend --json` for the same
skills (order, scores, score bars, matched and missing chips); a filter and
top k; a job's gap report (by Enter and by click) equals `gap --job`; the
learn-next panel equals the career gap; an error from the API (a skill over
200 characters) shows its error.message; a 375-px-wide screen has no
horizontal overflow; the O*NET credit line appears only for an O*NET store
(`import-onet` of ../shared/data/onet, skipped with a message when absent).

Screenshots go to build/test-artifacts/web-*.png. Prints "ok - ..." or
"FAIL - ..." per check and ends with one "N passed, N failed" line; exit 1 on
any failure. Missing chromium or chromedriver is a failure.

Environment: JM_BIN (default build/jobmatch), JM_TEST_MODEL (default
models/all-MiniLM-L6-v2), JM_ONET_DIR (default ../shared/data/onet)."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import jmtest
from jmtest import BIN, MODEL, ROOT, check, free_port, run
from jmtest import nice as N
from jmtest import required as R

jmtest.VERBOSE = True
from jmtest import ONET  # noqa: E402
ART = os.path.join(ROOT, "build", "test-artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
T0 = time.time()

def finish():
    sys.exit(jmtest.summary())


# ---------- the store ----------

FIELDS = ("id title company location remote salary_min salary_max currency employment_type seniority "
          "posted_at description skills").split()
JOBS = [
    ("be-1", "Backend Engineer (Python)", "Nordwind Logistics", "Berlin, Germany", True, 65000, 85000, "EUR",
     "full-time", "mid", "2026-01-12", "Build and run the Python services that plan our truck routes.",
     R("Python", "Django", "PostgreSQL", "Docker") + N("Redis", "Kubernetes")),
    ("be-2", "Senior Backend Engineer", "Nordwind Logistics", "Berlin, Germany", False, 80000, 100000, "EUR",
     "full-time", "senior", "2026-02-01", "Lead the design of our routing APIs and mentor engineers.",
     R("Python", "FastAPI", "PostgreSQL", "Kubernetes", "AWS") + N("Terraform")),
    ("de-1", "Data Engineer", "Helix Analytics", "Amsterdam, Netherlands", True, 70000, 90000, "EUR",
     "full-time", "mid", "2026-01-20", "Own batch and streaming pipelines feeding our analytics warehouse.",
     R("Python", "SQL", "Apache Spark", "Apache Airflow") + N("Kafka", "dbt")),
    ("ds-1", "Data Scientist", "Helix Analytics", "Amsterdam, Netherlands", False, 75000, 95000, "EUR",
     "full-time", "senior", "2026-02-10", "Model customer churn and design experiments with product teams.",
     R("Python", "SQL", "Machine learning", "pandas", "scikit-learn") + N("Statistics", "Tableau")),
    ("ml-1", "Machine Learning Engineer", "Lumen AI", "London, UK", True, 90000, 120000, "GBP",
     "full-time", "senior", "2026-02-15", "Train, evaluate and ship deep learning models for document search.",
     R("Python", "PyTorch", "Machine learning", "Docker") + N("Kubernetes", "CUDA")),
    ("fe-1", "Frontend Developer", "Pixelhaus", "Hamburg, Germany", True, 55000, 70000, "EUR",
     "full-time", "mid", "2026-01-05", "Build accessible web interfaces for our design tools.",
     R("JavaScript", "TypeScript", "React", "CSS", "HTML") + N("Figma")),
    ("fe-2", "Junior Web Developer", "Pixelhaus", "Hamburg, Germany", False, 38000, 45000, "EUR",
     "full-time", "junior", "2025-11-20", "Help build marketing pages and small web apps.",
     R("HTML", "CSS", "JavaScript") + N("Git")),
    ("fs-1", "Full Stack Engineer", "Cartwheel", "Remote", True, 70000, 95000, "USD",
     "contract", "mid", "2026-01-28", "Ship features end to end in a Node.js and React code base.",
     R("JavaScript", "Node.js", "React", "PostgreSQL") + N("Docker", "GraphQL")),
    ("devops-1", "DevOps Engineer", "Stackyard", "Munich, Germany", True, 70000, 88000, "EUR",
     "full-time", "mid", "2026-02-03", "Run our Kubernetes clusters and CI/CD pipelines.",
     R("Kubernetes", "Docker", "Terraform", "Linux", "AWS") + N("Python", "Prometheus")),
    ("sre-1", "Site Reliability Engineer", "Stackyard", "Munich, Germany", False, 85000, 105000, "EUR",
     "full-time", "senior", "2026-02-20", "Keep production fast and available; own incident response.",
     R("Linux", "Prometheus", "Kubernetes", "Go") + N("Bash")),
    ("go-1", "Go Developer", "Parcelpoint", "Warsaw, Poland", True, 50000, 70000, "EUR",
     "full-time", "mid", "2025-12-15", "Write high-throughput Go services for parcel tracking.",
     R("Go", "PostgreSQL", "gRPC", "Docker")),
    ("java-1", "Java Developer", "Fintrust Bank", "Frankfurt, Germany", False, 65000, 85000, "EUR",
     "full-time", "mid", "2026-01-09", "Develop payment services on the JVM.",
     R("Java", "Spring Boot", "SQL", "Maven") + N("Kafka")),
    ("java-2", "Senior Java Engineer", "Fintrust Bank", "Frankfurt, Germany", False, 85000, 105000, "EUR",
     "full-time", "senior", "2026-02-12", "Lead the core banking platform team.",
     R("Java", "Spring Boot", "Kafka", "Oracle Database", "Microservices")),
    ("mob-1", "iOS Developer", "Appetite", "Paris, France", True, 55000, 72000, "EUR",
     "full-time", "mid", "2026-01-18", "Build our food-ordering app for iPhone.",
     R("Swift", "iOS", "Xcode") + N("Git")),
    ("mob-2", "Android Developer", "Appetite", "Paris, France", True, 55000, 72000, "EUR",
     "full-time", "mid", "2026-01-18", "Build our food-ordering app for Android.",
     R("Kotlin", "Android", "Java") + N("Git")),
    ("qa-1", "QA Automation Engineer", "Cartwheel", "Remote", True, 50000, 65000, "USD",
     "part-time", "mid", "2025-12-01", "Automate end-to-end tests for web and API.",
     R("Selenium", "Python", "Test automation") + N("JavaScript", "CI/CD")),
    ("sec-1", "Security Engineer", "Fintrust Bank", "Frankfurt, Germany", False, 80000, 100000, "EUR",
     "full-time", "senior", "2026-02-05", "Harden our cloud and application security.",
     R("Network security", "Linux", "Python", "AWS") + N("Penetration testing")),
    ("dba-1", "Database Administrator", "Helix Analytics", "Amsterdam, Netherlands", False, 60000, 78000, "EUR",
     "full-time", "mid", "2025-10-30", "Operate and tune PostgreSQL and MySQL fleets.",
     R("PostgreSQL", "MySQL", "SQL", "Linux") + N("Bash")),
    ("bi-1", "BI Analyst", "Retailo", "Vienna, Austria", False, 45000, 58000, "EUR",
     "full-time", "junior", "2026-01-25", "Build dashboards and answer business questions with data.",
     R("SQL", "Tableau", "Microsoft Excel") + N("Python")),
    ("pm-1", "Technical Product Manager", "Lumen AI", "London, UK", False, 80000, 100000, "GBP",
     "full-time", "senior", "2026-02-18", "Turn research into products customers love.",
     R("Product management", "Agile", "SQL") + N("Jira")),
    ("ux-1", "UX Designer", "Pixelhaus", "Hamburg, Germany", True, 50000, 65000, "EUR",
     "full-time", "mid", "2026-01-30", "Research, prototype and test user flows.",
     R("Figma", "User research", "Prototyping") + N("HTML", "CSS")),
    ("emb-1", "Embedded Software Engineer", "Voltwerk", "Stuttgart, Germany", False, 62000, 80000, "EUR",
     "full-time", "mid", "2025-12-10", "Write firmware for battery management systems.",
     R("C", "C++", "Embedded systems", "RTOS") + N("Python")),
    ("cpp-1", "C++ Developer", "Voltwerk", "Stuttgart, Germany", False, 65000, 85000, "EUR",
     "full-time", "senior", "2026-02-08", "Build simulation software for electric drives.",
     R("C++", "Linux", "CMake") + N("Python", "Qt")),
    ("cloud-1", "Cloud Architect", "Stackyard", "Zurich, Switzerland", True, 120000, 150000, "CHF",
     "full-time", "senior", "2026-02-22", "Design multi-cloud platforms for enterprise customers.",
     R("AWS", "Microsoft Azure", "Terraform", "Kubernetes")),
    ("intern-1", "Software Engineering Intern", "Nordwind Logistics", "Berlin, Germany", False, 20000, 24000,
     "EUR", "internship", "junior", "2026-03-01", "Join a team for six months and ship real code.",
     R("Python", "Git") + N("SQL")),
    ("rust-1", "Rust Engineer", "Parcelpoint", "Remote", True, 75000, 95000, "EUR",
     "full-time", "senior", "2026-02-25", "Build our new storage engine in Rust.",
     R("Rust", "Linux", "Distributed systems")),
    ("nurse-1", "Registered Nurse", "St. Anna Clinic", "Vienna, Austria", False, 42000, 52000, "EUR",
     "full-time", "mid", "2026-01-15", "Care for patients on the surgical ward.",
     R("Patient care", "Electronic health records", "Medication administration")),
    ("acct-1", "Accountant", "Retailo", "Vienna, Austria", False, 45000, 55000, "EUR",
     "full-time", "mid", "2025-11-05", "Prepare monthly closes and support audits.",
     R("Accounting", "Microsoft Excel", "SAP")),
    ("php-1", "PHP Developer", "Shoply", "Lisbon, Portugal", True, 35000, 50000, "EUR",
     "full-time", "mid", "2026-01-22", "Maintain and extend our e-commerce platform.",
     R("PHP", "Laravel", "MySQL", "JavaScript")),
    ("ana-1", "Data Analyst", "Shoply", "Lisbon, Portugal", True, 35000, 48000, "EUR",
     "full-time", "junior", "2026-02-02", "Analyse sales and marketing data.",
     R("SQL", "Python", "Data visualization") + N("Looker")),
]


def cli_json(*args, db):
    rc, out, err = run(*args, "--json", db=db)
    if rc != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), rc, err.strip()))
    return json.loads(out)


# ---------- the server ----------

class Server:
    def __init__(self, db, tmp, tag):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(tmp, "serve-%s.log" % tag), "w+")
        env = dict(os.environ, JOBMATCH_MODEL=MODEL)
        env.pop("JOBMATCH_API_KEYS", None)
        env.pop("JOBMATCH_AUTH_READS", None)
        self.proc = subprocess.Popen([BIN, "serve", "--db", db, "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=30):
        end = time.time() + timeout
        last = ""
        while time.time() < end:
            if self.proc.poll() is not None:
                return False, "exited with %s: %s" % (self.proc.returncode, self.output())
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return True, ""
            except urllib.error.HTTPError as e:
                last = "HTTP %d" % e.code
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        return False, "not ready after %d s (%s): %s" % (timeout, last, self.output())

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-2000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def http(method, url, body=None):
    """(status, headers, parsed JSON or raw text)"""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw, status, headers = r.read(), r.status, r.headers
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, e.headers
    text = raw.decode("utf-8", "replace")
    try:
        return status, headers, json.loads(text)
    except ValueError:
        return status, headers, text


# ---------- the browser ----------

def start_browser(width, height):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=%d,%d" % (width, height), "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--lang=en-US"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def main():
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    os.makedirs(ART, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="jm_web_")
    server = driver = None
    try:
        if not check(os.access(BIN, os.X_OK), "the binary exists", BIN):
            return
        have_browser = os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)
        check(have_browser, "chromium and chromedriver are installed",
              "need %s and %s (apt-get install chromium chromium-driver)" % (CHROMIUM, CHROMEDRIVER))

        # -- the store --
        db = os.path.join(tmp, "web.db")
        jl = os.path.join(tmp, "jobs.jsonl")
        with open(jl, "w", encoding="utf-8") as f:
            for j in JOBS:
                f.write(json.dumps(dict(zip(FIELDS, j))) + "\n")
        rc, out, err = run("import", jl, db=db)
        if not check(rc == 0 and "30 imported" in out, "import 30 jobs", "%d %s %s" % (rc, out, err)):
            return
        rc, out, err = run("embed", db=db, timeout=300)
        if not check(rc == 0 and "embedded 30 jobs" in out, "embed them", "%d %s %s" % (rc, out, err)):
            return

        # -- the server --
        server = Server(db, tmp, "web")
        ok, why = server.wait_ready()
        if not check(ok, "serve answers /readyz with 200", why):
            return
        base = server.base

        st, hdr, page = http("GET", base + "/")
        check(st == 200 and "text/html" in (hdr.get("Content-Type") or ""), "GET / is the HTML page",
              "%s %s" % (st, hdr.get("Content-Type")))
        page = page if isinstance(page, str) else json.dumps(page)
        with open(os.path.join(ROOT, "web", "index.html"), encoding="utf-8") as f:
            check(page == f.read(), "GET / serves web/index.html as it is now (else rebuild: make)")
        csp = hdr.get("Content-Security-Policy") or ""
        check("default-src 'none'" in csp and "connect-src 'self'" in csp, "GET / carries the CSP", csp)
        refs = re.findall(r"""<(?:script|img|iframe|link)\b[^>]*\b(?:src|href)\s*=\s*["']?(?!data:)[^"'\s>]+""", page,
                          re.I)
        refs += re.findall(r"""url\(\s*["']?(?!data:)[a-z]+:""", page, re.I) + re.findall(r"@import", page)
        check(not refs, "the page loads no external resource", refs[:3])

        # -- the browser --
        if not have_browser:
            return
        try:
            driver = start_browser(1280, 1000)
        except WebDriverException as e:
            check(False, "start headless chromium", str(e).splitlines()[0])
            return
        wait = WebDriverWait(driver, 20, poll_frequency=0.05)
        js = driver.execute_script

        def by_id(i):
            return driver.find_element(By.ID, i)

        def texts(css, root=None):
            return js("return Array.from((arguments[1] || document).querySelectorAll(arguments[0]))"
                      ".map(function (e) { return e.innerText.trim(); });", css, root)

        def attrs(css, name, root=None):
            # one script call, so that a re-render in between cannot leave a stale element
            return js("var n = arguments[1];"
                      "return Array.from((arguments[2] || document).querySelectorAll(arguments[0]))"
                      ".map(function (e) { return e.getAttribute(n); });", css, name, root)

        def chips():
            return attrs("#skill-chips li.chip", "data-skill")

        def settled(panel_id, skills):
            """Wait until the panel shows the answer for these skills; False on time-out."""
            want = json.dumps(skills, separators=(",", ":"))
            try:
                wait.until(lambda d: d.execute_script(
                    "var p = document.getElementById(arguments[0]);"
                    "return p.getAttribute('aria-busy') === 'false' &&"
                    " JSON.stringify(JSON.parse(p.getAttribute('data-skills') || 'null')) === arguments[1];",
                    panel_id, want))
                return True
            except TimeoutException:
                return False

        def shot(name):
            driver.save_screenshot(os.path.join(ART, "web-%s.png" % name))

        def console_errors():
            try:
                return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            except WebDriverException:
                return []

        def type_keys(*keys):
            ActionChains(driver).send_keys(*keys).perform()

        driver.get(base + "/")
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        check("jobmatch" in driver.title, "the page loads (title)", driver.title)
        try:
            wait.until(lambda d: d.find_element(By.ID, "info").text.strip() != "")
            info_ok = True
        except TimeoutException:
            info_ok = False
        check(info_ok and "30 jobs" in by_id("info").text, "the footer shows GET /v1/info", by_id("info").text)
        check(not by_id("credit").is_displayed(), "no O*NET credit for a store that is not O*NET")

        # Keyboard: the first Tab reaches the skill box, with a visible focus.
        type_keys(Keys.TAB)
        active = driver.switch_to.active_element
        check(active.get_attribute("id") == "skill-input", "Tab focuses the skill input",
              active.get_attribute("outerHTML")[:120])
        check(js("return getComputedStyle(document.getElementById('skillbox')).boxShadow") != "none",
              "the focused skill box is highlighted")
        if active.get_attribute("id") != "skill-input":
            by_id("skill-input").click()      # go on with the other checks
        check(js("var i = document.getElementById('skill-input');"
                 "return !!(i.labels && i.labels.length && i.labels[0].textContent.trim());"),
              "the skill input has a <label for>")
        unlabelled = js("""return Array.from(document.querySelectorAll('input, select')).filter(function (e) {
            return !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby');
          }).map(function (e) { return e.id || e.outerHTML; });""")
        check(not unlabelled, "every input and select is labelled", unlabelled)

        # Record the loading states the page goes through (checked once results arrive).
        js("""window.__seen = {busy: false, loading: ''};
            new MutationObserver(function () {
              if (document.getElementById('results').getAttribute('aria-busy') === 'true') window.__seen.busy = true;
              var s = document.getElementById('results-status');
              if (s.classList.contains('loading')) window.__seen.loading = s.textContent;
            }).observe(document.getElementById('results'), {attributes: true, childList: true, subtree: true});""")

        # Autocomplete: "pyt" offers Python (and PyTorch); the arrow keys and Enter pick it.
        type_keys("pyt")
        try:
            wait.until(lambda d: "Python" in attrs("#skill-suggestions li.suggestion", "data-name"))
            names = attrs("#skill-suggestions li.suggestion", "data-name")
        except TimeoutException:
            names = []
        check("Python" in names and "PyTorch" in names, "autocomplete offers Python and PyTorch for 'pyt'", names)
        check(by_id("skill-input").get_attribute("aria-expanded") == "true", "the combobox says it is expanded")
        shot("autocomplete")
        if "Python" in names:
            type_keys(*([Keys.ARROW_DOWN] * (names.index("Python") + 1)))
            sel = attrs("#skill-suggestions li[aria-selected=true]", "data-name")
            check(sel == ["Python"], "ArrowDown highlights the suggestion", sel)
            type_keys(Keys.ENTER)
        check(chips() == ["Python"], "Enter on a suggestion adds its chip", chips())
        check(by_id("skill-input").get_attribute("value") == "" and not by_id("skill-suggestions").is_displayed(),
              "the input is cleared and the suggestions closed")

        type_keys("sql,")
        type_keys("docker", Keys.ENTER)
        check(chips() == ["Python", "sql", "docker"], "a comma and Enter add chips", chips())
        type_keys(Keys.BACKSPACE)
        check(chips() == ["Python", "sql"], "Backspace in the empty input removes the last chip", chips())
        type_keys("Docker", Keys.ENTER)
        skills = ["Python", "sql", "Docker"]
        check(chips() == skills, "the chip is back", chips())

        # A click on a suggestion adds it too; then Backspace takes it away again.
        type_keys("kube")
        try:
            opt = wait.until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, "#skill-suggestions li.suggestion")
                                        if e.get_attribute("data-name") == "Kubernetes"])
            opt[0].click()
        except TimeoutException:
            pass
        check(chips() == skills + ["Kubernetes"], "a click on a suggestion adds its chip", chips())
        check(driver.switch_to.active_element.get_attribute("id") == "skill-input", "focus stays in the skill input")
        type_keys(Keys.BACKSPACE)
        check(chips() == skills, "and Backspace removes it", chips())

        # Results: the same jobs, order and scores as the CLI, with score bars and chips.
        check(settled("results", skills), "results arrive for the three skills",
              by_id("results-status").text + " " + by_id("results-error").text)
        seen = js("return window.__seen")
        check(seen["busy"] and seen["loading"], "a loading state was shown while waiting (aria-busy, status)", seen)
        check(not by_id("results-status").get_attribute("class").count("loading"), "the loading state is gone")
        ref = cli_json("recommend", "--skills", ", ".join(skills), "-k", "10", db=db)
        ids = attrs("#results-list li.job", "data-job-id")
        ref_ids = [r["id"] for r in ref["results"]]
        check(len(ids) == 10 and ids == ref_ids, "10 jobs listed in the CLI's order", (ids, ref_ids))
        check("considered" in by_id("results-status").text and str(ref["considered"]) in by_id("results-status").text,
              "the summary says how many jobs were considered", by_id("results-status").text)
        shot("results")
        cards = driver.find_elements(By.CSS_SELECTOR, "#results-list li.job")
        bad_scores, bad_bars, bad_parts, bad_chips = [], [], [], []
        for card, r in zip(cards, ref["results"]):
            if card.find_element(By.CSS_SELECTOR, ".job-score").text.strip() != "%.2f" % r["score"]:
                bad_scores.append((r["id"], card.find_element(By.CSS_SELECTOR, ".job-score").text, r["score"]))
            fill = js("var b = arguments[0].querySelector('.score-bar'), f = b.querySelector('.fill');"
                      "return [f.getBoundingClientRect().width, b.getBoundingClientRect().width,"
                      " Number(b.getAttribute('aria-valuenow'))];", card)
            if not (fill[1] > 0 and abs(fill[0] / fill[1] - r["score"]) < 0.02 and abs(fill[2] - r["score"]) < 1e-3):
                bad_bars.append((r["id"], fill, r["score"]))
            parts = js("return Array.from(arguments[0].querySelectorAll('.part')).map(function (p) {"
                       " var b = p.querySelector('.bar'), f = b.querySelector('.fill');"
                       " return [p.getAttribute('data-part'), f.getBoundingClientRect().width / b.getBoundingClientRect().width]; });",
                       card)
            want = [[k, r["parts"][k]] for k in ("query", "coverage", "semantic", "keyword")]
            if [p[0] for p in parts] != [w[0] for w in want] or \
                    any(abs(p[1] - min(1, max(0, w[1]))) > 0.03 for p, w in zip(parts, want)):
                bad_parts.append((r["id"], parts, want))
            m_dom = attrs("ul.matched li.chip", "data-skill", card)
            m_cls = [c.split()[-1] for c in attrs("ul.matched li.chip", "class", card)]
            m_ref = [a["job_skill"] for a in r["alignment"] if a["status"] != "missing"]
            m_st = [a["status"] for a in r["alignment"] if a["status"] != "missing"]
            x_dom = attrs("ul.missing li.chip", "data-skill", card)
            if sorted(m_dom) != sorted(m_ref) or sorted(m_cls) != sorted(m_st) or sorted(x_dom) != sorted(r["missing"]):
                bad_chips.append((r["id"], m_dom, m_ref, x_dom, r["missing"]))
        check(cards and not bad_scores, "every score is shown as the API's", bad_scores[:2])
        check(cards and not bad_bars, "every score bar's length is its score", bad_bars[:2])
        check(cards and not bad_parts, "every job shows its four parts as bars", bad_parts[:2])
        check(cards and not bad_chips, "matched (have/partial) and missing chips equal the explanation", bad_chips[:2])
        top = ref["results"][0]
        top_m = attrs("ul.matched li.chip", "data-skill", cards[0]) if cards else []
        check("Python" in top_m and "Docker" in top_m, "the top job's matched chips include Python and Docker", top_m)

        # The learn-next panel: the career gap over the best 20 jobs.
        check(settled("learn-panel", skills), "the learn-next panel answers", by_id("learn-error").text)
        career = cli_json("gap", "--skills", ", ".join(skills), "--top", "20", db=db)
        learn = attrs("#learn-list li.learn-item", "data-skill")
        want = [x["skill"] for x in career["learn_next"]][:len(learn)]
        check(learn and learn == want, "learn next lists the career gap's skills in order", (learn[:5], want[:5]))
        check(("Ready now for %d of your %d" % (career["ready_now"], len(career["jobs"]))) in by_id("learn-summary").text,
              "the learn-next summary has ready-now and the job count", by_id("learn-summary").text)

        # A job's gap report, opened with Enter on its title.
        if not cards:
            check(False, "jobs to go on with")
            return
        js("arguments[0].focus()", cards[0].find_element(By.CSS_SELECTOR, ".job-open"))
        type_keys(Keys.ENTER)
        try:
            wait.until(lambda d: d.find_element(By.ID, "gap-panel").is_displayed())
            opened = True
        except TimeoutException:
            opened = False
        check(opened, "Enter on a job opens its gap panel")
        gap_ok = False
        try:
            wait.until(lambda d: d.execute_script(
                "var p = document.getElementById('gap-panel'); return p.getAttribute('aria-busy') === 'false' &&"
                " p.getAttribute('data-job-id') === arguments[0];", top["id"]))
            gap_ok = True
        except TimeoutException:
            pass
        check(gap_ok and by_id("gap-body").is_displayed(), "the gap report arrives",
              by_id("gap-error").text or by_id("gap-status").text)
        check(driver.switch_to.active_element.get_attribute("id") == "gap-title",
              "focus moves to the gap panel's heading")
        gref = cli_json("gap", "--skills", ", ".join(skills), "--job", top["id"], db=db)
        for status in ("have", "partial", "missing"):
            dom = attrs("#gap-%s li.gap-item" % status, "data-skill")
            want = [i["skill"] for i in gref["items"] if i["status"] == status]
            if status == "missing":
                want = gref["missing"]
                check(dom == want, "gap: missing skills, most important first", (dom, want))
            else:
                check(sorted(dom) == sorted(want), "gap: %s skills" % status, (dom, want))
        check(len(attrs("#gap-have li.gap-item", "data-skill")) > 0 and
              len(attrs("#gap-missing li.gap-item", "data-skill")) > 0, "the gap has both have and missing items")
        py = [e for e in driver.find_elements(By.CSS_SELECTOR, "#gap-have li.gap-item") if
              e.get_attribute("data-skill") == "Python"]
        py_text = py[0].find_element(By.CSS_SELECTOR, ".gap-match").text if py else ""
        check("Python" in py_text and "1.00" in py_text, "a have item names the user skill and the similarity",
              py_text)
        rd = "%d%%" % round(gref["readiness"] * 100)
        check(rd in by_id("gap-readiness").text, "the readiness is shown", (by_id("gap-readiness").text, rd))
        check(by_id("gap-counts").text.startswith("%d have" % gref["have"]) and
              ("%d missing" % gref["missing_count"]) in by_id("gap-counts").text, "the have/partial/missing counts",
              by_id("gap-counts").text)
        type_keys(Keys.TAB)
        f = driver.switch_to.active_element
        check(f.get_attribute("id") == "gap-close" and
              js("return getComputedStyle(arguments[0]).outlineStyle", f) not in ("none", ""),
              "Tab moves to the close button, with a visible focus ring",
              (f.get_attribute("id"), js("return getComputedStyle(arguments[0]).outlineStyle", f)))
        shot("gap")

        # Clicking another job's card (not its title) switches the report.
        if len(cards) > 2:
            other = ref["results"][2]
            cards[2].find_element(By.CSS_SELECTOR, ".job-meta").click()
            try:
                wait.until(lambda d: d.execute_script(
                    "var p = document.getElementById('gap-panel'); return p.getAttribute('aria-busy') === 'false' &&"
                    " p.getAttribute('data-job-id') === arguments[0];", other["id"]))
                sw = True
            except TimeoutException:
                sw = False
            check(sw and other["title"] in by_id("gap-title").text, "a click on another job shows its gap",
                  by_id("gap-title").text)
        type_keys(Keys.ESCAPE)
        check(not by_id("gap-panel").is_displayed(), "Escape closes the gap panel")

        # Filters: location and top k are sent to the API.
        loc = by_id("f-location")
        loc.send_keys("Berlin")
        topk = by_id("f-top-k")
        topk.clear()
        topk.send_keys("3", Keys.ENTER)
        ref_f = cli_json("recommend", "--skills", ", ".join(skills), "-k", "3", "--location", "Berlin", db=db)
        want = [r["id"] for r in ref_f["results"]]
        try:
            wait.until(lambda d: attrs("#results-list li.job", "data-job-id") == want and
                       d.find_element(By.ID, "results").get_attribute("aria-busy") == "false")
            f_ok = True
        except TimeoutException:
            f_ok = False
        got = attrs("#results-list li.job", "data-job-id")
        check(f_ok and len(want) == 3, "location filter and top k 3 give the CLI's jobs", (got, want))
        metas = texts("#results-list li.job .job-meta")
        check(metas and all("Berlin" in m for m in metas), "every listed job is in Berlin", metas)
        loc.clear()
        topk.clear()
        topk.send_keys("10")
        loc.send_keys(Keys.ENTER)
        try:
            wait.until(lambda d: len(attrs("#results-list li.job", "data-job-id")) == 10)
            back = True
        except TimeoutException:
            back = False
        check(back, "clearing the filters brings back 10 jobs", attrs("#results-list li.job", "data-job-id"))

        # An error from the API: a skill of 201 characters is refused with 400.
        long_skill = "x" * 201
        st, _, body = http("POST", base + "/v1/recommend", {"skills": skills + [long_skill]})
        api_msg = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
        check(st == 400 and api_msg, "the API refuses a 201-character skill with 400", (st, body))
        inp = by_id("skill-input")
        inp.send_keys(long_skill, Keys.ENTER)
        settled("results", skills + [long_skill])
        err_el = by_id("results-error")
        check(err_el.is_displayed() and api_msg and api_msg in err_el.text, "the error message of the API is shown",
              (err_el.text, api_msg))
        check(err_el.get_attribute("role") == "alert", "the error is announced (role=alert)")
        check(not driver.find_elements(By.CSS_SELECTOR, "#results-list li.job"), "no stale results beside the error")
        settled("learn-panel", skills + [long_skill])
        check(by_id("learn-error").is_displayed() and api_msg in by_id("learn-error").text,
              "the learn-next panel shows the error too", by_id("learn-error").text)
        shot("error")

        # Phone width, with the 201-character chip still there: nothing overflows sideways.
        driver.set_window_size(375, 812)
        wait.until(lambda d: d.execute_script("return window.innerWidth") <= 400)
        w = js("return [document.documentElement.scrollWidth, window.innerWidth]")
        check(w[1] <= 400 and w[0] <= w[1], "375 px with a long chip: no horizontal overflow", w)
        shot("phone-error")
        inp = by_id("skill-input")
        js("arguments[0].focus()", inp)
        type_keys(Keys.BACKSPACE)
        check(chips() == skills, "Backspace removes the long chip", chips())
        check(settled("results", skills) and not by_id("results-error").is_displayed() and
              len(driver.find_elements(By.CSS_SELECTOR, "#results-list li.job")) == 10,
              "the results come back and the error goes", by_id("results-error").text)
        for b in driver.find_elements(By.CSS_SELECTOR, "#results-list li.job .job-open")[:1]:
            b.click()
        try:
            wait.until(lambda d: d.execute_script("var p = document.getElementById('gap-panel');"
                                                  "return !p.hidden && p.getAttribute('aria-busy') === 'false';"))
        except TimeoutException:
            pass
        w = js("return [document.documentElement.scrollWidth, window.innerWidth]")
        check(w[1] <= 400 and w[0] <= w[1], "375 px with results and the gap panel: no horizontal overflow", w)
        narrow = js("""var r = document.querySelector('#results-list li.job').getBoundingClientRect();
                       return [r.left, r.right, window.innerWidth];""")
        check(narrow[0] >= 0 and narrow[1] <= narrow[2], "a job card fits the phone's width", narrow)
        shot("phone")
        js("window.scrollTo(0, 0)")
        shot("phone-top")

        # The remove button of a chip works too.
        driver.set_window_size(1280, 1000)
        btn = driver.find_elements(By.CSS_SELECTOR, "#skill-chips li.chip button.chip-remove")
        lbl = btn[1].get_attribute("aria-label") if len(btn) > 1 else ""
        if len(btn) > 1:
            btn[1].click()
        check(chips() == ["Python", "Docker"] and lbl == "Remove sql", "a chip's remove button removes it",
              (chips(), lbl))
        check(settled("results", ["Python", "Docker"]), "the results follow the chips")

        # "Add" on a learn-next item adds that skill.
        check(settled("learn-panel", ["Python", "Docker"]), "the learn-next panel follows the chips")
        first = driver.find_elements(By.CSS_SELECTOR, "#learn-list li.learn-item")[:1]
        name = first[0].get_attribute("data-skill") if first else None
        if first:
            first[0].find_element(By.CSS_SELECTOR, "button.learn-add").click()
        check(name and chips() == ["Python", "Docker", name], "a learn-next item's Add button adds the skill",
              (name, chips()))
        check(settled("results", ["Python", "Docker", name]), "and the results follow")

        errs = [e for e in console_errors() if "/v1/" not in e]   # the refused requests are expected
        check(not errs, "no console errors (CSP violations, script errors)", errs[:3])

        # The O*NET credit line, on a store made by import-onet.
        server.stop()
        server = None
        if not os.path.isfile(os.path.join(ONET, "Occupation Data.txt")):
            print("# skipping the O*NET credit check: no O*NET data in %s" % ONET, flush=True)
        else:
            db2 = os.path.join(tmp, "onet.db")
            rc, out, err = run("import-onet", ONET, db=db2)
            if check(rc == 0, "import-onet", err):
                server = Server(db2, tmp, "onet")
                ok, why = server.wait_ready()
                if check(ok, "serve on the O*NET store is ready", why):
                    st, _, info = http("GET", server.base + "/v1/info")
                    check(st == 200 and isinstance(info, dict) and info.get("corpus") == "onet",
                          "GET /v1/info says corpus onet", info)
                    driver.get(server.base + "/")
                    try:
                        wait.until(lambda d: d.find_element(By.ID, "credit").is_displayed())
                        shown = True
                    except TimeoutException:
                        shown = False
                    credit = by_id("credit").text
                    readme = ""
                    for name in sorted(os.listdir(ONET)):
                        if name.lower().startswith("readme"):
                            readme += open(os.path.join(ONET, name), encoding="utf-8", errors="replace").read()
                    m = re.search(r"O\*NET ([0-9][0-9.x]*) Database", readme)
                    version = m.group(1) if m else "28"
                    want = ("This includes information from the O*NET %s Database by the U.S. Department of Labor, "
                            "Employment and Training Administration (USDOL/ETA). Used under the CC BY 4.0 license."
                            % version)
                    check(shown and " ".join(credit.split()) == want, "the footer carries the O*NET credit line",
                          (credit, want))
                    js("document.getElementById('credit').scrollIntoView()")
                    shot("onet-footer")
        print("# %.1f s" % (time.time() - T0), flush=True)
    except Exception as e:  # an unexpected error is a failure, not a crash
        import traceback
        traceback.print_exc()
        check(False, "the test ran to its end", "%s: %s" % (type(e).__name__, e))
        if driver:
            try:
                driver.save_screenshot(os.path.join(ART, "web-crash.png"))
            except Exception:
                pass
    finally:
        if driver:
            try:
                driver.quit()
            except Exception:
                pass
        if server:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
    finish()
