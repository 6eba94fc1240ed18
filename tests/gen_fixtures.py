#!/usr/bin/env python3
"""Generate the tokenizer and embedding reference fixtures (run by hand, not in CI).

    /opt/refenv/bin/python tests/gen_fixtures.py [--onet DIR] [--model DIR]

Writes
  tests/fixtures/tokens.jsonl      {"hex": raw input bytes, "ids": [...]} per line
  tests/fixtures/embeddings.jsonl  {"hex": ..., "embedding": [384 floats]} per line

Token ids come from Hugging Face `tokenizers` (Tokenizer.from_file on the
model's tokenizer.json, truncation max_length 256, padding off); embeddings
from SentenceTransformer(model, device='cpu').encode(texts, batch_size=32,
normalize_embeddings=False) -- the model's modules.json already normalizes.
Both see bytes.decode('utf-8', 'replace') of the raw input, as the C side is
specified to. The corpus (fixed seed) mixes O*NET titles, technology skills
and descriptions (read from shared/data/onet, not committed), whole job
postings far past 256 tokens, tricky skills ("C++", ".NET", "CI/CD"),
accents, CJK, emoji, right-to-left scripts, control characters, special
tokens, empty and whitespace-only strings, random code points and invalid
UTF-8 byte strings.

The fixtures contain O*NET text: "This includes information from the O*NET 28
Database by the U.S. Department of Labor, Employment and Training
Administration (USDOL/ETA). Used under the CC BY 4.0 license."

Fixtures in the tree were generated with (printed again on every run):
  Python 3.11.7, tokenizers 0.23.3, sentence-transformers 6.2.0,
  transformers 5.23.0, torch 2.15.0+cu132 (CPU), numpy 2.4.6
  model all-MiniLM-L6-v2 from models/all-MiniLM-L6-v2 (scripts/model.pin)
"""
import argparse
import csv
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 1234
MAX_LEN = 256
N_EMBED = 600

SKILLS = [
    "C++", "C#", ".NET", "ASP.NET Core", "Node.js", "Vue.js", "React.js", "CI/CD", "R&D", "R",
    "Go", "F#", "Objective-C", "UX/UI", "A/B testing", "AT&T", "TCP/IP", "PL/SQL", "T-SQL",
    "COBOL", "Fortran 77", "MS-DOS", "Win32 API", "OS/2", "z/OS", "AS/400", "SAP S/4HANA",
    "node_modules", "__init__.py", "std::vector<int>", "#include", "@Autowired", "$HOME",
    "C++17/20", "Python 3.x", "Java SE 8+", "HTML5 & CSS3", "ES6+", "k8s", "GPT-4o", "ML/AI",
    "24/7 on-call", "5+ yrs", "~3 years", "100%", "$85k-$95k", "€50.000", "£30,000", "¥5,000,000",
    "O'Reilly", "Bachelor’s degree", "“team player”", "self—starter", "fast-paced (!)",
]

MULTI = [
    "Café", "Crème brûlée", "Zürich", "São Paulo", "Kraków", "Ångström", "façade", "naïve",
    "résumé", "Łódź", "Ærø", "Straße", "İstanbul", "IĞDIR", "ΣΊΣΥΦΟΣ", "Ελλάδα", "Дизайнер",
    "Программист 1С", "Українська", "Հայերեն", "ქართული", "हिन्दी डेवलपर", "বাংলা", "தமிழ்",
    "ไทย นักพัฒนา", "ລາວ", "မြန်မာ", "ខ្មែរ", "Tiếng Việt kỹ sư", "软件工程师", "数据分析师（北京）",
    "機械学習エンジニア", "データサイエンティスト", "ｶﾀｶﾅ", "소프트웨어 엔지니어", "한국어", "中文ＡＢＣ１２３",
    "مهندس برمجيات", "العربية", "فارسی", "اردو", "עברית", "מהנדס תוכנה", "ܣܘܪܝܝܐ", "ދިވެހި",
    "👩‍💻 developer", "🚀🚀🚀", "🇺🇸🇫🇷", "👍🏽 great", "❤️", "✨ new ✨", "☕ Java", "🐍 Python",
    "ﬁnance", "ﬀ", "Ⅻ", "①", "㎏", "™", "½", "x²", "µ", "Å", "K", "Ω", "ǅ", "ŉ", "ᾈ",
    "\u0301accent first", "e\u0301\u0301\u0323", "A\u030a", "\u1100\u1161\u11a8", "각",
    "\u202eevil\u202c", "a\u200db", "zero\u200bwidth", "soft\u00adhyphen", "\ufeffBOM",
    "\ue000private", "\U000f0001", "\U0010fffd", "\ufdd0", "\U000e0041tag", "\u0378\u0379",
    "\u166d\u1734\U000111c9", "\u08e2\u0890", "\ua7cb\ua7dc\u1c89", "\U00010d50\U00016ea0",
]

