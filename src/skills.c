/* skills.c - skill vocabulary, alias keys, IDF and per-query matching. */
#include "skills.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *norm, *display;
    int df;
    float idf;
    int has_emb;
} entry;

/* open addressing: key string -> list of skill indices (for aliases), or -> index (names) */
typedef struct kv {
    char *key;
    int *ids;
    int n, cap;
} kv;

struct sk_vocab {
    int dim;
    entry *e;
    int n, cap;
    float *emb; /* n x dim, zero rows for skills without an embedding */
    int8_t *codes; /* n x dim: emb quantised (the prefilter of sk_match_floor) */
    float *qscale; /* per skill: emb ~ qscale * codes */
    float *qerr;   /* per skill: an upper bound of |emb - qscale * codes|, and of */
    float *qnorm;  /* |emb| */
    int *name_slots;
    int name_nslots;
    kv *alias;
    int alias_nslots, alias_n;
};

const char *sk_kind_name(sk_kind k)
{
    switch (k) {
    case SK_EXACT: return "exact";
    case SK_ALIAS: return "alias";
    case SK_SEMANTIC: return "semantic";
    default: return "none";
    }
}

static uint64_t hash_s(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int sk_vocab_new(int dim, sk_vocab **out, jm_err *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    (*out)->dim = dim;
    return JM_OK;
}

static void alias_clear(sk_vocab *v)
{
    for (int i = 0; i < v->alias_nslots; i++) {
        free(v->alias[i].key);
        free(v->alias[i].ids);
    }
    free(v->alias);
    v->alias = NULL;
    v->alias_nslots = v->alias_n = 0;
}

void sk_vocab_free(sk_vocab *v)
{
    if (!v)
        return;
    for (int i = 0; i < v->n; i++) {
        free(v->e[i].norm);
        free(v->e[i].display);
    }
    free(v->e);
    free(v->emb);
    free(v->codes);
    free(v->qscale);
    free(v->qerr);
    free(v->qnorm);
    free(v->name_slots);
    alias_clear(v);
    free(v);
}

int sk_count(const sk_vocab *v) { return v->n; }
int sk_dim(const sk_vocab *v) { return v->dim; }
const char *sk_display(const sk_vocab *v, int i) { return v->e[i].display; }
const char *sk_norm(const sk_vocab *v, int i) { return v->e[i].norm; }
const float *sk_embedding(const sk_vocab *v, int i)
{
    return v->e[i].has_emb ? v->emb + (size_t)i * v->dim : NULL;
}
float sk_idf(const sk_vocab *v, int i) { return v->e[i].idf; }
int sk_df(const sk_vocab *v, int i) { return v->e[i].df; }
void sk_df_add(sk_vocab *v, int i, int delta) { v->e[i].df += delta; }

int sk_find(const sk_vocab *v, const char *norm)
{
    if (!v->name_nslots || !norm)
        return -1;
    uint64_t m = (uint64_t)v->name_nslots - 1, h = hash_s(norm) & m;
    while (v->name_slots[h] >= 0) {
        if (!strcmp(v->e[v->name_slots[h]].norm, norm))
            return v->name_slots[h];
        h = (h + 1) & m;
    }
    return -1;
}

static int name_rehash(sk_vocab *v, int nslots)
{
    int *s = malloc(sizeof(int) * (size_t)nslots);
    if (!s)
        return -1;
    for (int i = 0; i < nslots; i++)
        s[i] = -1;
    uint64_t m = (uint64_t)nslots - 1;
    for (int i = 0; i < v->n; i++) {
        uint64_t h = hash_s(v->e[i].norm) & m;
        while (s[h] >= 0)
            h = (h + 1) & m;
        s[h] = i;
    }
    free(v->name_slots);
    v->name_slots = s;
    v->name_nslots = nslots;
    return 0;
}

int sk_add(sk_vocab *v, const char *norm, const char *display)
{
    int i = sk_find(v, norm);
    if (i >= 0)
        return i;
    if (v->n == v->cap) {
        int nc = v->cap ? v->cap * 2 : 1024;
        entry *ne = realloc(v->e, sizeof(entry) * (size_t)nc);
        if (!ne)
            return -1;
        v->e = ne;
        float *nemb = realloc(v->emb, sizeof(float) * (size_t)nc * v->dim);
        if (!nemb)
            return -1;
        v->emb = nemb;
        int8_t *nc8 = realloc(v->codes, (size_t)nc * v->dim);
        if (!nc8)
            return -1;
        v->codes = nc8;
        float *f[3] = {v->qscale, v->qerr, v->qnorm};
        for (int k = 0; k < 3; k++) {
            float *nf = realloc(f[k], sizeof(float) * (size_t)nc);
            if (!nf)
                return -1;
            f[k] = nf;
            if (k == 0)
                v->qscale = nf;
            else if (k == 1)
                v->qerr = nf;
            else
                v->qnorm = nf;
        }
        v->cap = nc;
    }
    entry *e = &v->e[v->n];
    memset(e, 0, sizeof *e);
    e->norm = strdup(norm);
    e->display = strdup(display ? display : norm);
    if (!e->norm || !e->display) {
        free(e->norm);
        free(e->display);
        return -1;
    }
    memset(v->emb + (size_t)v->n * v->dim, 0, sizeof(float) * v->dim);
    memset(v->codes + (size_t)v->n * v->dim, 0, (size_t)v->dim);
    v->qscale[v->n] = v->qerr[v->n] = v->qnorm[v->n] = 0;
    v->n++;
    if (v->n * 2 > v->name_nslots) {
        if (name_rehash(v, v->name_nslots ? v->name_nslots * 2 : 2048)) {
            v->n--;
            free(e->norm);
            free(e->display);
            return -1;
        }
    } else {
        uint64_t m = (uint64_t)v->name_nslots - 1, h = hash_s(norm) & m;
        while (v->name_slots[h] >= 0)
            h = (h + 1) & m;
        v->name_slots[h] = v->n - 1;
    }
    return v->n - 1;
}

/* Symmetric int8: code = round(x / scale) (half away from zero), scale =
 * max|x| / 127. *err gets |x - scale * code| and *norm |x|, both in double
 * and rounded up to float, so they bound the float-exact values. */
static void quantise8(const float *x, int D, int8_t *code, float *scale, float *err, float *norm)
{
    float m = 0;
    for (int d = 0; d < D; d++)
        m = fabsf(x[d]) > m ? fabsf(x[d]) : m;
    float sc = m / 127.0f;
    double e2 = 0, n2 = 0;
    for (int d = 0; d < D; d++) {
        int c = 0;
        if (sc > 0) {
            float t = x[d] / sc;
            c = (int)(t < 0 ? t - 0.5f : t + 0.5f);
            c = c > 127 ? 127 : c < -127 ? -127 : c;
        }
        code[d] = (int8_t)c;
        double r = (double)x[d] - (double)sc * c;
        e2 += r * r;
        n2 += (double)x[d] * x[d];
    }
    double e = sqrt(e2), n = sqrt(n2);
    *scale = sc;
    *err = (float)e < e ? nextafterf((float)e, INFINITY) : (float)e;
    *norm = (float)n < n ? nextafterf((float)n, INFINITY) : (float)n;
}

int sk_set_embedding(sk_vocab *v, int i, const float *emb)
{
    if (i < 0 || i >= v->n)
        return JM_EINVAL;
    memcpy(v->emb + (size_t)i * v->dim, emb, sizeof(float) * v->dim);
    quantise8(emb, v->dim, v->codes + (size_t)i * v->dim, &v->qscale[i], &v->qerr[i], &v->qnorm[i]);
    v->e[i].has_emb = 1;
    return JM_OK;
}

/* ---------- alias keys ---------- */

size_t sk_loose_key(const char *name, char *buf, size_t cap)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p && n + 1 < cap; p++) {
        if (isalnum(*p))
            buf[n++] = (char)tolower(*p);
        else if (*p == '+' || *p == '#')
            buf[n++] = (char)*p;
        else if (*p >= 0x80)
            buf[n++] = (char)*p; /* keep non-ASCII letters as they are (already case-folded) */
    }
    buf[n] = 0;
    return n;
}

