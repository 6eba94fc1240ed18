/* server_api.c - the /v1 handlers: request validation, the engine calls, the
 * JSON answers (docs/api.md). */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedjob.h"
#include "gap.h"
#include "report.h"
#include "server_int.h"

#define MODEL_NAME "all-MiniLM-L6-v2"
#define MAX_TEXT_FIELD 200
#define MAX_EXCLUDE 1000
#define MAX_EMBED_INPUTS 64
#define MAX_EMBED_CHARS 10000
#define MAX_DESCRIPTION (256 * 1024)

/* A validation failure: the message for a 400 invalid_request. */
typedef struct verr {
    char msg[400];
} verr;

static int bad(verr *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(verr *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* code points in a valid UTF-8 string */
static size_t u8len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Does the JSON text hold a \u0000 escape? cJSON would end the string
 * there, silently cutting it. An escape is a 'u' after an odd number of
 * backslashes. */
static int has_nul_escape(const char *t)
{
    for (const char *p = strstr(t, "u0000"); p; p = strstr(p + 1, "u0000")) {
        int n = 0;
        for (const char *q = p - 1; q >= t && *q == '\\'; q--)
            n++;
        if (n % 2)
            return 1;
    }
    return 0;
}

/* The body as a JSON object, or an answer already queued (*res). */
static cJSON *parse_object(srv *s, req *r, struct MHD_Connection *c, enum MHD_Result *res)
{
    if (!srv_utf8_valid(r->body, r->body_len)) {
        *res = srv_reply_error(s, r, c, 400, "invalid_utf8", "the body is not valid UTF-8");
        return NULL;
    }
    if (strlen(r->body) != r->body_len) {
        *res = srv_reply_error(s, r, c, 400, "invalid_json", "the body contains a NUL byte");
        return NULL;
    }
    if (has_nul_escape(r->body)) {
        *res = srv_reply_error(s, r, c, 400, "invalid_request", "strings must not contain NUL (\\u0000)");
        return NULL;
    }
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithOpts(r->body, &end, 1);
    if (!o) {
        long at = end ? (long)(end - r->body) : 0;
        *res = srv_reply_error(s, r, c, 400, "invalid_json",
                               r->body_len ? "the body is not valid JSON (at byte %ld)" : "the body is empty%.0ld",
                               at);
        return NULL;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        *res = srv_reply_error(s, r, c, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

/* Refuse fields not in the NULL-terminated list, and duplicates. */
static int known_fields(const cJSON *o, const char *const *allowed, const char *where, verr *v)
{
    for (const cJSON *it = o->child; it; it = it->next) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++)
            ok = !strcmp(it->string, allowed[i]);
        if (!ok)
            return bad(v, "unknown field \"%.100s\"%s%s", it->string, where ? " in " : "", where ? where : "");
        for (const cJSON *p = o->child; p != it; p = p->next)
            if (!strcmp(p->string, it->string))
                return bad(v, "field \"%.100s\" appears twice", it->string);
    }
    return 0;
}

static int opt_int(const cJSON *o, const char *name, long lo, long hi, long *out, verr *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!x || cJSON_IsNull(x))
        return 0;
    double d = x->valuedouble;
    if (!cJSON_IsNumber(x) || d != floor(d) || d < (double)lo || d > (double)hi)
        return bad(v, "%s must be an integer from %ld to %ld", name, lo, hi);
    *out = (long)d;
    return 0;
}

static int opt_num(const cJSON *o, const char *name, double lo, double hi, double *out, verr *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!x || cJSON_IsNull(x))
        return 0;
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble < lo || x->valuedouble > hi)
        return bad(v, "%s must be a number from %g to %g", name, lo, hi);
    *out = x->valuedouble;
    return 0;
}

static int opt_bool(const cJSON *o, const char *name, int *out, verr *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!x || cJSON_IsNull(x))
        return 0;
    if (!cJSON_IsBool(x))
        return bad(v, "%s must be true or false", name);
    *out = cJSON_IsTrue(x);
    return 0;
}

/* A string field of at most max code points; "" counts as absent. */
static int opt_str(const cJSON *o, const char *name, size_t max, const char **out, verr *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!x || cJSON_IsNull(x))
        return 0;
    if (!cJSON_IsString(x))
        return bad(v, "%s must be a string", name);
    if (u8len(x->valuestring) > max)
        return bad(v, "%s is longer than %zu characters", name, max);
    *out = *x->valuestring ? x->valuestring : NULL;
    return 0;
}

/* ---------- skills and filters ---------- */

typedef struct strs {
    char **v;
    int n;
} strs;

