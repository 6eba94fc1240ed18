/* test_safetensors.c - st_ on small files written here, valid and damaged, plus
 * the real model file when it is present ($JM_TEST_MODEL).
 *
 * Every damaged file must be refused with JM_EFORMAT-style status and a one-line
 * message that names the file and says what is wrong. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "safetensors.h"

static char tmpdir[] = "/tmp/jm-st-XXXXXX";

/* Path of a file in the temp dir; the returned buffer is static per slot so a
 * couple of paths can be live at once. */
static const char *tpath(const char *name)
{
    static char buf[4][512];
    static int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

static void write_raw(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    if (n)
        fwrite(p, 1, n, f);
    fclose(f);
}

/* A .safetensors file: u64 LE header length, header padded with spaces to a
 * multiple of 8 (as the reference writer does), then `dlen` data bytes.
 * `hlen_override` (if not 0) replaces the length field to fake damage. */
static const char *write_st(const char *name, const char *header, const void *data, size_t dlen,
                            uint64_t hlen_override)
{
    const char *path = tpath(name);
    size_t h = strlen(header), hp = (h + 7) & ~(size_t)7;
    size_t total = 8 + hp + dlen;
    unsigned char *buf = malloc(total);
    uint64_t hl = hlen_override ? hlen_override : hp;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, ' ', hp - h);
    if (dlen)
        memcpy(buf + 8 + hp, data, dlen);
    write_raw(path, buf, total);
    free(buf);
    return path;
}