/* Vendor words that O*NET and job boards put before a product's name. */
static const char *const vendors[] = {
    "microsoft", "oracle", "adobe", "autodesk", "ibm", "sap", "google", "apple", "amazon", "esri",
    "intuit", "the mathworks", "mathworks", "apache", "atlassian", "salesforce", "cisco", "red hat",
    "hewlett-packard", "hp", "corel", "bentley", "dassault systemes", "siemens", "vmware", "sas institute",
    "the apache software foundation", "facebook", "meta", "github", "jetbrains", "unity technologies",
};

/* Common abbreviations: what people type -> the loose key of the usual name. */
static const char *const abbrev[][2] = {
    {"js", "javascript"},       {"ts", "typescript"},    {"k8s", "kubernetes"},
    {"postgres", "postgresql"}, {"psql", "postgresql"},  {"golang", "go"},
    {"py", "python"},           {"reactjs", "react"},    {"vuejs", "vue"},
    {"node", "nodejs"},         {"ml", "machinelearning"}, {"ai", "artificialintelligence"},
    {"mssql", "microsoftsqlserver"}, {"sqlserver", "microsoftsqlserver"}, {"gcp", "googlecloudplatform"},
    {"tf", "tensorflow"},       {"excel", "microsoftexcel"}, {"word", "microsoftword"},
    {"ppt", "microsoftpowerpoint"}, {"powerpoint", "microsoftpowerpoint"}, {"csharp", "c#"},
    {"cpp", "c++"},             {"objc", "objectivec"},  {"ror", "rubyonrails"},
    {"rails", "rubyonrails"},   {"mongo", "mongodb"},    {"es", "elasticsearch"},
    {"vb", "visualbasic"},      {"html5", "html"},       {"css3", "css"},
};