static void strs_free(strs *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int trimmed_len_ok(const char *t, const char *what, verr *v)
{
    /* rank_split_skills trims; the bound is on the trimmed text */
    const char *a = t, *b = t + strlen(t);
    while (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r')
        a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n' || b[-1] == '\r'))
        b--;
    size_t n = 0;
    for (const char *p = a; p < b; p++)
        n += ((unsigned char)*p & 0xC0) != 0x80;
    if (n > SRV_MAX_SKILL_CHARS)
        return bad(v, "%s: a skill is longer than %d characters", what, SRV_MAX_SKILL_CHARS);
    return 0;
}

/* "skills": an array of strings or one string of comma-separated skills. */
static int get_skills(const cJSON *o, strs *out, verr *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "skills");
    if (!x)
        return bad(v, "skills is required: a list of strings, or one string \"python, sql\"");
    if (cJSON_IsString(x)) {
        out->n = rank_split_skills(x->valuestring, &out->v);
        for (int i = 0; i < out->n; i++)
            if (trimmed_len_ok(out->v[i], "skills", v))
                return -1;
    } else if (cJSON_IsArray(x)) {
        int n = cJSON_GetArraySize(x);
        if (n > SRV_MAX_SKILLS)
            return bad(v, "at most %d skills, got %d", SRV_MAX_SKILLS, n);
        out->v = calloc((size_t)(n ? n : 1), sizeof(char *));
        if (!out->v)
            return bad(v, "out of memory");
        for (const cJSON *it = x->child; it; it = it->next) {
            if (!cJSON_IsString(it))
                return bad(v, "skills must hold strings only");
            if (trimmed_len_ok(it->valuestring, "skills", v))
                return -1;
            char **one = NULL;
            int k = rank_split_skills(it->valuestring, &one);
            /* an item is one skill: commas inside it are kept as typed */
            for (int i = 0; i < k; i++)
                free(one[i]);
            free(one);
            if (k == 0)
                continue;
            const char *a = it->valuestring;
            while (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r')
                a++;
            size_t len = strlen(a);
            while (len && (a[len - 1] == ' ' || a[len - 1] == '\t' || a[len - 1] == '\n' || a[len - 1] == '\r'))
                len--;
            if (!(out->v[out->n] = strndup(a, len)))
                return bad(v, "out of memory");
            out->n++;
        }
    } else {
        return bad(v, "skills must be a list of strings or one string");
    }
    if (out->n > SRV_MAX_SKILLS)
        return bad(v, "at most %d skills, got %d", SRV_MAX_SKILLS, out->n);
    if (out->n == 0)
        return bad(v, "skills is empty: give at least one skill");
    return 0;
}

/* YYYY-MM-DD, a real month and day; with_time: a 'T' or ' ' and a time may follow. */
static int date_ok(const char *t, int with_time)
{
    for (int i = 0; i < 10; i++)
        if (!t[i] || (i == 4 || i == 7 ? t[i] != '-' : (t[i] < '0' || t[i] > '9')))
            return 0;
    int m = (t[5] - '0') * 10 + t[6] - '0', d = (t[8] - '0') * 10 + t[9] - '0';
    if (m < 1 || m > 12 || d < 1 || d > 31)
        return 0;
    return !t[10] || (with_time && (t[10] == 'T' || t[10] == ' ') && t[11]);
}

static const char *const filter_fields[] = {"location",  "remote",       "salary_min", "salary_max", "employment_type",
                                            "seniority", "posted_since", "exclude",    NULL};

static int get_filters(const cJSON *o, rank_filters *f, strs *excl, verr *v)
{
    rank_filters_init(f);
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "filters");
    if (!x || cJSON_IsNull(x))
        return 0;
    if (!cJSON_IsObject(x))
        return bad(v, "filters must be an object");
    if (known_fields(x, filter_fields, "filters", v) || opt_str(x, "location", MAX_TEXT_FIELD, &f->location, v) ||
        opt_bool(x, "remote", &f->remote_only, v) || opt_num(x, "salary_min", 0, 1e12, &f->salary_min, v) ||
        opt_num(x, "salary_max", 0, 1e12, &f->salary_max, v) ||
        opt_str(x, "employment_type", MAX_TEXT_FIELD, &f->employment_type, v) ||
        opt_str(x, "seniority", MAX_TEXT_FIELD, &f->seniority, v) ||
        opt_str(x, "posted_since", 32, &f->posted_since, v))
        return -1;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(x, "exclude");
    if (e && !cJSON_IsNull(e)) {
        if (!cJSON_IsArray(e))
            return bad(v, "filters.exclude must be a list of job ids");
        int n = cJSON_GetArraySize(e);
        if (n > MAX_EXCLUDE)
            return bad(v, "filters.exclude: at most %d ids", MAX_EXCLUDE);
        excl->v = calloc((size_t)(n ? n : 1), sizeof(char *));
        if (!excl->v)
            return bad(v, "out of memory");
        for (const cJSON *it = e->child; it; it = it->next) {
            if (!cJSON_IsString(it) || u8len(it->valuestring) > MAX_TEXT_FIELD)
                return bad(v, "filters.exclude must hold job ids (strings of at most %d characters)", MAX_TEXT_FIELD);
            if (!(excl->v[excl->n++] = strdup(it->valuestring)))
                return bad(v, "out of memory");
        }
        f->exclude = (const char *const *)excl->v;
        f->nexclude = excl->n;
    }
    if (!isnan(f->salary_min) && !isnan(f->salary_max) && f->salary_min > f->salary_max)
        return bad(v, "filters.salary_min is larger than filters.salary_max");
    if (f->posted_since && !date_ok(f->posted_since, 0))
        return bad(v, "filters.posted_since must be a date YYYY-MM-DD");
    return 0;
}

/* Engine errors: bad input 400, unknown job 404, the rest 500 (or 503 when
 * the database is away). */
static enum MHD_Result engine_failed(srv *s, req *r, struct MHD_Connection *c, int rc, const jm_err *err)
{
    if (rc == JM_EINVAL)
        return srv_reply_error(s, r, c, 400, "invalid_request", "%s", err->msg);
    if (rc == JM_ENOTFOUND)
        return srv_reply_error(s, r, c, 404, "not_found", "%s", err->msg);
    return srv_db_failed(s, r, c, rc, err);
}

static enum MHD_Result busy(srv *s, req *r, struct MHD_Connection *c)
{
    srv_count_busy(s);
    return srv_reply_error(s, r, c, 503, "busy", "every worker is busy; try again shortly");
}

/* ---------- POST /v1/recommend ---------- */

enum MHD_Result srv_api_recommend(srv *s, req *r, struct MHD_Connection *c)
{
    static const char *const fields[] = {"skills", "top_k", "explain", "per_company", "filters", NULL};
    enum MHD_Result res;
    cJSON *o = parse_object(s, r, c, &res);
    if (!o)
        return res;
    verr v = {{0}};
    strs sk = {0}, excl = {0};
    long k = 10, per_company = 0;
    int explain = 1;
    rank_filters f;
    rank_filters_init(&f);
    if (known_fields(o, fields, NULL, &v) || get_skills(o, &sk, &v) ||
        opt_int(o, "top_k", 1, SRV_MAX_TOP_K, &k, &v) || opt_bool(o, "explain", &explain, &v) ||
        opt_int(o, "per_company", 0, 1000, &per_company, &v) || get_filters(o, &f, &excl, &v)) {
        res = srv_reply_error(s, r, c, 400, "invalid_request", "%s", v.msg);
        goto out;
    }
    int w = srv_worker_get(s);
    if (w < 0) {
        res = busy(s, r, c);
        goto out;
    }
    rank_query q = {(const char *const *)sk.v, sk.n, (int)k, (int)per_company, f};
    rank_response rr;
    jm_err err = {0};
    int rc = rank_recommend(s->eng, s->pools[w], &q, &rr, &err);
    srv_worker_put(s, w);
    if (rc) {
        res = engine_failed(s, r, c, rc, &err);
        goto out;
    }
    cJSON *ans = rep_recommend(&rr, explain);
    rank_response_free(&rr);
    res = srv_reply_json(s, r, c, 200, ans);
out:
    strs_free(&sk);
    strs_free(&excl);
    cJSON_Delete(o);
    return res;
}

/* ---------- POST /v1/skill-gap ---------- */

enum MHD_Result srv_api_gap(srv *s, req *r, struct MHD_Connection *c)
{
    static const char *const fields[] = {"skills", "job_id", "top_n", "readiness", "per_company", "filters", NULL};
    enum MHD_Result res;
    cJSON *o = parse_object(s, r, c, &res);
    if (!o)
        return res;
    verr v = {{0}};
    strs sk = {0}, excl = {0};
    long top = 20, per_company = 0;
    double readiness = 0.7;
    const char *job = NULL;
    rank_filters f;
    rank_filters_init(&f);
    if (known_fields(o, fields, NULL, &v) || get_skills(o, &sk, &v) ||
        opt_str(o, "job_id", MAX_TEXT_FIELD, &job, &v) || opt_int(o, "top_n", 1, 100, &top, &v) ||
        opt_num(o, "readiness", 0, 1, &readiness, &v) || opt_int(o, "per_company", 0, 1000, &per_company, &v) ||
        get_filters(o, &f, &excl, &v)) {
        res = srv_reply_error(s, r, c, 400, "invalid_request", "%s", v.msg);
        goto out;
    }
    if (!(readiness > 0)) {
        res = srv_reply_error(s, r, c, 400, "invalid_request", "readiness must be in (0, 1]");
        goto out;
    }
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(o, "job_id");
    if (jid && !cJSON_IsNull(jid) && !job) {
        res = srv_reply_error(s, r, c, 400, "invalid_request", "job_id is empty");
        goto out;
    }
    if (job) {
        static const char *const career_only[] = {"top_n", "readiness", "per_company", "filters"};
        for (int i = 0; i < 4; i++)
            if (cJSON_GetObjectItemCaseSensitive(o, career_only[i])) {
                res = srv_reply_error(s, r, c, 400, "invalid_request", "%s cannot be combined with job_id",
                                      career_only[i]);
                goto out;
            }
    }
    int w = srv_worker_get(s);
    if (w < 0) {
        res = busy(s, r, c);
        goto out;
    }
    jm_err err = {0};
    cJSON *ans = NULL;
    int rc;
    if (job) {
        gap_report g;
        rc = gap_job(s->eng, s->pools[w], (const char *const *)sk.v, sk.n, job, &g, &err);
        if (rc == JM_OK) {
            ans = rep_gap_job(&g);
            gap_report_free(&g);
        }
    } else {
        rank_query q = {(const char *const *)sk.v, sk.n, (int)top, (int)per_company, f};
        gap_career cg;
        /* a positive target too small for a float is the smallest float */
        float target = (float)readiness > 0 ? (float)readiness : FLT_MIN;
        rc = gap_career_report(s->eng, s->pools[w], &q, target, &cg, &err);
        if (rc == JM_OK) {
            ans = rep_career(&cg);
            gap_career_free(&cg);
        }
    }
    srv_worker_put(s, w);
    res = rc ? engine_failed(s, r, c, rc, &err) : srv_reply_json(s, r, c, 200, ans);
out:
    strs_free(&sk);
    strs_free(&excl);
    cJSON_Delete(o);
    return res;
}

/* ---------- jobs ---------- */

/* The id from the path: valid UTF-8, 1-200 characters, no control characters. */
static int job_id_ok(srv *s, req *r, struct MHD_Connection *c, enum MHD_Result *res)
{
    const char *id = r->job_id;
    if (!srv_utf8_valid(id, strlen(id))) {
        *res = srv_reply_error(s, r, c, 400, "invalid_utf8", "the job id is not valid UTF-8");
        return 0;
    }
    size_t n = u8len(id);
    int ctl = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        ctl |= *p < 0x20 || *p == 0x7f;
    if (n > MAX_TEXT_FIELD || ctl) {
        *res = srv_reply_error(s, r, c, 400, "invalid_request",
                               "a job id is 1-%d characters without control characters", MAX_TEXT_FIELD);
        return 0;
    }
    return 1;
}

enum MHD_Result srv_api_job_get(srv *s, req *r, struct MHD_Connection *c)
{
    enum MHD_Result res;
    if (!job_id_ok(s, r, c, &res))
        return res;
    if (!atomic_load(&s->db_up))
        return srv_reply_error(s, r, c, 503, "unavailable", "the database is unreachable; try again later");
    db_job j;
    db_job_init(&j);
    int found = 0, dim = 0;
    float *vec = NULL;
    char *model = NULL;
    jm_err err = {0};
    pthread_mutex_lock(&s->sdlock);
    int rc = db_get_job(s->sdb, r->job_id, &j, &found, &err);
    if (rc == JM_OK && found)
        rc = db_get_job_embedding(s->sdb, r->job_id, &vec, &dim, &model, &err);
    pthread_mutex_unlock(&s->sdlock);
    if (rc)
        res = srv_db_failed(s, r, c, rc, &err);
    else if (!found)
        res = srv_reply_error(s, r, c, 404, "not_found", "no job with id \"%.200s\"", r->job_id);
    else
        res = srv_reply_json(s, r, c, 200,
                             rep_job(&j, vec && model && !strcmp(model, bert_model_id(s->model)) &&
                                             dim == bert_dim(s->model)));
    free(vec);
    free(model);
    db_job_clear(&j);
    return res;
}

/* Embed one job (if it needs it) and the skills without an embedding, with
 * worker w's pool. Holds sdlock. */
static int embed_now(srv *s, int w, const char *id, int *embedded, jm_err *err)
{
    const char *mid = bert_model_id(s->model);
    int dim = bert_dim(s->model);
    db_batch b;
    int rc = db_claim_job(s->sdb, mid, id, &b, err);
    if (rc)
        return rc;
    float *vecs = NULL;
    if (b.n) {
        vecs = malloc(sizeof(float) * (size_t)dim * (size_t)b.n);
        if (!vecs) {
            db_abort(s->sdb);
            db_batch_free(&b);
            return jm_fail(err, JM_ENOMEM, "out of memory");
        }
        rc = bert_embed(s->pools[w], b.n, (const char *const *)b.texts, NULL, vecs, NULL, err);
        if (rc)
            db_abort(s->sdb);
        else
            rc = db_commit_jobs(s->sdb, &b, vecs, dim, mid, err);
        *embedded = rc == JM_OK;
    }
    free(vecs);
    db_batch_free(&b);
    /* the skills the job brought in; a long backlog is left to `jobmatch embed` */
    for (int round = 0; rc == JM_OK && round < 4; round++) {
        db_batch sb;
        if ((rc = db_claim_skills(s->sdb, mid, NULL, 64, &sb, err)) || sb.n == 0) {
            db_batch_free(&sb);
            break;
        }
        float *sv = malloc(sizeof(float) * (size_t)dim * (size_t)sb.n);
        if (!sv) {
            db_abort(s->sdb);
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
        } else if ((rc = bert_embed(s->pools[w], sb.n, (const char *const *)sb.texts, NULL, sv, NULL, err))) {
            db_abort(s->sdb);
        } else {
            rc = db_commit_skills(s->sdb, &sb, sv, dim, mid, err);
        }
        free(sv);
        int n = sb.n;
        db_batch_free(&sb);
        if (n < 64)
            break;
    }
    return rc;
}

static int parse_job(const cJSON *o, const char *id, db_job *j, verr *v)
{
    static const char *const fields[] = {"title",           "company",   "location",  "remote",
                                         "salary_min",      "salary_max", "currency", "employment_type",
                                         "seniority",       "posted_at", "description", "skills",
                                         "id",              NULL};
    const char *title = NULL, *company = NULL, *location = NULL, *currency = NULL, *emp = NULL, *sen = NULL,
               *posted = NULL, *desc = NULL, *bodyid = NULL;
    int remote = -1;
    if (known_fields(o, fields, NULL, v) || opt_str(o, "title", 500, &title, v) ||
        opt_str(o, "company", MAX_TEXT_FIELD, &company, v) || opt_str(o, "location", MAX_TEXT_FIELD, &location, v) ||
        opt_bool(o, "remote", &remote, v) || opt_num(o, "salary_min", 0, 1e12, &j->salary_min, v) ||
        opt_num(o, "salary_max", 0, 1e12, &j->salary_max, v) || opt_str(o, "currency", 16, &currency, v) ||
        opt_str(o, "employment_type", MAX_TEXT_FIELD, &emp, v) || opt_str(o, "seniority", MAX_TEXT_FIELD, &sen, v) ||
        opt_str(o, "posted_at", 40, &posted, v) || opt_str(o, "description", MAX_DESCRIPTION, &desc, v) ||
        opt_str(o, "id", MAX_TEXT_FIELD, &bodyid, v))
        return -1;
    if (!title)
        return bad(v, "title is required");
    if (bodyid && strcmp(bodyid, id))
        return bad(v, "the body's id differs from the path's");
    if (!isnan(j->salary_min) && !isnan(j->salary_max) && j->salary_min > j->salary_max)
        return bad(v, "salary_min is larger than salary_max");
    if (posted && !date_ok(posted, 1))
        return bad(v, "posted_at must be a date YYYY-MM-DD (or an ISO 8601 date-time)");
    j->remote = remote;
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(o, "skills");
    if (sk && !cJSON_IsNull(sk)) {
        if (!cJSON_IsArray(sk))
            return bad(v, "skills must be a list of strings or of {\"name\", \"required\"}");
        int n = cJSON_GetArraySize(sk);
        if (n > SRV_MAX_SKILLS)
            return bad(v, "at most %d skills, got %d", SRV_MAX_SKILLS, n);
        j->skills = calloc((size_t)(n ? n : 1), sizeof(db_skill));
        if (!j->skills)
            return bad(v, "out of memory");
        for (const cJSON *it = sk->child; it; it = it->next) {
            const char *name = NULL;
            int required = 1;
            if (cJSON_IsString(it)) {
                name = it->valuestring;
            } else if (cJSON_IsObject(it)) {
                static const char *const sf[] = {"name", "required", NULL};
                if (known_fields(it, sf, "a skill", v) || opt_str(it, "name", SRV_MAX_SKILL_CHARS, &name, v) ||
                    opt_bool(it, "required", &required, v))
                    return -1;
            } else {
                return bad(v, "skills must be a list of strings or of {\"name\", \"required\"}");
            }
            if (!name || !*name)
                return bad(v, "a skill has no name");
            if (u8len(name) > SRV_MAX_SKILL_CHARS)
                return bad(v, "a skill is longer than %d characters", SRV_MAX_SKILL_CHARS);
            if (!(j->skills[j->nskills].name = strdup(name)))
                return bad(v, "out of memory");
            j->skills[j->nskills++].required = required;
        }
    }
#define DUP(dst, src)                                   \
    do {                                                \
        if ((src) && !((dst) = strdup(src)))            \
            return bad(v, "out of memory");             \
    } while (0)
    DUP(j->id, id);
    DUP(j->title, title);
    DUP(j->company, company);
    DUP(j->location, location);
    DUP(j->currency, currency);
    DUP(j->employment_type, emp);
    DUP(j->seniority, sen);
    DUP(j->posted_at, posted);
    DUP(j->description, desc);
#undef DUP
    return 0;
}

enum MHD_Result srv_api_job_put(srv *s, req *r, struct MHD_Connection *c)
{
    enum MHD_Result res;
    if (!job_id_ok(s, r, c, &res))
        return res;
    cJSON *o = parse_object(s, r, c, &res);
    if (!o)
        return res;
    double t0 = jm_now();
    db_job j;
    db_job_init(&j);
    verr v = {{0}};
    if (parse_job(o, r->job_id, &j, &v)) {
        res = srv_reply_error(s, r, c, 400, "invalid_request", "%s", v.msg);
        goto out;
    }
    if (!atomic_load(&s->db_up)) {
        res = srv_reply_error(s, r, c, 503, "unavailable", "the database is unreachable; try again later");
        goto out;
    }
    int w = srv_worker_get(s);
    if (w < 0) {
        res = busy(s, r, c);
        goto out;
    }
    jm_err err = {0};
    int found = 0, changed = 0, embedded = 0, added = 0;
    db_job old;
    db_job_init(&old);
    pthread_mutex_lock(&s->sdlock);
    int rc = db_get_job(s->sdb, j.id, &old, &found, &err);
    db_job_clear(&old);
    if (rc == JM_OK)
        rc = db_upsert_jobs(s->sdb, &j, 1, &changed, &err);
    if (rc == JM_OK)
        rc = db_add_skills(s->sdb, j.skills, j.nskills, &added, &err);
    if (rc == JM_OK)
        rc = embed_now(s, w, j.id, &embedded, &err);
    pthread_mutex_unlock(&s->sdlock);
    srv_worker_put(s, w);
    if (rc) {
        res = srv_db_failed(s, r, c, rc, &err);
        goto out;
    }
    /* the engine applies the change now, so the next query sees it */
    jm_err rerr = {0};
    if (rank_refresh(s->eng, NULL, &rerr) && s->cfg.log)
        fprintf(s->cfg.log, "jobmatch: refresh after PUT failed: %s\n", rerr.msg);
    cJSON *ans = cJSON_CreateObject();
    cJSON_AddStringToObject(ans, "id", j.id);
    cJSON_AddBoolToObject(ans, "created", !found);
    cJSON_AddBoolToObject(ans, "embedded", embedded || !changed);
    cJSON_AddNumberToObject(ans, "took_ms", rep_round((jm_now() - t0) * 1e3));
    res = srv_reply_json(s, r, c, found ? 200 : 201, ans);
out:
    db_job_clear(&j);
    cJSON_Delete(o);
    return res;
}

enum MHD_Result srv_api_job_delete(srv *s, req *r, struct MHD_Connection *c)
{
    enum MHD_Result res;
    if (!job_id_ok(s, r, c, &res))
        return res;
    if (!atomic_load(&s->db_up))
        return srv_reply_error(s, r, c, 503, "unavailable", "the database is unreachable; try again later");
    jm_err err = {0};
    int found = 0;
    pthread_mutex_lock(&s->sdlock);
    int rc = db_delete_job(s->sdb, r->job_id, &found, &err);
    pthread_mutex_unlock(&s->sdlock);
    if (rc)
        return srv_db_failed(s, r, c, rc, &err);
    if (!found)
        return srv_reply_error(s, r, c, 404, "not_found", "no job with id \"%.200s\"", r->job_id);
    jm_err rerr = {0};
    if (rank_refresh(s->eng, NULL, &rerr) && s->cfg.log)
        fprintf(s->cfg.log, "jobmatch: refresh after DELETE failed: %s\n", rerr.msg);
    char *empty = strdup("");
    if (!empty)
        return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, empty, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(empty);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    r->status = 204;
    res = MHD_queue_response(c, 204, resp);
    MHD_destroy_response(resp);
    return res;
}

/* Query parameters: valid UTF-8, known names only. */
typedef struct qargs {
    srv *s;
    int bad_utf8, unknown, nul;
    const char *const *allowed;
    char name[64];
} qargs;

static enum MHD_Result each_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                const char *value, size_t value_size)
{
    qargs *a = cls;
    (void)kind;
    if (strlen(key) != key_size || (value && strlen(value) != value_size)) {
        a->nul = 1; /* %00: the value would be cut at it */
        return MHD_NO;
    }
    if (!srv_utf8_valid(key, key_size) || (value && !srv_utf8_valid(value, value_size))) {
        a->bad_utf8 = 1;
        return MHD_NO;
    }
    int ok = 0;
    for (int i = 0; a->allowed[i] && !ok; i++)
        ok = !strcmp(key, a->allowed[i]);
    if (!ok) {
        a->unknown = 1;
        snprintf(a->name, sizeof a->name, "%s", key);
        return MHD_NO;
    }
    return MHD_YES;
}