/* Open must fail; the message must name the file, contain `word`, and be one line. */
static void expect_refused(const char *path, const char *word, const char *what)
{
    st_file *f = NULL;
    jm_err err = {0};
    int rc = st_open(path, &f, &err);
    CHECK(rc != JM_OK, "%s: opened a damaged file", what);
    CHECK(f == NULL, "%s: handle set on failure", what);
    CHECK(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", what, err.msg);
    CHECK(strstr(err.msg, word) != NULL, "%s: message lacks '%s': %s", what, word, err.msg);
    CHECK(strchr(err.msg, '\n') == NULL, "%s: message is not one line: %s", what, err.msg);
    if (getenv("JM_TEST_VERBOSE"))
        printf("  %-32s -> %s\n", what, err.msg);
    st_close(f);
}

/* One-tensor header around `entry` (the text after "name":). */
static const char *one(const char *file, const char *entry, size_t dlen)
{
    static char hdr[1024];
    static unsigned char zeros[256];
    snprintf(hdr, sizeof hdr, "{\"t\":%s}", entry);
    return write_st(file, hdr, zeros, dlen, 0);
}

static void test_valid(void)
{
    /* a: F32 [2,3] at 0..24; b: F16 [5] at 24..34; c: BF16 [3] at 34..40;
     * d: I32 [2] at 40..48; e: U8 [0] empty; s: F64 [] (scalar) at 48..56. */
    unsigned char data[56];
    float a[6] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-3f, -7.0f};
    memcpy(data, a, sizeof a);
    /* 1.0, -2.0, 0.5, smallest subnormal 2^-24, +inf */
    uint16_t b[5] = {0x3c00, 0xc000, 0x3800, 0x0001, 0x7c00};
    memcpy(data + 24, b, sizeof b);
    /* 1.0, -3.5, 3.140625 */
    uint16_t c[3] = {0x3f80, 0xc060, 0x4049};
    memcpy(data + 34, c, sizeof c);
    int32_t d[2] = {7, -9};
    memcpy(data + 40, d, sizeof d);
    double s = 2.5;
    memcpy(data + 48, &s, sizeof s);
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[24,34]},"
        "\"c\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[34,40]},"
        "\"d\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[40,48]},"
        "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[40,40]},"
        "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[48,56]}}";
    const char *path = write_st("valid.safetensors", hdr, data, sizeof data, 0);

    st_file *f = NULL;
    jm_err err = {0};
    int rc = st_open(path, &f, &err);
    CHECK(rc == JM_OK, "open valid: %s", err.msg);
    if (rc)
        return;
    CHECK(strcmp(st_path(f), path) == 0, "st_path %s", st_path(f));
    CHECK(st_count(f) == 6, "count %d", st_count(f));
    CHECK(st_at(f, 0) && strcmp(st_at(f, 0)->name, "a") == 0, "st_at(0) is a (header order)");
    CHECK(st_at(f, 6) == NULL && st_at(f, -1) == NULL, "st_at out of range");
    CHECK(st_find(f, "nope") == NULL, "st_find missing");
    CHECK(st_find(f, "__metadata__") == NULL, "metadata is not a tensor");

    const st_tensor *t = st_find(f, "a");
    CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
              t->nbytes == 24,
          "a shape");
    if (t) {
        CHECK(memcmp(t->data, a, sizeof a) == 0, "a data");
        float out[6];
        CHECK(st_to_f32(t, out, &err) == JM_OK, "a to_f32: %s", err.msg);
        CHECK(memcmp(out, a, sizeof a) == 0, "a to_f32 values");
    }

    t = st_find(f, "b");
    CHECK(t && t->dtype == ST_F16 && t->ndim == 1 && t->shape[0] == 5 && t->nbytes == 10, "b shape");
    if (t) {
        float out[5];
        CHECK(st_to_f32(t, out, &err) == JM_OK, "b to_f32: %s", err.msg);
        CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.5f, "f16 normals %g %g %g", out[0],
              out[1], out[2]);
        CHECK(out[3] == 0x1p-24f, "f16 subnormal %g", out[3]);
        CHECK(isinf(out[4]) && out[4] > 0, "f16 inf %g", out[4]);
    }

    t = st_find(f, "c");
    CHECK(t && t->dtype == ST_BF16 && t->shape[0] == 3 && t->nbytes == 6, "c shape");
    if (t) {
        float out[3];
        CHECK(st_to_f32(t, out, &err) == JM_OK, "c to_f32: %s", err.msg);
        CHECK(out[0] == 1.0f && out[1] == -3.5f && out[2] == 3.140625f, "bf16 %g %g %g", out[0],
              out[1], out[2]);
    }

    t = st_find(f, "d");
    CHECK(t && t->dtype == ST_I32 && t->nbytes == 8, "d shape");
    if (t) {
        int32_t got[2];
        memcpy(got, t->data, sizeof got);
        CHECK(got[0] == 7 && got[1] == -9, "d data");
        float out[2];
        memset(&err, 0, sizeof err);
        CHECK(st_to_f32(t, out, &err) != JM_OK, "I32 to_f32 refused");
        CHECK(strstr(err.msg, "'d'") && strstr(err.msg, "I32"), "I32 refusal message: %s", err.msg);
    }

    t = st_find(f, "e");
    CHECK(t && t->dtype == ST_U8 && t->ndim == 1 && t->shape[0] == 0 && t->nbytes == 0, "e empty");
    t = st_find(f, "s");
    CHECK(t && t->dtype == ST_F64 && t->ndim == 0 && t->nbytes == 8, "s scalar");
    if (t) {
        double got;
        memcpy(&got, t->data, sizeof got);
        CHECK(got == 2.5, "s data %g", got);
    }

    /* st_expect: match, shape mismatch, dtype mismatch, missing. */
    const st_tensor *o = NULL;
    int64_t sh23[2] = {2, 3}, sh24[2] = {2, 4};
    CHECK(st_expect(f, "a", ST_F32, 2, sh23, &o, &err) == JM_OK && o == st_find(f, "a"),
          "expect a: %s", err.msg);
    rc = st_expect(f, "a", ST_F32, 2, sh24, &o, &err);
    CHECK(rc != JM_OK && o == NULL, "expect wrong shape refused");
    CHECK(strstr(err.msg, path) && strstr(err.msg, "tensor 'a': expected F32 [2, 4], found F32 [2, 3]"),
          "expect shape message: %s", err.msg);
    rc = st_expect(f, "a", ST_F16, 2, sh23, NULL, &err);
    CHECK(rc != JM_OK && strstr(err.msg, "expected F16 [2, 3], found F32 [2, 3]"),
          "expect dtype message: %s", err.msg);
    rc = st_expect(f, "b", ST_F16, 2, sh23, NULL, &err);
    CHECK(rc != JM_OK && strstr(err.msg, "found F16 [5]"), "expect ndim message: %s", err.msg);
    rc = st_expect(f, "zz", ST_F32, 2, sh23, NULL, &err);
    CHECK(rc == JM_ENOTFOUND && strstr(err.msg, path) && strstr(err.msg, "missing tensor 'zz'"),
          "expect missing message: %s", err.msg);
    CHECK(st_expect(f, "s", ST_F64, 0, NULL, NULL, &err) == JM_OK, "expect scalar: %s", err.msg);

    st_close(f);
    st_close(NULL);

    /* The same file cut in the middle of the data area. */
    FILE *in = fopen(path, "rb");
    unsigned char whole[2048];
    size_t n = in ? fread(whole, 1, sizeof whole, in) : 0;
    if (in)
        fclose(in);
    const char *cut = tpath("cut.safetensors");
    write_raw(cut, whole, n - 20);
    expect_refused(cut, "outside the data area", "data area cut short");

    /* A file with only metadata and no tensors is valid and empty. */
    path = write_st("meta-only.safetensors", "{\"__metadata__\":{}}", NULL, 0, 0);
    rc = st_open(path, &f, &err);
    CHECK(rc == JM_OK && st_count(f) == 0, "metadata-only file: %s", err.msg);
    st_close(f);
}