static kv *alias_slot(sk_vocab *v, const char *key, int create)
{
    if (create && (v->alias_n + 1) * 2 > v->alias_nslots) {
        int ns = v->alias_nslots ? v->alias_nslots * 2 : 4096;
        kv *na = calloc((size_t)ns, sizeof(kv));
        if (!na)
            return NULL;
        for (int i = 0; i < v->alias_nslots; i++)
            if (v->alias[i].key) {
                uint64_t h = hash_s(v->alias[i].key) & (uint64_t)(ns - 1);
                while (na[h].key)
                    h = (h + 1) & (uint64_t)(ns - 1);
                na[h] = v->alias[i];
            }
        free(v->alias);
        v->alias = na;
        v->alias_nslots = ns;
    }
    if (!v->alias_nslots)
        return NULL;
    uint64_t m = (uint64_t)v->alias_nslots - 1, h = hash_s(key) & m;
    while (v->alias[h].key) {
        if (!strcmp(v->alias[h].key, key))
            return &v->alias[h];
        h = (h + 1) & m;
    }
    if (!create)
        return NULL;
    v->alias[h].key = strdup(key);
    if (!v->alias[h].key)
        return NULL;
    v->alias_n++;
    return &v->alias[h];
}

static int alias_add(sk_vocab *v, const char *key, int id)
{
    if (!*key)
        return 0;
    kv *s = alias_slot(v, key, 1);
    if (!s)
        return -1;
    for (int i = 0; i < s->n; i++)
        if (s->ids[i] == id)
            return 0;
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 2;
        int *ni = realloc(s->ids, sizeof(int) * (size_t)nc);
        if (!ni)
            return -1;
        s->ids = ni;
        s->cap = nc;
    }
    s->ids[s->n++] = id;
    return 0;
}

/* The acronym a display name spells out at its end: "Structured query language
 * SQL" -> "sql", "Amazon Web Services AWS software" -> "aws". The candidate is
 * the last all-capitals word (before a trailing "software"); it counts when it
 * equals the initials (and inner capitals) of the words before it. */
static void acronym_of(const char *display, char *out, size_t cap)
{
    out[0] = 0;
    char words[32][64];
    int nw = 0;
    const char *p = display;
    while (*p && nw < 32) {
        while (*p == ' ' || *p == '-' || *p == '/')
            p++;
        size_t l = 0;
        while (p[l] && p[l] != ' ' && p[l] != '-' && p[l] != '/')
            l++;
        if (!l)
            break;
        snprintf(words[nw++], 64, "%.*s", (int)(l < 63 ? l : 63), p);
        p += l;
    }
    if (nw >= 2 && !strcmp(words[nw - 1], "software"))
        nw--;
    if (nw < 2)
        return;
    const char *a = words[nw - 1];
    size_t al = strlen(a);
    if (al < 2 || al > 8)
        return;
    for (size_t i = 0; i < al; i++)
        if (!isupper((unsigned char)a[i]) && !isdigit((unsigned char)a[i]))
            return;
    char initials[64];
    size_t k = 0;
    for (int w = 0; w < nw - 1 && k + 1 < sizeof initials; w++)
        for (size_t i = 0; words[w][i] && k + 1 < sizeof initials; i++)
            if (i == 0 ? isalpha((unsigned char)words[w][i]) : isupper((unsigned char)words[w][i]))
                initials[k++] = (char)toupper((unsigned char)words[w][i]);
    initials[k] = 0;
    /* the acronym must be the initials of the words just before it */
    if (k >= al && !strcmp(initials + (k - al), a))
        for (size_t i = 0; i <= al && i < cap; i++)
            out[i] = (char)tolower((unsigned char)a[i]);
}