static int check_args(srv *s, req *r, struct MHD_Connection *c, const char *const *allowed, enum MHD_Result *res)
{
    qargs a = {s, 0, 0, 0, allowed, ""};
    MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, each_arg, &a);
    if (a.nul) {
        *res = srv_reply_error(s, r, c, 400, "invalid_request", "a query parameter contains NUL (%%00)");
        return 0;
    }
    if (a.bad_utf8) {
        *res = srv_reply_error(s, r, c, 400, "invalid_utf8", "a query parameter is not valid UTF-8");
        return 0;
    }
    if (a.unknown) {
        *res = srv_reply_error(s, r, c, 400, "invalid_request", "unknown query parameter \"%s\"", a.name);
        return 0;
    }
    return 1;
}

static int arg_long(struct MHD_Connection *c, const char *name, long lo, long hi, long *out, verr *v)
{
    const char *t = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!t)
        return 0;
    char *end;
    long x = strtol(t, &end, 10);
    if (!*t || *end || x < lo || x > hi)
        return bad(v, "%s must be an integer from %ld to %ld", name, lo, hi);
    *out = x;
    return 0;
}

static int add_brief(void *ctx, const rank_job_brief *b)
{
    cJSON *arr = ctx, *m = cJSON_CreateObject();
    if (!m)
        return JM_ENOMEM;
    cJSON_AddStringToObject(m, "id", b->id);
    if (b->title) cJSON_AddStringToObject(m, "title", b->title); else cJSON_AddNullToObject(m, "title");
    if (b->company) cJSON_AddStringToObject(m, "company", b->company); else cJSON_AddNullToObject(m, "company");
    if (b->location) cJSON_AddStringToObject(m, "location", b->location); else cJSON_AddNullToObject(m, "location");
    cJSON_AddItemToArray(arr, m);
    return JM_OK;
}

