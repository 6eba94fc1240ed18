/* test_tokenizer - the tokenizer against the Python reference fixtures
 * (tests/fixtures/tokens.jsonl, from tests/gen_fixtures.py) plus unit checks.
 * Run from the repository root; JM_TEST_MODEL names the model directory. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tokenizer.h"

#define MAXLEN 256

static const char *model_dir(void)
{
    const char *m = getenv("JM_TEST_MODEL");
    return m && *m ? m : "models/all-MiniLM-L6-v2";
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes hex into a malloc'd buffer; returns its length or -1. */
static long unhex(const char *hex, char **out)
{
    size_t n = strlen(hex);
    *out = NULL;
    if (n % 2)
        return -1;
    char *b = malloc(n / 2 + 1);
    if (!b)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(b);
            return -1;
        }
        b[i] = (char)(hi * 16 + lo);
    }
    *out = b;
    return (long)(n / 2);
}

static void print_ids(const char *label, const int32_t *ids, int n)
{
    fprintf(stderr, "  %s:", label);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Every fixture line must give the reference ids exactly; tok_count must
 * agree with the untruncated length. */
static void check_fixtures(const tok_tokenizer *t)
{
    const char *path = "tests/fixtures/tokens.jsonl";
    char *text = NULL;
    size_t size = 0;
    jm_err err = {0};
    int rc = jm_read_file(path, &text, &size, &err);
    CHECK(rc == JM_OK, "cannot read fixtures: %s", err.msg);
    if (rc)
        return;
    int lines = 0, mismatch = 0, bad = 0, count_bad = 0;
    int32_t ids[MAXLEN];
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *hex = cJSON_GetObjectItemCaseSensitive(o, "hex");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(o, "ids");
        char *raw = NULL;
        long len = cJSON_IsString(hex) ? unhex(hex->valuestring, &raw) : -1;
        if (len < 0 || !cJSON_IsArray(want)) {
            bad++;
            cJSON_Delete(o);
            free(raw);
            continue;
        }
        lines++;
        int nw = cJSON_GetArraySize(want);
        int32_t want_ids[MAXLEN];
        int i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, want) {
            if (i < MAXLEN)
                want_ids[i] = (int32_t)v->valuedouble;
            i++;
        }
        int n = tok_encode(t, raw, (size_t)len, ids, MAXLEN);
        if (n != nw || nw > MAXLEN || memcmp(ids, want_ids, (size_t)nw * sizeof *ids) != 0) {
            if (++mismatch <= 5) {
                fprintf(stderr, "MISMATCH hex=%.400s\n", hex->valuestring);
                print_ids("want", want_ids, nw < MAXLEN ? nw : MAXLEN);
                print_ids("got ", ids, n > 0 ? n : 0);
            }
        }
        int c = tok_count(t, raw, (size_t)len);
        if ((nw < MAXLEN && c != nw) || (nw == MAXLEN && c < MAXLEN))
            count_bad++;
        free(raw);
        cJSON_Delete(o);
    }
    free(text);
    CHECK(bad == 0, "%d malformed fixture lines", bad);
    CHECK(lines >= 5000, "only %d fixture lines", lines);
    CHECK(mismatch == 0, "%d of %d fixture strings tokenize differently", mismatch, lines);
    CHECK(count_bad == 0, "tok_count disagrees with tok_encode on %d strings", count_bad);
    printf("fixtures: %d strings, %d mismatches\n", lines, mismatch);
}