static void strip_vendor_software(const char *norm, char *out, size_t cap)
{
    snprintf(out, cap, "%s", norm);
    for (size_t i = 0; i < sizeof vendors / sizeof vendors[0]; i++) {
        size_t l = strlen(vendors[i]);
        if (!strncmp(out, vendors[i], l) && out[l] == ' ' && out[l + 1]) {
            memmove(out, out + l + 1, strlen(out + l + 1) + 1);
            break;
        }
    }
    size_t n = strlen(out);
    if (n > 9 && !strcmp(out + n - 9, " software"))
        out[n - 9] = 0;
}

int sk_finish(sk_vocab *v, int64_t njobs, jm_err *err)
{
    alias_clear(v);
    char key[512], tmp[512];
    for (int i = 0; i < v->n; i++) {
        entry *e = &v->e[i];
        double N = (double)njobs, df = e->df;
        e->idf = (float)log(1.0 + (N - df + 0.5) / (df + 0.5));
        if (e->idf < 0)
            e->idf = 0;
        int rc = 0;
        sk_loose_key(e->norm, key, sizeof key);
        rc |= alias_add(v, key, i);
        strip_vendor_software(e->norm, tmp, sizeof tmp);
        sk_loose_key(tmp, key, sizeof key);
        rc |= alias_add(v, key, i);
        acronym_of(e->display, tmp, sizeof tmp);
        if (tmp[0]) {
            sk_loose_key(tmp, key, sizeof key);
            rc |= alias_add(v, key, i);
        }
        if (rc)
            return jm_fail(err, JM_ENOMEM, "out of memory building skill aliases");
    }
    return JM_OK;
}

int sk_alias_matches(const sk_vocab *v, const char *text, int *out, int cap)
{
    char key[512], tmp[512];
    int n = 0;
    const char *keys[3];
    char k2[512], k3[512];
    sk_loose_key(text, key, sizeof key);
    keys[0] = key;
    strip_vendor_software(text, tmp, sizeof tmp);
    sk_loose_key(tmp, k2, sizeof k2);
    keys[1] = k2;
    keys[2] = NULL;
    for (size_t i = 0; i < sizeof abbrev / sizeof abbrev[0]; i++)
        if (!strcmp(key, abbrev[i][0])) {
            snprintf(k3, sizeof k3, "%s", abbrev[i][1]);
            keys[2] = k3;
        }
    for (int k = 0; k < 3; k++) {
        if (!keys[k] || !*keys[k])
            continue;
        kv *s = alias_slot((sk_vocab *)v, keys[k], 0);
        for (int j = 0; s && j < s->n; j++) {
            int dup = 0;
            for (int q = 0; q < n; q++)
                dup |= out[q] == s->ids[j];
            if (!dup && n < cap)
                out[n++] = s->ids[j];
        }
    }
    return n;
}

/* ---- the similarity kernel ---- */

void sk_dots_avx2(const float *U, int nu, const float *S, int ns, int D, float *out, size_t ldo); /* skills_avx2.c */
void sk_dots_i8_avx2(const int8_t *U, int nu, const int8_t *S, int ns, int D, int32_t *out, size_t ldo);

static void sk_dots_i8_ref(const int8_t *U, int nu, const int8_t *S, int ns, int D, int32_t *out, size_t ldo)
{
    for (int u = 0; u < nu; u++)
        for (int s = 0; s < ns; s++) {
            int32_t t = 0;
            for (int d = 0; d < D; d++)
                t += (int32_t)U[(size_t)u * D + d] * S[(size_t)s * D + d];
            out[(size_t)u * ldo + s] = t;
        }
}