enum MHD_Result srv_api_jobs(srv *s, req *r, struct MHD_Connection *c)
{
    static const char *const allowed[] = {"q", "limit", "offset", NULL};
    enum MHD_Result res;
    if (!check_args(s, r, c, allowed, &res))
        return res;
    verr v = {{0}};
    long limit = 20, offset = 0;
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
    if (arg_long(c, "limit", 1, 100, &limit, &v) || arg_long(c, "offset", 0, 1000000, &offset, &v))
        return srv_reply_error(s, r, c, 400, "invalid_request", "%s", v.msg);
    if (q && u8len(q) > MAX_TEXT_FIELD)
        return srv_reply_error(s, r, c, 400, "invalid_request", "q is longer than %d characters", MAX_TEXT_FIELD);
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int64_t total = 0;
    jm_err err = {0};
    int rc = rank_list_jobs(s->eng, q, offset, (int)limit, add_brief, arr, &total, &err);
    cJSON_AddNumberToObject(o, "total", (double)total);
    cJSON_AddNumberToObject(o, "limit", (double)limit);
    cJSON_AddNumberToObject(o, "offset", (double)offset);
    cJSON_AddItemToObject(o, "jobs", arr);
    if (rc) {
        cJSON_Delete(o);
        return srv_reply_error(s, r, c, 500, "internal", "%s", err.msg);
    }
    return srv_reply_json(s, r, c, 200, o);
}

