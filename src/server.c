/* server.c - the HTTP daemon: connections, routing, workers, auth, access log,
 * metrics, health and the maintenance thread. The /v1 handlers are in
 * server_api.c. See server.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server_int.h"

static const char *route_names[R_NROUTES] = {
    "other",  "/",           "/openapi.json", "/healthz",      "/readyz", "/metrics",
    "/v1/recommend", "/v1/skill-gap", "/v1/jobs", "GET /v1/jobs/{id}", "PUT /v1/jobs/{id}",
    "DELETE /v1/jobs/{id}", "/v1/skills", "/v1/embeddings", "/v1/info"};

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS ((int)(sizeof buckets / sizeof buckets[0]))

void srv_config_default(srv_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->threads = jm_ncpu();
    c->max_connections = 256;
    c->queue = 128;
    c->queue_timeout_ms = 5000;
    c->timeout_secs = 30;
    c->log = stderr;
    rank_opts_default(&c->rank);
}

/* ---------- keys ---------- */

/* (openssl/crypto.h is not included: its stack macros take the sk_ prefix,
 * which is the skills module's.) */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static int same_digest(const unsigned char *a, const unsigned char *b)
{
    unsigned char d = 0;
    for (int i = 0; i < 32; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

static int add_key(const char *k, size_t n, char ***keys, int *nkeys, jm_err *err)
{
    while (n && isspace((unsigned char)*k))
        k++, n--;
    while (n && isspace((unsigned char)k[n - 1]))
        n--;
    if (n == 0)
        return JM_OK;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] <= ' ' || (unsigned char)k[i] == 127)
            return jm_fail(err, JM_EINVAL, "an API key contains a space or control character");
    if (n < 8)
        return jm_fail(err, JM_EINVAL, "an API key is shorter than 8 characters");
    char **a = realloc(*keys, sizeof(char *) * (size_t)(*nkeys + 1));
    if (!a)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    *keys = a;
    if (!(a[*nkeys] = strndup(k, n)))
        return jm_fail(err, JM_ENOMEM, "out of memory");
    (*nkeys)++;
    return JM_OK;
}

int srv_keys_from_list(const char *list, char ***keys, int *n, jm_err *err)
{
    const char *p = list;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int rc = add_key(p, len, keys, n, err);
        if (rc)
            return rc;
        p = e ? e + 1 : NULL;
    }
    return JM_OK;
}

int srv_keys_from_file(const char *path, char ***keys, int *n, jm_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = jm_read_file(path, &text, &len, err);
    if (rc)
        return rc;
    char *p = text;
    int line = 0;
    while (p && *p && rc == JM_OK) {
        char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        line++;
        const char *q = p;
        while (q < p + l && isspace((unsigned char)*q))
            q++;
        if (q < p + l && *q != '#') {
            rc = add_key(p, l, keys, n, err);
            if (rc)
                rc = jm_fail(err, rc, "%s line %d: %s", path, line, err->msg);
        }
        p = e ? e + 1 : NULL;
    }
    free(text);
    return rc;
}

void srv_keys_free(char **keys, int n)
{
    for (int i = 0; i < n; i++) {
        wipe(keys[i], strlen(keys[i]));
        free(keys[i]);
    }
    free(keys);
}

/* ---------- UTF-8 ---------- */

int srv_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
        else return 0;
        if (i + (size_t)len > n)
            return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += (size_t)len;
    }
    return 1;
}

/* ---------- replies ---------- */

static enum MHD_Result reply(srv *s, req *r, struct MHD_Connection *c, int status, char *body, size_t len,
                             const char *ctype, const char *h1, const char *v1)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (ctype)
        MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (h1)
        MHD_add_response_header(resp, h1, v1);
    if (atomic_load(&s->stopping) || r->too_large)
        MHD_add_response_header(resp, "Connection", "close");
    r->status = status;
    r->bytes_out = len;
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

enum MHD_Result srv_reply_json(srv *s, req *r, struct MHD_Connection *c, int status, cJSON *o)
{
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!t)
        return srv_reply_error(s, r, c, 500, "internal", "out of memory");
    return reply(s, r, c, status, t, strlen(t), "application/json", NULL, NULL);
}