static void test_damaged(void)
{
    char buf[64];
    jm_err err = {0};
    st_file *f = NULL;

    const char *p = tpath("missing.safetensors");
    CHECK(st_open(p, &f, &err) == JM_ENOTFOUND && strstr(err.msg, p), "missing file: %s", err.msg);

    p = tpath("empty.safetensors");
    write_raw(p, "", 0);
    expect_refused(p, "too short", "empty file");

    p = tpath("seven.safetensors");
    write_raw(p, "\x10\0\0\0\0\0\0", 7);
    expect_refused(p, "too short", "7-byte file");

    expect_refused(write_st("past-end.safetensors", "{}", NULL, 0, 11408), "truncated",
                   "header length past end");
    expect_refused(write_st("huge.safetensors", "{}", NULL, 0, (uint64_t)1 << 62), "too large",
                   "huge header length");
    expect_refused(write_st("huge2.safetensors", "{}", NULL, 0, ((uint64_t)100 << 20) + 1),
                   "too large", "header length just over the cap");
    expect_refused(write_st("notjson.safetensors", "{\"a\": {dtype", NULL, 0, 0), "not valid JSON",
                   "header not JSON");
    expect_refused(write_st("garbage.safetensors", "{}x", NULL, 0, 0), "not valid JSON",
                   "trailing bytes after the JSON");
    expect_refused(write_st("array.safetensors", "[1,2,3]", NULL, 0, 0), "not an object",
                   "header JSON array");
    expect_refused(write_st("string.safetensors", "\"hello\"", NULL, 0, 0), "not an object",
                   "header JSON string");
    expect_refused(write_st("meta.safetensors", "{\"__metadata__\":{\"k\":1}}", NULL, 0, 0),
                   "__metadata__", "metadata value not a string");

    expect_refused(one("entry-num.safetensors", "5", 0), "not a JSON object", "entry not an object");
    expect_refused(one("nodtype.safetensors", "{\"shape\":[1],\"data_offsets\":[0,4]}", 4),
                   "missing dtype", "entry missing dtype");
    expect_refused(one("baddtype.safetensors", "{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}", 1),
                   "unknown dtype", "unknown dtype");
    expect_refused(one("numdtype.safetensors", "{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}", 4),
                   "dtype", "dtype not a string");
    expect_refused(one("noshape.safetensors", "{\"dtype\":\"F32\",\"data_offsets\":[0,4]}", 4),
                   "missing shape", "entry missing shape");
    expect_refused(one("neg.safetensors", "{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}", 4),
                   "non-negative integer", "negative dim");
    expect_refused(one("frac.safetensors", "{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}", 10),
                   "non-negative integer", "fractional dim");
    expect_refused(one("strdim.safetensors", "{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}", 4),
                   "non-negative integer", "string dim");
    expect_refused(one("bigdim.safetensors", "{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,4]}", 4),
                   "non-negative integer", "dim beyond exact integers");
    expect_refused(one("dims9.safetensors",
                       "{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}", 1),
                   "too many", "nine dims");
    expect_refused(one("overflow.safetensors",
                       "{\"dtype\":\"F32\",\"shape\":[4503599627370496,4503599627370496],\"data_offsets\":[0,0]}", 0),
                   "overflow", "shape product overflows");
    expect_refused(one("rev.safetensors", "{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,4]}", 8),
                   "reversed", "data_offsets reversed");
    expect_refused(one("past.safetensors", "{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}", 4),
                   "outside the data area", "data_offsets past the end");
    expect_refused(one("offs3.safetensors", "{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}", 8),
                   "data_offsets", "data_offsets with three numbers");
    expect_refused(one("offsneg.safetensors", "{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}", 8),
                   "data_offsets", "negative data_offsets");
    expect_refused(one("size.safetensors", "{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}", 16),
                   "needs", "size not matching shape");

    static unsigned char zeros[64];
    expect_refused(write_st("overlap.safetensors",
                            "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                            "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                            zeros, 20, 0),
                   "overlap", "overlapping tensors");
    /* y lies wholly inside x; z before both is fine. */
    expect_refused(write_st("overlap2.safetensors",
                            "{\"z\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                            "\"x\":{\"dtype\":\"U8\",\"shape\":[30],\"data_offsets\":[1,31]},"
                            "\"y\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}",
                            zeros, 40, 0),
                   "overlap", "nested tensors");
    expect_refused(write_st("dup.safetensors",
                            "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                            zeros, 8, 0),
                   "duplicate", "duplicate name");
    /* A hostile name with a newline must not break the one-line message. */
    snprintf(buf, sizeof buf, "{\"a\\nb\":5}");
    expect_refused(write_st("nlname.safetensors", buf, NULL, 0, 0), "not a JSON object",
                   "name with a newline");
}

/* The real model file: tensor count, the embedding table, and a truncated copy. */
static void test_model(void)
{
    const char *dir = getenv("JM_TEST_MODEL");
    if (!dir || !*dir)
        dir = "models/all-MiniLM-L6-v2";
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, R_OK) != 0) {
        printf("test_safetensors: %s not present, skipping the real-model checks\n", path);
        return;
    }
    st_file *f = NULL;
    jm_err err = {0};
    int rc = st_open(path, &f, &err);
    CHECK(rc == JM_OK, "open model: %s", err.msg);
    if (rc)
        return;
    /* 105 header entries: 104 tensors plus __metadata__. */
    CHECK(st_count(f) == 104, "model tensor count %d", st_count(f));
    const st_tensor *t = NULL;
    int64_t emb[2] = {30522, 384};
    CHECK(st_expect(f, "embeddings.word_embeddings.weight", ST_F32, 2, emb, &t, &err) == JM_OK,
          "word embeddings: %s", err.msg);
    int64_t pos[2] = {1, 512};
    CHECK(st_expect(f, "embeddings.position_ids", ST_I64, 2, pos, NULL, &err) == JM_OK,
          "position_ids: %s", err.msg);
    int64_t q[2] = {384, 384};
    CHECK(st_expect(f, "encoder.layer.5.attention.self.query.weight", ST_F32, 2, q, NULL, &err) == JM_OK,
          "layer 5 query: %s", err.msg);
    if (t) {
        /* The embedding rows must be finite, trained values, not zeros. */
        float row[384];
        st_tensor r = *t;
        r.data = (const char *)t->data + (size_t)2023 * 384 * 4;
        r.nbytes = sizeof row;
        CHECK(st_to_f32(&r, row, &err) == JM_OK, "row to_f32");
        double ss = 0;
        for (int i = 0; i < 384; i++)
            ss += (double)row[i] * row[i];
        CHECK(ss > 0.01 && ss < 1e4, "embedding row norm^2 %g", ss);
    }
    st_close(f);

    /* First 1,000,000 bytes of the real file: the header is intact but the
     * data area ends early, so a tensor runs past it. */
    FILE *in = fopen(path, "rb");
    const char *cut = tpath("model-cut.safetensors");
    FILE *out = fopen(cut, "wb");
    CHECK(in && out, "copy model prefix");
    if (in && out) {
        static char chunk[1000000];
        size_t n = fread(chunk, 1, sizeof chunk, in);
        CHECK(n == sizeof chunk, "read model prefix");
        fwrite(chunk, 1, n, out);
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    expect_refused(cut, "outside the data area", "truncated real model");
}

/* Remove the temp dir; the test writes only plain files directly in it. */
static void cleanup(void)
{
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlink(tpath(e->d_name));
        closedir(d);
    }
    rmdir(tmpdir);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_valid();
    test_damaged();
    test_model();
    cleanup();
    return CHECK_DONE("test_safetensors");
}