static int add_skill(void *ctx, const char *name, int jobs)
{
    cJSON *arr = ctx, *m = cJSON_CreateObject();
    if (!m)
        return JM_ENOMEM;
    cJSON_AddStringToObject(m, "name", name);
    cJSON_AddNumberToObject(m, "jobs", jobs);
    cJSON_AddItemToArray(arr, m);
    return JM_OK;
}

enum MHD_Result srv_api_skills(srv *s, req *r, struct MHD_Connection *c)
{
    static const char *const allowed[] = {"prefix", "limit", NULL};
    enum MHD_Result res;
    if (!check_args(s, r, c, allowed, &res))
        return res;
    verr v = {{0}};
    long limit = 10;
    const char *p = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "prefix");
    if (arg_long(c, "limit", 1, 100, &limit, &v))
        return srv_reply_error(s, r, c, 400, "invalid_request", "%s", v.msg);
    if (!p || !*p)
        return srv_reply_error(s, r, c, 400, "invalid_request", "prefix is required");
    if (u8len(p) > MAX_TEXT_FIELD)
        return srv_reply_error(s, r, c, 400, "invalid_request", "prefix is longer than %d characters", MAX_TEXT_FIELD);
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "skills");
    jm_err err = {0};
    int rc = rank_suggest_skills(s->eng, p, (int)limit, add_skill, arr, &err);
    if (rc == JM_EINVAL) { /* a prefix of only spaces: nothing matches */
        rc = JM_OK;
    }
    if (rc) {
        cJSON_Delete(o);
        return srv_reply_error(s, r, c, 500, "internal", "%s", err.msg);
    }
    return srv_reply_json(s, r, c, 200, o);
}

