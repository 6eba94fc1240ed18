/* rank.c - the recommendation engine: load and follow the store, build the
 * person's profile, score and explain. See rank.h for the scoring. */
#include <ctype.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <strings.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#include "rank_int.h"

void rank_opts_default(rank_opts *o)
{
    memset(o, 0, sizeof *o);
    o->index_mode = RANK_INDEX_MEMORY;
    o->w = RANK_DEFAULT_WEIGHTS;
    o->have = RANK_HAVE;
    o->partial = RANK_PARTIAL;
    o->nice_weight = 0.2f;
    o->shrink = 3.0f;
    o->mu = 30.0f;
    o->length_norm = 0.8f;
    o->nice_credit = 1.0f;
    o->query_have = RANK_QUERY_HAVE;
    o->candidates = 300;
    o->stream_chunk = 4096;
    o->refresh_secs = 5.0;
    o->keyword_scan_max = 20000;
    o->cache_entries = 2048;
}

void rank_filters_init(rank_filters *f)
{
    memset(f, 0, sizeof *f);
    f->salary_min = NAN;
    f->salary_max = NAN;
}

const char *rank_status_name(rank_status s)
{
    return s == RANK_HAVE_IT ? "have" : s == RANK_PARTIAL_HAVE ? "partial" : "missing";
}

float rank_credit(const rank_engine *e, float sim)
{
    return sim >= e->o.have ? 1.0f : sim >= e->o.partial ? 0.5f : 0.0f;
}

rank_status rank_status_of(const rank_engine *e, float sim)
{
    return sim >= e->o.have ? RANK_HAVE_IT : sim >= e->o.partial ? RANK_PARTIAL_HAVE : RANK_MISSING;
}

float rank_skill_weight(const rank_engine *e, int required) { return required ? 1.0f : e->o.nice_weight; }

/* Does the likelihood count vocabulary skill s as one the person names: an
 * exact or alias match, or a semantic one of at least query_have (and have)?
 * See docs/ranking.md, "Which matches the likelihood counts". */
static inline int q_names(const rank_engine *e, const rprofile *p, int s)
{
    float sim = p->best_sim[s];
    return sim >= e->o.have && (p->kind[s] != SK_SEMANTIC || sim >= e->o.query_have);
}

int rank_split_skills(const char *text, char ***out)
{
    *out = NULL;
    if (!text)
        return 0;
    int n = 0, cap = 0;
    const char *s = text;
    for (const char *p = text;; p++) {
        if (*p == ',' || *p == ';' || *p == '\n' || !*p) {
            const char *a = s, *b = p;
            while (a < b && isspace((unsigned char)*a))
                a++;
            while (b > a && isspace((unsigned char)b[-1]))
                b--;
            if (b > a) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 8;
                    char **nv = realloc(*out, sizeof(char *) * (size_t)cap);
                    if (!nv)
                        break;
                    *out = nv;
                }
                (*out)[n] = malloc((size_t)(b - a) + 1);
                if (!(*out)[n])
                    break;
                memcpy((*out)[n], a, (size_t)(b - a));
                (*out)[n][b - a] = 0;
                n++;
            }
            if (!*p)
                break;
            s = p + 1;
        }
    }
    return n;
}

/* ---------- id map ---------- */

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int rank_slot(const rank_engine *e, const char *id)
{
    if (!e->id_nslots || !id)
        return -1;
    uint64_t m = (uint64_t)e->id_nslots - 1, h = hash_id(id) & m;
    while (e->id_slots[h] >= 0) {
        if (!strcmp(rank_str(e, e->jobs[e->id_slots[h]].id), id))
            return e->id_slots[h];
        h = (h + 1) & m;
    }
    return -1;
}

static int id_insert(rank_engine *e, int slot)
{
    if ((e->njobs + 1) * 2 > e->id_nslots) {
        int ns = e->id_nslots ? e->id_nslots * 2 : 4096;
        while (ns < (e->njobs + 1) * 2)
            ns *= 2;
        int *s = malloc(sizeof(int) * (size_t)ns);
        if (!s)
            return JM_ENOMEM;
        for (int i = 0; i < ns; i++)
            s[i] = -1;
        for (int j = 0; j < e->njobs; j++) {
            if (j == slot)
                continue;
            uint64_t h = hash_id(rank_str(e, e->jobs[j].id)) & (uint64_t)(ns - 1);
            while (s[h] >= 0)
                h = (h + 1) & (uint64_t)(ns - 1);
            s[h] = j;
        }
        free(e->id_slots);
        e->id_slots = s;
        e->id_nslots = ns;
    }
    uint64_t m = (uint64_t)e->id_nslots - 1, h = hash_id(rank_str(e, e->jobs[slot].id)) & m;
    while (e->id_slots[h] >= 0)
        h = (h + 1) & m;
    e->id_slots[h] = slot;
    return JM_OK;
}

/* ---------- jobs ---------- */

static int days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* What sscanf's %<maxd>d reads: blanks, a sign, 1 to maxd digits. */
static int scan_int(const char **p, int maxd, int *out)
{
    const char *s = *p;
    while (isspace((unsigned char)*s))
        s++;
    int neg = *s == '-';
    if (*s == '-' || *s == '+')
        s++, maxd--;
    int v = 0, nd = 0;
    for (; nd < maxd && *s >= '0' && *s <= '9'; nd++, s++)
        v = v * 10 + (*s - '0');
    *p = s;
    *out = neg ? -v : v;
    return nd > 0;
}

/* A date's day number, as sscanf(s, "%4d-%2d-%2d") reads the date (by hand:
 * sscanf was ~3% of a start-up scan); INT32_MIN if it is not one. */
static int parse_day(const char *s)
{
    int y, m, d;
    if (!s || !scan_int(&s, 4, &y) || *s++ != '-' || !scan_int(&s, 2, &m) || *s++ != '-' || !scan_int(&s, 2, &d) ||
        m < 1 || m > 12 || d < 1 || d > 31)
        return INT32_MIN;
    return days_from_civil(y, m, d);
}

/* The string arena: ids and interned strings, in 64 KiB blocks freed with
 * the engine (one malloc per block, not per string: 100,000 ids cost 1.2 MB
 * instead of 3.2), each string addressed by a 32-bit handle (rank_str):
 * 1 + (block << 16 | offset), 0 = NULL. A string longer than a block gets
 * a block of its own. At most 65535 blocks (~4 GiB of strings). */

/* A copy of s in the arena: its handle, or 0 when out of memory. */
static uint32_t arena_strdup(rank_engine *e, const char *s)
{
    size_t n = strlen(s) + 1;
    if (!e->sblk_n || e->sblk_used + n > SBLK_SIZE) {
        if (e->sblk_n == SBLK_MAX)
            return 0;
        if (e->sblk_n == e->sblk_cap) {
            int nc = e->sblk_cap ? 2 * e->sblk_cap : 64;
            char **nb = realloc(e->sblk, sizeof(char *) * (size_t)nc);
            if (!nb)
                return 0;
            e->sblk = nb;
            e->sblk_cap = nc;
        }
        char *b = calloc(1, n > SBLK_SIZE ? n : SBLK_SIZE);
        if (!b)
            return 0;
        e->sblk[e->sblk_n++] = b;
        e->sblk_used = 0;
    }
    uint32_t at = (uint32_t)e->sblk_used;
    memcpy(e->sblk[e->sblk_n - 1] + at, s, n);
    e->sblk_used += n;
    return 1 + ((uint32_t)(e->sblk_n - 1) << 16 | at);
}

/* The handle of the engine's single copy of s (0 for NULL, or when out of
 * memory). */
static uint32_t intern(rank_engine *e, const char *s)
{
    if (!s)
        return 0;
    if ((e->strs_n + 1) * 2 > e->strs_nslots) {
        int ns = e->strs_nslots ? e->strs_nslots * 2 : 4096;
        uint32_t *n = calloc((size_t)ns, sizeof(uint32_t));
        if (!n)
            return 0;
        for (int i = 0; i < e->strs_nslots; i++)
            if (e->strs[i]) {
                uint64_t h = hash_id(rank_str(e, e->strs[i])) & (uint64_t)(ns - 1);
                while (n[h])
                    h = (h + 1) & (uint64_t)(ns - 1);
                n[h] = e->strs[i];
            }
        free(e->strs);
        e->strs = n;
        e->strs_nslots = ns;
    }
    uint64_t m = (uint64_t)e->strs_nslots - 1, h = hash_id(s) & m;
    while (e->strs[h]) {
        if (!strcmp(rank_str(e, e->strs[h]), s))
            return e->strs[h];
        h = (h + 1) & m;
    }
    e->strs[h] = arena_strdup(e, s);
    if (e->strs[h])
        e->strs_n++;
    return e->strs[h];
}

static void rjob_clear(rjob *j) { memset(j, 0, sizeof *j); }

/* A slot put since the skill-pass structures were built (see accel_build). */
static void mark_dirty(rank_engine *e, int slot)
{
    if (!e->accel || (e->dirty[slot / 64] >> (slot % 64) & 1))
        return;
    if (e->ndirty == e->dirty_cap) {
        int nc = e->dirty_cap ? 2 * e->dirty_cap : 256;
        int *nl = realloc(e->dirty_list, sizeof(int) * (size_t)nc);
        if (!nl) {
            e->accel = 0; /* queries fall back to the full pass until a rebuild */
            return;
        }
        e->dirty_list = nl;
        e->dirty_cap = nc;
    }
    e->dirty[slot / 64] |= 1ULL << (slot % 64);
    e->dirty_list[e->ndirty++] = slot;
}

/* Vocabulary index of a skill name as a job gives it; -1 if it normalises to nothing. */
static int raw_skill(rank_engine *e, const char *name)
{
    uint64_t hv = hash_id(name);
    if (e->raw_nslots) {
        uint64_t m = (uint64_t)e->raw_nslots - 1, h = hv & m;
        while (e->raw_keys[h]) {
            if (e->raw_hash[h] == hv && !strcmp(e->raw_keys[h], name))
                return e->raw_vals[h];
            h = (h + 1) & m;
        }
    }
    char *norm = db_skill_norm(name);
    int v = norm ? sk_add(e->voc, norm, name) : -1;
    free(norm);
    if (norm && v < 0)
        return -2; /* out of memory */
    if ((e->raw_n + 1) * 2 > e->raw_nslots) {
        int ns = e->raw_nslots ? e->raw_nslots * 2 : 8192;
        char **nk = calloc((size_t)ns, sizeof(char *));
        int *nv = malloc(sizeof(int) * (size_t)ns);
        uint64_t *nh = malloc(sizeof(uint64_t) * (size_t)ns);
        if (!nk || !nv || !nh) {
            free(nk);
            free(nv);
            free(nh);
            return v;
        }
        for (int i = 0; i < e->raw_nslots; i++)
            if (e->raw_keys[i]) {
                uint64_t h = e->raw_hash[i] & (uint64_t)(ns - 1);
                while (nk[h])
                    h = (h + 1) & (uint64_t)(ns - 1);
                nk[h] = e->raw_keys[i];
                nv[h] = e->raw_vals[i];
                nh[h] = e->raw_hash[i];
            }
        free(e->raw_keys);
        free(e->raw_vals);
        free(e->raw_hash);
        e->raw_keys = nk;
        e->raw_vals = nv;
        e->raw_hash = nh;
        e->raw_nslots = ns;
    }
    uint64_t m = (uint64_t)e->raw_nslots - 1, h = hv & m;
    while (e->raw_keys[h])
        h = (h + 1) & m;
    e->raw_keys[h] = (char *)rank_str(e, arena_strdup(e, name));
    if (e->raw_keys[h]) {
        e->raw_vals[h] = v;
        e->raw_hash[h] = hv;
        e->raw_n++;
    }
    return v;
}

/* The arena's entries become 32-bit (a vocabulary index reached 32768). */
static int arena_widen(rank_engine *e)
{
    uint32_t *w = malloc(sizeof(uint32_t) * (e->arena_cap ? e->arena_cap : 1));
    if (!w)
        return JM_ENOMEM;
    for (size_t k = 0; k < e->arena_n; k++)
        w[k] = ((const uint16_t *)e->arena)[k];
    free(e->arena);
    e->arena = w;
    e->arena16 = 0;
    return JM_OK;
}

/* Fill slot from a row: metadata, skills (document frequencies follow), vector. */
static int job_put(rank_engine *e, int slot, const db_row *r, jm_err *err)
{
    rjob *j = &e->jobs[slot];
    if (j->live) {
        for (int i = 0; i < j->nsk; i++)
            sk_df_add(e->voc, JSK(e, j, i), -1);
        e->live--;
        if (j->has_vec)
            e->with_vec--;
    }
    uint32_t keep_id = j->id;
    rjob_clear(j);
    j->id = keep_id ? keep_id : arena_strdup(e, r->job.id);
    mark_dirty(e, slot);
    const db_job *s = &r->job;
    j->title = intern(e, s->title);
    j->company = intern(e, s->company);
    j->location = intern(e, s->location);
    j->emp = intern(e, s->employment_type);
    j->sen = intern(e, s->seniority);
    j->remote = s->remote > 1 ? 2 : s->remote < -1 ? -1 : s->remote; /* == 1 stays == 1 */
    j->smin = (float)s->salary_min;
    j->smax = (float)s->salary_max;
    j->posted = parse_day(s->posted_at);
    j->rev = r->rev;
    if (!j->id)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    if (s->nskills) {
        if (e->arena_n + (size_t)s->nskills > e->arena_cap) {
            size_t nc = e->arena_cap ? e->arena_cap * 2 : 1 << 16;
            while (nc < e->arena_n + (size_t)s->nskills)
                nc *= 2;
            void *na = realloc(e->arena, (e->arena16 ? 2 : 4) * nc);
            if (!na)
                return jm_fail(err, JM_ENOMEM, "out of memory");
            e->arena = na;
            e->arena_cap = nc;
        }
        j->sk_off = (uint32_t)e->arena_n;
        if (++e->stamp == 0) { /* wrapped: forget every stamp */
            memset(e->vstamp, 0, sizeof(uint32_t) * (size_t)e->vstamp_n);
            e->stamp = 1;
        }
        for (int i = 0; i < s->nskills; i++) {
            int v = raw_skill(e, s->skills[i].name);
            if (v == -2)
                return jm_fail(err, JM_ENOMEM, "out of memory");
            if (v < 0)
                continue;
            if (v >= e->vstamp_n) {
                int nn = e->vstamp_n ? e->vstamp_n : 4096;
                while (nn <= v)
                    nn *= 2;
                uint32_t *ns = realloc(e->vstamp, sizeof(uint32_t) * (size_t)nn);
                if (!ns)
                    return jm_fail(err, JM_ENOMEM, "out of memory");
                memset(ns + e->vstamp_n, 0, sizeof(uint32_t) * (size_t)(nn - e->vstamp_n));
                e->vstamp = ns;
                e->vstamp_n = nn;
            }
            if (e->vstamp[v] == e->stamp)
                continue; /* listed twice */
            if (j->nsk == RJOB_MAX_SKILLS)
                return jm_fail(err, JM_EINVAL, "job %s lists more than %d skills", r->job.id, RJOB_MAX_SKILLS);
            e->vstamp[v] = e->stamp;
            int req = s->skills[i].required != 0;
            if (e->arena16 && v > 32767 && arena_widen(e))
                return jm_fail(err, JM_ENOMEM, "out of memory");
            if (e->arena16)
                ((uint16_t *)e->arena)[e->arena_n++] = (uint16_t)(v << 1 | req);
            else
                ((uint32_t *)e->arena)[e->arena_n++] = (uint32_t)v << 1 | (uint32_t)req;
            j->wsum += rank_skill_weight(e, req);
            j->nsk++;
            sk_df_add(e->voc, v, 1);
        }
    }
    j->live = 1;
    e->live++;
    e->livebits[slot / 64] |= 1ULL << (slot % 64);
    j->has_vec = 0;
    if (r->emb && r->emb_len == (size_t)e->dim * 4) {
        if (e->ix) {
            db_vec_from_le(r->emb, e->dim, e->vec_tmp);
            int rc = idx_set(e->ix, (uint32_t)slot, e->vec_tmp, err);
            if (rc)
                return rc;
        }
        j->has_vec = 1;
        e->with_vec++;
    } else if (e->ix) {
        idx_remove(e->ix, (uint32_t)slot);
    }
    return JM_OK;
}