CONTROL = [
    "", " ", "  ", "\t", "\n", "\r\n", " \t\n\r ", "\x0b\x0c", "\x00", "\x00abc\x00", "\x01\x02\x03",
    "\x1b[31mred\x1b[0m", "\x7f", "\x85", "\u00a0", "\u3000", "\u2028\u2029", "\u200b\u200c\u200d",
    "line1\nline2\r\nline3", "tab\tseparated\tvalues", "\x1c\x1d\x1e\x1f", "\ufffd", "a\ufffdb",
]

SPECIAL = [
    "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[CLS] hello [SEP]", "a[MASK]b", "[MASK][MASK]",
    "[cls]", "[Mask]", "[ MASK ]", "[MASK", "MASK]", "[[CLS]]", "[CLS][SEP][PAD][UNK][MASK]",
    "The [MASK] engineer", "##ing", "un##able", "[unused0]", "[unused99]",
]

BAD_BYTES = [
    b"\x80", b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xc3", b"\xe2\x82", b"\xe2\x82\xac",
    b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80",
    b"caf\xe9", b"na\xefve", b"\x93quoted\x94", b"C++\xa0dev", b"[CLS\xff]", b"[MA\x80SK]",
]


def read_onet(d):
    def rows(name):
        with open(os.path.join(d, name), encoding="utf-8", newline="") as f:
            r = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(r)
            return [row for row in r if row]

    occ = rows("Occupation Data.txt")
    tech = rows("Technology Skills.txt")
    return occ, tech


def mutate(rng, s):
    """Sprinkle case changes, accents, odd whitespace and controls into s."""
    out = []
    for ch in s:
        k = rng.random()
        if k < 0.03:
            out.append(ch.upper())
        elif k < 0.05:
            out.append(ch + rng.choice("\u0301\u0300\u0308\u0327\u0323"))
        elif k < 0.06:
            out.append(rng.choice(["\t", "\n", "\u00a0", "\u2003", "\x07", "\u200b", "\x00"]))
        elif k < 0.07:
            out.append(rng.choice(MULTI))
        else:
            out.append(ch)
    return "".join(out)


def rand_unicode(rng):
    out = []
    for _ in range(rng.randrange(1, 30)):
        plane = rng.choice((0, 0, 0, 1, 2, 14, 15, 16))
        cp = plane * 0x10000 + rng.randrange(0x10000)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0x20
        out.append(chr(cp))
        if rng.random() < 0.2:
            out.append(" ")
    return "".join(out)


def corrupt(rng, b):
    """Insert, drop or cut bytes so that the result is (usually) invalid UTF-8."""
    b = bytearray(b)
    for _ in range(rng.randrange(1, 4)):
        k = rng.random()
        pos = rng.randrange(len(b) + 1)
        if k < 0.4:
            b[pos:pos] = rng.choice(BAD_BYTES)
        elif k < 0.7 and b:
            b[pos:pos] = bytes([rng.randrange(0x80, 0x100)])
        elif b:
            b = b[: pos]
    return bytes(b)


