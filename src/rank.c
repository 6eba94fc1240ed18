/* rank.c - the recommendation engine: load and follow the store, build the
 * person's profile, score and explain. See rank.h for the scoring. */
#include <ctype.h>
#include <strings.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rank_int.h"

void rank_opts_default(rank_opts *o)
{
    memset(o, 0, sizeof *o);
    o->index_mode = RANK_INDEX_MEMORY;
    o->w = RANK_DEFAULT_WEIGHTS;
    o->have = RANK_HAVE;
    o->partial = RANK_PARTIAL;
    o->nice_weight = 0.35f;
    o->shrink = 3.0f;
    o->mu = 100.0f;
    o->candidates = 300;
    o->stream_chunk = 4096;
    o->refresh_secs = 5.0;
    o->keyword_scan_max = 20000;
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
        if (!strcmp(e->jobs[e->id_slots[h]].id, id))
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
            uint64_t h = hash_id(e->jobs[j].id) & (uint64_t)(ns - 1);
            while (s[h] >= 0)
                h = (h + 1) & (uint64_t)(ns - 1);
            s[h] = j;
        }
        free(e->id_slots);
        e->id_slots = s;
        e->id_nslots = ns;
    }
    uint64_t m = (uint64_t)e->id_nslots - 1, h = hash_id(e->jobs[slot].id) & m;
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