static void job_delete(rank_engine *e, int slot)
{
    rjob *j = &e->jobs[slot];
    if (!j->live)
        return;
    for (int i = 0; i < j->nsk; i++)
        sk_df_add(e->voc, JSK(e, j, i), -1);
    e->live--;
    if (j->has_vec)
        e->with_vec--;
    if (e->ix)
        idx_remove(e->ix, (uint32_t)slot);
    j->live = 0;
    j->has_vec = 0;
    e->livebits[slot / 64] &= ~(1ULL << (slot % 64));
}

/* Grow a bitmap of *words words to `words` words, zero-filled. */
static int grow_bits(uint64_t **bits, int old_words, int words)
{
    uint64_t *nb = realloc(*bits, sizeof(uint64_t) * (size_t)words);
    if (!nb)
        return JM_ENOMEM;
    memset(nb + old_words, 0, sizeof(uint64_t) * (size_t)(words - old_words));
    *bits = nb;
    return JM_OK;
}

static int new_slot(rank_engine *e, const char *id, jm_err *err)
{
    if (e->njobs == e->cap) {
        int nc = e->cap ? e->cap * 2 : 1024;
        rjob *nj = realloc(e->jobs, sizeof(rjob) * (size_t)nc);
        if (!nj)
            return jm_fail(err, JM_ENOMEM, "out of memory");
        e->jobs = nj;
        e->cap = nc;
    }
    int words = e->cap / 64 + 1;
    if (words > e->livebits_words) {
        if (grow_bits(&e->livebits, e->livebits_words, words) || grow_bits(&e->dirty, e->livebits_words, words))
            return jm_fail(err, JM_ENOMEM, "out of memory");
        e->livebits_words = words;
    }
    int slot = e->njobs;
    memset(&e->jobs[slot], 0, sizeof(rjob));
    e->jobs[slot].id = arena_strdup(e, id);
    if (!e->jobs[slot].id)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    e->njobs++;
    if (id_insert(e, slot)) {
        e->njobs--;
        return jm_fail(err, JM_ENOMEM, "out of memory");
    }
    return slot;
}

static int on_row(void *ctx, const db_row *r)
{
    struct {
        rank_engine *e;
        jm_err *err;
        int applied;
    } *c = ctx;
    rank_engine *e = c->e;
    int slot = rank_slot(e, r->job.id);
    if (r->deleted) {
        if (slot >= 0 && e->jobs[slot].live && r->rev >= e->jobs[slot].rev) {
            job_delete(e, slot);
            e->jobs[slot].rev = r->rev;
            c->applied++;
        }
        return JM_OK;
    }
    if (slot >= 0 && e->jobs[slot].live && r->rev && r->rev <= e->jobs[slot].rev)
        return JM_OK; /* already applied (re-read inside the slack window) */
    if (slot < 0 && (slot = new_slot(e, r->job.id, c->err)) < 0)
        return slot;
    c->applied++;
    return job_put(e, slot, r, c->err);
}

/* ---------- loading on two threads ----------
 *
 * The database scan (SQLite: reading the pages, checking each text's hash,
 * parsing the skills) and building the engine (ids, skills, the index) take
 * about as long as each other. At load a second thread scans and copies each
 * row into a batch, and the calling thread builds the engine from full
 * batches (so the engine's memory comes from the caller's malloc arena, as
 * with one thread). Rows are applied in scan order, as by one thread. The
 * batches' buffers are mapped directly and unmapped at the end. The queue
 * is long enough for the scan to run on while the builder trains the
 * index's lists (~0.1 s at 65,536 vectors, ~90 batches' worth; with 4 the
 * scan stalled, 0.15 s of a 100,000-job load); its buffers cost up to
 * ~15 MB during the load (~300 KB a batch), none after: 48 keeps the peak
 * RSS of a 100,000-job load under 150 MB. */
#define LB_ROWS 128
#define LB_QUEUE 48

typedef struct lrow {
    uint32_t id, title, company, location, emp, sen, posted, emb, skills; /* text offsets; UINT32_MAX = NULL */
    uint32_t emb_len;
    int remote;
    double smin, smax;
    int64_t rev;
} lrow;

typedef struct lbatch {
    lrow rows[LB_ROWS];
    int n;
    char *txt;
    size_t len, cap;   /* bytes */
} lbatch;

typedef struct loader {
    rank_engine *e;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lbatch b[LB_QUEUE + 1]; /* batches cycle: filled by the scan, applied by the builder */
    int head, tail, count;  /* the queue of full batches (indices into b) */
    int filling;            /* the batch the scan fills */
    int done, rc, scan_rc;
    jm_err serr;            /* the scan's */
} loader;