enum MHD_Result srv_reply_error(srv *s, req *r, struct MHD_Connection *c, int status, const char *code,
                                const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* messages may quote request text: keep them valid UTF-8 */
    if (!srv_utf8_valid(msg, strlen(msg)))
        snprintf(msg, sizeof msg, "%s", "the request is not valid");
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!t) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        t = strdup(oom);
        if (!t)
            return MHD_NO;
        status = 500;
    }
    const char *h = NULL, *v = NULL;
    if (status == 401)
        h = "WWW-Authenticate", v = "Bearer";
    else if (status == 503)
        h = "Retry-After", v = !strcmp(code, "busy") ? "1" : "5";
    else if (status == 405)
        h = "Allow", v = r->route == R_JOB_GET || r->route == R_JOB_PUT || r->route == R_JOB_DELETE
                             ? "GET, HEAD, PUT, DELETE"
                         : r->route == R_RECOMMEND || r->route == R_GAP || r->route == R_EMBEDDINGS ? "POST"
                                                                                                    : "GET, HEAD";
    return reply(s, r, c, status, t, strlen(t), "application/json", h, v);
}

/* ---------- workers ---------- */

int srv_worker_get(srv *s)
{
    pthread_mutex_lock(&s->wlock);
    if (s->nfree == 0) {
        if (s->nwait >= s->cfg.queue) {
            pthread_mutex_unlock(&s->wlock);
            return -1;
        }
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        long ns = dl.tv_nsec + (long)(s->cfg.queue_timeout_ms % 1000) * 1000000L;
        dl.tv_sec += s->cfg.queue_timeout_ms / 1000 + ns / 1000000000L;
        dl.tv_nsec = ns % 1000000000L;
        s->nwait++;
        int rc = 0;
        while (s->nfree == 0 && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&s->wcond, &s->wlock, &dl);
        s->nwait--;
        if (s->nfree == 0) {
            pthread_mutex_unlock(&s->wlock);
            return -1;
        }
    }
    int w = s->free_pools[--s->nfree];
    pthread_mutex_unlock(&s->wlock);
    return w;
}

void srv_worker_put(srv *s, int w)
{
    pthread_mutex_lock(&s->wlock);
    s->free_pools[s->nfree++] = w;
    pthread_cond_signal(&s->wcond);
    pthread_mutex_unlock(&s->wlock);
}

/* ---------- database state ---------- */

static void set_db_state(srv *s, int up, const char *msg)
{
    pthread_mutex_lock(&s->statlock);
    int was = atomic_exchange(&s->db_up, up);
    snprintf(s->db_error, sizeof s->db_error, "%s", up ? "" : msg);
    pthread_mutex_unlock(&s->statlock);
    if (was != up && s->cfg.log)
        fprintf(s->cfg.log, "jobmatch: database %s%s%s\n", up ? "reachable again" : "unreachable",
                up ? "" : ": ", up ? "" : msg);
}

/* Ping both connections (PostgreSQL reconnects in db_ping). */
static int check_db(srv *s)
{
    jm_err e1 = {0}, e2 = {0};
    pthread_mutex_lock(&s->sdlock);
    int rc = db_ping(s->sdb, &e1);
    pthread_mutex_unlock(&s->sdlock);
    int rc2 = rank_ping(s->eng, &e2);
    int up = rc == JM_OK && rc2 == JM_OK;
    set_db_state(s, up, rc ? e1.msg : e2.msg);
    return up;
}

enum MHD_Result srv_db_failed(srv *s, req *r, struct MHD_Connection *c, int rc, const jm_err *err)
{
    if (rc == JM_ENOMEM)
        return srv_reply_error(s, r, c, 500, "internal", "out of memory");
    if (!check_db(s))
        return srv_reply_error(s, r, c, 503, "unavailable", "the database is unreachable; try again later");
    if (rc == JM_EINVAL)
        return srv_reply_error(s, r, c, 400, "invalid_request", "%s", err->msg);
    return srv_reply_error(s, r, c, 500, "internal", "%s", err->msg);
}

/* Write the engine snapshot when the engine moved past the last one: once
 * the index's probe depth is calibrated after a start that scanned (the
 * tuner thread does it within seconds), else at most every 10 minutes (a
 * write reads ~430 MB at 1M jobs), and at a clean stop (force). */
static void snapshot_maybe(srv *s, int force)
{
    if (!s->snapshot[0] || !s->eng)
        return;
    rank_info in;
    rank_get_info(s->eng, &in);
    if (in.rev <= in.snapshot_rev || (!force && in.snapshot_rev && jm_now() - s->snap_last < 600))
        return;
    if (!force && in.index_lists > 0 && !strcmp(in.probe_from, "none"))
        return; /* not calibrated yet: the next run would have to again */
    jm_err err = {0};
    double t = jm_now();
    s->snap_last = t;
    int rc = rank_snapshot_save(s->eng, s->snapshot, &err);
    if (s->cfg.log) {
        if (rc)
            fprintf(s->cfg.log, "jobmatch: %s\n", err.msg);
        else
            fprintf(s->cfg.log, "jobmatch: wrote the engine snapshot %s (change %lld) in %.2f s\n", s->snapshot,
                    (long long)in.rev, jm_now() - t);
        fflush(s->cfg.log);
    }
}