static void check_vocab(const tok_tokenizer *t)
{
    CHECK(tok_vocab_size(t) == 30522, "vocab size %d", tok_vocab_size(t));
    CHECK(tok_cls_id(t) == 101, "cls %d", tok_cls_id(t));
    CHECK(tok_sep_id(t) == 102, "sep %d", tok_sep_id(t));
    CHECK(tok_unk_id(t) == 100, "unk %d", tok_unk_id(t));
    CHECK(tok_pad_id(t) == 0, "pad %d", tok_pad_id(t));
    static const struct {
        const char *s;
        int32_t id;
    } known[] = {{"[PAD]", 0},   {"[UNK]", 100}, {"[CLS]", 101},   {"[SEP]", 102}, {"[MASK]", 103},
                 {"the", 1996},  {"##ing", 2075}, {"hello", 7592}, {"##s", 2015},  {"#", 1001},
                 {"###", 29614}, {"engineer", 3992}, {"##", -1}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        int32_t id = tok_token_to_id(t, known[i].s);
        CHECK(id == known[i].id, "token_to_id(%s) = %d, want %d", known[i].s, id, known[i].id);
    }
    CHECK(tok_token_to_id(t, "nosuchtokenxyz") == -1, "unknown token found");
    CHECK(tok_token_to_id(t, "") == -1, "empty token found");
    CHECK(tok_token_to_id(t, "##nosuchtokenxyz") == -1, "unknown continuation found");
    CHECK(tok_id_to_token(t, -1) == NULL && tok_id_to_token(t, 30522) == NULL, "out of range id");
    const char *s = tok_id_to_token(t, 1996);
    CHECK(s && strcmp(s, "the") == 0, "id_to_token(1996) = %s", s ? s : "NULL");

    /* Every id round-trips through the hash tables. */
    int bad = 0;
    for (int32_t id = 0; id < tok_vocab_size(t); id++)
        bad += tok_token_to_id(t, tok_id_to_token(t, id)) != id;
    CHECK(bad == 0, "%d ids do not round-trip", bad);

    /* vocab.txt and tokenizer.json's vocabulary agree. */
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir());
    char *text = NULL;
    jm_err err = {0};
    if (jm_read_file(path, &text, NULL, &err) == JM_OK) {
        cJSON *tj = cJSON_Parse(text);
        const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "vocab");
        int n = 0, diff = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, vocab) {
            n++;
            diff += tok_token_to_id(t, v->string) != (int32_t)v->valuedouble;
        }
        CHECK(n == tok_vocab_size(t) && diff == 0, "tokenizer.json vocab: %d entries, %d differ", n, diff);
        cJSON_Delete(tj);
        free(text);
    }
}

static int encode_str(const tok_tokenizer *t, const char *s, int32_t *ids, int max_len)
{
    return tok_encode(t, s, strlen(s), ids, max_len);
}