/* Grow a mapped buffer to hold `need` bytes (0 or -1 when out of memory). */
static int lb_grow(void **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : (size_t)1 << 18;
    while (nc < need)
        nc *= 2;
    void *np = mmap(NULL, nc, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (np == MAP_FAILED)
        return -1;
    if (*p) {
        memcpy(np, *p, *cap);
        munmap(*p, *cap);
    }
    *p = np;
    *cap = nc;
    return 0;
}

static uint32_t lb_text(lbatch *b, const void *s, size_t len, int *oom)
{
    if (!s)
        return UINT32_MAX;
    if (lb_grow((void **)&b->txt, &b->cap, b->len + len + 1)) {
        *oom = 1;
        return UINT32_MAX;
    }
    uint32_t at = (uint32_t)b->len;
    memcpy(b->txt + at, s, len);
    b->txt[at + len] = 0;
    b->len += len + 1;
    return at;
}

static uint32_t lb_str(lbatch *b, const char *s, int *oom) { return s ? lb_text(b, s, strlen(s), oom) : UINT32_MAX; }

static const char *lb_get(const lbatch *b, uint32_t at) { return at == UINT32_MAX ? NULL : b->txt + at; }

/* Hand the filling batch to the builder, waiting while the queue is full. */
static int loader_push(loader *L)
{
    pthread_mutex_lock(&L->mu);
    while (L->count == LB_QUEUE && !L->rc)
        pthread_cond_wait(&L->cv, &L->mu);
    int rc = L->rc;
    if (!rc) {
        L->count++;
        L->tail = (L->tail + 1) % (LB_QUEUE + 1);
        L->filling = L->tail;
        pthread_cond_broadcast(&L->cv);
    }
    pthread_mutex_unlock(&L->mu);
    lbatch *b = &L->b[L->filling];
    b->n = 0;
    b->len = 0;
    return rc;
}

/* The scan's callback: copy the row into the filling batch (the skills
 * value as stored: the builder parses it, which evens the two threads'
 * work; the scan, hashing every text, is the longer). */
static int loader_row(void *ctx, const db_row *r)
{
    loader *L = ctx;
    lbatch *b = &L->b[L->filling];
    int oom = 0;
    lrow *x = &b->rows[b->n];
    const db_job *j = &r->job;
    x->id = lb_str(b, j->id, &oom);
    x->title = lb_str(b, j->title, &oom);
    x->company = lb_str(b, j->company, &oom);
    x->location = lb_str(b, j->location, &oom);
    x->emp = lb_str(b, j->employment_type, &oom);
    x->sen = lb_str(b, j->seniority, &oom);
    x->posted = lb_str(b, j->posted_at, &oom);
    x->emb = r->emb ? lb_text(b, r->emb, r->emb_len, &oom) : UINT32_MAX;
    x->emb_len = (uint32_t)r->emb_len;
    x->remote = j->remote;
    x->smin = j->salary_min;
    x->smax = j->salary_max;
    x->rev = r->rev;
    x->skills = lb_str(b, r->skills_raw, &oom);
    if (oom || r->emb_len > UINT32_MAX || b->len > UINT32_MAX / 2)
        return jm_fail(&L->serr, JM_ENOMEM, "out of memory");
    if (++b->n == LB_ROWS || b->len > ((size_t)1 << 22))
        return loader_push(L);
    return JM_OK;
}

/* The scan thread. */
static void *loader_scan(void *arg)
{
    loader *L = arg;
    rank_engine *e = L->e;
    prctl(PR_SET_NAME, "jm-load-scan"); /* for perf and top */
    double cpu = jm_thread_cpu();
    int rc = db_scan_jobs(e->d, e->model_id, (e->ix ? DB_SCAN_EMBEDDING : 0) | DB_SCAN_RAW_SKILLS, loader_row, L,
                          &L->serr);
    if (rc == JM_OK && L->b[L->filling].n)
        rc = loader_push(L);
    if (getenv("JOBMATCH_TRACE"))
        fprintf(stderr, "rank: load: the scan thread used %.3f s of CPU\n", jm_thread_cpu() - cpu);
    pthread_mutex_lock(&L->mu);
    L->scan_rc = rc;
    L->done = 1;
    pthread_cond_broadcast(&L->cv);
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* Apply the full batches as they come until the scan is done. */
static int loader_build(loader *L, int *applied, jm_err *err)
{
    int rc = JM_OK;
    struct {
        rank_engine *e;
        jm_err *err;
        int applied;
    } c = {L->e, err, 0};
    for (;;) {
        pthread_mutex_lock(&L->mu);
        while (!L->count && !L->done)
            pthread_cond_wait(&L->cv, &L->mu);
        if (!L->count) {
            pthread_mutex_unlock(&L->mu);
            break;
        }
        int bi = L->head;
        pthread_mutex_unlock(&L->mu);
        lbatch *b = &L->b[bi];
        for (int i = 0; i < b->n && rc == JM_OK; i++) {
            const lrow *x = &b->rows[i];
            db_row r;
            memset(&r, 0, sizeof r);
            if (db_skills_parse(lb_get(b, x->skills), &r.job.skills, &r.job.nskills)) {
                rc = jm_fail(err, JM_ENOMEM, "out of memory");
                break;
            }
            r.job.id = (char *)lb_get(b, x->id);
            r.job.title = (char *)lb_get(b, x->title);
            r.job.company = (char *)lb_get(b, x->company);
            r.job.location = (char *)lb_get(b, x->location);
            r.job.employment_type = (char *)lb_get(b, x->emp);
            r.job.seniority = (char *)lb_get(b, x->sen);
            r.job.posted_at = (char *)lb_get(b, x->posted);
            r.job.remote = x->remote;
            r.job.salary_min = x->smin;
            r.job.salary_max = x->smax;
            r.emb = (const unsigned char *)lb_get(b, x->emb);
            r.emb_len = x->emb_len;
            r.rev = x->rev;
            rc = on_row(&c, &r);
            free(r.job.skills);
        }
        pthread_mutex_lock(&L->mu);
        if (rc && !L->rc)
            L->rc = rc; /* stops the scan at its next batch */
        L->head = (L->head + 1) % (LB_QUEUE + 1);
        L->count--;
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
    }
    *applied = c.applied;
    return rc;
}

/* Scan every job into the engine, the scan on a second thread; on one
 * thread if that cannot start. *applied counts jobs put. */
static int load_jobs(rank_engine *e, int *applied, jm_err *err)
{
    struct {
        rank_engine *e;
        jm_err *err;
        int applied;
    } c = {e, err, 0};
    loader *L = calloc(1, sizeof *L);
    pthread_t tid;
    int started = 0;
    if (L && !pthread_mutex_init(&L->mu, NULL)) {
        if (!pthread_cond_init(&L->cv, NULL)) {
            L->e = e;
            started = !pthread_create(&tid, NULL, loader_scan, L);
            if (!started)
                pthread_cond_destroy(&L->cv);
        }
        if (!started)
            pthread_mutex_destroy(&L->mu);
    }
    if (!started) {
        free(L);
        int rc = db_scan_jobs(e->d, e->model_id, e->ix ? DB_SCAN_EMBEDDING : 0, on_row, &c, err);
        *applied = c.applied;
        return rc;
    }
    double cpu = jm_thread_cpu();
    int rc = loader_build(L, applied, err);
    if (getenv("JOBMATCH_TRACE"))
        fprintf(stderr, "rank: load: the building thread used %.3f s of CPU\n", jm_thread_cpu() - cpu);
    pthread_join(tid, NULL);
    if (rc == JM_OK && L->scan_rc) {
        rc = L->scan_rc;
        *err = L->serr;
    }
    for (int i = 0; i <= LB_QUEUE; i++) {
        if (L->b[i].txt)
            munmap(L->b[i].txt, L->b[i].cap);
    }
    pthread_cond_destroy(&L->cv);
    pthread_mutex_destroy(&L->mu);
    free(L);
    return rc;
}

/* ---------- the skill pass's structures ---------- */

static void accel_free(rank_engine *e)
{
    free(e->post_bit);
    free(e->post_off);
    free(e->post);
    free(e->wperm);
    free(e->rbits);
    free(e->rcw);
    free(e->rcls);
    free(e->cls_w);
    free(e->cls_lw);
    free(e->cls_bound);
    free(e->cls_logf);
    free(e->roff);
    e->roff = NULL;
    e->cls_logf = NULL;
    e->post_bit = NULL;
    e->post_off = e->wperm = e->rcls = NULL;
    e->post = NULL;
    e->rbits = NULL;
    e->rcw = NULL;
    e->cls_w = e->cls_lw = e->cls_bound = NULL;
    e->post_nv = e->wperm_n = e->ncls = 0;
    e->accel = 0;
}

/* The length part of Q for a job whose skill weights sum to w:
 * length_norm * log(w + mu), in float, the same bits wherever it is used. */
static float job_lw(const rank_engine *e, float w)
{
    return e->o.length_norm * logf(w + e->o.mu);
}

/* f(w) of a job whose skill weights sum to w: the part of Q + w_coverage C
 * that depends on w alone, with C at its largest (every skill had). */
static double wpart(const rank_engine *e, double w)
{
    double f = -(double)job_lw(e, (float)w) * (1 - 1e-6);
    if (e->o.w.coverage > 0)
        f += e->o.w.coverage * w / (w + e->o.shrink);
    return f;
}

static float float_up(double x)
{
    float f = (float)x;
    return (double)f < x ? nextafterf(f, INFINITY) : f;
}

typedef struct skcount {
    uint32_t n;
    int v;
} skcount;

static int cmp_skcount(const void *a, const void *b)
{
    const skcount *x = a, *y = b;
    if (x->n != y->n)
        return x->n < y->n ? 1 : -1;
    return x->v - y->v;
}

/* Writes y as a LEB128 varint at o (7 bits a byte, low first, the top bit
 * set on all but the last), or only counts when o is NULL: its length. */
static unsigned leb_put(uint8_t *o, uint32_t y)
{
    unsigned k = 0;
    for (; y >= 128; y >>= 7, k++)
        if (o)
            o[k] = (uint8_t)(y | 128);
    if (o)
        o[k] = (uint8_t)y;
    return k + 1;
}

int rank_cls_derive(rank_engine *e)
{
    int c0 = e->ncls ? e->ncls : 1;
    e->cls_lw = malloc(sizeof(float) * (size_t)c0);
    e->cls_bound = malloc(sizeof(float) * (size_t)c0);
    e->cls_logf = malloc(sizeof(float) * (size_t)c0);
    if (!e->cls_lw || !e->cls_bound || !e->cls_logf)
        return -1;
    float m = -INFINITY;
    for (int c = e->ncls - 1; c >= 0; c--) {
        e->cls_logf[c] = job_lw(e, e->cls_w[c]); /* as score_skills has it */
        e->cls_lw[c] = float_up(-(double)e->cls_logf[c] * (1 - 1e-6));
        float f = float_up(wpart(e, e->cls_w[c]));
        m = f > m ? f : m;
        e->cls_bound[c] = m;
    }
    return 0;
}

/* Build (or rebuild) the skill pass's structures from the live jobs and
 * forget the dirty slots; compacts the skill arena when changed jobs left
 * much of it behind. Caller holds the write lock (or is rank_open). On
 * failure the structures are absent and queries take the full pass. */
static void accel_build(rank_engine *e, int V)
{
    accel_free(e);
    for (int i = 0; i < e->ndirty; i++)
        e->dirty[e->dirty_list[i] / 64] &= ~(1ULL << (e->dirty_list[i] % 64));
    e->ndirty = 0;
    if (e->o.mu <= 0 || e->o.shrink <= 0 || e->o.nice_weight < 0 || !(e->o.length_norm >= 0 && e->o.length_norm <= 1) ||
        !(e->o.nice_credit >= 0 && e->o.nice_credit <= 1))
        return; /* the bounds assume these; the full pass does not */
    int N = e->njobs;
    size_t pairs = 0;
    int live = 0;
    for (int s = 0; s < N; s++)
        if (e->jobs[s].live) {
            pairs += (size_t)e->jobs[s].nsk;
            live++;
        }
    if (pairs > UINT32_MAX - 1)
        return;
    size_t L = (size_t)(live ? live : 1);
    skcount *top = malloc(sizeof(skcount) * (size_t)(V ? V : 1));
    uint32_t *cnt = calloc((size_t)V + 1, sizeof(uint32_t)), *tmp = malloc(sizeof(uint32_t) * L), *hist = NULL;
    uint64_t *len = NULL;
    e->post_bit = malloc((size_t)(V ? V : 1));
    e->post_off = malloc(sizeof(uint32_t) * ((size_t)V + 1));
    e->wperm = malloc(sizeof(uint32_t) * L);
    e->rbits = malloc(sizeof(uint64_t) * 128 * ((L + 63) / 64));
    e->rcw = malloc(L);
    e->rcls = malloc(sizeof(uint32_t) * L);
    e->roff = malloc(sizeof(uint32_t) * (L + 1));
    if (!top || !cnt || !tmp || !e->post_bit || !e->post_off || !e->wperm || !e->rbits || !e->rcw || !e->rcls ||
        !e->roff)
        goto fail;
    /* the 64 skills most jobs list get a bit (bitmaps over the ranks); every
     * other skill a postings list, in slot order */
    for (int s = 0; s < N; s++) {
        const rjob *j = &e->jobs[s];
        if (j->live)
            for (int i = 0; i < j->nsk; i++)
                cnt[JSK(e, j, i)]++;
    }
    for (int v = 0; v < V; v++) {
        top[v] = (skcount){cnt[v], v};
        e->post_bit[v] = -1;
    }
    qsort(top, (size_t)V, sizeof(skcount), cmp_skcount);
    for (int i = 0; i < V && i < 64 && top[i].n > 0; i++)
        e->post_bit[top[i].v] = (signed char)i;
    e->post_nv = V;
    /* live slots by wsum ascending: a stable radix sort on the float's bits
     * (wsum >= 0, so they order as the integers), two 16-bit digits */
    int n = 0;
    for (int s = 0; s < N; s++)
        if (e->jobs[s].live)
            tmp[n++] = (uint32_t)s;
    hist = malloc(sizeof(uint32_t) * 65537);
    if (!hist)
        goto fail;
    for (int pass = 0; pass < 2; pass++) {
        memset(hist, 0, sizeof(uint32_t) * 65537);
        uint32_t *from = pass ? e->wperm : tmp, *to = pass ? tmp : e->wperm;
        for (int i = 0; i < n; i++) {
            uint32_t b;
            memcpy(&b, &e->jobs[from[i]].wsum, 4);
            hist[((b >> (16 * pass)) & 0xffff) + 1]++;
        }
        for (int i = 0; i < 65536; i++)
            hist[i + 1] += hist[i];
        for (int i = 0; i < n; i++) {
            uint32_t b;
            memcpy(&b, &e->jobs[from[i]].wsum, 4);
            to[hist[(b >> (16 * pass)) & 0xffff]++] = from[i];
        }
    }
    memcpy(e->wperm, tmp, sizeof(uint32_t) * (size_t)n);
    free(tmp);
    tmp = NULL;
    /* the skill arena in rank order (which also drops what changed jobs left
     * behind): the skill pass reads jobs by rank, so their skills follow each
     * other in memory */
    size_t esz = e->arena16 ? 2 : 4;
    char *na = malloc(esz * (pairs ? pairs : 1));
    if (!na)
        goto fail;
    size_t k = 0;
    for (int r = 0; r < n; r++) {
        rjob *j = &e->jobs[e->wperm[r]];
        memcpy(na + esz * k, (const char *)e->arena + esz * j->sk_off, esz * (size_t)j->nsk);
        j->sk_off = (uint32_t)k;
        e->roff[r] = (uint32_t)k;
        k += (size_t)j->nsk;
    }
    e->roff[n] = (uint32_t)k;
    for (int s = 0; s < N; s++)
        if (!e->jobs[s].live) {
            e->jobs[s].nsk = 0;
            e->jobs[s].sk_off = 0;
        }
    free(e->arena);
    e->arena = na;
    e->arena_n = e->arena_cap = pairs;
    /* postings, as ranks ascending, delta-coded (see pcur): pass 0 sizes
     * each list, pass 1 writes it; cnt[v] = the last rank listed
     * (UINT32_MAX: none yet), len[v] the list's bytes, then where it goes */
    len = calloc((size_t)V + 1, sizeof(uint64_t));
    if (!len)
        goto fail;
    for (int pass = 0; pass < 2; pass++) {
        for (int v = 0; v < V; v++)
            cnt[v] = UINT32_MAX;
        if (pass) {
            uint64_t total = 0;
            for (int v = 0; v < V; v++) {
                uint64_t l = len[v];
                len[v] = total;
                e->post_off[v] = (uint32_t)total;
                total += l;
            }
            if (total > UINT32_MAX)
                goto fail;
            e->post_off[V] = (uint32_t)total;
            e->post = malloc(total ? total : 1);
            if (!e->post)
                goto fail;
        }
        for (int r = 0; r < n; r++)
            for (uint32_t a = e->roff[r]; a < e->roff[r + 1]; a++) {
                uint32_t x = rank_ask(e, a);
                int v = (int)(x >> 1);
                if (e->post_bit[v] >= 0)
                    continue;
                uint32_t y = ((uint32_t)r - cnt[v] - 1) << 1 | (x & 1);
                cnt[v] = (uint32_t)r;
                len[v] += leb_put(pass ? e->post + len[v] : NULL, y);
            }
    }
    /* per rank: the wsum class, the masked skills' bits (64 ranks at a
     * time, into the bitmaps of rbits) and counts (rcw) */
    int ncls = 0;
    size_t rw = ((size_t)n + 63) / 64;
    for (size_t q = 0; q < rw; q++) {
        uint64_t blk[128] = {0};
        for (int r = (int)(64 * q); r < n && r < (int)(64 * q + 64); r++) {
            const rjob *j = &e->jobs[e->wperm[r]];
            unsigned cr = 0, cn = 0;
            for (int i = 0; i < j->nsk; i++) {
                int b = e->post_bit[JSK(e, j, i)];
                if (b >= 0) {
                    int req = JREQ(e, j, i);
                    blk[2 * b + !req] |= 1ULL << (r % 64);
                    cr += (unsigned)req;
                    cn += (unsigned)!req;
                }
            }
            e->rcw[r] = (uint8_t)((cr < 31 ? cr : 31) | (cn < 7 ? cn : 7) << 5);
            if (r == 0 || memcmp(&j->wsum, &e->jobs[e->wperm[r - 1]].wsum, 4))
                ncls++;
            e->rcls[r] = (uint32_t)(ncls - 1);
        }
        for (int x = 0; x < 128; x++)
            e->rbits[(size_t)x * rw + q] = blk[x];
    }
    e->cls_w = malloc(sizeof(float) * (size_t)(ncls ? ncls : 1));
    if (!e->cls_w)
        goto fail;
    for (int r = 0; r < n; r++)
        e->cls_w[e->rcls[r]] = e->jobs[e->wperm[r]].wsum;
    e->ncls = ncls;
    if (rank_cls_derive(e))
        goto fail;
    e->wperm_n = n;
    free(top);
    free(cnt);
    free(tmp);
    free(hist);
    free(len);
    e->accel = 1;
    return;
fail:
    free(top);
    free(cnt);
    free(tmp);
    free(hist);
    free(len);
    accel_free(e);
}

typedef struct accel_arg {
    rank_engine *e;
    int V;
    double secs;
} accel_arg;

static void *accel_main(void *arg)
{
    accel_arg *a = arg;
    double t = jm_now();
    accel_build(a->e, a->V);
    a->secs = jm_now() - t;
    return NULL;
}

typedef struct skill_ctx {
    rank_engine *e;
    float *tmp;
} skill_ctx;

static int on_skill(void *ctx, const char *name, const char *display, const unsigned char *emb, size_t len)
{
    skill_ctx *c = ctx;
    if (!emb || len != (size_t)c->e->dim * 4)
        return JM_OK;
    int i = sk_add(c->e->voc, name, display);
    if (i < 0)
        return JM_ENOMEM;
    db_vec_from_le(emb, c->e->dim, c->tmp);
    return sk_set_embedding(c->e->voc, i, c->tmp);
}

static int load_skills(rank_engine *e, jm_err *err)
{
    skill_ctx c = {e, malloc(sizeof(float) * (size_t)e->dim)};
    if (!c.tmp)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    int rc = db_scan_skills(e->d, e->model_id, on_skill, &c, err);
    if (rc == JM_ENOMEM)
        rc = jm_fail(err, JM_ENOMEM, "out of memory loading skills");
    free(c.tmp);
    if (rc == JM_OK)
        rc = sk_finish(e->voc, e->live, err);
    return rc;
}

static int ignore_row(void *ctx, const db_row *r)
{
    (void)ctx;
    (void)r;
    return JM_OK;
}

int rank_db_rev(const rank_engine *e, int64_t *now, jm_err *err)
{
    return db_changes(e->d, e->model_id, INT64_MAX, ignore_row, NULL, now, err);
}

/* A new engine with nothing loaded. */
static int engine_new(db *d, const bert_model *model, const rank_opts *opts, rank_engine **out, jm_err *err)
{
    *out = NULL;
    rank_engine *e = calloc(1, sizeof *e);
    if (!e)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    if (opts)
        e->o = *opts;
    else
        rank_opts_default(&e->o);
    e->o.snapshot = NULL; /* the caller's string: rank_open only */
    e->d = d;
    e->arena16 = 1;
    e->model = model;
    e->dim = bert_dim(model);
    snprintf(e->model_id, sizeof e->model_id, "%s", bert_model_id(model));
    pthread_rwlock_init(&e->lock, NULL);
    pthread_mutex_init(&e->dblock, NULL);
    pthread_mutex_init(&e->qlock, NULL);
    e->tuned_on = "none";
    int rc = sk_vocab_new(e->dim, &e->voc, err);
    e->vec_tmp = malloc(sizeof(float) * (size_t)e->dim);
    if (rc == JM_OK && (!e->vec_tmp || vc_new(e->dim, e->o.cache_entries, &e->cache)))
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    if (rc == JM_OK && e->o.index_mode == RANK_INDEX_MEMORY) {
        rc = idx_new(e->dim, &e->ix, err);
        if (rc == JM_OK && e->o.ivf_min > 0)
            rc = idx_set_ivf(e->ix, (size_t)e->o.ivf_min, err);
        /* until rank_tune measures the depth, a search reads every list:
         * exact, and slower only by the lists it need not have read */
        if (rc == JM_OK)
            rc = idx_set_probe(e->ix, INT_MAX, IDX_FILTER_EXP, err);
        if (rc == JM_OK && !(e->qring = malloc(sizeof(float) * RANK_QRING * (size_t)e->dim)))
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
    }
    if (rc) {
        rank_close(e);
        return rc;
    }
    *out = e;
    return JM_OK;
}

/* The engine from a snapshot, then the changes since it was written. */
static int open_snapshot(rank_engine *e, const char *path, jm_err *err)
{
    const char *why = NULL;
    int rc = rank_snap_load(e, path, &why, err);
    if (rc) {
        e->snap_why = why;
        return rc;
    }
    double t1 = jm_now();
    rc = load_skills(e, err);
    if (rc == JM_OK && !e->accel)
        accel_build(e, sk_count(e->voc));
    double t2 = jm_now();
    int applied = 0;
    e->last_refresh = e->last_skills_check = jm_now();
    if (rc == JM_OK)
        rc = rank_refresh(e, &applied, err);
    if (getenv("JOBMATCH_TRACE"))
        fprintf(stderr, "rank: load: snapshot %s, skills %.3f s, %d changes since applied in %.3f s\n", path,
                t2 - t1, applied, jm_now() - t2);
    e->from_snapshot = rc == JM_OK;
    if (e->ix && idx_probe(e->ix) < idx_nlist(e->ix)) { /* else written before a calibration: due */
        e->tuned_nlist = idx_nlist(e->ix);
        e->tuned_at = jm_now();
        e->tuned_on = "snapshot";
    }
    return rc;
}

int rank_open(db *d, const bert_model *model, const rank_opts *opts, rank_engine **out, jm_err *err)
{
    *out = NULL;
    double t0 = jm_now();
    rank_engine *e;
    int rc = engine_new(d, model, opts, &e, err);
    if (rc)
        return rc;
    const char *why = NULL;
    if (opts && opts->snapshot && *opts->snapshot) {
        rc = open_snapshot(e, opts->snapshot, err);
        if (rc == JM_OK) {
            e->load_secs = jm_now() - t0;
            *out = e;
            return JM_OK;
        }
        why = e->snap_why;
        rank_close(e);
        if (rc < 0 && !why)
            return rc; /* the database failed while the changes were applied */
        if ((rc = engine_new(d, model, opts, &e, err)))
            return rc;
        e->snap_why = why ? why : "unreadable";
        if (getenv("JOBMATCH_TRACE"))
            fprintf(stderr, "rank: load: snapshot %s not used: %s\n", opts->snapshot, e->snap_why);
    }
    /* The change-log position first: whatever changes during the load is
     * applied again by the first refresh, harmlessly. */
    int64_t now = 0;
    rc = rank_db_rev(e, &now, err);
    int applied = 0;
    double t1 = jm_now();
    int64_t expect = 0;
    jm_err ignored;
    if (rc == JM_OK && e->ix && db_jobs_estimate(e->d, &expect, &ignored) == JM_OK && expect > 0)
        idx_bulk_begin(e->ix, (size_t)expect); /* the lists trained once, not at each doubling */
    if (rc == JM_OK)
        rc = load_jobs(e, &applied, err);
    if (rc == JM_OK && e->ix)
        rc = idx_bulk_end(e->ix, err);
    double t2 = jm_now();
    /* The skill pass's structures need only the jobs (and the vocabulary size
     * now: skills the skills table adds are listed by no job): built on a
     * second thread while this one reads the skills table. */
    accel_arg aa = {e, sk_count(e->voc), 0};
    pthread_t at;
    int threaded = rc == JM_OK && pthread_create(&at, NULL, accel_main, &aa) == 0;
    if (rc == JM_OK)
        rc = load_skills(e, err);
    if (threaded)
        pthread_join(at, NULL);
    else if (rc == JM_OK)
        accel_main(&aa);
    if (rc) {
        rank_close(e);
        return rc;
    }
    if (getenv("JOBMATCH_TRACE"))
        fprintf(stderr, "rank: load: jobs %.3f s, skills %.3f s (skill-pass structures %.3f s beside)\n", t2 - t1,
                jm_now() - t2, aa.secs);
#ifdef __GLIBC__
    malloc_trim(0); /* what the load grew and freed goes back to the system */
#endif
    e->rev = now;
    e->last_refresh = e->last_skills_check = jm_now();
    /* The probe depth is not measured here: searches read every list until
     * rank_tune (due now) measures it, beside the queries. */
    e->load_secs = jm_now() - t0;
    *out = e;
    return JM_OK;
}

void rank_close(rank_engine *e)
{
    if (!e)
        return;
    free(e->jobs);
    for (int i = 0; i < e->sblk_n; i++)
        free(e->sblk[i]);
    free(e->sblk);
    free(e->strs);
    accel_free(e);
    free(e->livebits);
    free(e->dirty);
    free(e->dirty_list);
    free(e->vec_tmp);
    free(e->qring);
    vc_free(e->cache);
    free(e->arena);
    free(e->id_slots);
    free(e->raw_keys);
    free(e->raw_vals);
    free(e->raw_hash);
    free(e->vstamp);
    sk_vocab_free(e->voc);
    idx_free(e->ix);
    pthread_rwlock_destroy(&e->lock);
    pthread_mutex_destroy(&e->qlock);
    pthread_mutex_destroy(&e->dblock);
    free(e);
}

/* Does a changed row need applying (the read-only half of on_row)? */
static int row_is_new(const rank_engine *e, const db_row *r)
{
    int slot = rank_slot(e, r->job.id);
    if (r->deleted)
        return slot >= 0 && e->jobs[slot].live && r->rev >= e->jobs[slot].rev;
    return !(slot >= 0 && e->jobs[slot].live && r->rev && r->rev <= e->jobs[slot].rev);
}

/* Changed rows copied out of the database's scan, to apply under the write lock. */
typedef struct pending {
    const rank_engine *e;
    db_row *rows;
    int n, cap;
} pending;

static char *dup_or_null(const char *s, int *oom)
{
    char *d = s ? strdup(s) : NULL;
    *oom |= s && !d;
    return d;
}

static int collect_row(void *ctx, const db_row *r)
{
    pending *p = ctx;
    if (!row_is_new(p->e, r))
        return JM_OK;
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 64;
        db_row *a = realloc(p->rows, sizeof(db_row) * (size_t)nc);
        if (!a)
            return JM_ENOMEM;
        p->rows = a;
        p->cap = nc;
    }
    db_row *d = &p->rows[p->n];
    memset(d, 0, sizeof *d);
    int oom = 0;
    const db_job *j = &r->job;
    db_job_init(&d->job);
    d->job.id = dup_or_null(j->id, &oom);
    d->job.title = dup_or_null(j->title, &oom);
    d->job.company = dup_or_null(j->company, &oom);
    d->job.location = dup_or_null(j->location, &oom);
    d->job.currency = dup_or_null(j->currency, &oom);
    d->job.employment_type = dup_or_null(j->employment_type, &oom);
    d->job.seniority = dup_or_null(j->seniority, &oom);
    d->job.posted_at = dup_or_null(j->posted_at, &oom);
    /* the description is not kept by the engine */
    d->job.remote = j->remote;
    d->job.salary_min = j->salary_min;
    d->job.salary_max = j->salary_max;
    if (j->nskills) {
        d->job.skills = calloc((size_t)j->nskills, sizeof(db_skill));
        oom |= !d->job.skills;
        for (int i = 0; d->job.skills && i < j->nskills; i++) {
            d->job.skills[i].name = dup_or_null(j->skills[i].name, &oom);
            d->job.skills[i].required = j->skills[i].required;
            d->job.nskills = i + 1;
        }
    }
    if (r->emb && r->emb_len) {
        unsigned char *b = malloc(r->emb_len);
        oom |= !b;
        if (b)
            memcpy(b, r->emb, r->emb_len);
        d->emb = b;
        d->emb_len = b ? r->emb_len : 0;
    }
    d->rev = r->rev;
    d->deleted = r->deleted;
    p->n++;
    return oom ? JM_ENOMEM : JM_OK;
}

static void pending_free(pending *p)
{
    for (int i = 0; i < p->n; i++) {
        db_job_clear(&p->rows[i].job);
        free((void *)p->rows[i].emb);
    }
    free(p->rows);
}

/* Two steps, so that a refresh with nothing to apply never blocks queries:
 * the change log is read (the slack window re-reads the last
 * DB_CHANGES_SLACK changes: ~200 ms at 100,000 jobs on SQLite) under the read
 * lock, keeping only the rows not yet applied; the write lock is taken only
 * when there are some, or skills to re-read. */
int rank_refresh(rank_engine *e, int *applied, jm_err *err)
{
    if (applied)
        *applied = 0;
    struct {
        rank_engine *e;
        jm_err *err;
        int applied;
    } c = {e, err, 0};
    int64_t now = 0;
    pending p = {e, NULL, 0, 0};
    pthread_rwlock_rdlock(&e->lock);
    pthread_mutex_lock(&e->dblock);
    int64_t since = e->rev > DB_CHANGES_SLACK ? e->rev - DB_CHANGES_SLACK : 0;
    int rc = db_changes(e->d, e->model_id, since, collect_row, &p, &now, err);
    pthread_mutex_unlock(&e->dblock);
    /* Skills without an embedding may have been embedded since (by `jobmatch
     * embed`): re-read them at most once a minute, as that holds the write
     * lock (~70 ms at 8,700 skills); a job change re-reads them at once. */
    int missing_emb = 0;
    if (rc == JM_OK && jm_now() - e->last_skills_check >= 60)
        for (int i = 0; i < sk_count(e->voc) && !missing_emb; i++)
            missing_emb |= sk_embedding(e->voc, i) == NULL;
    pthread_rwlock_unlock(&e->lock);
    if (rc == JM_ENOMEM)
        rc = jm_fail(err, JM_ENOMEM, "out of memory reading the changes");
    if (rc == JM_OK && (p.n || missing_emb || now > e->rev)) {
        pthread_rwlock_wrlock(&e->lock);
        for (int i = 0; rc == JM_OK && i < p.n; i++)
            rc = on_row(&c, &p.rows[i]);
        pthread_mutex_lock(&e->dblock);
        if (rc == JM_OK && (c.applied || missing_emb)) {
            rc = load_skills(e, err); /* embeddings of new skills, IDFs, aliases */
            e->last_skills_check = jm_now();
        }
        /* Jobs put since the skill pass's structures were built are scored by
         * every query; once they are many, rebuild (O(jobs + their skills)). */
        if (rc == JM_OK && (e->ndirty > 4096 + e->live / 32 || (!e->accel && c.applied)))
            accel_build(e, sk_count(e->voc));
        pthread_mutex_unlock(&e->dblock);
        if (rc == JM_OK && now > e->rev)
            e->rev = now;
        if (rc == JM_OK)
            e->last_refresh = jm_now();
        pthread_rwlock_unlock(&e->lock);
    } else if (rc == JM_OK) {
        e->last_refresh = jm_now(); /* a hint for rank_recommend, read without the lock */
    }
    pending_free(&p);
    if (applied)
        *applied = c.applied;
    return rc;
}

void rank_get_info(rank_engine *e, rank_info *out)
{
    pthread_rwlock_rdlock(&e->lock);
    out->jobs = e->live;
    out->with_vectors = e->with_vec;
    out->skills = sk_count(e->voc);
    out->index_bytes = e->ix ? (int64_t)idx_bytes(e->ix) : 0;
    out->load_secs = e->load_secs;
    out->rev = e->rev;
    out->mode = e->ix ? "memory" : "stream";
    vc_stats cs;
    vc_get_stats(e->cache, &cs);
    out->cache_hits = cs.hits;
    out->cache_misses = cs.misses;
    out->cache_entries = cs.entries;
    out->cache_bytes = (int64_t)cs.bytes;
    out->from_snapshot = e->from_snapshot;
    out->snapshot_why = e->snap_why;
    out->snapshot_rev = e->snap_rev;
    out->index_lists = e->ix ? idx_nlist(e->ix) : 0;
    out->index_probe = e->ix && idx_nlist(e->ix) ? idx_probe(e->ix) : 0;
    if (out->index_probe > out->index_lists)
        out->index_probe = out->index_lists; /* every list (not calibrated yet) */
    out->index_spread = e->ix ? idx_spread(e->ix) : 0;
    out->probe_from = e->tuned_on;
    pthread_rwlock_unlock(&e->lock);
}

void rank_cache_clear(rank_engine *e) { vc_clear(e->cache); }

void rank_set_reference(rank_engine *e, int on)
{
    pthread_rwlock_wrlock(&e->lock);
    e->reference = on != 0;
    pthread_rwlock_unlock(&e->lock);
}

/* ---------- the person's profile ---------- */

void rprofile_free(rprofile *p)
{
    for (int i = 0; i < p->n; i++) {
        if (p->skills)
            free(p->skills[i]);
        if (p->typed)
            free(p->typed[i]);
    }
    free(p->skills);
    free(p->typed);
    free(p->emb);
    free(p->profile);
    free(p->pcorp);
    free(p->lnum);
    free(p->best_sim);
    free(p->best_user);
    free(p->kind);
    memset(p, 0, sizeof *p);
}

/* Two user skills are the same when their normalised names or loose keys are
 * equal, or an alias of one is an alias of the other ("JS" / "JavaScript"). */
static int same_skill(const rank_engine *e, const char *a, const char *b)
{
    char ka[512], kb[512];
    if (!strcmp(a, b))
        return 1;
    sk_loose_key(a, ka, sizeof ka);
    sk_loose_key(b, kb, sizeof kb);
    if (ka[0] && !strcmp(ka, kb))
        return 1;
    int ia[16], ib[16];
    int na = sk_alias_matches(e->voc, a, ia, 16), nb = sk_alias_matches(e->voc, b, ib, 16);
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (ia[i] == ib[j])
                return 1;
    return 0;
}

int rprofile_build(rank_engine *e, bert_pool *pool, const char *const *skills, int nskills, rprofile *p,
                   jm_err *err)
{
    memset(p, 0, sizeof *p);
    int D = e->dim, V = sk_count(e->voc), rc = JM_OK;
    p->skills = calloc((size_t)nskills + 1, sizeof(char *));
    p->typed = calloc((size_t)nskills + 1, sizeof(char *));
    if (!p->skills || !p->typed)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    for (int i = 0; i < nskills; i++) {
        char *norm = db_skill_norm(skills[i]);
        if (!norm)
            continue;
        int dup = 0;
        for (int k = 0; k < p->n && !dup; k++)
            dup = same_skill(e, p->skills[k], norm);
        if (dup) {
            free(norm);
            continue;
        }
        p->skills[p->n] = norm;
        p->typed[p->n] = strdup(skills[i]);
        if (!p->typed[p->n]) {
            p->n++;
            rprofile_free(p);
            return jm_fail(err, JM_ENOMEM, "out of memory");
        }
        p->n++;
    }
    if (p->n == 0) {
        rprofile_free(p);
        return jm_fail(err, JM_EINVAL, "no skills given");
    }
    p->emb = malloc(sizeof(float) * (size_t)p->n * D);
    p->profile = malloc(sizeof(float) * (size_t)D);
    p->pcorp = malloc(sizeof(float) * (size_t)p->n);
    p->lnum = malloc(sizeof(float) * 3 * (size_t)p->n);
    p->best_sim = malloc(sizeof(float) * (size_t)(V ? V : 1));
    p->best_user = malloc(sizeof(int) * (size_t)(V ? V : 1));
    p->kind = malloc((size_t)(V ? V : 1));
    const char **texts = malloc(sizeof(char *) * (size_t)(p->n + 1));
    int *which = malloc(sizeof(int) * (size_t)(p->n + 1));
    float *vecs = malloc(sizeof(float) * (size_t)(p->n + 1) * D);
    size_t plen = 0;
    for (int i = 0; i < p->n; i++)
        plen += strlen(p->typed[i]) + 2;
    char *joined = malloc(plen + 1);
    if (!p->emb || !p->profile || !p->pcorp || !p->lnum || !p->best_sim || !p->best_user || !p->kind || !texts || !which ||
        !vecs || !joined) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    /* Skills the skills table knows reuse its embedding; the others, and the
     * whole profile, come from the cache or are embedded now in one batch. */
    char *jp = joined;
    int nt = 0;
    for (int i = 0; i < p->n; i++) {
        size_t l = strlen(p->typed[i]);
        if (i)
            *jp++ = ' '; /* not ", ": see docs/ranking.md, "The profile" */
        memcpy(jp, p->typed[i], l);
        jp += l;
        int v = sk_find(e->voc, p->skills[i]);
        const float *known = v >= 0 ? sk_embedding(e->voc, v) : NULL;
        if (known) {
            memcpy(p->emb + (size_t)i * D, known, sizeof(float) * D);
        } else if (!vc_get(e->cache, p->typed[i], p->emb + (size_t)i * D)) {
            texts[nt] = p->typed[i];
            which[nt++] = i;
        }
    }
    *jp = 0;
    if (!vc_get(e->cache, joined, p->profile)) {
        texts[nt] = joined;
        which[nt++] = -1;
    }
    if (nt) {
        rc = bert_embed(pool, nt, texts, NULL, vecs, NULL, err);
        if (rc)
            goto out;
    }
    for (int t = 0; t < nt; t++) {
        memcpy(which[t] >= 0 ? p->emb + (size_t)which[t] * D : p->profile, vecs + (size_t)t * D,
               sizeof(float) * D);
        vc_put(e->cache, texts[t], vecs + (size_t)t * D);
    }
    /* exact similarities where they can reach a threshold; the others on
     * demand (rprofile_sim) */
    float floor = e->reference ? -1.0f : e->o.partial < e->o.have ? e->o.partial : e->o.have;
    rc = sk_match_floor(e->voc, (const char *const *)p->skills, p->emb, p->n, floor, p->best_sim, p->best_user,
                        p->kind, err);
    if (rc)
        goto out;
    /* p(u), a user skill's share of all job skills (the likelihood's
     * smoothing): the document frequency of the vocabulary skill it matches
     * best (exact first, then alias or semantic), or ~0 when no skill of the
     * corpus is even a partial match (a rare skill). One pass over the
     * vocabulary: every skill has one best user skill. */
    double occurrences = 0;
    float *best = malloc(sizeof(float) * (size_t)p->n);
    int *bestdf = calloc((size_t)p->n, sizeof(int));
    if (!best || !bestdf) {
        free(best);
        free(bestdf);
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    for (int u = 0; u < p->n; u++)
        best[u] = -2;
    for (int s = 0; s < V; s++) {
        occurrences += sk_df(e->voc, s);
        int u = p->best_user[s];
        float sim = p->best_sim[s] + (p->kind[s] == SK_EXACT ? 1.0f : 0.0f);
        if (u >= 0 && sim > best[u]) {
            best[u] = sim;
            bestdf[u] = sk_df(e->voc, s);
        }
    }
    for (int u = 0; u < p->n; u++) {
        int df = best[u] < e->o.partial ? 0 : bestdf[u];
        p->pcorp[u] = (float)((df + 0.5) / (occurrences + 1.0));
        float mp = e->o.mu * p->pcorp[u];
        p->lnum[3 * u] = logf(mp);
        p->lnum[3 * u + 1] = logf(e->o.nice_credit + mp);
        p->lnum[3 * u + 2] = logf(1.0f + mp);
    }
    free(best);
    free(bestdf);
out:
    free(texts);
    free(which);
    free(vecs);
    free(joined);
    if (rc)
        rprofile_free(p);
    return rc;
}

/* ---------- scoring ---------- */

static int ci_contains(const char *hay, const char *needle)
{
    if (!hay)
        return 0;
    size_t n = strlen(needle);
    for (const char *h = hay; *h; h++)
        if (!strncasecmp(h, needle, n))
            return 1;
    return n == 0;
}

/* The job's salary range overlaps the filter's [min, max]; a job without a
 * salary does not pass a salary filter. */
static int salary_ok(const rjob *j, const rank_filters *f)
{
    if (isnan(f->salary_min) && isnan(f->salary_max))
        return 1;
    if (isnan(j->smin) && isnan(j->smax))
        return 0;
    float lo = isnan(j->smin) ? j->smax : j->smin, hi = isnan(j->smax) ? j->smin : j->smax;
    return !(!isnan(f->salary_min) && hi < f->salary_min) && !(!isnan(f->salary_max) && lo > f->salary_max);
}

static int passes(const rank_engine *e, const rjob *j, const rank_filters *f, int posted_since)
{
    if (!j->live)
        return 0;
    const char *emp = rank_str(e, j->emp), *sen = rank_str(e, j->sen);
    if (f->location && *f->location && !ci_contains(rank_str(e, j->location), f->location))
        return 0;
    if (f->remote_only && j->remote != 1)
        return 0;
    if (!salary_ok(j, f))
        return 0;
    if (f->employment_type && *f->employment_type && (!emp || strcasecmp(emp, f->employment_type)))
        return 0;
    if (f->seniority && *f->seniority && (!sen || strcasecmp(sen, f->seniority)))
        return 0;
    if (posted_since != INT32_MIN && (j->posted == INT32_MIN || j->posted < posted_since))
        return 0;
    for (int i = 0; i < f->nexclude; i++)
        if (!strcmp(rank_str(e, j->id), f->exclude[i]))
            return 0;
    return 1;
}

static inline __attribute__((always_inline)) void score_core_w(const rank_engine *e, const rprofile *p,
                                                                const void *base, int w16, size_t off, int nsk,
                                                                float wsum, float lw, unsigned char *ucredit,
                                                                float *q, float *c)
{
    memset(ucredit, 0, (size_t)p->n);
    float got = 0;
    for (int i = 0; i < nsk; i++) {
        uint32_t x = w16 ? ((const uint16_t *)base)[off + (size_t)i] : ((const uint32_t *)base)[off + (size_t)i];
        int s = (int)(x >> 1), req = (int)(x & 1);
        float sim = p->best_sim[s];
        if (sim < e->o.partial)
            continue;
        float w = rank_skill_weight(e, req);
        float cr = sim >= e->o.have ? 1.0f : 0.5f;
        got += w * cr;
        /* The likelihood counts only skills the person names (q_names):
         * related skills, and different products of one kind, are evidence
         * for coverage, not for which job these very skills came from. A
         * job skill counts its weight. */
        int u = p->best_user[s];
        unsigned char level = cr >= 1.0f && q_names(e, p, s) ? (req ? 2 : 1) : 0;
        if (u >= 0 && level > ucredit[u])
            ucredit[u] = level;
    }
    float ll = 0;
    for (int u = 0; u < p->n; u++)
        ll += p->lnum[3 * u + ucredit[u]];
    *q = ll / p->n - lw; /* raw average log-likelihood; made relative later */
    *c = got / (wsum + e->o.shrink);
}

/* Q and C of the job whose skills are arena entries off .. off + nsk (see
 * rank.h), weight total wsum, lw = job_lw(wsum). ucredit is scratch of
 * p->n bytes: which of the three likelihood numerators (0, nice_credit, 1)
 * each user skill gets. No log() here: lnum is made once per query. */
static void score_core(const rank_engine *e, const rprofile *p, size_t off, int nsk, float wsum, float lw,
                       unsigned char *ucredit, float *q, float *c)
{
    if (e->arena16)
        score_core_w(e, p, e->arena, 1, off, nsk, wsum, lw, ucredit, q, c);
    else
        score_core_w(e, p, e->arena, 0, off, nsk, wsum, lw, ucredit, q, c);
}

/* Q and C of one job (see rank.h). */
static void score_skills(const rank_engine *e, const rprofile *p, const rjob *j, unsigned char *ucredit, float *q,
                         float *c)
{
    score_core(e, p, j->sk_off, j->nsk, j->wsum, job_lw(e, j->wsum), ucredit, q, c);
}

typedef struct cand {
    int slot;
    float q, c, s, k, score;
    int has_s;
} cand;

/* by the skill pass's key: score descending, then slot */
static int cmp_cand_x(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->slot - y->slot;
}

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->slot - y->slot;
}

/* A bounded min-heap keeping the best `cap` candidates by (score descending,
 * slot ascending): a total order, so which candidates are kept does not depend
 * on the order they are offered in (the skill pass offers only some jobs, in
 * its own order, and must keep what scoring every job in slot order keeps). */
typedef struct heap {
    cand *c;
    int n, cap;
} heap;

static inline int cand_worse(const cand *a, const cand *b)
{
    return a->score < b->score || (a->score == b->score && a->slot > b->slot);
}

static void heap_push(heap *h, cand x)
{
    if (h->n < h->cap) {
        int i = h->n++;
        h->c[i] = x;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!cand_worse(&h->c[i], &h->c[p]))
                break;
            cand t = h->c[p];
            h->c[p] = h->c[i];
            h->c[i] = t;
            i = p;
        }
        return;
    }
    if (h->cap == 0 || !cand_worse(&h->c[0], &x))
        return;
    h->c[0] = x;
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && cand_worse(&h->c[l], &h->c[m]))
            m = l;
        if (r < h->n && cand_worse(&h->c[r], &h->c[m]))
            m = r;
        if (m == i)
            break;
        cand t = h->c[m];
        h->c[m] = h->c[i];
        h->c[i] = t;
        i = m;
    }
}