/* Calls fn(s, ctx) about once a second, without mlock held, until the
 * server stops (srv_free wakes it at once). */
static void every_second(srv *s, void (*fn)(srv *s, void *ctx), void *ctx)
{
    pthread_mutex_lock(&s->mlock);
    while (!atomic_load(&s->stopping)) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 1;
        pthread_cond_timedwait(&s->mcond, &s->mlock, &dl);
        if (atomic_load(&s->stopping))
            break;
        pthread_mutex_unlock(&s->mlock);
        fn(s, ctx);
        pthread_mutex_lock(&s->mlock);
    }
    pthread_mutex_unlock(&s->mlock);
}

/* The database's health, the engine's refresh every refresh_secs, the
 * snapshot when due. */
static void maintain(srv *s, void *ctx)
{
    double *last_refresh = ctx;
    int up = check_db(s);
    double rs = s->cfg.rank.refresh_secs;
    if (up && rs >= 0 && jm_now() - *last_refresh >= rs) {
        jm_err err = {0};
        double t = jm_now();
        int applied = 0;
        if (rank_refresh(s->eng, &applied, &err) && s->cfg.log)
            fprintf(s->cfg.log, "jobmatch: refresh failed: %s\n", err.msg);
        if (getenv("JOBMATCH_TRACE"))
            fprintf(stderr, "serve: refresh %.1f ms, %d jobs applied\n", (jm_now() - t) * 1e3, applied);
        *last_refresh = jm_now();
    }
    if (up)
        snapshot_maybe(s, 0);
}

static void *maintenance(void *arg)
{
    double last_refresh = jm_now();
    every_second(arg, maintain, &last_refresh);
    return NULL;
}

/* The vector index's probe depth, measured again when due (rank_tune: at
 * 1M jobs a calibration takes ~16 s, so not on the maintenance thread,
 * whose refreshes must keep their interval). */
static void tune_index(srv *s, void *ctx)
{
    (void)ctx;
    jm_err err = {0};
    int tr = atomic_load(&s->db_up) ? rank_tune(s->eng, 0, &s->stopping, &err) : 0;
    if (tr < 0 && s->cfg.log)
        fprintf(s->cfg.log, "jobmatch: calibrating the vector index failed: %s\n", err.msg);
    if (tr > 0 && s->cfg.log) {
        rank_info in;
        rank_get_info(s->eng, &in);
        fprintf(s->cfg.log, "jobmatch: vector index calibrated on %s: %d of %d lists probed, spread %g\n",
                in.probe_from, in.index_probe, in.index_lists, (double)in.index_spread);
    }
    if (tr && s->cfg.log)
        fflush(s->cfg.log);
}

static void *tuner(void *arg)
{
    every_second(arg, tune_index, NULL);
    return NULL;
}

/* ---------- auth ---------- */

/* 1 when the request carries one of the keys. Every key is compared, each in
 * constant time over its SHA-256, so neither the key's length nor which key
 * matched shows in the timing. */
static int authorized(srv *s, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7))
        return 0;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    unsigned char d[32];
    SHA256((const unsigned char *)tok, strlen(tok), d);
    int ok = 0;
    for (int i = 0; i < s->nkeys; i++)
        ok |= same_digest(d, s->key_hash[i]);
    wipe(d, sizeof d);
    return ok;
}

/* ---------- health and metrics ---------- */

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static enum MHD_Result readyz(srv *s, req *r, struct MHD_Connection *c)
{
    rank_info in;
    rank_get_info(s->eng, &in);
    int up = atomic_load(&s->db_up);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", up ? "ready" : "degraded");
    pthread_mutex_lock(&s->statlock);
    cJSON_AddStringToObject(o, "database", up ? "ok" : s->db_error);
    pthread_mutex_unlock(&s->statlock);
    cJSON_AddNumberToObject(o, "jobs", (double)in.jobs);
    return srv_reply_json(s, r, c, up ? 200 : 503, o);
}

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = (b->cap ? b->cap * 2 : 8192) + (size_t)k;
        char *t = realloc(b->s, nc);
        if (!t) {
            b->oom = 1;
            return;
        }
        b->s = t;
        b->cap = nc;
    }
}