static int parse_day(const char *s)
{
    int y, m, d;
    if (!s || sscanf(s, "%4d-%2d-%2d", &y, &m, &d) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
        return INT32_MIN;
    return days_from_civil(y, m, d);
}

/* The engine's single copy of s (NULL for NULL, or when out of memory). */
static const char *intern(rank_engine *e, const char *s)
{
    if (!s)
        return NULL;
    if ((e->strs_n + 1) * 2 > e->strs_nslots) {
        int ns = e->strs_nslots ? e->strs_nslots * 2 : 4096;
        char **n = calloc((size_t)ns, sizeof(char *));
        if (!n)
            return NULL;
        for (int i = 0; i < e->strs_nslots; i++)
            if (e->strs[i]) {
                uint64_t h = hash_id(e->strs[i]) & (uint64_t)(ns - 1);
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
        if (!strcmp(e->strs[h], s))
            return e->strs[h];
        h = (h + 1) & m;
    }
    e->strs[h] = strdup(s);
    if (e->strs[h])
        e->strs_n++;
    return e->strs[h];
}

static void rjob_clear(rjob *j)
{
    free(j->id);
    memset(j, 0, sizeof *j);
}

/* Vocabulary index of a skill name as a job gives it; -1 if it normalises to nothing. */
static int raw_skill(rank_engine *e, const char *name)
{
    if (e->raw_nslots) {
        uint64_t m = (uint64_t)e->raw_nslots - 1, h = hash_id(name) & m;
        while (e->raw_keys[h]) {
            if (!strcmp(e->raw_keys[h], name))
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
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return v;
        }
        for (int i = 0; i < e->raw_nslots; i++)
            if (e->raw_keys[i]) {
                uint64_t h = hash_id(e->raw_keys[i]) & (uint64_t)(ns - 1);
                while (nk[h])
                    h = (h + 1) & (uint64_t)(ns - 1);
                nk[h] = e->raw_keys[i];
                nv[h] = e->raw_vals[i];
            }
        free(e->raw_keys);
        free(e->raw_vals);
        e->raw_keys = nk;
        e->raw_vals = nv;
        e->raw_nslots = ns;
    }
    uint64_t m = (uint64_t)e->raw_nslots - 1, h = hash_id(name) & m;
    while (e->raw_keys[h])
        h = (h + 1) & m;
    e->raw_keys[h] = strdup(name);
    if (e->raw_keys[h]) {
        e->raw_vals[h] = v;
        e->raw_n++;
    }
    return v;
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
    char *keep_id = j->id;
    j->id = NULL;
    rjob_clear(j);
    j->id = keep_id ? keep_id : strdup(r->job.id);
    const db_job *s = &r->job;
    j->title = intern(e, s->title);
    j->company = intern(e, s->company);
    j->location = intern(e, s->location);
    j->emp = intern(e, s->employment_type);
    j->sen = intern(e, s->seniority);
    j->remote = s->remote;
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
            uint32_t *na = realloc(e->arena, sizeof(uint32_t) * nc);
            if (!na)
                return jm_fail(err, JM_ENOMEM, "out of memory");
            e->arena = na;
            e->arena_cap = nc;
        }
        j->sk_off = (uint32_t)e->arena_n;
        for (int i = 0; i < s->nskills; i++) {
            int v = raw_skill(e, s->skills[i].name);
            if (v == -2)
                return jm_fail(err, JM_ENOMEM, "out of memory");
            if (v < 0)
                continue;
            int dup = 0;
            for (int k = 0; k < j->nsk; k++)
                dup |= JSK(e, j, k) == v;
            if (dup)
                continue;
            int req = s->skills[i].required != 0;
            e->arena[e->arena_n++] = (uint32_t)v << 1 | (uint32_t)req;
            j->wsum += rank_skill_weight(e, req);
            j->nsk++;
            sk_df_add(e->voc, v, 1);
        }
    }
    j->live = 1;
    e->live++;
    j->has_vec = 0;
    if (r->emb && r->emb_len == (size_t)e->dim * 4) {
        if (e->ix) {
            float *v = malloc(sizeof(float) * (size_t)e->dim);
            if (!v)
                return jm_fail(err, JM_ENOMEM, "out of memory");
            db_vec_from_le(r->emb, e->dim, v);
            int rc = idx_set(e->ix, (uint32_t)slot, v, err);
            free(v);
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
    int slot = e->njobs;
    memset(&e->jobs[slot], 0, sizeof(rjob));
    e->jobs[slot].id = strdup(id);
    if (!e->jobs[slot].id)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    e->njobs++;
    if (id_insert(e, slot)) {
        e->njobs--;
        free(e->jobs[slot].id);
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

int rank_open(db *d, const bert_model *model, const rank_opts *opts, rank_engine **out, jm_err *err)
{
    *out = NULL;
    double t0 = jm_now();
    rank_engine *e = calloc(1, sizeof *e);
    if (!e)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    if (opts)
        e->o = *opts;
    else
        rank_opts_default(&e->o);
    e->d = d;
    e->model = model;
    e->dim = bert_dim(model);
    snprintf(e->model_id, sizeof e->model_id, "%s", bert_model_id(model));
    pthread_rwlock_init(&e->lock, NULL);
    pthread_mutex_init(&e->dblock, NULL);
    int rc = sk_vocab_new(e->dim, &e->voc, err);
    if (rc == JM_OK && e->o.index_mode == RANK_INDEX_MEMORY)
        rc = idx_new(e->dim, &e->ix, err);
    /* The change-log position first: whatever changes during the load is
     * applied again by the first refresh, harmlessly. */
    int64_t now = 0;
    if (rc == JM_OK)
        rc = db_changes(d, e->model_id, INT64_MAX, ignore_row, NULL, &now, err);
    struct {
        rank_engine *e;
        jm_err *err;
        int applied;
    } c = {e, err, 0};
    if (rc == JM_OK)
        rc = db_scan_jobs(d, e->model_id, e->ix != NULL, on_row, &c, err);
    if (rc == JM_OK)
        rc = load_skills(e, err);
    if (rc) {
        rank_close(e);
        return rc;
    }
    e->rev = now;
    e->load_secs = jm_now() - t0;
    e->last_refresh = jm_now();
    *out = e;
    return JM_OK;
}

void rank_close(rank_engine *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->njobs; i++)
        rjob_clear(&e->jobs[i]);
    free(e->jobs);
    for (int i = 0; i < e->strs_nslots; i++)
        free(e->strs[i]);
    free(e->strs);
    free(e->arena);
    free(e->id_slots);
    for (int i = 0; i < e->raw_nslots; i++)
        free(e->raw_keys[i]);
    free(e->raw_keys);
    free(e->raw_vals);
    sk_vocab_free(e->voc);
    idx_free(e->ix);
    pthread_rwlock_destroy(&e->lock);
    pthread_mutex_destroy(&e->dblock);
    free(e);
}

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
    pthread_rwlock_wrlock(&e->lock);
    pthread_mutex_lock(&e->dblock);
    int64_t since = e->rev > DB_CHANGES_SLACK ? e->rev - DB_CHANGES_SLACK : 0;
    int rc = db_changes(e->d, e->model_id, since, on_row, &c, &now, err);
    int missing_emb = 0;
    for (int i = 0; rc == JM_OK && i < sk_count(e->voc); i++)
        missing_emb |= sk_embedding(e->voc, i) == NULL;
    if (rc == JM_OK && (c.applied || missing_emb))
        rc = load_skills(e, err); /* embeddings of new skills, IDFs, aliases */
    pthread_mutex_unlock(&e->dblock);
    if (rc == JM_OK && now > e->rev)
        e->rev = now;
    if (rc == JM_OK)
        e->last_refresh = jm_now();
    pthread_rwlock_unlock(&e->lock);
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
     * whole profile, are embedded now in one batch. */
    joined[0] = 0;
    int nt = 0;
    for (int i = 0; i < p->n; i++) {
        strcat(joined, i ? ", " : "");
        strcat(joined, p->typed[i]);
        int v = sk_find(e->voc, p->skills[i]);
        const float *known = v >= 0 ? sk_embedding(e->voc, v) : NULL;
        if (known) {
            memcpy(p->emb + (size_t)i * D, known, sizeof(float) * D);
        } else {
            texts[nt] = p->typed[i];
            which[nt++] = i;
        }
    }
    texts[nt] = joined;
    which[nt++] = -1;
    rc = bert_embed(pool, nt, texts, NULL, vecs, NULL, err);
    if (rc)
        goto out;
    for (int t = 0; t < nt; t++)
        memcpy(which[t] >= 0 ? p->emb + (size_t)which[t] * D : p->profile, vecs + (size_t)t * D,
               sizeof(float) * D);
    rc = sk_match_all(e->voc, (const char *const *)p->skills, p->emb, p->n, p->best_sim, p->best_user, p->kind, err);
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
        p->lnum[3 * u + 1] = logf(e->o.nice_weight + mp);
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

static int passes(const rank_engine *e, const rjob *j, const rank_filters *f, int posted_since)
{
    (void)e;
    if (!j->live)
        return 0;
    if (f->location && *f->location && !ci_contains(j->location, f->location))
        return 0;
    if (f->remote_only && j->remote != 1)
        return 0;
    if (!isnan(f->salary_min) || !isnan(f->salary_max)) {
        /* overlap of [job min, job max] with [filter min, filter max]; a job
         * without a salary does not pass a salary filter */
        if (isnan(j->smin) && isnan(j->smax))
            return 0;
        float lo = isnan(j->smin) ? j->smax : j->smin, hi = isnan(j->smax) ? j->smin : j->smax;
        if (!isnan(f->salary_min) && hi < f->salary_min)
            return 0;
        if (!isnan(f->salary_max) && lo > f->salary_max)
            return 0;
    }
    if (f->employment_type && *f->employment_type && (!j->emp || strcasecmp(j->emp, f->employment_type)))
        return 0;
    if (f->seniority && *f->seniority && (!j->sen || strcasecmp(j->sen, f->seniority)))
        return 0;
    if (posted_since != INT32_MIN && (j->posted == INT32_MIN || j->posted < posted_since))
        return 0;
    for (int i = 0; i < f->nexclude; i++)
        if (!strcmp(j->id, f->exclude[i]))
            return 0;
    return 1;
}

/* Q and C of one job (see rank.h). ucredit is scratch of p->n bytes: which
 * of the three likelihood numerators (0, nice weight, 1) each user skill gets.
 * This runs over every job for every query: no log() here, only lookups of
 * values made once per query (p->lnum) or per job (wsum). */
static void score_skills(const rank_engine *e, const rprofile *p, const rjob *j, unsigned char *ucredit, float *q,
                         float *c)
{
    memset(ucredit, 0, (size_t)p->n);
    float got = 0;
    const uint32_t *sk = e->arena + j->sk_off;
    for (int i = 0; i < j->nsk; i++) {
        int s = (int)(sk[i] >> 1), req = (int)(sk[i] & 1);
        float sim = p->best_sim[s];
        if (sim < e->o.partial)
            continue;
        float w = rank_skill_weight(e, req);
        float cr = sim >= e->o.have ? 1.0f : 0.5f;
        got += w * cr;
        /* The likelihood counts only skills the person has (exact, alias or
         * >= have): related skills are evidence for coverage, not for which
         * job these very skills came from. A job skill counts its weight. */
        int u = p->best_user[s];
        unsigned char level = cr >= 1.0f ? (req ? 2 : 1) : 0;
        if (u >= 0 && level > ucredit[u])
            ucredit[u] = level;
    }
    float ll = 0;
    for (int u = 0; u < p->n; u++)
        ll += p->lnum[3 * u + ucredit[u]];
    *q = ll / p->n - logf(j->wsum + e->o.mu); /* raw average log-likelihood; made relative later */
    *c = got / (j->wsum + e->o.shrink);
}

typedef struct cand {
    int slot;
    float q, c, s, k, score;
    int has_s;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->slot - y->slot;
}

/* A bounded min-heap of candidates by a key. */
typedef struct heap {
    cand *c;
    int n, cap;
} heap;

static void heap_push(heap *h, cand x)
{
    if (h->n < h->cap) {
        int i = h->n++;
        h->c[i] = x;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (h->c[p].score <= h->c[i].score)
                break;
            cand t = h->c[p];
            h->c[p] = h->c[i];
            h->c[i] = t;
            i = p;
        }
        return;
    }
    if (h->cap == 0 || x.score <= h->c[0].score)
        return;
    h->c[0] = x;
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && h->c[l].score < h->c[m].score)
            m = l;
        if (r < h->n && h->c[r].score < h->c[m].score)
            m = r;
        if (m == i)
            break;
        cand t = h->c[m];
        h->c[m] = h->c[i];
        h->c[i] = t;
        i = m;
    }
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
        ids[i] = f->e->jobs[slots[i]].id;
    pthread_mutex_lock(&f->e->dblock);
    int rc = db_get_embeddings(f->e->d, f->e->model_id, ids, n, vecs, f->e->dim, found, err);
    pthread_mutex_unlock(&f->e->dblock);
    free(ids);
    free(found);
    return rc;
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

static void build_align(const rank_engine *e, const rprofile *p, const rjob *j, rank_result *r)
{
    r->align = calloc((size_t)(j->nsk ? j->nsk : 1), sizeof(rank_align));
    if (!r->align)
        return;
    float wsum = 0;
    for (int i = 0; i < j->nsk; i++)
        wsum += rank_skill_weight(e, JREQ(e, j, i));
    for (int i = 0; i < j->nsk; i++) {
        int s = JSK(e, j, i);
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
    int N = e->njobs, C = e->o.candidates > q->k ? e->o.candidates : q->k;
    uint64_t *allow = calloc((size_t)(N / 64 + 1), sizeof(uint64_t));
    unsigned char *ucredit = malloc((size_t)p.n);
    int *pos = malloc(sizeof(int) * (size_t)(N ? N : 1)); /* slot -> index in cands, -1 */
    heap h = {malloc(sizeof(cand) * (size_t)C), 0, C};
    cand *cands = malloc(sizeof(cand) * (size_t)(3 * C + 1));
    int nc = 0;
    float *sem = NULL;
    db_hit *hits = NULL;
    int nhits = 0;
    if (!allow || !ucredit || !pos || !h.c || !cands) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }

    /* 1. Every job that passes the filters, by what the skills alone say. */
    int64_t considered = 0;
    for (int s = 0; s < N; s++) {
        pos[s] = -1;
        const rjob *j = &e->jobs[s];
        if (!passes(e, j, &q->filters, posted_since))
            continue;
        allow[s / 64] |= 1ULL << (s % 64);
        considered++;
        cand x = {.slot = s};
        score_skills(e, &p, j, ucredit, &x.q, &x.c);
        x.score = x.q + e->o.w.coverage * x.c;
        heap_push(&h, x);
    }
    out->considered = considered;
    STAGE("skills");
    for (int i = 0; i < h.n; i++) {
        cands[nc] = h.c[i];
        pos[h.c[i].slot] = nc++;
    }

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
                if (pos[s] < 0) {
                    cands[nc] = (cand){.slot = s};
                    pos[s] = nc++;
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
            rc = db_scan_jobs(e->d, e->model_id, 1, on_stream_row, &sc, err);
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
                if (pos[hs.c[i].slot] < 0) {
                    cands[nc] = (cand){.slot = hs.c[i].slot};
                    pos[hs.c[i].slot] = nc++;
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
            if (pos[s] < 0 && nc < 3 * C + 1) {
                cands[nc] = (cand){.slot = s};
                pos[s] = nc++;
            }
            if (pos[s] >= 0) {
                cands[pos[s]].k = (float)hits[i].score;
                if (hits[i].score > kmax)
                    kmax = (float)hits[i].score;
            }
        }
    }
    STAGE("keyword");
    /* 4. Every candidate scored on all four parts. */
    float qmax = -INFINITY;
    for (int i = 0; i < nc; i++) {
        cand *x = &cands[i];
        score_skills(e, &p, &e->jobs[x->slot], ucredit, &x->q, &x->c);
        if (x->q > qmax)
            qmax = x->q;
    }
    for (int i = 0; i < nc; i++) {
        cand *x = &cands[i];
        const rjob *j = &e->jobs[x->slot];
        x->q = expf(x->q - qmax);
        x->k = kmax > 0 ? x->k / kmax : 0;
        if (sem) {
            x->s = isnan(sem[x->slot]) ? 0 : sem[x->slot];
        } else if (e->ix && j->has_vec) {
            x->s = idx_score(e->ix, p.profile, (uint32_t)x->slot);
        } else {
            x->s = 0;
        }
        x->score = e->o.w.query * x->q + e->o.w.coverage * x->c + e->o.w.semantic * x->s + e->o.w.keyword * x->k;
    }
    qsort(cands, (size_t)nc, sizeof(cand), cmp_cand);

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
                same += o->company && !strcasecmp(o->company, j->company);
            }
            if (same >= q->per_company)
                continue;
        }
        pick[np++] = i;
    }
    if (e->ix && np) {
        uint32_t *slots = malloc(sizeof(uint32_t) * (size_t)np);
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
    STAGE("top-k");
    for (int i = 0; i < np; i++) {
        const cand *x = &cands[pick[i]];
        const rjob *j = &e->jobs[x->slot];
        rank_result *r = &out->results[i];
        r->id = j->id;
        r->title = j->title;
        r->company = j->company;
        r->location = j->location;
        r->score = x->score;
        r->query = x->q;
        r->coverage = x->c;
        r->semantic = x->s;
        r->keyword = x->k;
        build_align(e, &p, j, r);
    }
    out->n = np;
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
    free(pos);
    free(h.c);
    free(cands);
    free(sem);
    db_hits_free(hits, nhits);
    out->ms = (jm_now() - t0) * 1e3;
    if (rc)
        rank_response_free(out);
    return rc;
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