/* ---------- the filters, as a bitmap ---------- */

/* A direct-mapped memo of a string predicate by handle: the strings a
 * filter looks at (location, employment type, seniority) are interned, so
 * each distinct one is tested once per query, not once per job. */
#define MEMO_SIZE 1024
typedef struct smemo {
    uint32_t h;
    int r;
} smemo;

static int memo_find(smemo *m, uint32_t h, int *r)
{
    smemo *x = &m[(uint64_t)h * 0x9E3779B97F4A7C15ULL >> 54];
    if (h && x->h == h) {
        *r = x->r;
        return 1;
    }
    return 0;
}

static int memo_keep(smemo *m, uint32_t h, int r)
{
    if (h) {
        smemo *x = &m[(uint64_t)h * 0x9E3779B97F4A7C15ULL >> 54];
        x->h = h;
        x->r = r;
    }
    return r;
}

/* passes() for a live job, with the string tests memoised. */
static int passes_memo(const rank_engine *e, const rjob *j, const rank_filters *f, int posted_since, smemo *memo)
{
    int r;
    if (f->location && *f->location &&
        !(memo_find(memo, j->location, &r)
              ? r
              : memo_keep(memo, j->location, ci_contains(rank_str(e, j->location), f->location))))
        return 0;
    if (f->remote_only && j->remote != 1)
        return 0;
    if (!salary_ok(j, f))
        return 0;
    smemo *me = memo + MEMO_SIZE, *ms = memo + 2 * MEMO_SIZE;
    if (f->employment_type && *f->employment_type &&
        !(memo_find(me, j->emp, &r)
              ? r
              : memo_keep(me, j->emp, j->emp && !strcasecmp(rank_str(e, j->emp), f->employment_type))))
        return 0;
    if (f->seniority && *f->seniority &&
        !(memo_find(ms, j->sen, &r) ? r
                                    : memo_keep(ms, j->sen, j->sen && !strcasecmp(rank_str(e, j->sen), f->seniority))))
        return 0;
    if (posted_since != INT32_MIN && (j->posted == INT32_MIN || j->posted < posted_since))
        return 0;
    return 1;
}