static enum MHD_Result metrics(srv *s, req *r, struct MHD_Connection *c)
{
    rank_info in;
    rank_get_info(s->eng, &in);
    sbuf b = {0};
    sb_printf(&b, "# HELP jobmatch_requests_total HTTP requests answered, by route and status.\n"
                  "# TYPE jobmatch_requests_total counter\n");
    pthread_mutex_lock(&s->mlock);
    for (int rt = 0; rt < R_NROUTES; rt++)
        for (int st = 100; st < 600; st++)
            if (s->counts[rt][st])
                sb_printf(&b, "jobmatch_requests_total{route=\"%s\",status=\"%d\"} %lu\n", route_names[rt], st,
                          s->counts[rt][st]);
    sb_printf(&b, "# HELP jobmatch_request_duration_seconds Time from the request line to the answer.\n"
                  "# TYPE jobmatch_request_duration_seconds histogram\n");
    for (int rt = 0; rt < R_NROUTES; rt++) {
        unsigned long total = s->hist[rt][NBUCKETS];
        if (!total)
            continue;
        unsigned long cum = 0;
        for (int k = 0; k < NBUCKETS; k++) {
            cum += s->hist[rt][k];
            sb_printf(&b, "jobmatch_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %lu\n", route_names[rt],
                      buckets[k], cum);
        }
        sb_printf(&b, "jobmatch_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lu\n", route_names[rt],
                  total);
        sb_printf(&b, "jobmatch_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_names[rt],
                  s->hist_sum[rt]);
        sb_printf(&b, "jobmatch_request_duration_seconds_count{route=\"%s\"} %lu\n", route_names[rt], total);
    }
    unsigned long busy = s->busy_rejections;
    pthread_mutex_unlock(&s->mlock);
    sb_printf(&b,
              "# HELP jobmatch_index_jobs Jobs the engine holds.\n# TYPE jobmatch_index_jobs gauge\n"
              "jobmatch_index_jobs %lld\n"
              "# HELP jobmatch_index_vectors Jobs with a current embedding.\n# TYPE jobmatch_index_vectors gauge\n"
              "jobmatch_index_vectors %lld\n"
              "# HELP jobmatch_index_bytes Memory of the vector index.\n# TYPE jobmatch_index_bytes gauge\n"
              "jobmatch_index_bytes %lld\n"
              "# HELP jobmatch_index_lists Inverted lists of the vector index.\n"
              "# TYPE jobmatch_index_lists gauge\njobmatch_index_lists %d\n"
              "# HELP jobmatch_index_probe Lists a search probes (calibrated).\n"
              "# TYPE jobmatch_index_probe gauge\njobmatch_index_probe %d\n"
              "# HELP jobmatch_skills Skills in the vocabulary.\n# TYPE jobmatch_skills gauge\n"
              "jobmatch_skills %lld\n"
              "# HELP jobmatch_embeddings_pending Jobs the engine holds without a current embedding.\n"
              "# TYPE jobmatch_embeddings_pending gauge\njobmatch_embeddings_pending %lld\n"
              "# HELP jobmatch_db_up 1 when the database answers.\n# TYPE jobmatch_db_up gauge\n"
              "jobmatch_db_up %d\n"
              "# HELP jobmatch_inflight_requests Requests being answered.\n"
              "# TYPE jobmatch_inflight_requests gauge\njobmatch_inflight_requests %ld\n"
              "# HELP jobmatch_busy_rejections_total Requests answered 503 because every worker was busy.\n"
              "# TYPE jobmatch_busy_rejections_total counter\njobmatch_busy_rejections_total %lu\n"
              "# HELP process_resident_memory_bytes Resident memory.\n"
              "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n",
              (long long)in.jobs, (long long)in.with_vectors, (long long)in.index_bytes, in.index_lists,
              in.index_probe, (long long)in.skills,
              (long long)(in.jobs - in.with_vectors), atomic_load(&s->db_up), atomic_load(&s->inflight), busy,
              rss_bytes());
    if (b.oom) {
        free(b.s);
        return srv_reply_error(s, r, c, 500, "internal", "out of memory");
    }
    return reply(s, r, c, 200, b.s, b.n, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL);
}