static void check_encode(const tok_tokenizer *t)
{
    int32_t ids[1024];
    int n = encode_str(t, "", ids, MAXLEN);
    CHECK(n == 2 && ids[0] == 101 && ids[1] == 102, "empty text gives %d ids", n);
    n = tok_encode(t, NULL, 0, ids, MAXLEN);
    CHECK(n == 2, "NULL empty text gives %d", n);
    n = encode_str(t, " \t\n\r\x01 ", ids, MAXLEN);
    CHECK(n == 2, "whitespace-only text gives %d ids", n);

    n = encode_str(t, "Hello, World! [MASK] C++", ids, MAXLEN);
    const int32_t want[] = {101, 7592, 1010, 2088, 999, 103, 1039, 1009, 1009, 102};
    CHECK(n == 10 && memcmp(ids, want, sizeof want) == 0, "basic sentence: %d ids", n);

    /* Truncation: CLS + max_len-2 pieces + SEP. */
    char longtext[4000];
    for (int i = 0; i < 1000; i++)
        memcpy(longtext + 4 * i, "job ", 4);
    longtext[3999] = '\0';
    n = tok_encode(t, longtext, strlen(longtext), ids, MAXLEN);
    CHECK(n == MAXLEN && ids[0] == 101 && ids[MAXLEN - 1] == 102 && ids[MAXLEN - 2] == 3105,
          "truncated to %d, last %d %d", n, ids[MAXLEN - 2], ids[MAXLEN - 1]);
    CHECK(tok_count(t, longtext, strlen(longtext)) == 1002, "count %d", tok_count(t, longtext, strlen(longtext)));
    n = tok_encode(t, longtext, strlen(longtext), ids, 2);
    CHECK(n == 2 && ids[0] == 101 && ids[1] == 102, "max_len 2 gives %d", n);
    n = tok_encode(t, longtext, strlen(longtext), ids, 1024);
    CHECK(n == 1002 && ids[1001] == 102, "max_len 1024 gives %d", n);
    n = tok_encode(t, "a b c d e", 9, ids, 5);
    CHECK(n == 5 && ids[3] == 1039 && ids[4] == 102, "max_len 5 gives %d", n);

    /* A word of 100 chars is split; 101 chars is one [UNK]. */
    char w[202];
    memset(w, 'a', 101);
    n = tok_encode(t, w, 100, ids, MAXLEN);
    CHECK(n > 3 && ids[1] != 100, "100-char word: %d ids, first %d", n, ids[1]);
    n = tok_encode(t, w, 101, ids, MAXLEN);
    CHECK(n == 3 && ids[1] == 100, "101-char word: %d ids, first %d", n, ids[1]);

    /* Special tokens are matched in the raw text, even inside a word. */
    n = encode_str(t, "a[SEP]b", ids, MAXLEN);
    CHECK(n == 5 && ids[1] == 1037 && ids[2] == 102 && ids[3] == 1038, "a[SEP]b: %d", n);
    n = encode_str(t, "[sep]", ids, MAXLEN);
    CHECK(n == 5 && ids[2] == 19802, "[sep] is not special: %d %d", n, ids[2]);

    /* Bad arguments. */
    CHECK(tok_encode(t, "x", 1, ids, 1) == JM_EINVAL, "max_len 1 accepted");
    CHECK(tok_encode(t, "x", 1, NULL, 10) == JM_EINVAL, "NULL ids accepted");
    CHECK(tok_encode(NULL, "x", 1, ids, 10) == JM_EINVAL, "NULL tokenizer accepted");
    CHECK(tok_count(NULL, "x", 1) == JM_EINVAL, "NULL tokenizer counted");
}

/* Random bytes must never crash, and always give CLS ... SEP within range. */
static void check_garbage(const tok_tokenizer *t)
{
    uint64_t s = 0x9E3779B97F4A7C15ull;
    unsigned char buf[600];
    int32_t ids[64];
    int bad = 0;
    for (int iter = 0; iter < 20000; iter++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t len = (size_t)(s % sizeof buf);
        for (size_t i = 0; i < len; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            /* Mostly high bytes and brackets, to hit UTF-8 and token edges. */
            unsigned r = (unsigned)(s >> 24);
            static const char pick[] = "[CLS]MASK a\xe2\x82\xac";
            if (r % 3 == 0)
                buf[i] = (unsigned char)(0x80 + (r >> 8) % 0x80);
            else if (r % 3 == 1)
                buf[i] = (unsigned char)pick[(r >> 8) % (sizeof pick - 1)];
            else
                buf[i] = (unsigned char)(r >> 8);
        }
        int max = 2 + (int)(s % 62);
        int n = tok_encode(t, (const char *)buf, len, ids, max);
        int c = tok_count(t, (const char *)buf, len);
        if (n < 2 || n > max || ids[0] != 101 || ids[n - 1] != 102 || c < n || (c <= max && c != n)) {
            bad++;
            continue;
        }
        for (int i = 0; i < n; i++)
            bad += ids[i] < 0 || ids[i] >= tok_vocab_size(t);
    }
    CHECK(bad == 0, "%d bad results on random bytes", bad);
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void check_load_errors(const tok_tokenizer *full)
{
    jm_err err = {0};
    tok_tokenizer *t = (tok_tokenizer *)1;
    char dir[] = "/tmp/jm_tok_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));

    /* No vocab.txt: the error names the file. */
    int rc = tok_load(dir, &t, &err);
    CHECK(rc == JM_ENOTFOUND && t == NULL, "missing vocab.txt: rc %d", rc);
    CHECK(strstr(err.msg, "vocab.txt") != NULL, "message does not name vocab.txt: %s", err.msg);
    rc = tok_load("/nonexistent/model", &t, &err);
    CHECK(rc != JM_OK && strstr(err.msg, "vocab.txt"), "nonexistent dir: %d %s", rc, err.msg);
    CHECK(tok_load(dir, NULL, NULL) == JM_EINVAL, "NULL out accepted");

    /* vocab.txt alone: BERT defaults, special tokens from the vocabulary. */
    char path[512], cmd[1024];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    snprintf(cmd, sizeof cmd, "%s/vocab.txt", model_dir());
    char *vocab = NULL;
    size_t vlen = 0;
    if (jm_read_file(cmd, &vocab, &vlen, &err) == JM_OK) {
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(vocab, 1, vlen, f);
            fclose(f);
        }
        free(vocab);
    }
    rc = tok_load(dir, &t, &err);
    CHECK(rc == JM_OK, "vocab.txt only: %s", err.msg);
    if (rc == JM_OK) {
        const char *s = "Senior C++ Engineer [MASK] Zürich 软件 \xff [CLS]x";
        int32_t a[64], b[64];
        int na = tok_encode(t, s, strlen(s), a, 64), nb = tok_encode(full, s, strlen(s), b, 64);
        CHECK(na == nb && na > 0 && memcmp(a, b, (size_t)na * sizeof *a) == 0, "defaults differ: %d vs %d", na, nb);
        tok_free(t);
    }

    /* A broken tokenizer.json is an error, not a silent fallback. */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_file(path, "{\"added_tokens\": [");
    rc = tok_load(dir, &t, &err);
    CHECK(rc == JM_EFORMAT && strstr(err.msg, "tokenizer.json"), "bad JSON: %d %s", rc, err.msg);
    write_file(path, "{\"normalizer\": {\"type\": \"NFKC\"}}");
    rc = tok_load(dir, &t, &err);
    CHECK(rc == JM_EFORMAT, "unsupported normalizer accepted: %d", rc);
    unlink(path);

    /* Without the special tokens the vocabulary is unusable. */
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    write_file(path, "a\nb\n");
    rc = tok_load(dir, &t, &err);
    CHECK(rc == JM_EFORMAT && t == NULL, "vocab without [UNK]: %d", rc);
    unlink(path);
    rmdir(dir);
    tok_free(NULL);
}