/* allow: bit s set = slot s passes the filters (words: livebits_words);
 * returns how many do. The reference path tests passes() on every slot. */
static int64_t filter_allow(const rank_engine *e, const rank_filters *f, int posted_since, uint64_t *allow,
                            int reference)
{
    int words = e->livebits_words;
    int64_t n = 0;
    if (reference) {
        memset(allow, 0, sizeof(uint64_t) * (size_t)words);
        for (int s = 0; s < e->njobs; s++)
            if (passes(e, &e->jobs[s], f, posted_since)) {
                allow[s / 64] |= 1ULL << (s % 64);
                n++;
            }
        return n;
    }
    memcpy(allow, e->livebits, sizeof(uint64_t) * (size_t)words);
    int any = (f->location && *f->location) || f->remote_only || !isnan(f->salary_min) || !isnan(f->salary_max) ||
              (f->employment_type && *f->employment_type) || (f->seniority && *f->seniority) ||
              posted_since != INT32_MIN;
    smemo *memo = any ? calloc(3 * MEMO_SIZE, sizeof(smemo)) : NULL;
    if (any && !memo)
        return -1;
    for (int w = 0; any && w < words; w++)
        for (uint64_t bits = allow[w]; bits; bits &= bits - 1) {
            int b = __builtin_ctzll(bits);
            if (!passes_memo(e, &e->jobs[w * 64 + b], f, posted_since, memo))
                allow[w] &= ~(1ULL << b);
        }
    free(memo);
    /* ids are unique to a slot: excluding an id is clearing its slot */
    for (int i = 0; i < f->nexclude; i++) {
        int s = f->exclude[i] ? rank_slot(e, f->exclude[i]) : -1;
        if (s >= 0)
            allow[s / 64] &= ~(1ULL << (s % 64));
    }
    for (int w = 0; w < words; w++)
        n += __builtin_popcountll(allow[w]);
    return n;
}

/* ---------- the skill pass ----------
 *
 * The first candidate set is the best C jobs that pass the filters by
 * x = Q_raw + w_coverage C (Q_raw the average log-likelihood before it is
 * made relative), ties to the lower slot. The reference path scores every
 * job (~10 ms at 100,000 jobs); this one scores only jobs that can make the
 * set, and proves the others cannot.
 *
 * A job's x is (sum_u lnum[u][level_u]) / n - lw(wsum) + w_c got /
 * (wsum + shrink): level_u (none, nice, required) is how the job lists a
 * have-match of user skill u that the likelihood counts (a vocabulary skill
 * that is u's best match: exact, alias or a semantic one >= have and >=
 * query_have, q_names), got sums the weights of the job's skills times
 * their credit (1 for a have-match, counted or not, 0.5 for a partial
 * one). Each vocabulary skill has either a postings list (entries: the
 * job's rank and whether it requires the skill) or, for the 64 skills most
 * jobs list, a bit in two bitmaps over the ranks (listed as required, as
 * nice-to-have: rbits).
 * Jobs are ranked by wsum ascending; the per-rank data (bitmaps, wsum
 * class, skills) is laid out in that order.
 *
 * For a job not scored yet at rank r the bound is
 *     ll / n - lw(wsum) + w_c gotb / (wsum + shrink),
 * ll = sum over users u of lnum[u][level_u], with level_u from the masked
 * bits and from the postings entries at r (exact: every list of every
 * user's counted have-matches is merged), and gotb = the masked skills'
 * exact credit + the weight found on the lists + 0.5 times the rest of wsum
 * (the other skills can be partial matches at most). The lists of the
 * have-matches the likelihood does not count are merged too, for their
 * weight only. g_u = the most user skill u can add, max(lnum[u][1],
 * lnum[u][2]) - lnum[u][0]; L0 = sum of lnum[u][0].
 * thr = the heap's worst less a margin (SLACK), once the heap is full: a
 * job whose bound is below thr cannot enter it.
 * 0. When few jobs pass the filters (at most 1/64 of them), each is scored:
 *    cheaper than bounding ranks most of which the filters drop.
 * 1. The dirty jobs (put since the build) are scored.
 * 2. The lists of all user skills' have-matches are merged by rank, in
 *    windows of W ranks: each list's entries in the window are spread into
 *    per-rank levels (no heap of cursors); then, a word of 64 ranks at a
 *    time, the masked matches' levels are added from the bitmaps, and each
 *    listed rank is bounded: ll at once, from tables; the ranks passing that
 *    first test wait while their data is prefetched, then take it again
 *    with thr as it is then and the finer coverage bound, and are scored.
 *    The merge ends at the first rank from which even L0 + the g of every
 *    user, plus the largest -lw(wsum) + w_c wsum / (wsum + shrink) there,
 *    cannot reach thr.
 * 3. The jobs in rank order with only the masked matches (nothing found on
 *    lists), 64 ranks at a time: from the bitmaps of the users' masked
 *    matches, a word of the ranks whose ll can reach what thr leaves (see
 *    the step), then those ranks one by one as in step 2; until the same
 *    kind of end (with only the users that have masked matches adding). A
 *    job on the lists that step 2 skipped was proven out already, so
 *    bounding it now as if it had none only underestimates it.
 * A job skipped scores below C jobs already in the heap, so the heap ends as
 * the reference path's. Bounds are in double, with a margin far above the
 * rounding of the float scores. Returns 0, 1 when this path does not apply
 * (the caller takes the full pass), or JM_ENOMEM. *scored counts jobs scored. */
/* popcount without a library call (the file is built for any x86-64) */
static inline int pc64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
}

/* A cursor on a postings list: post[post_off[s] .. post_off[s + 1]), one
 * LEB128 varint per entry, (rank - the previous entry's rank - 1) << 1 |
 * required (the first entry: rank << 1 | required), ranks ascending: 21 MB
 * at 1M jobs where 16-bit entries took 34. */
typedef struct pcur {
    uint32_t pos, end, rank;   /* the current entry (rank UINT32_MAX: the list
                                * is done); pos: the next */
    int req, a;                /* a: the list's user, as an index in act[]
                                * (-1: a list for coverage only) */
} pcur;

static inline uint32_t leb_get(const uint8_t *p, uint32_t *pos)
{
    uint32_t x = p[(*pos)++];
    if (x < 128)
        return x;
    x &= 127;
    for (int sh = 7;; sh += 7) {
        uint32_t b = p[(*pos)++];
        x |= (b & 127) << sh;
        if (b < 128)
            return x;
    }
}

/* A cursor on skill s's list for act[a], at its first entry; 0 if empty. */
static inline int pcur_start(const rank_engine *e, pcur *c, int s, int a)
{
    *c = (pcur){.pos = e->post_off[s], .end = e->post_off[s + 1], .rank = UINT32_MAX, .a = a};
    if (c->pos >= c->end)
        return 0;
    uint32_t x = leb_get(e->post, &c->pos);
    c->rank = x >> 1;
    c->req = (int)(x & 1);
    return 1;
}

static int cmp_double_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Step 0 applies to at most 1/SP_FEW of the jobs. */
#define SP_FEW 64
/* Step 2's window: ranks merged at a time (fewer when many users list). */
#define SP_WINDOW 4096
/* Step 3 lists the least level combinations that pass while at most this
 * many users have masked matches (3^6 combinations). */
#define SP_TERM_USERS 6

/* A rank of step 2's window waiting for RANK_BELOW: its ll, the weight
 * found on the lists, its class bound. */
typedef struct s2cand {
    uint32_t r;
    double ll, found, cb;
} s2cand;