static enum MHD_Result asset(srv *s, req *r, struct MHD_Connection *c, const char *start, const char *end,
                             const char *ctype)
{
    size_t n = (size_t)(end - start) - 1; /* the assembler appended a NUL */
    char *copy = malloc(n ? n : 1);
    if (!copy)
        return srv_reply_error(s, r, c, 500, "internal", "out of memory");
    memcpy(copy, start, n);
    return reply(s, r, c, 200, copy, n, ctype, "Content-Security-Policy",
                 "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                 "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'");
}

/* ---------- routing ---------- */

static int route_of(const char *url, const char *method, req *r, int *method_ok)
{
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    *method_ok = 0;
    if (!strcmp(url, "/")) return *method_ok = get, R_ROOT;
    if (!strcmp(url, "/openapi.json")) return *method_ok = get, R_OPENAPI;
    if (!strcmp(url, "/healthz")) return *method_ok = get, R_HEALTHZ;
    if (!strcmp(url, "/readyz")) return *method_ok = get, R_READYZ;
    if (!strcmp(url, "/metrics")) return *method_ok = get, R_METRICS;
    if (!strcmp(url, "/v1/recommend")) return *method_ok = post, R_RECOMMEND;
    if (!strcmp(url, "/v1/skill-gap")) return *method_ok = post, R_GAP;
    if (!strcmp(url, "/v1/embeddings")) return *method_ok = post, R_EMBEDDINGS;
    if (!strcmp(url, "/v1/jobs")) return *method_ok = get, R_JOBS;
    if (!strcmp(url, "/v1/skills")) return *method_ok = get, R_SKILLS;
    if (!strcmp(url, "/v1/info")) return *method_ok = get, R_INFO;
    if (!strncmp(url, "/v1/jobs/", 9) && url[9]) {
        r->job_id = url + 9;
        *method_ok = 1;
        if (get) return R_JOB_GET;
        if (!strcmp(method, "PUT")) return R_JOB_PUT;
        if (!strcmp(method, "DELETE")) return R_JOB_DELETE;
        *method_ok = 0;
        return R_JOB_GET;
    }
    return R_NONE;
}

static void request_id(srv *s, struct MHD_Connection *c, req *r)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = h ? strlen(h) : 0;
    int ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)h[i]) || h[i] == '-' || h[i] == '_' || h[i] == '.';
    if (ok) {
        memcpy(r->id, h, n + 1);
        return;
    }
    unsigned long k = atomic_fetch_add(&s->seq, 1) + 1;
    snprintf(r->id, sizeof r->id, "%08lx-%06lx", s->id_salt & 0xffffffffUL, k & 0xffffffUL);
}

static enum MHD_Result dispatch(srv *s, req *r, struct MHD_Connection *c, const char *method)
{
    switch (r->route) {
    case R_ROOT:
        return asset(s, r, c, jm_asset_index_html, jm_asset_index_html_end, "text/html; charset=utf-8");
    case R_OPENAPI:
        return asset(s, r, c, jm_asset_openapi_json, jm_asset_openapi_json_end, "application/json");
    case R_HEALTHZ: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        return srv_reply_json(s, r, c, 200, o);
    }
    case R_READYZ: return readyz(s, r, c);
    case R_METRICS: return metrics(s, r, c);
    case R_RECOMMEND: return srv_api_recommend(s, r, c);
    case R_GAP: return srv_api_gap(s, r, c);
    case R_EMBEDDINGS: return srv_api_embeddings(s, r, c);
    case R_JOBS: return srv_api_jobs(s, r, c);
    case R_SKILLS: return srv_api_skills(s, r, c);
    case R_INFO: return srv_api_info(s, r, c);
    case R_JOB_GET: return srv_api_job_get(s, r, c);
    case R_JOB_PUT: return srv_api_job_put(s, r, c);
    case R_JOB_DELETE: return srv_api_job_delete(s, r, c);
    default: break;
    }
    (void)method;
    return srv_reply_error(s, r, c, 404, "not_found", "no such route");
}