/* The scalar twin of sk_dots_avx2: the same order of operations, each
 * multiply-add fused (fmaf), so both give the same bits. */
static void sk_dots_ref(const float *U, int nu, const float *S, int ns, int D, float *out, size_t ldo)
{
    for (int u = 0; u < nu; u++)
        for (int s = 0; s < ns; s++) {
            const float *a = U + (size_t)u * D, *b = S + (size_t)s * D;
            float l[8] = {0};
            int d = 0;
            for (; d + 8 <= D; d += 8)
                for (int k = 0; k < 8; k++)
                    l[k] = fmaf(a[d + k], b[d + k], l[k]);
            float h0 = l[0] + l[4], h1 = l[1] + l[5], h2 = l[2] + l[6], h3 = l[3] + l[7];
            float t = (h0 + h2) + (h1 + h3);
            for (; d < D; d++)
                t += a[d] * b[d];
            out[(size_t)u * ldo + s] = t;
        }
}

static void (*dots_fn)(const float *, int, const float *, int, int, float *, size_t) = sk_dots_ref;
static void (*dots_i8_fn)(const int8_t *, int, const int8_t *, int, int, int32_t *, size_t) = sk_dots_i8_ref;
static pthread_once_t dots_once = PTHREAD_ONCE_INIT;

static void dots_init(void)
{
    const char *cap = getenv("JOBMATCH_ISA");
    if (cap && !strcmp(cap, "scalar"))
        return;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        dots_fn = sk_dots_avx2;
        dots_i8_fn = sk_dots_i8_avx2;
    }
}

void sk_dots(const float *U, int nu, const float *S, int ns, int D, float *out, size_t ldo)
{
    pthread_once(&dots_once, dots_init);
    dots_fn(U, nu, S, ns, D, out, ldo);
}

void sk_dots_variant(int avx2, const float *U, int nu, const float *S, int ns, int D, float *out, size_t ldo)
{
    (avx2 ? sk_dots_avx2 : sk_dots_ref)(U, nu, S, ns, D, out, ldo);
}

void sk_dots_i8_variant(int avx2, const int8_t *U, int nu, const int8_t *S, int ns, int D, int32_t *out, size_t ldo)
{
    (avx2 ? sk_dots_i8_avx2 : sk_dots_i8_ref)(U, nu, S, ns, D, out, ldo);
}

/* Vocabulary rows per block of the similarity matrix: the scratch stays
 * nuser * 1024 floats whatever the vocabulary size. */
#define MATCH_BLOCK 1024

/* Exact similarity of vocabulary skill s to the best of the users (the
 * value sk_match_all gives): -1 when s has no embedding. */
static float best_exact(const sk_vocab *v, const float *user_emb, int nuser, int s, float *tmp, int *arg)
{
    float best = -1.0f;
    *arg = -1;
    if (!v->e[s].has_emb)
        return best;
    sk_dots(user_emb, nuser, v->emb + (size_t)s * v->dim, 1, v->dim, tmp, 1);
    for (int u = 0; u < nuser; u++)
        if (tmp[u] > best) {
            best = tmp[u];
            *arg = u;
        }
    return best;
}

float sk_similarity(const sk_vocab *v, const float *user_emb, int nuser, int s)
{
    float tmp[64], best = -1.0f;
    int arg;
    for (int u0 = 0; u0 < nuser; u0 += 64) {
        int m = nuser - u0 < 64 ? nuser - u0 : 64;
        float b = best_exact(v, user_emb + (size_t)u0 * v->dim, m, s, tmp, &arg);
        if (b > best)
            best = b;
    }
    return best;
}

/* Vocabulary rows per block of the similarity matrix: the scratch stays
 * nuser * 1024 numbers whatever the vocabulary size. */
#define MATCH_BLOCK 1024