static int skill_pass_fast(const rank_engine *e, const rprofile *p, const uint64_t *allow, int64_t nallow, heap *h,
                           unsigned char *ucredit, int64_t *scored)
{
    if (!e->accel || e->reference || p->n < 1)
        return 1;
    int n = p->n, V = sk_count(e->voc), rc = JM_OK;
    double L0 = 0;
    double *g = malloc(sizeof(double) * (size_t)n);
    int *uoff = calloc((size_t)n + 2, sizeof(int)), *hs = NULL;
    int *act = malloc(sizeof(int) * (size_t)n);
    uint64_t *M = calloc((size_t)n, sizeof(uint64_t));
    uint64_t *seen = calloc((size_t)e->livebits_words, sizeof(uint64_t));
    pcur *cur = NULL;
    uint64_t *lev = NULL;
    uint32_t *nreq = NULL;
    s2cand *wc2 = NULL;
    double *qt = NULL, *S = NULL, *Ss = NULL;
    int *tk = NULL, *tend = NULL;
    uint64_t tb[SP_WINDOW / 64] = {0};
    if (!g || !uoff || !act || !M || !seen) {
        rc = JM_ENOMEM;
        goto out;
    }
    for (int u = 0; u < n; u++) {
        double l0 = p->lnum[3 * u], m = fmax(p->lnum[3 * u + 1], p->lnum[3 * u + 2]);
        if (!isfinite(l0) || !isfinite(m) || m < l0 || p->lnum[3 * u + 1] < l0) {
            rc = 1;
            goto out;
        }
        g[u] = m - l0;
        L0 += l0;
    }
    /* have-matches: the ones the likelihood counts (QN) masked into M[u],
     * the others listed bucketed by user; the have-matches it does not
     * count (semantic ones below query_have) and are listed, into hs after
     * them (coverage only: the lists' weight, no level); the masked skills'
     * credit as two masks. A skill new since the build is listed by dirty
     * jobs only. */
    float hthr = e->o.have > e->o.partial ? e->o.have : e->o.partial;
#define QN(s) (p->best_sim[s] >= hthr && p->best_user[s] >= 0 && q_names(e, p, (s)))
    uint64_t B1 = 0, Bh = 0;
    int ncov = 0;
    for (int s = 0; s < V && s < e->post_nv; s++) {
        float sim = p->best_sim[s];
        if (e->post_bit[s] >= 0 && sim >= e->o.partial) {
            if (sim >= e->o.have)
                B1 |= 1ULL << e->post_bit[s];
            else
                Bh |= 1ULL << e->post_bit[s];
        }
        if (QN(s)) {
            int u = p->best_user[s];
            if (e->post_bit[s] >= 0) {
                M[u] |= 1ULL << e->post_bit[s];
            } else {
                uoff[u + 2]++;
            }
        } else if (sim >= hthr && e->post_bit[s] < 0) {
            ncov++;
        }
    }
    for (int u = 0; u < n; u++)
        uoff[u + 2] += uoff[u + 1];
    size_t nlists = (size_t)uoff[n + 1] + (size_t)ncov;
    hs = malloc(sizeof(int) * (nlists ? nlists : 1));
    cur = malloc(sizeof(pcur) * (nlists ? nlists : 1));
    if (!hs || !cur) {
        rc = JM_ENOMEM;
        goto out;
    }
    ncov = 0;
    int counted = uoff[n + 1];
    for (int s = 0; s < V && s < e->post_nv; s++)
        if (e->post_bit[s] < 0) {
            if (QN(s))
                hs[uoff[p->best_user[s] + 1]++] = s;
            else if (p->best_sim[s] >= hthr)
                hs[counted + ncov++] = s;
        }
#undef QN
    /* now user u's listed have-matches are hs[uoff[u] .. uoff[u + 1]), the
     * coverage-only ones hs[uoff[n] .. uoff[n] + ncov) */
    double nn = n, l0n = L0 / nn, lmax = L0, cst = 0, nice = e->o.nice_weight;
    double wc = e->o.w.coverage > 0 ? e->o.w.coverage : 0, shrink = e->o.shrink;
    int nact = 0;
    for (int u = 0; u < n; u++) {
        if (M[u] || uoff[u + 1] > uoff[u]) {
            lmax += g[u]; /* L0 + the g of every user that can add */
            act[nact++] = u;
        } else {
            cst += p->lnum[3 * u];
        }
    }
    /* The nm users with masked have-matches (at most 64: the M[u] are
     * disjoint): user i is act[mact[i]], its masked matches are the bits
     * mlist[moff[i] .. moff[i + 1]); from them it adds d1[i] (listed as
     * nice-to-have) or d2[i] (required) to L0. rbl[]: the masked skills
     * the finer coverage bound reads, the partial matches or better. */
    double d1[64], d2[64];
    int nm = 0, moff[65], mlist[64], mact[64], rbl[64], nrb = 0;
    moff[0] = 0;
    for (int a = 0; a < nact; a++) {
        int u = act[a];
        if (M[u]) {
            d1[nm] = p->lnum[3 * u + 1] - p->lnum[3 * u];
            d2[nm] = p->lnum[3 * u + 2] - p->lnum[3 * u];
            mact[nm] = a;
            moff[nm + 1] = moff[nm];
            for (int b = 0; b < 64; b++)
                if (M[u] >> b & 1)
                    mlist[moff[nm + 1]++] = b;
            nm++;
        }
    }
    for (int b = 0; b < 64; b++)
        if ((B1 | Bh) >> b & 1)
            rbl[nrb++] = b;
    size_t rw = ((size_t)e->wperm_n + 63) / 64; /* words a bitmap */
    const uint64_t *rb = e->rbits;
    float wcf = e->o.w.coverage;
#define SLACK(t) (1e-4 * (1.0 + fabs(t) + fabs(l0n)) + 1e-5 * nn)
#define THR() (h->n == h->cap ? (double)h->c[0].score - SLACK(h->c[0].score) : -INFINITY)
#define BELOW(bound) ((bound) < thr)
    double thr = THR(); /* kept current by the VISITs */
#define VISIT(SLOT)                                                                                   \
    do {                                                                                              \
        int s_ = (int)(SLOT);                                                                         \
        uint64_t b_ = 1ULL << (s_ % 64);                                                              \
        if ((allow[s_ / 64] & b_) && !(seen[s_ / 64] & b_)) {                                         \
            seen[s_ / 64] |= b_;                                                                      \
            cand x_ = {.slot = s_};                                                                   \
            score_skills(e, p, &e->jobs[s_], ucredit, &x_.q, &x_.c);                                  \
            x_.score = x_.q + wcf * x_.c;                                                             \
            heap_push(h, x_);                                                                         \
            thr = THR();                                                                              \
            (*scored)++;                                                                              \
        }                                                                                             \
    } while (0)
    /* The same for a job reached by rank, from the rank-ordered data (no
     * read of its rjob). */
#define VISIT_RANK(R)                                                                                 \
    do {                                                                                              \
        uint32_t r_ = (R), c_ = e->rcls[r_];                                                          \
        int s_ = (int)e->wperm[r_];                                                                   \
        uint64_t b_ = 1ULL << (s_ % 64);                                                              \
        if ((allow[s_ / 64] & b_) && !(seen[s_ / 64] & b_)) {                                         \
            seen[s_ / 64] |= b_;                                                                      \
            cand x_ = {.slot = s_};                                                                   \
            score_core(e, p, e->roff[r_], (int)(e->roff[r_ + 1] - e->roff[r_]), e->cls_w[c_],        \
                       e->cls_logf[c_], ucredit, &x_.q, &x_.c);                                       \
            x_.score = x_.q + wcf * x_.c;                                                             \
            heap_push(h, x_);                                                                         \
            thr = THR();                                                                              \
            (*scored)++;                                                                              \
        }                                                                                             \
    } while (0)
    /* Does the job at rank R pass the filters, and is it not scored yet? */
#define RANK_OPEN(R)                                                                                  \
    ({                                                                                                \
        uint32_t s_ = e->wperm[(R)];                                                                  \
        (allow[s_ / 64] >> (s_ % 64) & 1) && !(seen[s_ / 64] >> (s_ % 64) & 1);                      \
    })
    /* Is the bound of the job at rank R (not scored yet) below thr, given
     * LL = its ll (cst + the sum over the users act[a] of lnum at the level
     * its masked bits and the lists give) and the weight found on the
     * lists? First with the largest coverage, then (only when that is not
     * enough) the finer one, for which rq_ and nc_ gather the job's bits of
     * rbl[] (required, nice-to-have); rcw's counts of its masked skills are
     * capped, which can only make rw_ larger. */
#define RBIT(b, k, r) (rb[(size_t)(2 * (b) + (k)) * rw + (r) / 64] >> ((r) % 64) & 1)
#define RANK_BELOW(R, LL, found)                                                                      \
    ({                                                                                                \
        uint32_t r_ = (R), c_ = e->rcls[r_];                                                          \
        double w_ = e->cls_w[c_], q_ = (LL) / nn + e->cls_lw[c_], cov_ = wc * w_ / (w_ + shrink);     \
        int below_ = BELOW(q_ + cov_);                                                                \
        if (!below_ && wc > 0) {                                                                      \
            uint64_t rq_ = 0, nc_ = 0;                                                                \
            for (int i_ = 0; i_ < nrb; i_++) {                                                        \
                rq_ |= RBIT(rbl[i_], 0, r_) << rbl[i_];                                               \
                nc_ |= RBIT(rbl[i_], 1, r_) << rbl[i_];                                               \
            }                                                                                         \
            double cw_ = RCW_REQ(e->rcw[r_]) + nice * RCW_NICE(e->rcw[r_]);                           \
            double gc_ = pc64(rq_ & B1) + 0.5 * pc64(rq_ & Bh) + nice * (pc64(nc_ & B1) + 0.5 * pc64(nc_ & Bh)); \
            double rw_ = w_ - cw_ - (found);                                                          \
            double got_ = gc_ + (found) + (rw_ > 0 ? 0.5 * rw_ : 0);                                  \
            below_ = BELOW(q_ + wc * (got_ < w_ ? got_ : w_) / (w_ + shrink));                        \
        }                                                                                             \
        below_;                                                                                       \
    })
    /* For word q of the bitmaps (ranks 64q .. 64q + 63): G[2i] = the ranks
     * listing one of user i's masked matches, G[2i + 1] = requiring one. */
    uint64_t G[128];
#define MASK_WORDS(q)                                                                                 \
    for (int i_ = 0; i_ < nm; i_++) {                                                                 \
        uint64_t R_ = 0, A_ = 0;                                                                      \
        for (int j_ = moff[i_]; j_ < moff[i_ + 1]; j_++) {                                            \
            R_ |= rb[(size_t)(2 * mlist[j_]) * rw + (q)];                                             \
            A_ |= rb[(size_t)(2 * mlist[j_] + 1) * rw + (q)];                                         \
        }                                                                                             \
        G[2 * i_] = A_ | R_;                                                                          \
        G[2 * i_ + 1] = R_;                                                                           \
    }
    /* 0. Few jobs pass the filters: each is scored, 16 at a time, their
     * records then their skills fetched ahead. */
    if (nallow <= (int64_t)e->wperm_n / SP_FEW) {
        int batch[16], nbat = 0;
#define SCORE_BATCH()                                                                                 \
    do {                                                                                              \
        for (int i_ = 0; i_ < nbat; i_++)                                                             \
            __builtin_prefetch((const char *)e->arena +                                               \
                               (e->arena16 ? 2 : 4) * (size_t)e->jobs[batch[i_]].sk_off);             \
        for (int i_ = 0; i_ < nbat; i_++)                                                             \
            VISIT(batch[i_]);                                                                         \
        nbat = 0;                                                                                     \
    } while (0)
        for (int w = 0; w < e->livebits_words; w++)
            for (uint64_t bits = allow[w]; bits; bits &= bits - 1) {
                batch[nbat] = w * 64 + __builtin_ctzll(bits);
                __builtin_prefetch(&e->jobs[batch[nbat]]);
                if (++nbat == 16)
                    SCORE_BATCH();
            }
        SCORE_BATCH();
#undef SCORE_BATCH
        goto out;
    }
    /* 1. */
    for (int i = 0; i < e->ndirty; i++)
        VISIT(e->dirty_list[i]);
    if (!e->wperm_n)
        goto out;
    /* 2. The window's entries go into per-rank levels (lev: nw words a rank,
     * 2 bits per user act[a]: 01 listed, 11 required, so that or-ing keeps
     * the higher) and counts (nreq: required, nice-to-have), with a bit per
     * rank listed (tb). ll = cst0 + the sum over the level bytes of
     * qt[byte] (four users a byte). */
    int nw = (nact + 31) / 32, nb = (nact + 3) / 4;
    uint32_t W = SP_WINDOW;
    while (W > 64 && (size_t)W * (size_t)nw > SP_WINDOW)
        W /= 2;
    lev = calloc((size_t)W * (size_t)(nw ? nw : 1), sizeof(uint64_t));
    nreq = calloc(2 * (size_t)W, sizeof(uint32_t));
    wc2 = malloc(sizeof(s2cand) * W);
    qt = malloc(sizeof(double) * 256 * (size_t)(nb ? nb : 1));
    if (!lev || !nreq || !wc2 || !qt) {
        rc = JM_ENOMEM;
        goto out;
    }
    double cst0 = cst;
    for (int a = 0; a < nact; a++)
        cst0 += p->lnum[3 * act[a]];
    for (int j = 0; j < nb; j++)
        for (int x = 0; x < 256; x++) {
            double t = 0;
            for (int i = 0; i < 4 && 4 * j + i < nact; i++) {
                int u = act[4 * j + i], l = (((x >> 2 * i) & 3) + 1) >> 1;
                t += p->lnum[3 * u + l] - p->lnum[3 * u];
            }
            qt[256 * j + x] = t;
        }
    int nc = 0;
    for (int a = 0; a < nact; a++)
        for (int i = uoff[act[a]]; i < uoff[act[a] + 1]; i++)
            nc += pcur_start(e, &cur[nc], hs[i], a);
    for (int i = 0; i < ncov; i++)
        nc += pcur_start(e, &cur[nc], hs[uoff[n] + i], -1); /* no level */
    if (ncov) /* the engine is shared read-only here but for this counter */
        atomic_fetch_add_explicit((atomic_llong *)&e->cov_lists, ncov, memory_order_relaxed);
    double stop2 = lmax / nn, inv = 1 / nn;
    for (uint32_t w0 = 0; nc > 0 && w0 < (uint32_t)e->wperm_n; w0 += W) {
        if (BELOW(stop2 + e->cls_bound[e->rcls[w0]]))
            break;
        uint32_t w1 = w0 + W;
        const uint8_t *post = e->post;
        for (int i = 0; i < nc;) {
            pcur *c = &cur[i];
            /* a coverage-only list (a < 0) or-s 0 into user 0's level */
            uint64_t *lw = lev + (c->a >= 0 ? c->a >> 5 : 0), lm = c->a >= 0 ? 3 : 0;
            int sh = c->a >= 0 ? 2 * (c->a & 31) : 0;
            uint32_t pos = c->pos, end = c->end, rank = c->rank;
            int req = c->req;
            while (rank < w1) {
                uint32_t k = rank - w0;
                lw[(size_t)k * (size_t)nw] |= ((uint64_t)(1 + 2 * req) & lm) << sh;
                nreq[2 * k + !req]++;
                tb[k / 64] |= 1ULL << (k % 64);
                __builtin_prefetch(&e->rcls[rank]); /* read when the window is bounded */
                if (pos >= end) {
                    rank = UINT32_MAX;
                    break;
                }
                uint32_t x = leb_get(post, &pos);
                rank += 1 + (x >> 1);
                req = (int)(x & 1);
            }
            c->pos = pos;
            c->rank = rank;
            c->req = req;
            if (rank == UINT32_MAX)
                cur[i] = cur[--nc];
            else
                i++;
        }
        /* (a) the listed ranks' ll and the first test with thr as it is; the
         * ranks passing wait in wc2[] while (b) their data is fetched, then
         * (c) take it again with thr as it is then, and RANK_BELOW */
        int nca = 0, stop = 0;
        for (uint32_t wd = 0; wd < W / 64 && !stop; wd++) {
            uint64_t T = tb[wd];
            if (!T)
                continue;
            tb[wd] = 0;
            if (nm) {
                MASK_WORDS(w0 / 64 + wd)
                for (int i = 0; i < nm; i++) {
                    uint64_t *lw = lev + (size_t)wd * 64 * (size_t)nw + (mact[i] >> 5);
                    int sh = 2 * (mact[i] & 31);
                    for (uint64_t x = G[2 * i] & T; x; x &= x - 1) {
                        int j = __builtin_ctzll(x);
                        lw[(size_t)j * (size_t)nw] |= (uint64_t)(1 + 2 * (G[2 * i + 1] >> j & 1)) << sh;
                    }
                }
            }
            for (uint64_t bits = T; bits; bits &= bits - 1) {
                uint32_t k = wd * 64 + (uint32_t)__builtin_ctzll(bits), r = w0 + k;
                double cb = e->cls_bound[e->rcls[r]];
                if (BELOW(stop2 + cb)) {
                    stop = 1; /* and so is every rank after r */
                    break;
                }
                uint64_t *lv = &lev[(size_t)k * (size_t)nw];
                double ll = cst0;
                for (int j = 0; j < nb; j++)
                    ll += qt[256 * j + (lv[j / 8] >> (8 * (j % 8)) & 255)];
                if (!BELOW(ll * inv + cb)) {
                    wc2[nca++] = (s2cand){r, ll, nreq[2 * k] + nice * nreq[2 * k + 1], cb};
                    __builtin_prefetch(&e->roff[r]);
                    __builtin_prefetch(&e->wperm[r]);
                }
                for (int j = 0; j < nw; j++)
                    lv[j] = 0;
                nreq[2 * k] = nreq[2 * k + 1] = 0;
            }
        }
        for (int i = 0; i < nca; i++) { /* (b) */
            uint32_t r = wc2[i].r, s = e->wperm[r];
            __builtin_prefetch(&allow[s / 64]);
            __builtin_prefetch(&seen[s / 64]);
            __builtin_prefetch((const char *)e->arena + (e->arena16 ? 2 : 4) * (size_t)e->roff[r]);
            for (int j = 0; j < nrb && wc > 0; j++) {
                __builtin_prefetch(&rb[(size_t)(2 * rbl[j]) * rw + r / 64]);
                __builtin_prefetch(&rb[(size_t)(2 * rbl[j] + 1) * rw + r / 64]);
            }
        }
        for (int i = 0; i < nca; i++) /* (c) */
            if (!BELOW(wc2[i].ll * inv + wc2[i].cb) && RANK_OPEN(wc2[i].r) &&
                !RANK_BELOW(wc2[i].r, wc2[i].ll, wc2[i].found))
                VISIT_RANK(wc2[i].r);
        if (stop)
            break;
    }
    /* 3. For word q, with base = the class bound of its first rank (no
     * smaller for the ranks after), a rank can pass when its users' d sum S
     * (ll = L0 + S) reaches t = (thr - base) n - L0. With nm <=
     * SP_TERM_USERS, the ranks that do are the union over the least
     * combinations of levels that reach t of the and of their G words
     * (terms: tk[], ending at tend[]); that set changes only when t crosses
     * one of the 3^nm sums (S by combination, Ss descending; t only grows,
     * as thr does and the class bound falls). Else, and when the terms are
     * many, S is summed for each rank that lists one. */
    double lmax3 = L0;
    for (int i = 0; i < nm; i++)
        lmax3 += d2[i] > d1[i] ? d2[i] : d1[i];
    double stop3 = lmax3 / nn;
    int NL = 1, cnt = -1, ntm = 0;
    for (int i = 0; i < nm && i <= SP_TERM_USERS; i++)
        NL *= 3;
    if (nm <= SP_TERM_USERS) {
        S = malloc(sizeof(double) * (size_t)NL);
        Ss = malloc(sizeof(double) * (size_t)NL);
        tk = malloc(sizeof(int) * (size_t)NL * (size_t)(nm ? nm : 1));
        tend = malloc(sizeof(int) * (size_t)NL);
        if (!S || !Ss || !tk || !tend) {
            rc = JM_ENOMEM;
            goto out;
        }
        for (int x = 0; x < NL; x++) {
            double s = 0;
            for (int i = 0, y = x; i < nm; i++, y /= 3)
                s += y % 3 == 2 ? d2[i] : y % 3 == 1 ? d1[i] : 0;
            S[x] = Ss[x] = s;
        }
        qsort(Ss, (size_t)NL, sizeof(double), cmp_double_desc);
    }
    for (uint32_t q = 0; q < (uint32_t)rw; q++) {
        double base = e->cls_bound[e->rcls[64 * q]];
        if (BELOW(stop3 + base))
            break;
        double t = thr == -INFINITY ? -INFINITY : (thr - base) * nn - L0;
        t -= 1e-9 * (1.0 + fabs(t) + fabs(L0)); /* for moving the terms: far below SLACK */
        MASK_WORDS(q)
        uint64_t P = 0;
        if (t <= 0) {
            P = ~0ULL;
        } else if (nm <= SP_TERM_USERS) {
            int c2 = cnt < 0 ? NL : cnt;
            while (c2 > 0 && Ss[c2 - 1] < t)
                c2--;
            while (c2 < NL && Ss[c2] >= t)
                c2++;
            if (c2 != cnt) { /* the least combinations reaching t */
                cnt = c2;
                ntm = 0;
                for (int x = 0, nt = 0; x < NL; x++) {
                    if (!(S[x] >= t))
                        continue;
                    int least = 1;
                    for (int i = 0, p3 = 1; i < nm && least; i++, p3 *= 3)
                        if ((x / p3) % 3 && S[x - p3] >= t)
                            least = 0;
                    if (!least)
                        continue;
                    for (int i = 0, p3 = 1; i < nm; i++, p3 *= 3)
                        if ((x / p3) % 3)
                            tk[nt++] = 2 * i + ((x / p3) % 3 == 2);
                    tend[ntm++] = nt;
                }
            }
            if (!ntm || tend[ntm - 1] <= 256) {
                for (int m = 0, k = 0; m < ntm; m++) {
                    uint64_t a = ~0ULL;
                    for (; k < tend[m]; k++)
                        a &= G[tk[k]];
                    P |= a;
                }
                goto word;
            }
        }
        if (t > 0) {
            uint64_t any = 0;
            for (int i = 0; i < nm; i++)
                any |= G[2 * i];
            for (; any; any &= any - 1) {
                int j = __builtin_ctzll(any);
                double s = 0;
                for (int i = 0; i < nm; i++)
                    s += G[2 * i + 1] >> j & 1 ? d2[i] : G[2 * i] >> j & 1 ? d1[i] : 0;
                if (s >= t)
                    P |= 1ULL << j;
            }
        }
    word:
        if (64 * (size_t)q + 64 > (size_t)e->wperm_n)
            P &= (1ULL << (e->wperm_n - 64 * q)) - 1;
        for (; P; P &= P - 1) {
            int j = __builtin_ctzll(P);
            uint32_t r = 64 * q + (uint32_t)j;
            if (!RANK_OPEN(r))
                continue;
            double ll = L0;
            for (int i = 0; i < nm; i++)
                ll += G[2 * i + 1] >> j & 1 ? d2[i] : G[2 * i] >> j & 1 ? d1[i] : 0;
            if (!RANK_BELOW(r, ll, 0.0))
                VISIT_RANK(r);
        }
    }
#undef MASK_WORDS
#undef RANK_BELOW
#undef RBIT
#undef RANK_OPEN
#undef VISIT_RANK
#undef VISIT
#undef BELOW
#undef THR
#undef SLACK
out:
    free(g);
    free(uoff);
    free(act);
    free(M);
    free(hs);
    free(cur);
    free(lev);
    free(nreq);
    free(wc2);
    free(qt);
    free(S);
    free(Ss);
    free(tk);
    free(tend);
    free(seen);
    return rc;
}