static void log_path(req *r, const char *uri)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)uri; *p && k + 4 < sizeof r->path; p++) {
        if (*p > ' ' && *p < 127 && *p != '"' && *p != '\\' && *p != '%') {
            r->path[k++] = (char)*p;
        } else {
            r->path[k++] = '%';
            r->path[k++] = hex[*p >> 4];
            r->path[k++] = hex[*p & 15];
        }
    }
    r->path[k] = 0;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    srv *s = cls;
    (void)c;
    req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL; /* the handler drops the connection; nothing is counted */
    r->t0 = jm_now();
    log_path(r, uri ? uri : "");
    atomic_fetch_add(&s->inflight, 1);
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **ctx)
{
    srv *s = cls;
    (void)version;
    req *r = *ctx;
    if (!r)
        return MHD_NO; /* out of memory at the request line: drop the connection */
    if (r->phase == 0) {
        r->phase = 1;
        snprintf(r->method, sizeof r->method, "%s", method);
        request_id(s, c, r);
        int method_ok;
        r->route = route_of(url, method, r, &method_ok);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > SRV_MAX_BODY) {
            r->too_large = 1;
            return srv_reply_error(s, r, c, 413, "payload_too_large", "the body is over %d bytes", SRV_MAX_BODY);
        }
        if (r->route != R_NONE && !method_ok)
            r->phase = 2; /* answered once the body is read */
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large || r->body_len + n > SRV_MAX_BODY) {
            r->too_large = 1;
            free(r->body);
            r->body = NULL;
            r->body_len = r->body_cap = 0;
            return MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t nc = (r->body_len + n + 1) * 2;
            if (nc > SRV_MAX_BODY + 1)
                nc = SRV_MAX_BODY + 1;
            char *b = realloc(r->body, nc);
            if (!b)
                return MHD_NO;
            r->body = b;
            r->body_cap = nc;
        }
        memcpy(r->body + r->body_len, upload, n);
        r->body_len += n;
        r->body[r->body_len] = 0;
        return MHD_YES;
    }
    /* the whole request is in */
    if (r->too_large)
        return srv_reply_error(s, r, c, 413, "payload_too_large", "the body is over %d bytes", SRV_MAX_BODY);
    if (r->route == R_NONE)
        return srv_reply_error(s, r, c, 404, "not_found", "no such route: %s %s", method, r->path);
    if (r->phase == 2)
        return srv_reply_error(s, r, c, 405, "method_not_allowed", "%s is not allowed here", method);
    if (!r->body) {
        r->body = strdup("");
        if (!r->body)
            return MHD_NO;
    }
    int write = r->route == R_JOB_PUT || r->route == R_JOB_DELETE;
    int v1 = !strncmp(url, "/v1/", 4);
    if (write && s->nkeys == 0)
        return srv_reply_error(s, r, c, 403, "writes_disabled",
                               "no API key is configured: set JOBMATCH_API_KEYS or --api-keys-file to allow writes");
    if ((write || (v1 && s->cfg.auth_reads)) && !authorized(s, c))
        return srv_reply_error(s, r, c, 401, "unauthorized", "a valid Authorization: Bearer <key> header is needed");
    if (write && s->attached)
        return srv_reply_error(s, r, c, 403, "read_only",
                               "the jobs live in the job board's table %s: write them there (jobmatch follows)",
                               s->source_table);
    return dispatch(s, r, c, method);
}

static void write_log(srv *s, const req *r, struct MHD_Connection *c, double secs)
{
    char ip[INET6_ADDRSTRLEN] = "";
    const union MHD_ConnectionInfo *ci = c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, ip, sizeof ip);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, ip, sizeof ip);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    pthread_mutex_lock(&s->loglock);
    fprintf(s->cfg.access_log,
            "{\"time\":\"%s.%03ldZ\",\"request_id\":\"%s\",\"remote\":\"%s\",\"method\":\"%s\",\"path\":\"%s\","
            "\"route\":\"%s\",\"status\":%d,\"ms\":%.3f,\"bytes_in\":%zu,\"bytes_out\":%zu}\n",
            when, ts.tv_nsec / 1000000, r->id[0] ? r->id : "-", ip, r->method[0] ? r->method : "-", r->path,
            route_names[r->route], r->status, secs * 1e3, r->body_len, r->bytes_out);
    fflush(s->cfg.access_log);
    pthread_mutex_unlock(&s->loglock);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
    srv *s = cls;
    req *r = *ctx;
    (void)toe;
    if (!r)
        return;
    double secs = jm_now() - r->t0;
    /* method characters other than letters are not logged as such */
    for (char *p = r->method; *p; p++)
        if (!isalpha((unsigned char)*p))
            *p = '?';
    pthread_mutex_lock(&s->mlock);
    int st = r->status >= 100 && r->status < 600 ? r->status : 0;
    if (st)
        s->counts[r->route][st]++;
    int k = 0;
    while (k < NBUCKETS && secs > buckets[k])
        k++;
    if (k < NBUCKETS)
        s->hist[r->route][k]++;
    s->hist[r->route][NBUCKETS]++;
    s->hist_sum[r->route] += secs;
    pthread_mutex_unlock(&s->mlock);
    if (s->cfg.access_log)
        write_log(s, r, c, secs);
    free(r->body);
    free(r);
    *ctx = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