int sk_match_floor(const sk_vocab *v, const char *const *user_norm, const float *user_emb, int nuser, float floor,
                   float *best_sim, int *best_user, unsigned char *kind, jm_err *err)
{
    int V = v->n, D = v->dim;
    for (int s = 0; s < V; s++) {
        best_sim[s] = -1.0f;
        best_user[s] = -1;
        kind[s] = SK_NONE;
    }
    if (!nuser || !V)
        goto aliases;
    int B = V < MATCH_BLOCK ? V : MATCH_BLOCK;
    if (floor <= -0.5f) {
        /* no prefilter: every similarity exactly */
        float *sims = malloc(sizeof(float) * (size_t)nuser * B);
        if (!sims)
            return jm_fail(err, JM_ENOMEM, "out of memory");
        for (int s0 = 0; s0 < V; s0 += B) {
            int nb = V - s0 < B ? V - s0 : B;
            sk_dots(user_emb, nuser, v->emb + (size_t)s0 * D, nb, D, sims, (size_t)B);
            for (int u = 0; u < nuser; u++)
                for (int i = 0; i < nb; i++) {
                    int s = s0 + i;
                    float x = v->e[s].has_emb ? sims[(size_t)u * B + i] : -1.0f;
                    if (x > best_sim[s]) {
                        best_sim[s] = x;
                        best_user[s] = u;
                        kind[s] = SK_SEMANTIC;
                    }
                }
        }
        free(sims);
        goto aliases;
    }
    /* The int8 codes give every similarity within a proven bound:
     *   |u.s - (su qu).(ss qs)| <= |u - su qu| |s| + |su qu| |s - ss qs|
     * (plus float rounding, far below 1e-4). Only skills some user may reach
     * `floor` with are computed exactly; the others are left at
     * SK_SIM_UNRESOLVED. */
    int8_t *uq = malloc((size_t)nuser * D);
    float *us = malloc(sizeof(float) * (size_t)nuser), *ue = malloc(sizeof(float) * (size_t)nuser),
          *un = malloc(sizeof(float) * (size_t)nuser), *tmp = malloc(sizeof(float) * (size_t)nuser);
    int32_t *dots = malloc(sizeof(int32_t) * (size_t)nuser * B);
    int oom = !uq || !us || !ue || !un || !tmp || !dots;
    for (int u = 0; u < nuser && !oom; u++) {
        float nx;
        quantise8(user_emb + (size_t)u * D, D, uq + (size_t)u * D, &us[u], &ue[u], &nx);
        un[u] = nx + ue[u]; /* |su qu| <= |u| + |u - su qu| */
    }
    for (int s0 = 0; s0 < V && !oom; s0 += B) {
        int nb = V - s0 < B ? V - s0 : B;
        pthread_once(&dots_once, dots_init);
        dots_i8_fn(uq, nuser, v->codes + (size_t)s0 * D, nb, D, dots, (size_t)B);
        for (int i = 0; i < nb; i++) {
            int s = s0 + i;
            if (!v->e[s].has_emb)
                continue;
            int reach = 0;
            for (int u = 0; u < nuser && !reach; u++) {
                double approx = (double)us[u] * v->qscale[s] * dots[(size_t)u * B + i];
                double bound = (double)ue[u] * v->qnorm[s] + (double)un[u] * v->qerr[s] + 1e-4;
                reach = approx + bound >= floor;
            }
            if (reach) {
                int arg;
                float b = best_exact(v, user_emb, nuser, s, tmp, &arg);
                if (arg >= 0) {
                    best_sim[s] = b;
                    best_user[s] = arg;
                    kind[s] = SK_SEMANTIC;
                }
            } else {
                best_sim[s] = SK_SIM_UNRESOLVED;
            }
        }
    }
    free(uq);
    free(us);
    free(ue);
    free(un);
    free(tmp);
    free(dots);
    if (oom)
        return jm_fail(err, JM_ENOMEM, "out of memory");
aliases:;
    /* Exact and alias matches override: similarity 1. */
    int ids[64];
    for (int u = 0; u < nuser; u++) {
        int n = sk_alias_matches(v, user_norm[u], ids, 64);
        for (int i = 0; i < n; i++)
            if (kind[ids[i]] != SK_EXACT) {
                best_sim[ids[i]] = 1.0f;
                best_user[ids[i]] = u;
                kind[ids[i]] = SK_ALIAS;
            }
        int e = sk_find(v, user_norm[u]);
        if (e >= 0) {
            best_sim[e] = 1.0f;
            best_user[e] = u;
            kind[e] = SK_EXACT;
        }
    }
    return JM_OK;
}

int sk_match_all(const sk_vocab *v, const char *const *user_norm, const float *user_emb, int nuser, float *best_sim,
                 int *best_user, unsigned char *kind, jm_err *err)
{
    return sk_match_floor(v, user_norm, user_emb, nuser, -1.0f, best_sim, best_user, kind, err);
}
