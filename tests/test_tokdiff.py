#!/usr/bin/env python3
"""Differential test: our C tokenizer (build/tests/tool_tokdump) against
Hugging Face's Rust `tokenizers` on 100,000+ generated strings.

The strings come from a fixed seed and mix random code points from every
plane and every general category (unassigned ones included, surrogates
excluded), job-text fragments, special tokens, whitespace and control
characters, combining-mark runs (NFD ordering), long texts past the 256-id
truncation, and raw byte strings with truncated or invalid UTF-8. The
reference sees bytes.decode('utf-8', 'replace'), as the C side is specified.

Environment: JM_BUILD or BUILD (default "build") locates the tool,
JM_TEST_MODEL (default models/all-MiniLM-L6-v2) the model directory,
JM_TOKDIFF_N the number of strings (default 100000), JM_TOKDIFF_SEED the
seed (default fixed, so CI runs are reproducible).
Ends with "test_tokdiff: N passed, N failed" (one check per string).
"""
import os
import random
import struct
import subprocess
import sys
import unicodedata

NAME = "test_tokdiff"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20240611
MAX_LEN = 256


def fail_setup(msg):
    print("FAIL %s: %s" % (NAME, msg))
    print("%s: 0 passed, 1 failed" % NAME)
    sys.exit(1)


try:
    from tokenizers import Tokenizer
except ImportError as e:  # never pass silently without the reference
    fail_setup("the Python package `tokenizers` is required (pip install tokenizers): %s" % e)

JOB_FRAGMENTS = [
    "Senior Software Engineer", "C++", "C#", ".NET", "Node.js", "CI/CD", "R&D", "UX/UI",
    "Python 3.11", "PostgreSQL", "Kubernetes (k8s)", "AWS Lambda", "TensorFlow", "PyTorch",
    "machine-learning", "full-stack", "front_end", "back-end developer", "DevOps", "SRE",
    "Registered Nurse (RN)", "Certified Public Accountant", "forklift operator", "HVAC tech",
    "Microsoft Excel", "SAP ERP", "Salesforce CRM", "Tableau", "Power BI", "Go/Golang",
    "5+ years' experience", "$120,000/yr", "40 hrs/week", "e-mail: jobs@example.com",
    "https://example.com/careers?id=42&ref=x", "Bachelor's degree", "Ph.D.", "M.Sc.",
    "team-player", "self-starter!!!", "Q&A", "A/B testing", "iOS/Android", "Objective-C",
    "Café manager", "Crème brûlée pâtissier", "Zürich", "São Paulo", "naïve", "résumé",
    "Ingeniero de Software", "Développeur", "Größe", "İstanbul", "ΣΊΣΥΦΟΣ", "Ωmega",
    "软件工程师", "データサイエンティスト", "소프트웨어 엔지니어", "مهندس برمجيات", "מהנדס תוכנה",
    "Инженер-программист", "अभियंता", "วิศวกร", "ﬁnance ofﬁcer", "Ｆｕｌｌｗｉｄｔｈ", "①②③",
    "🚀 rockstar dev 👩‍💻", "👍🏽", "🇺🇸", "™ ® ©", "½ ¼ ¾", "x² y³", "µs", "Å Kelvin K",
    "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[cls]", "[MASK", "MASK]", "[[SEP]]",
    "a[MASK]b", "##ing", "un##able", "...", "—", "–", "…", "“quoted”", "‘single’", "«guillemets»",
    "tab\there", "new\nline", "cr\rlf\r\n", "nbsp\u00a0here", "zero\u200bwidth", "soft\u00adhyphen",
    "bom\ufeffstart", "rtl\u200fmark", "\u202eoverride", "ideographic\u3000space",
]

SPACES = ["\t", "\n", "\r", "\x0b", "\x0c", " ", "\x1c", "\x1d", "\x1e", "\x1f", "\x85",
          "\u00a0", "\u1680", "\u180e", "\u2000", "\u2005", "\u200a", "\u200b", "\u2028",
          "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff", "\x00", "\x7f", "\ufffd", "\u00ad"]

# Characters at the edges of the rules: full lower-casing (U+0130), sigma,
# decompositions, compatibility ideographs, characters whose category moved
# between Unicode versions, lower-case mappings newer than utf8proc's data.
EDGE = ("\u0130\u03a3\u00df\u1e9e\u212a\u212b\u2126\u0149\u01c5\u1f88\u0345\u037e\u0387"
        "\u1fef\u00c5\u1e0a\u0323\u0307\uf900\ufa6d\u2f800\u2fa1d\uac00\ud7a3\u1100\u3400"
        "\u4dbf\u9fff\u166d\u1734\U000111c9\u08e2\u0890\U000110cd\U00013430\u1c89\ua7cb"
        "\ua7dc\U00010d50\U00016ea0\U00011938\u1df6\u07fd\u2e43\u0f39\u0f71\u0f72\u0f74"
        "\u0f80\U0001d165\U0001d166\U0001d16d\u05b0\u0591\u0e48\u302a\u3099\u309a\u0670"
        "\u00b7\u0e3f\u20bf\u2e2f\u1f600\u0600\u061c\u200d\u2066\u2069\U000e0001\U000e007f"
        "\ue000\U000f0000\U0010fffd\U0010ffff\ufdd0\ufffe")


def build_category_pools():
    pools = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        pools.setdefault(unicodedata.category(chr(cp)), []).append(cp)
    return pools