void srv_count_busy(srv *s)
{
    pthread_mutex_lock(&s->mlock);
    s->busy_rejections++;
    pthread_mutex_unlock(&s->mlock);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    srv *s = cls;
    if (!s->cfg.log)
        return;
    fprintf(s->cfg.log, "jobmatch: http: ");
    vfprintf(s->cfg.log, fmt, ap);
}

/* ---------- lifecycle ---------- */

static int resolve(const char *host, int port, struct sockaddr_storage *out, socklen_t *len, jm_err *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int g = getaddrinfo(host, ps, &hints, &res);
    if (g || !res)
        return jm_fail(err, JM_EINVAL, "cannot resolve host \"%s\": %s", host, gai_strerror(g));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return JM_OK;
}

int srv_port(const srv *s) { return s->port; }

static void srv_free(srv *s)
{
    if (!s)
        return;
    if (s->maint_started) {
        pthread_mutex_lock(&s->mlock);
        atomic_store(&s->stopping, 1);
        pthread_cond_broadcast(&s->mcond);
        pthread_mutex_unlock(&s->mlock);
        pthread_join(s->maint, NULL);
        if (s->tuner_started)
            pthread_join(s->tune, NULL);
        if (atomic_load(&s->db_up))
            snapshot_maybe(s, 1);
    }
    rank_close(s->eng);
    db_close(s->edb);
    db_close(s->sdb);
    for (int i = 0; s->pools && i < s->cfg.threads; i++)
        bert_pool_free(s->pools[i]);
    free(s->pools);
    free(s->free_pools);
    bert_free(s->model);
    if (s->key_hash)
        wipe(s->key_hash, (size_t)s->nkeys * 32);
    free(s->key_hash);
    free(s->corpus);
    pthread_mutex_destroy(&s->sdlock);
    pthread_mutex_destroy(&s->wlock);
    pthread_cond_destroy(&s->wcond);
    pthread_mutex_destroy(&s->statlock);
    pthread_mutex_destroy(&s->mlock);
    pthread_cond_destroy(&s->mcond);
    pthread_mutex_destroy(&s->loglock);
    free(s);
}