def build_corpus(onet_dir):
    rng = random.Random(SEED)
    occ, tech = read_onet(onet_dir)
    titles = [r[1] for r in occ]
    descs = [r[2] for r in occ]
    skills = sorted({r[1] for r in tech})
    by_code = {}
    for r in tech:
        by_code.setdefault(r[0], []).append(r[1])

    kinds = []  # (kind, bytes)

    def add(kind, s):
        kinds.append((kind, s if isinstance(s, bytes) else s.encode("utf-8")))

    for s in titles:
        add("title", s)
    for s in rng.sample(skills, 1500):
        add("skill", s)
    for s in descs:
        add("desc", s)
    # Whole job postings: title, description, skills; most run past 256 tokens.
    for r in rng.sample(occ, 250):
        sk = by_code.get(r[0], [])
        text = "%s\n\n%s\n\nSkills: %s" % (r[1], r[2], ", ".join(sk))
        extra = rng.sample(descs, 3)
        add("posting", text + "\n" + " ".join(extra))
    for s in SKILLS + MULTI + CONTROL + SPECIAL:
        add("hand", s)
    for s in BAD_BYTES:
        add("bytes", s)
    for _ in range(700):
        add("mutated", mutate(rng, rng.choice(titles + skills + descs)))
    for _ in range(600):
        add("unicode", rand_unicode(rng))
    for _ in range(600):
        src = rng.choice(titles + skills + descs + MULTI).encode("utf-8")
        add("bytes", corrupt(rng, src))
    for _ in range(300):
        parts = [rng.choice(SKILLS + MULTI + SPECIAL + CONTROL + titles) for _ in range(rng.randrange(2, 8))]
        add("mix", rng.choice([" ", ", ", "", " | ", "\n"]).join(parts))
    # Texts far past 256 tokens, including ones built only of special tokens
    # and of words longer than 100 chars.
    add("long", " ".join(descs[:20]))
    add("long", "[MASK] " * 400)
    add("long", ("x" * 101 + " ") * 300)
    add("long", "C++ " * 300)
    add("long", "软件工程师" * 120)
    add("long", "a" * 5000)
    add("long", "\u00e9" * 101)
    add("long", "a" * 100)
    return kinds


def versions():
    import numpy
    import sentence_transformers
    import tokenizers
    import torch
    import transformers

    return ("Python %s, tokenizers %s, sentence-transformers %s, transformers %s, torch %s (CPU), numpy %s"
            % (sys.version.split()[0], tokenizers.__version__, sentence_transformers.__version__,
               transformers.__version__, torch.__version__, numpy.__version__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onet", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "onet"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    a = ap.parse_args()
    if not os.path.isdir(a.onet):
        a.onet = "/work/shared/data/onet"

    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    print("versions:", versions())
    corpus = build_corpus(a.onet)
    texts = [b.decode("utf-8", "replace") for _, b in corpus]

    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LEN)
    ids = [e.ids for e in tok.encode_batch(texts)]

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "tokens.jsonl"), "w") as f:
        for (_, b), i in zip(corpus, ids):
            f.write(json.dumps({"hex": b.hex(), "ids": i}, separators=(",", ":")) + "\n")
    ntrunc = sum(len(i) == MAX_LEN for i in ids)
    print("tokens.jsonl: %d strings (%d truncated at %d ids)" % (len(corpus), ntrunc, MAX_LEN))

    # Embeddings: a stratified sample over the kinds, plus the must-haves.
    rng = random.Random(SEED + 1)
    by_kind = {}
    for n, (k, _) in enumerate(corpus):
        by_kind.setdefault(k, []).append(n)
    must = [n for n, (_, b) in enumerate(corpus) if b in (b"", b" ", b"\xff", b"[MASK]", b"caf\xe9")]
    must += [n for n, i in enumerate(ids) if len(i) == MAX_LEN][:40]
    pick = list(dict.fromkeys(must))
    kinds = sorted(by_kind)
    while len(pick) < N_EMBED:
        n = rng.choice(by_kind[rng.choice(kinds)])
        if n not in pick:
            pick.append(n)
    model = SentenceTransformer(a.model, device="cpu")
    # The embedding model must see exactly the ids of tokens.jsonl.
    feats = model.tokenize([texts[n] for n in pick])
    for row, n in enumerate(pick):
        mask = feats["attention_mask"][row].tolist()
        st_ids = feats["input_ids"][row].tolist()[: sum(mask)]
        if st_ids != ids[n]:
            sys.exit("sentence-transformers tokenizes %r differently: %s vs %s" % (texts[n], st_ids, ids[n]))
    emb = model.encode([texts[n] for n in pick], batch_size=32, normalize_embeddings=False)
    with open(os.path.join(a.out, "embeddings.jsonl"), "w") as f:
        for n, e in zip(pick, emb):
            f.write('{"hex":"%s","embedding":[%s]}\n' % (corpus[n][1].hex(), ",".join(format(float(x), ".9g") for x in e)))
    print("embeddings.jsonl: %d strings (kinds: %s)" % (
        len(pick), ", ".join("%s %d" % (k, sum(corpus[n][0] == k for n in pick)) for k in kinds)))


if __name__ == "__main__":
    main()