def rand_plane_char(rng):
    plane = rng.choice((0, 0, 0, 0, 1, 1, 2, 3, 14, 15, 16, rng.randrange(4, 14)))
    while True:
        cp = plane * 0x10000 + rng.randrange(0x10000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def rand_marks(rng, pools):
    marks = pools["Mn"] + pools["Mc"] + pools["Me"]
    base = rng.choice("aeiouAEIOUnNcCsz" + "αβяж가각क")
    return base + "".join(chr(rng.choice(marks)) for _ in range(rng.randrange(1, 6)))


def rand_text(rng, pools, cats):
    """One string made of a few randomly chosen pieces."""
    parts = []
    for _ in range(rng.randrange(1, 8)):
        k = rng.random()
        if k < 0.25:
            parts.append("".join(rand_plane_char(rng) for _ in range(rng.randrange(1, 6))))
        elif k < 0.50:
            cat = rng.choice(cats)
            parts.append("".join(chr(rng.choice(pools[cat])) for _ in range(rng.randrange(1, 5))))
        elif k < 0.68:
            parts.append(rng.choice(JOB_FRAGMENTS))
        elif k < 0.78:
            parts.append("".join(rng.choice(SPACES) for _ in range(rng.randrange(1, 4))))
        elif k < 0.88:
            parts.append(rand_marks(rng, pools))
        else:
            parts.append("".join(rng.choice(EDGE) for _ in range(rng.randrange(1, 4))))
        if rng.random() < 0.5:
            parts.append(rng.choice(" \n"))
    return "".join(parts)


def rand_bytes(rng, pools, cats):
    """Raw bytes: valid text cut at random byte offsets, invalid lead and
    continuation bytes, overlong forms, encoded surrogates, > U+10FFFF."""
    bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xc2", b"\xe0\x80\x80", b"\xe0\xa0",
           b"\xe2\x82", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xef\xbf", b"\xf0\x80\x80\x80",
           b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xf8\x88\x80\x80\x80", b"\xfe",
           b"\xff", b"\xf0\x9f", b"\xf3", b"\xe1\x80\xe1\x80\x80"]
    out = bytearray()
    for _ in range(rng.randrange(1, 6)):
        k = rng.random()
        if k < 0.4:
            out += rng.choice(bad)
        elif k < 0.7:
            enc = rand_text(rng, pools, cats).encode("utf-8")
            out += enc[: rng.randrange(len(enc) + 1)]
        elif k < 0.85:
            out += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            out += rng.choice(JOB_FRAGMENTS).encode("utf-8")
    return bytes(out)


def long_text(rng, pools, cats):
    words = []
    while len(words) < rng.randrange(200, 600):
        words.append(rng.choice(JOB_FRAGMENTS) if rng.random() < 0.8 else rand_text(rng, pools, cats))
    return " ".join(words)


def generate(n, seed):
    rng = random.Random(seed)
    pools = build_category_pools()
    cats = sorted(pools)
    items = [b"", b" ", b"\t\n\r ", "\u3000\u00a0".encode(), b"\x00", b"\xff\xfe", b"[CLS]",
             b"[MASK][MASK]", b"a" * 100, b"a" * 101, ("\u00e9" * 101).encode()]
    while len(items) < n:
        k = rng.random()
        if k < 0.12:
            items.append(rand_bytes(rng, pools, cats))
        elif k < 0.125:
            items.append(long_text(rng, pools, cats).encode("utf-8"))
        else:
            items.append(rand_text(rng, pools, cats).encode("utf-8"))
    return items


def run_tool(tool, model, items):
    payload = b"".join(struct.pack("<I", len(b)) + b for b in items)
    p = subprocess.run([tool, model, str(MAX_LEN)], input=payload, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        fail_setup("%s exited %d: %s" % (tool, p.returncode, p.stderr.decode(errors="replace")[-2000:]))
    lines = p.stdout.decode().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(items):
        fail_setup("%s printed %d lines for %d records" % (tool, len(lines), len(items)))
    return [[int(x) for x in ln.split()] for ln in lines]


def main():
    os.chdir(ROOT)
    build = os.environ.get("JM_BUILD") or os.environ.get("BUILD") or "build"
    model = os.environ.get("JM_TEST_MODEL", "models/all-MiniLM-L6-v2")
    n = int(os.environ.get("JM_TOKDIFF_N", "100000"))
    tool = os.path.join(build, "tests", "tool_tokdump")
    if not os.access(tool, os.X_OK):
        fail_setup("%s not found: run `make %s` first" % (tool, tool))
    tj = os.path.join(model, "tokenizer.json")
    if not os.path.exists(tj):
        fail_setup("%s not found (make model)" % tj)
    ref = Tokenizer.from_file(tj)
    ref.no_padding()
    ref.enable_truncation(max_length=MAX_LEN)

    items = generate(n, int(os.environ.get("JM_TOKDIFF_SEED", SEED)))
    texts = [b.decode("utf-8", "replace") for b in items]
    want = [e.ids for e in ref.encode_batch(texts)]
    got = run_tool(tool, model, items)

    passed = failed = 0
    for b, w, g in zip(items, want, got):
        if w == g:
            passed += 1
            continue
        failed += 1
        if failed <= 10:
            print("FAIL input hex=%s\n  text=%r\n  want=%s\n  got =%s" % (b.hex(), b.decode("utf-8", "replace"), w, g))
    import tokenizers
    print("reference: tokenizers %s, Python %s, unicodedata %s" % (
        tokenizers.__version__, sys.version.split()[0], unicodedata.unidata_version))
    print("%s: %d passed, %d failed" % (NAME, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