/* Speed on a ~1,000-char job description; printed, not asserted (sanitizer
 * builds are much slower). */
static void report_speed(const tok_tokenizer *t)
{
    const char *para =
        "We are looking for a Senior Software Engineer (C++/Python) to join our R&D team in Zürich. "
        "You will design, build and maintain high-performance back-end services, CI/CD pipelines and "
        "data tooling on AWS and Kubernetes. Requirements: 5+ years' experience with modern C++17, "
        "Node.js or .NET; strong knowledge of PostgreSQL, Redis and message queues; familiarity with "
        "machine-learning workflows (PyTorch, TensorFlow) is a plus. ";
    char text[1100];
    size_t n = 0, pl = strlen(para);
    while (n + pl < 1000) {
        memcpy(text + n, para, pl);
        n += pl;
    }
    memcpy(text + n, para, 1000 - n);
    n = 1000;
    int32_t ids[1024]; /* no truncation: the whole text is tokenized */
    int reps = 20000, k = 0;
    double t0 = jm_now();
    for (int i = 0; i < reps; i++)
        k += tok_encode(t, text, n, ids, 1024);
    double dt = jm_now() - t0;
    printf("speed: %.2f us per 1,000-char text (%d ids)\n", dt / reps * 1e6, k / reps);
    CHECK(k / reps > 100, "suspiciously few ids: %d", k / reps);
}

int main(void)
{
    jm_err err = {0};
    tok_tokenizer *t = NULL;
    int rc = tok_load(model_dir(), &t, &err);
    CHECK(rc == JM_OK, "tok_load(%s): %s", model_dir(), err.msg);
    if (rc == JM_OK) {
        check_vocab(t);
        check_encode(t);
        check_fixtures(t);
        check_garbage(t);
        check_load_errors(t);
        report_speed(t);
    }
    tok_free(t);
    return CHECK_DONE("test_tokenizer");
}