/* ---------- POST /v1/embeddings ---------- */

static char *base64(const unsigned char *in, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        *p++ = tab[v >> 18 & 63];
        *p++ = tab[v >> 12 & 63];
        *p++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *p = 0;
    return out;
}

enum MHD_Result srv_api_embeddings(srv *s, req *r, struct MHD_Connection *c)
{
    static const char *const fields[] = {"input", "model", "encoding_format", "user", "dimensions", NULL};
    enum MHD_Result res;
    cJSON *o = parse_object(s, r, c, &res);
    if (!o)
        return res;
    verr v = {{0}};
    const char *model = NULL, *fmt = NULL, *user = NULL;
    long dims = bert_dim(s->model);
    const char **texts = NULL;
    float *vecs = NULL;
    int n = 0;
    if (known_fields(o, fields, NULL, &v) || opt_str(o, "model", 200, &model, &v) ||
        opt_str(o, "encoding_format", 20, &fmt, &v) || opt_str(o, "user", 1000, &user, &v) ||
        opt_int(o, "dimensions", 1, 100000, &dims, &v))
        goto invalid;
    if (model && strcmp(model, MODEL_NAME) && strcmp(model, "sentence-transformers/" MODEL_NAME) &&
        strcmp(model, bert_model_id(s->model))) {
        bad(&v, "model must be \"%s\" (the model this server runs)", MODEL_NAME);
        goto invalid;
    }
    if (fmt && strcmp(fmt, "float") && strcmp(fmt, "base64")) {
        bad(&v, "encoding_format must be \"float\" or \"base64\"");
        goto invalid;
    }
    if (dims != bert_dim(s->model)) {
        bad(&v, "dimensions must be %d", bert_dim(s->model));
        goto invalid;
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
    if (!in) {
        bad(&v, "input is required: a string or a list of strings");
        goto invalid;
    }
    n = cJSON_IsArray(in) ? cJSON_GetArraySize(in) : 1;
    if (!cJSON_IsArray(in) && !cJSON_IsString(in)) {
        bad(&v, "input must be a string or a list of strings");
        goto invalid;
    }
    if (n < 1 || n > MAX_EMBED_INPUTS) {
        bad(&v, "input must hold 1 to %d strings", MAX_EMBED_INPUTS);
        goto invalid;
    }
    texts = calloc((size_t)n, sizeof(char *));
    if (!texts) {
        res = srv_reply_error(s, r, c, 500, "internal", "out of memory");
        goto out;
    }
    int k = 0;
    for (const cJSON *it = cJSON_IsArray(in) ? in->child : in; it && k < n; it = cJSON_IsArray(in) ? it->next : NULL) {
        if (!cJSON_IsString(it)) {
            bad(&v, "input must hold strings only");
            goto invalid;
        }
        if (u8len(it->valuestring) > MAX_EMBED_CHARS) {
            bad(&v, "an input is longer than %d characters", MAX_EMBED_CHARS);
            goto invalid;
        }
        texts[k++] = it->valuestring;
    }
    int dim = bert_dim(s->model);
    vecs = malloc(sizeof(float) * (size_t)dim * (size_t)n);
    if (!vecs) {
        res = srv_reply_error(s, r, c, 500, "internal", "out of memory");
        goto out;
    }
    int w = srv_worker_get(s);
    if (w < 0) {
        res = busy(s, r, c);
        goto out;
    }
    jm_err err = {0};
    int64_t tokens = 0;
    int rc = bert_embed(s->pools[w], n, texts, NULL, vecs, &tokens, &err);
    srv_worker_put(s, w);
    if (rc) {
        res = srv_reply_error(s, r, c, 500, "internal", "%s", err.msg);
        goto out;
    }
    int b64 = fmt && !strcmp(fmt, "base64");
    cJSON *ans = cJSON_CreateObject();
    cJSON_AddStringToObject(ans, "object", "list");
    cJSON_AddStringToObject(ans, "model", MODEL_NAME);
    cJSON *data = cJSON_AddArrayToObject(ans, "data");
    unsigned char *le = malloc((size_t)dim * 4);
    for (int i = 0; i < n && le; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "object", "embedding");
        cJSON_AddNumberToObject(e, "index", i);
        if (b64) {
            db_vec_to_le(vecs + (size_t)i * dim, dim, le);
            char *t = base64(le, (size_t)dim * 4);
            if (t)
                cJSON_AddStringToObject(e, "embedding", t);
            free(t);
        } else {
            /* 9 significant digits give back the same float32: half the
             * size of cJSON's 17-digit doubles */
            char *t = malloc((size_t)dim * 18 + 3), *p = t;
            if (t) {
                *p++ = '[';
                for (int x = 0; x < dim; x++)
                    p += sprintf(p, x ? ",%.9g" : "%.9g", (double)vecs[(size_t)i * dim + x]);
                *p++ = ']';
                *p = 0;
                cJSON_AddItemToObject(e, "embedding", cJSON_CreateRaw(t));
            }
            free(t);
        }
        cJSON_AddItemToArray(data, e);
    }
    free(le);
    cJSON *usage = cJSON_AddObjectToObject(ans, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", (double)tokens);
    cJSON_AddNumberToObject(usage, "total_tokens", (double)tokens);
    res = srv_reply_json(s, r, c, 200, ans);
    goto out;
invalid:
    res = srv_reply_error(s, r, c, 400, "invalid_request", "%s", v.msg);
out:
    free(texts);
    free(vecs);
    cJSON_Delete(o);
    return res;
}

/* ---------- GET /v1/info ---------- */

enum MHD_Result srv_api_info(srv *s, req *r, struct MHD_Connection *c)
{
    static const char *const allowed[] = {NULL};
    enum MHD_Result res;
    if (!check_args(s, r, c, allowed, &res))
        return res;
    rank_info in;
    rank_get_info(s->eng, &in);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", JM_VERSION);
    cJSON_AddStringToObject(o, "model", MODEL_NAME);
    cJSON_AddNumberToObject(o, "dim", bert_dim(s->model));
    cJSON_AddNumberToObject(o, "jobs", (double)in.jobs);
    cJSON_AddNumberToObject(o, "with_vectors", (double)in.with_vectors);
    cJSON_AddNumberToObject(o, "skills", (double)in.skills);
    cJSON_AddStringToObject(o, "index_mode", in.mode);
    cJSON_AddNumberToObject(o, "index_bytes", (double)in.index_bytes);
    cJSON_AddNumberToObject(o, "index_lists", in.index_lists);
    cJSON_AddNumberToObject(o, "index_probe", in.index_probe);
    cJSON_AddNumberToObject(o, "index_spread", in.index_spread);
    cJSON_AddStringToObject(o, "database", db_kind(s->edb));
    if (s->corpus && *s->corpus)
        cJSON_AddStringToObject(o, "corpus", s->corpus);
    else
        cJSON_AddNullToObject(o, "corpus");
    return srv_reply_json(s, r, c, 200, o);
}