/* The reference: every allowed job scored, in slot order. */
static void skill_pass_full(const rank_engine *e, const rprofile *p, const uint64_t *allow, heap *h,
                            unsigned char *ucredit, int64_t *scored)
{
    for (int s = 0; s < e->njobs; s++) {
        if (!(allow[s / 64] >> (s % 64) & 1))
            continue;
        cand x = {.slot = s};
        score_skills(e, p, &e->jobs[s], ucredit, &x.q, &x.c);
        x.score = x.q + e->o.w.coverage * x.c;
        heap_push(h, x);
        (*scored)++;
    }
}

/* slot -> index in the candidate array, for the few hundred candidates (an
 * array of every slot would cost O(jobs) per query to clear). */
typedef struct posmap {
    int *key, *val;
    int mask;
} posmap;

static int pm_init(posmap *m, int n)
{
    int cap = 64;
    while (cap < 2 * n)
        cap *= 2;
    m->key = malloc(sizeof(int) * (size_t)cap);
    m->val = malloc(sizeof(int) * (size_t)cap);
    m->mask = cap - 1;
    if (!m->key || !m->val)
        return JM_ENOMEM;
    for (int i = 0; i < cap; i++)
        m->key[i] = -1;
    return JM_OK;
}

static int pm_get(const posmap *m, int slot)
{
    for (uint32_t h = ((uint32_t)slot * 2654435761u) & (uint32_t)m->mask;; h = (h + 1) & (uint32_t)m->mask) {
        if (m->key[h] == slot)
            return m->val[h];
        if (m->key[h] < 0)
            return -1;
    }
}

static void pm_put(posmap *m, int slot, int val)
{
    uint32_t h = ((uint32_t)slot * 2654435761u) & (uint32_t)m->mask;
    while (m->key[h] >= 0 && m->key[h] != slot)
        h = (h + 1) & (uint32_t)m->mask;
    m->key[h] = slot;
    m->val[h] = val;
}

static void pm_free(posmap *m)
{
    free(m->key);
    free(m->val);
}

typedef struct fetch_ctx {
    rank_engine *e;
} fetch_ctx;

/* Exact vectors of index slots, from the database (for idx_search_exact). */
static int fetch_exact(void *ctx, const uint32_t *slots, int n, float *vecs, jm_err *err)
{
    fetch_ctx *f = ctx;
    const char **ids = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    int *found = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!ids || !found) {
        free(ids);
        free(found);
        return jm_fail(err, JM_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++)
        ids[i] = rank_str(f->e, f->e->jobs[slots[i]].id);
    pthread_mutex_lock(&f->e->dblock);
    int rc = db_get_embeddings(f->e->d, f->e->model_id, ids, n, vecs, f->e->dim, found, err);
    pthread_mutex_unlock(&f->e->dblock);
    free(ids);
    free(found);
    return rc;
}

int rank_fetch_exact(void *e, const uint32_t *slots, int n, float *vecs, jm_err *err)
{
    fetch_ctx f = {e};
    return fetch_exact(&f, slots, n, vecs, err);
}

/* ---------- calibrating the index (rank.h, rank_tune) ---------- */

/* TUNE_MIN_SAMPLE: recorded profiles needed to calibrate on them (else
 * skill profiles); TUNE_MIN_QUERIES: new ones that make it due again */
enum {
    TUNE_SKILL_QUERIES = 256,
    TUNE_MIN_SAMPLE = 256,
    TUNE_MIN_QUERIES = RANK_QRING,
    TUNE_EVERY_SECS = 600,
    TUNE_BATCH = 32
};
/* Of the sample covered, before idx_probe_pick's quarter more. 0.995, not
 * 0.99: the 99th percentile of 1,024 needs rests on the ten largest and
 * moves with the sample (at 1M: 34 lists on the recorded queries, 46 on
 * 300 others, whose top 10 the depth 42 then gave exactly for 99.0%). */
#define TUNE_SHARE 0.995
/* The probe orders weighed (idx_set_spread): the one whose depth reads the
 * fewest rows wins, ties to the first (the plain order). */
static const float TUNE_SPREADS[] = {0, 0.5f, 1, 1.5f};
#define TUNE_NS ((int)(sizeof TUNE_SPREADS / sizeof TUNE_SPREADS[0]))

/* n profiles made of the vocabulary: each the mean of 3 to 5 skill
 * embeddings, skills drawn by how many jobs list them (fixed seed); 0 when
 * no skill has both an embedding and a job. */
static int skill_queries(const rank_engine *e, float *out, int n)
{
    int V = sk_count(e->voc), D = e->dim;
    double *cum = malloc(sizeof(double) * (size_t)(V ? V : 1));
    if (!cum)
        return 0;
    double tot = 0;
    for (int i = 0; i < V; i++) {
        if (sk_embedding(e->voc, i) && sk_df(e->voc, i) > 0)
            tot += sk_df(e->voc, i);
        cum[i] = tot;
    }
    if (tot <= 0) {
        free(cum);
        return 0;
    }
    uint64_t r = 20261124;
    for (int q = 0; q < n; q++) {
        float *v = out + (size_t)q * D;
        memset(v, 0, sizeof(float) * D);
        int m = 3 + (int)(jm_rng_next(&r) % 3);
        for (int k = 0; k < m; k++) {
            double t = (double)(jm_rng_next(&r) >> 11) * (1.0 / 9007199254740992.0) * tot;
            int lo = 0, hi = V - 1; /* first i with cum[i] > t */
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (cum[mid] > t)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            const float *s = sk_embedding(e->voc, lo);
            for (int d = 0; s && d < D; d++)
                v[d] += s[d];
        }
        double ss = 0;
        for (int d = 0; d < D; d++)
            ss += (double)v[d] * v[d];
        float inv = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
        for (int d = 0; d < D; d++)
            v[d] *= inv;
    }
    free(cum);
    return n;
}

/* Calibrates now; use_queries: on the recorded profiles (caller checked
 * there are enough). The needs are measured TUNE_BATCH queries at a time,
 * each batch under the read lock, so that a refresh waiting for the write
 * lock waits for one batch (~0.5 s at 1M), not the whole sample; *stop
 * (optional) set ends it early, changing nothing. A training between
 * batches (the list count changes) makes the sample moot: it ends too. */
static int tune_probe(rank_engine *e, int use_queries, const atomic_int *stop, jm_err *err)
{
    int n = use_queries ? RANK_QRING : TUNE_SKILL_QUERIES, D = e->dim, rc = JM_OK;
    float *qs = malloc(sizeof(float) * (size_t)n * D);
    int *need = malloc(sizeof(int) * (size_t)n * TUNE_NS), *bneed = malloc(sizeof(int) * TUNE_BATCH * TUNE_NS);
    if (!qs || !need || !bneed) {
        free(qs);
        free(need);
        free(bneed);
        return jm_fail(err, JM_ENOMEM, "out of memory");
    }
    int64_t seen = 0;
    pthread_rwlock_rdlock(&e->lock);
    if (use_queries) {
        pthread_mutex_lock(&e->qlock);
        seen = e->qring_n;
        n = seen < RANK_QRING ? (int)seen : RANK_QRING;
        memcpy(qs, e->qring, sizeof(float) * (size_t)n * D);
        pthread_mutex_unlock(&e->qlock);
    } else {
        n = skill_queries(e, qs, n);
    }
    int nlist = idx_nlist(e->ix), done = 0;
    pthread_rwlock_unlock(&e->lock);
    fetch_ctx fc = {e};
    while (rc == JM_OK && done < n && nlist > 0) {
        if (stop && atomic_load(stop))
            break;
        int m = n - done < TUNE_BATCH ? n - done : TUNE_BATCH;
        pthread_rwlock_rdlock(&e->lock);
        if (idx_nlist(e->ix) == nlist) {
            rc = idx_probe_needs(e->ix, qs + (size_t)done * D, m, 10, 0, fetch_exact, &fc, TUNE_SPREADS, TUNE_NS,
                                 bneed, err);
            for (int o = 0; rc == JM_OK && o < TUNE_NS; o++)
                memcpy(need + (size_t)o * n + done, bneed + (size_t)o * m, sizeof(int) * (size_t)m);
        } else {
            nlist = -1;
        }
        pthread_rwlock_unlock(&e->lock);
        done += m;
    }
    if (rc) { /* not again before it is due by time or by queries */
        pthread_rwlock_wrlock(&e->lock);
        e->tuned_nlist = idx_nlist(e->ix);
        e->tuned_at = jm_now();
        e->tuned_q = seen ? seen : e->tuned_q;
        pthread_rwlock_unlock(&e->lock);
    }
    if (rc == JM_OK && done == n && n > 0 && nlist > 0) {
        /* each order's depth, and the rows it reads on these queries */
        int pick = 0, best = -1;
        double brows = 0;
        pthread_rwlock_rdlock(&e->lock);
        for (int o = 0; o < TUNE_NS && idx_nlist(e->ix) == nlist; o++) {
            int p = idx_probe_pick(need + (size_t)o * n, n, TUNE_SHARE);
            double rows = idx_probe_rows(e->ix, qs, n, p, TUNE_SPREADS[o]);
            if (best < 0 || (rows >= 0 && rows < brows)) {
                best = o;
                pick = p;
                brows = rows;
            }
        }
        pthread_rwlock_unlock(&e->lock);
        pthread_rwlock_wrlock(&e->lock);
        if (best >= 0 && idx_nlist(e->ix) == nlist) { /* else a training came meanwhile: due again */
            idx_set_probe(e->ix, pick, IDX_FILTER_EXP, NULL);
            idx_set_spread(e->ix, TUNE_SPREADS[best], NULL);
            e->tuned_nlist = nlist;
            e->tuned_at = jm_now();
            e->tuned_q = use_queries ? seen : e->tuned_q;
            e->tuned_on = use_queries ? "queries" : "skills";
        }
        pthread_rwlock_unlock(&e->lock);
    }
    free(qs);
    free(need);
    free(bneed);
    return rc;
}

int rank_tune(rank_engine *e, int force, const atomic_int *stop, jm_err *err)
{
    if (!e->ix)
        return 0;
    pthread_rwlock_rdlock(&e->lock);
    int nlist = idx_nlist(e->ix), retrain = nlist != e->tuned_nlist, probe0 = idx_probe(e->ix);
    double since = jm_now() - e->tuned_at, at0 = e->tuned_at;
    int64_t fresh = e->tuned_q;
    pthread_rwlock_unlock(&e->lock);
    pthread_mutex_lock(&e->qlock);
    int64_t recorded = e->qring_n;
    pthread_mutex_unlock(&e->qlock);
    if (nlist == 0)
        return 0;
    int queries = recorded >= TUNE_MIN_SAMPLE;
    int due = force || retrain ||
              (recorded - fresh >= TUNE_MIN_QUERIES && (fresh == 0 || since >= TUNE_EVERY_SECS));
    if (!due)
        return 0;
    int rc = tune_probe(e, queries, stop, err);
    if (rc)
        return rc;
    pthread_rwlock_rdlock(&e->lock);
    int did = e->tuned_at != at0 || idx_probe(e->ix) != probe0;
    pthread_rwlock_unlock(&e->lock);
    return did;
}

/* Stream mode: the semantic score of every allowed job, scanned from the
 * database in chunks; sem[slot] (NAN where unknown). */
typedef struct stream_ctx {
    rank_engine *e;
    const float *q;
    const uint64_t *allow;
    float *sem;
    float *tmp;
} stream_ctx;

static int on_stream_row(void *ctx, const db_row *r)
{
    stream_ctx *c = ctx;
    if (!r->emb || r->emb_len != (size_t)c->e->dim * 4)
        return JM_OK;
    int slot = rank_slot(c->e, r->job.id);
    if (slot < 0 || !(c->allow[slot / 64] >> (slot % 64) & 1))
        return JM_OK;
    db_vec_from_le(r->emb, c->e->dim, c->tmp);
    float s = 0;
    for (int i = 0; i < c->e->dim; i++)
        s += c->q[i] * c->tmp[i];
    c->sem[slot] = s;
    return JM_OK;
}

float rprofile_sim(const rank_engine *e, rprofile *p, int s)
{
    if (p->best_sim[s] == SK_SIM_UNRESOLVED)
        p->best_sim[s] = sk_similarity(e->voc, p->emb, p->n, s);
    return p->best_sim[s];
}

