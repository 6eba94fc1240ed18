/* server_int.h - private to server.c (the daemon: connections, workers,
 * auth, logs, metrics, health) and server_api.c (the /v1 handlers). */
#ifndef JM_SERVER_INT_H
#define JM_SERVER_INT_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "bert.h"
#include "db.h"
#include "server.h"

enum {
    R_NONE = 0, R_ROOT, R_OPENAPI, R_HEALTHZ, R_READYZ, R_METRICS, R_RECOMMEND, R_GAP, R_JOBS, R_JOB_GET,
    R_JOB_PUT, R_JOB_DELETE, R_SKILLS, R_EMBEDDINGS, R_INFO, R_NROUTES
};

/* One request, from its first line to its completion. */
typedef struct req {
    double t0;
    char id[65];
    int route;
    int status;
    int phase;               /* 0: not seen by the handler yet */
    char method[12];
    char path[256];          /* for the log: printable ASCII, the rest %XX */
    char *body;
    size_t body_len, body_cap;
    int too_large;
    size_t bytes_out;
    const char *job_id;      /* R_JOB_*: the id in the path (points into the url) */
} req;

struct srv {
    srv_config cfg;
    char snapshot[4096];   /* cfg.rank.snapshot, copied; "" = none */
    double snap_last;      /* jm_now() of the last snapshot written or tried */
    struct MHD_Daemon *mhd;
    int port;
    bert_model *model;
    db *edb;                 /* the engine's connection */
    rank_engine *eng;
    db *sdb;                 /* the server's own reads and writes */
    pthread_mutex_t sdlock;
    char *corpus;            /* meta "corpus", e.g. "onet", or NULL */
    int attached;            /* the jobs are the job board's own table: read-only here */
    char source_table[256];

    /* workers */
    bert_pool **pools;
    int *free_pools, nfree, nwait;
    pthread_mutex_t wlock;
    pthread_cond_t wcond;

    /* auth: SHA-256 of each key */
    unsigned char (*key_hash)[32];
    int nkeys;

    /* state */
    atomic_int db_up;
    char db_error[JM_ERRLEN];
    pthread_mutex_t statlock;
    atomic_int stopping;
    atomic_long inflight;
    atomic_ulong seq;
    unsigned long id_salt;
    pthread_t maint;
    int maint_started;
    pthread_t tune;            /* rank_tune, when due (server.c, tuner) */
    int tuner_started;
    pthread_mutex_t mlock;   /* maintenance sleep, metrics */
    pthread_cond_t mcond;

    /* metrics (under mlock) */
    unsigned long counts[R_NROUTES][600];
    unsigned long hist[R_NROUTES][16];
    double hist_sum[R_NROUTES];
    unsigned long busy_rejections;
    pthread_mutex_t loglock;
};

/* Answer with a JSON body (takes o) / an error. Both record the status. */
enum MHD_Result srv_reply_json(srv *s, req *r, struct MHD_Connection *c, int status, cJSON *o);
enum MHD_Result srv_reply_error(srv *s, req *r, struct MHD_Connection *c, int status, const char *code,
                                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* A worker's model pool, or -1 when all are busy and the queue is full or
 * the wait timed out. */
int srv_worker_get(srv *s);
void srv_worker_put(srv *s, int w);
void srv_count_busy(srv *s); /* a 503 busy answer, for /metrics */

/* Decide after a failed database call: the connection is checked, and the
 * error answered 503 (database away) or 500. */
enum MHD_Result srv_db_failed(srv *s, req *r, struct MHD_Connection *c, int rc, const jm_err *err);

/* The /v1 handlers (server_api.c). The body is in r->body (NUL-terminated). */
enum MHD_Result srv_api_recommend(srv *s, req *r, struct MHD_Connection *c);
enum MHD_Result srv_api_gap(srv *s, req *r, struct MHD_Connection *c);
enum MHD_Result srv_api_job_get(srv *s, req *r, struct MHD_Connection *c);
enum MHD_Result srv_api_job_put(srv *s, req *r, struct MHD_Connection *c);
enum MHD_Result srv_api_job_delete(srv *s, req *r, struct MHD_Connection *c);
enum MHD_Result srv_api_jobs(srv *s, req *r, struct MHD_Connection *c);
enum MHD_Result srv_api_skills(srv *s, req *r, struct MHD_Connection *c);
enum MHD_Result srv_api_embeddings(srv *s, req *r, struct MHD_Connection *c);
enum MHD_Result srv_api_info(srv *s, req *r, struct MHD_Connection *c);

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int srv_utf8_valid(const char *s, size_t n);

/* Embedded files (assets.c). */
extern const char jm_asset_index_html[], jm_asset_index_html_end[];
extern const char jm_asset_openapi_json[], jm_asset_openapi_json_end[];

#endif