int srv_start(const srv_config *cfg, srv **out, jm_err *err)
{
    *out = NULL;
    if (cfg->threads < 1 || cfg->threads > 256)
        return jm_fail(err, JM_EINVAL, "threads must be between 1 and 256");
    if (cfg->port < 0 || cfg->port > 65535)
        return jm_fail(err, JM_EINVAL, "port must be between 0 and 65535");
    if (cfg->max_connections < 1 || cfg->queue < 0 || cfg->queue_timeout_ms < 0 || cfg->timeout_secs < 1)
        return jm_fail(err, JM_EINVAL, "bad connection limits");
    srv *s = calloc(1, sizeof *s);
    if (!s)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    s->cfg = *cfg;
    pthread_mutex_init(&s->sdlock, NULL);
    pthread_mutex_init(&s->wlock, NULL);
    pthread_cond_init(&s->wcond, NULL);
    pthread_mutex_init(&s->statlock, NULL);
    pthread_mutex_init(&s->mlock, NULL);
    pthread_cond_init(&s->mcond, NULL);
    pthread_mutex_init(&s->loglock, NULL);
    atomic_init(&s->db_up, 1);
    if (getrandom(&s->id_salt, sizeof s->id_salt, 0) != (ssize_t)sizeof s->id_salt)
        s->id_salt = (unsigned long)time(NULL) ^ (unsigned long)getpid();
    int rc;
    double t0 = jm_now();
    int trace = getenv("JOBMATCH_TRACE") != NULL;
    if ((rc = bert_load(cfg->model_dir, &s->model, err)))
        goto fail;
    if (trace)
        fprintf(stderr, "serve: model %.3f s\n", jm_now() - t0);
    if ((rc = db_open(cfg->db_url, &s->edb, err)) || (rc = db_open(cfg->db_url, &s->sdb, err)))
        goto fail;
    if (trace)
        fprintf(stderr, "serve: databases %.3f s\n", jm_now() - t0);
    /* Queries never refresh the engine themselves (a refresh reads the
     * change log: a worker doing it would stall the queue behind it); the
     * maintenance thread does, every refresh_secs. */
    rank_opts ro = cfg->rank;
    ro.refresh_secs = -1;
    if (ro.snapshot)
        snprintf(s->snapshot, sizeof s->snapshot, "%s", ro.snapshot);
    if ((rc = rank_open(s->edb, s->model, &ro, &s->eng, err)))
        goto fail;
    if (trace)
        fprintf(stderr, "serve: engine %.3f s\n", jm_now() - t0);
    jm_err ignored = {0};
    if (db_meta_get(s->sdb, "corpus", &s->corpus, &ignored))
        s->corpus = NULL;
    db_source src;
    if ((rc = db_source_get(s->sdb, &src, err)))
        goto fail;
    s->attached = src.attached;
    snprintf(s->source_table, sizeof s->source_table, "%s", src.table);
    s->pools = calloc((size_t)cfg->threads, sizeof(bert_pool *));
    s->free_pools = calloc((size_t)cfg->threads, sizeof(int));
    if (!s->pools || !s->free_pools) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < cfg->threads; i++) {
        if ((rc = bert_pool_new(s->model, 1, &s->pools[i], err)))
            goto fail;
        s->free_pools[s->nfree++] = i;
    }
    s->nkeys = cfg->napi_keys;
    if (s->nkeys) {
        s->key_hash = calloc((size_t)s->nkeys, 32);
        if (!s->key_hash) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < s->nkeys; i++)
            SHA256((const unsigned char *)cfg->api_keys[i], strlen(cfg->api_keys[i]), s->key_hash[i]);
    }
    struct sockaddr_storage sa;
    socklen_t salen;
    if ((rc = resolve(cfg->host, cfg->port, &sa, &salen, err)))
        goto fail;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->mhd = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                              mhd_log, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)cfg->timeout_secs, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                              (size_t)64 * 1024, MHD_OPTION_THREAD_STACK_SIZE, (size_t)512 * 1024,
                              MHD_OPTION_END);
    if (!s->mhd) {
        rc = jm_fail(err, JM_EIO, "cannot listen on %s port %d (in use, or not an address of this machine?)",
                     cfg->host, cfg->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    if (pthread_create(&s->maint, NULL, maintenance, s)) {
        rc = jm_fail(err, JM_EIO, "cannot start the maintenance thread");
        goto fail;
    }
    s->maint_started = 1;
    s->tuner_started = pthread_create(&s->tune, NULL, tuner, s) == 0; /* without it: the depth stays */
    if (cfg->log) {
        rank_info in;
        rank_get_info(s->eng, &in);
        fprintf(cfg->log,
                "jobmatch: serving %lld jobs (%lld with vectors, %s index) from %s on http://%s%s%s:%d/ "
                "with %d workers; ready in %.2f s\n",
                (long long)in.jobs, (long long)in.with_vectors, in.mode, db_display_url(s->edb),
                sa.ss_family == AF_INET6 ? "[" : "", cfg->host, sa.ss_family == AF_INET6 ? "]" : "", s->port,
                cfg->threads, jm_now() - t0);
        if (in.from_snapshot)
            fprintf(cfg->log, "jobmatch: engine loaded from the snapshot %s in %.2f s\n", s->snapshot, in.load_secs);
        else if (s->snapshot[0])
            fprintf(cfg->log, "jobmatch: engine scanned from the store in %.2f s (snapshot %s: %s)\n", in.load_secs,
                    s->snapshot, in.snapshot_why ? in.snapshot_why : "-");
        if (in.index_lists)
            fprintf(cfg->log, "jobmatch: vector index: %d lists, %d probed, spread %g (calibrated on %s)\n",
                    in.index_lists, in.index_probe, (double)in.index_spread, in.probe_from);
        if (!s->nkeys)
            fprintf(cfg->log, "jobmatch: no API key configured: PUT and DELETE /v1/jobs are refused\n");
        fflush(cfg->log);
    }
    *out = s;
    return JM_OK;
fail:
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    srv_free(s);
    return rc;
}

void srv_stop(srv *s, double grace_secs)
{
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    /* no new connections; requests in flight go on */
    MHD_socket ls = MHD_quiesce_daemon(s->mhd);
    if (ls != MHD_INVALID_SOCKET)
        close(ls);
    double until = jm_now() + grace_secs;
    while (atomic_load(&s->inflight) > 0 && jm_now() < until)
        usleep(10000);
    long left = atomic_load(&s->inflight);
    if (left && s->cfg.log)
        fprintf(s->cfg.log, "jobmatch: %ld requests still running after %.0f s; closing\n", left, grace_secs);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    srv_free(s);
}