static void build_align(const rank_engine *e, rprofile *p, const rjob *j, rank_result *r)
{
    r->align = calloc((size_t)(j->nsk ? j->nsk : 1), sizeof(rank_align));
    if (!r->align)
        return;
    float wsum = 0;
    for (int i = 0; i < j->nsk; i++)
        wsum += rank_skill_weight(e, JREQ(e, j, i));
    for (int i = 0; i < j->nsk; i++) {
        int s = JSK(e, j, i);
        rprofile_sim(e, p, s);
        rank_align *a = &r->align[i];
        a->job_skill = sk_display(e->voc, s);
        a->required = JREQ(e, j, i);
        a->weight = rank_skill_weight(e, a->required);
        a->similarity = p->best_sim[s] < -1 ? 0 : p->best_sim[s];
        a->status = rank_status_of(e, p->best_sim[s]);
        a->kind = a->status == RANK_MISSING ? SK_NONE : (sk_kind)p->kind[s];
        a->user_skill = a->status != RANK_MISSING && p->best_user[s] >= 0 ? p->typed[p->best_user[s]] : NULL;
        a->contribution = e->o.w.coverage * a->weight * rank_credit(e, p->best_sim[s]) / (wsum + e->o.shrink);
        a->idf = sk_idf(e->voc, s);
        if (a->status == RANK_MISSING)
            r->nmissing++;
    }
    r->nalign = j->nsk;
}

int rank_recommend(rank_engine *e, bert_pool *pool, const rank_query *q, rank_response *out, jm_err *err)
{
    memset(out, 0, sizeof *out);
    double t0 = jm_now();
    if (!q->skills || q->nskills < 1)
        return jm_fail(err, JM_EINVAL, "no skills given");
    if (q->k < 1 || q->k > 1000)
        return jm_fail(err, JM_EINVAL, "k must be between 1 and 1000, got %d", q->k);
    if (q->per_company < 0)
        return jm_fail(err, JM_EINVAL, "per_company must be >= 0");
    int posted_since = INT32_MIN;
    if (q->filters.posted_since && *q->filters.posted_since &&
        (posted_since = parse_day(q->filters.posted_since)) == INT32_MIN)
        return jm_fail(err, JM_EINVAL, "posted_since must be a date YYYY-MM-DD, got \"%s\"", q->filters.posted_since);
    if (!isnan(q->filters.salary_min) && !isnan(q->filters.salary_max) && q->filters.salary_min > q->filters.salary_max)
        return jm_fail(err, JM_EINVAL, "salary_min is larger than salary_max");
    /* Follow the database: new, changed and deleted jobs show within refresh_secs.
     * A failed refresh (the database away) keeps answering from memory. */
    if (e->o.refresh_secs >= 0 && jm_now() - e->last_refresh >= e->o.refresh_secs) {
        jm_err ignored = {0};
        if (rank_refresh(e, NULL, &ignored))
            e->last_refresh = jm_now(); /* retry after another interval */
    }

    pthread_rwlock_rdlock(&e->lock);
    static int trace = -1;
    if (trace < 0)
        trace = getenv("JOBMATCH_TRACE") != NULL;
#define STAGE(name)                                                                  \
    do {                                                                             \
        if (trace)                                                                   \
            fprintf(stderr, "rank: %-10s %7.2f ms\n", name, (jm_now() - t0) * 1e3);    \
    } while (0)
    rprofile p;
    int rc = rprofile_build(e, pool, q->skills, q->nskills, &p, err);
    STAGE("profile");
    if (rc) {
        pthread_rwlock_unlock(&e->lock);
        return rc;
    }
    if (e->qring) { /* for rank_tune */
        pthread_mutex_lock(&e->qlock);
        memcpy(e->qring + (size_t)(e->qring_n++ % RANK_QRING) * e->dim, p.profile, sizeof(float) * e->dim);
        pthread_mutex_unlock(&e->qlock);
    }
    int N = e->njobs, C = e->o.candidates > q->k ? e->o.candidates : q->k;
    int words = e->livebits_words > N / 64 + 1 ? e->livebits_words : N / 64 + 1;
    uint64_t *allow = calloc((size_t)words, sizeof(uint64_t));
    unsigned char *ucredit = malloc((size_t)p.n);
    posmap pos = {0}; /* slot -> index in cands */
    heap h = {malloc(sizeof(cand) * (size_t)C), 0, C};
    cand *cands = malloc(sizeof(cand) * (size_t)(3 * C + 1));
    int nc = 0;
    float *sem = NULL;
    db_hit *hits = NULL;
    int nhits = 0;
    if (!allow || !ucredit || pm_init(&pos, 3 * C + 1) || !h.c || !cands) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }

    /* 1. The best C jobs that pass the filters by what the skills alone say
     * (see "the skill pass"). */
    int64_t considered = filter_allow(e, &q->filters, posted_since, allow, e->reference), scored = 0;
    if (considered < 0) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    out->considered = considered;
    STAGE("filters");
    int fast = considered ? skill_pass_fast(e, &p, allow, considered, &h, ucredit, &scored) : 0;
    if (fast == JM_ENOMEM) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    if (fast == 1)
        skill_pass_full(e, &p, allow, &h, ucredit, &scored);
    if (trace)
        fprintf(stderr, "rank: %lld of %lld jobs scored (%s)\n", (long long)scored, (long long)considered,
                fast == 1 ? "full pass" : "postings and bounds");
    STAGE("skills");
    for (int i = 0; i < h.n; i++) {
        cands[nc] = h.c[i];
        pm_put(&pos, h.c[i].slot, nc++);
    }
    int nheap = nc; /* these have their q and c already */

    /* 2. The nearest jobs by the profile embedding. */
    if (considered && e->o.w.semantic > 0) {
        if (e->ix) {
            idx_hit *ih = malloc(sizeof(idx_hit) * (size_t)C);
            int nh = 0;
            if (!ih) {
                rc = jm_fail(err, JM_ENOMEM, "out of memory");
                goto out;
            }
            rc = idx_search(e->ix, p.profile, C, allow, ih, &nh, err);
            if (rc) {
                free(ih);
                goto out;
            }
            for (int i = 0; i < nh; i++) {
                int s = (int)ih[i].slot;
                if (pm_get(&pos, s) < 0) {
                    cands[nc] = (cand){.slot = s};
                    pm_put(&pos, s, nc++);
                }
            }
            free(ih);
        } else {
            sem = malloc(sizeof(float) * (size_t)N);
            float *tmp = malloc(sizeof(float) * (size_t)e->dim);
            if (!sem || !tmp) {
                free(tmp);
                rc = jm_fail(err, JM_ENOMEM, "out of memory");
                goto out;
            }
            for (int s = 0; s < N; s++)
                sem[s] = NAN;
            stream_ctx sc = {e, p.profile, allow, sem, tmp};
            pthread_mutex_lock(&e->dblock);
            rc = db_scan_jobs(e->d, e->model_id, DB_SCAN_EMBEDDING, on_stream_row, &sc, err);
            pthread_mutex_unlock(&e->dblock);
            free(tmp);
            if (rc)
                goto out;
            heap hs = {malloc(sizeof(cand) * (size_t)C), 0, C};
            if (!hs.c) {
                rc = jm_fail(err, JM_ENOMEM, "out of memory");
                goto out;
            }
            for (int s = 0; s < N; s++)
                if (!isnan(sem[s]))
                    heap_push(&hs, (cand){.slot = s, .score = sem[s]});
            for (int i = 0; i < hs.n; i++)
                if (pm_get(&pos, hs.c[i].slot) < 0) {
                    cands[nc] = (cand){.slot = hs.c[i].slot};
                    pm_put(&pos, hs.c[i].slot, nc++);
                }
            free(hs.c);
        }
    }

    STAGE("semantic");
    /* 3. Keyword hits (see keyword_scan_max). */
    float kmax = 0;
    if (considered && e->o.w.keyword > 0 && e->live <= e->o.keyword_scan_max) {
        pthread_mutex_lock(&e->dblock);
        jm_err kerr = {0};
        rc = db_keyword_search(e->d, (const char *const *)p.typed, p.n, C, &hits, &nhits, &kerr);
        pthread_mutex_unlock(&e->dblock);
        if (rc == JM_ENOMEM) {
            *err = kerr;
            goto out;
        }
        if (rc) {
            /* The database is away: rank from memory without the keyword
             * part rather than fail (the HTTP service's degraded mode). */
            db_hits_free(hits, nhits);
            hits = NULL;
            nhits = 0;
            rc = JM_OK;
        }
        for (int i = 0; i < nhits; i++) {
            int s = rank_slot(e, hits[i].id);
            if (s < 0 || !(allow[s / 64] >> (s % 64) & 1))
                continue;
            if (pm_get(&pos, s) < 0 && nc < 3 * C + 1) {
                cands[nc] = (cand){.slot = s};
                pm_put(&pos, s, nc++);
            }
            if (pm_get(&pos, s) >= 0) {
                cands[pm_get(&pos, s)].k = (float)hits[i].score;
                if (hits[i].score > kmax)
                    kmax = (float)hits[i].score;
            }
        }
    }
    STAGE("keyword");
    /* 4. Every candidate scored on all four parts. */
    float qmax = -INFINITY;
    uint32_t *vslots = malloc(sizeof(uint32_t) * (size_t)(nc ? nc : 1));
    float *vsem = malloc(sizeof(float) * (size_t)(nc ? nc : 1));
    if (!vslots || !vsem) {
        free(vslots);
        free(vsem);
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    int nv = 0;
    for (int i = 0; i < nc; i++) {
        cand *x = &cands[i];
        if (i >= nheap)
            score_skills(e, &p, &e->jobs[x->slot], ucredit, &x->q, &x->c);
        if (x->q > qmax)
            qmax = x->q;
        if (!sem && e->ix && e->jobs[x->slot].has_vec)
            vslots[nv++] = (uint32_t)x->slot;
    }
    if (nv)
        idx_score_many(e->ix, p.profile, vslots, nv, vsem);
    nv = 0;
    for (int i = 0; i < nc; i++) {
        cand *x = &cands[i];
        const rjob *j = &e->jobs[x->slot];
        x->q = expf(x->q - qmax);
        x->k = kmax > 0 ? x->k / kmax : 0;
        if (sem) {
            x->s = isnan(sem[x->slot]) ? 0 : sem[x->slot];
        } else if (e->ix && j->has_vec) {
            x->s = vsem[nv++];
        } else {
            x->s = 0;
        }
        x->score = e->o.w.query * x->q + e->o.w.coverage * x->c + e->o.w.semantic * x->s + e->o.w.keyword * x->k;
    }
    free(vslots);
    free(vsem);
    qsort(cands, (size_t)nc, sizeof(cand), cmp_cand);
    STAGE("candidates");

    /* 5. The top k, at most per_company per company; exact semantic scores. */
    out->results = calloc((size_t)q->k, sizeof(rank_result));
    if (!out->results) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    int *pick = malloc(sizeof(int) * (size_t)q->k);
    if (!pick) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    int np = 0;
    for (int i = 0; i < nc && np < q->k; i++) {
        const rjob *j = &e->jobs[cands[i].slot];
        if (q->per_company > 0 && j->company) {
            int same = 0;
            for (int k = 0; k < np; k++) {
                const rjob *o = &e->jobs[cands[pick[k]].slot];
                same += o->company && !strcasecmp(rank_str(e, o->company), rank_str(e, j->company));
            }
            if (same >= q->per_company)
                continue;
        }
        pick[np++] = i;
    }
    if (e->ix && np) {
        uint32_t *slots = calloc((size_t)np, sizeof(uint32_t));
        float *vecs = malloc(sizeof(float) * (size_t)np * e->dim);
        fetch_ctx fc = {e};
        if (slots && vecs) {
            for (int i = 0; i < np; i++)
                slots[i] = (uint32_t)cands[pick[i]].slot;
            if (fetch_exact(&fc, slots, np, vecs, err) == JM_OK)
                for (int i = 0; i < np; i++) {
                    cand *x = &cands[pick[i]];
                    if (!e->jobs[x->slot].has_vec)
                        continue;
                    float s = 0;
                    for (int d = 0; d < e->dim; d++)
                        s += p.profile[d] * vecs[(size_t)i * e->dim + d];
                    x->score += e->o.w.semantic * (s - x->s);
                    x->s = s;
                }
        }
        free(slots);
        free(vecs);
    }
    STAGE("exact");
    for (int i = 0; i < np; i++) {
        const cand *x = &cands[pick[i]];
        const rjob *j = &e->jobs[x->slot];
        rank_result *r = &out->results[i];
        r->id = rank_str(e, j->id);
        r->title = rank_str(e, j->title);
        r->company = rank_str(e, j->company);
        r->location = rank_str(e, j->location);
        r->score = x->score;
        r->query = x->q;
        r->coverage = x->c;
        r->semantic = x->s;
        r->keyword = x->k;
        build_align(e, &p, j, r);
    }
    out->n = np;
    STAGE("explain");
    /* the exact semantic scores may reorder neighbours */
    for (int i = 1; i < np; i++)
        for (int k = i; k > 0 && out->results[k].score > out->results[k - 1].score; k--) {
            rank_result t = out->results[k];
            out->results[k] = out->results[k - 1];
            out->results[k - 1] = t;
        }
    free(pick);
    out->skills = p.typed;
    out->nskills = p.n;
    p.typed = NULL;
out:
    /* Results point into the engine (ids, titles, skill names): the read lock
     * is held until rank_response_free. */
    if (rc)
        pthread_rwlock_unlock(&e->lock);
    else
        out->lock = &e->lock;
    rprofile_free(&p);
    free(allow);
    free(ucredit);
    pm_free(&pos);
    free(h.c);
    free(cands);
    free(sem);
    db_hits_free(hits, nhits);
    out->ms = (jm_now() - t0) * 1e3;
    if (rc)
        rank_response_free(out);
    return rc;
}

int rank_skill_candidates(rank_engine *e, bert_pool *pool, const rank_query *q, int **slots, float **scores, int *n,
                          int *fast, jm_err *err)
{
    *slots = NULL;
    *scores = NULL;
    *n = 0;
    *fast = 0;
    int posted_since = INT32_MIN;
    if (q->filters.posted_since && *q->filters.posted_since &&
        (posted_since = parse_day(q->filters.posted_since)) == INT32_MIN)
        return jm_fail(err, JM_EINVAL, "bad posted_since");
    pthread_rwlock_rdlock(&e->lock);
    rprofile p;
    int rc = rprofile_build(e, pool, q->skills, q->nskills, &p, err);
    if (rc) {
        pthread_rwlock_unlock(&e->lock);
        return rc;
    }
    int C = e->o.candidates > q->k ? e->o.candidates : q->k;
    int words = e->livebits_words > e->njobs / 64 + 1 ? e->livebits_words : e->njobs / 64 + 1;
    uint64_t *allow = calloc((size_t)words, sizeof(uint64_t));
    unsigned char *ucredit = malloc((size_t)p.n);
    heap h = {malloc(sizeof(cand) * (size_t)C), 0, C};
    int64_t scored = 0, considered = -1;
    if (!allow || !ucredit || !h.c)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    if (rc == JM_OK && (considered = filter_allow(e, &q->filters, posted_since, allow, e->reference)) < 0)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    int f = rc == JM_OK && considered ? skill_pass_fast(e, &p, allow, considered, &h, ucredit, &scored) : 1;
    if (f == JM_ENOMEM)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    else if (rc == JM_OK && f == 1)
        skill_pass_full(e, &p, allow, &h, ucredit, &scored);
    if (rc == JM_OK) {
        qsort(h.c, (size_t)h.n, sizeof(cand), cmp_cand_x);
        *slots = malloc(sizeof(int) * (size_t)(h.n ? h.n : 1));
        *scores = malloc(sizeof(float) * (size_t)(h.n ? h.n : 1));
        if (!*slots || !*scores) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
        } else {
            for (int i = 0; i < h.n; i++) {
                (*slots)[i] = h.c[i].slot;
                (*scores)[i] = h.c[i].score;
            }
            *n = h.n;
            *fast = f == 0;
        }
    }
    pthread_rwlock_unlock(&e->lock);
    rprofile_free(&p);
    free(allow);
    free(ucredit);
    free(h.c);
    if (rc) {
        free(*slots);
        free(*scores);
        *slots = NULL;
        *scores = NULL;
    }
    return rc;
}

void rank_rebuild(rank_engine *e)
{
    pthread_rwlock_wrlock(&e->lock);
    accel_build(e, sk_count(e->voc));
    pthread_rwlock_unlock(&e->lock);
}

void rank_response_free(rank_response *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++)
        free(r->results[i].align);
    free(r->results);
    for (int i = 0; i < r->nskills; i++)
        free(r->skills[i]);
    free(r->skills);
    if (r->lock)
        pthread_rwlock_unlock((pthread_rwlock_t *)r->lock);
    memset(r, 0, sizeof *r);
}
