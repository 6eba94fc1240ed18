/* server.h - the HTTP/JSON service over the recommendation and gap engine
 * (prefix srv_), on libmicrohttpd. The API is in docs/api.md and
 * docs/openapi.json (served at /openapi.json); the web page (web/index.html)
 * is served at /.
 *
 * Threads: libmicrohttpd gives each connection its own thread (at most
 * max_connections), which reads the request and writes the answer. Work that
 * computes (embedding, ranking, gaps, writes that embed) needs one of
 * `threads` workers, each with its own 1-thread model pool; a request waits
 * for a worker while fewer than `queue` others wait, for at most
 * queue_timeout_ms, and is otherwise answered 503 with Retry-After.
 *
 * The engine answers from memory. The server keeps a second database
 * connection for its own reads and writes; a maintenance thread pings both
 * every second (reconnecting PostgreSQL), and follows the database's changes.
 * While the database is away recommendations go on from memory, /readyz says
 * "degraded", and writes answer 503. */
#ifndef JM_SERVER_H
#define JM_SERVER_H

#include <stdio.h>

#include "common.h"
#include "rank.h"

#define SRV_MAX_BODY (1 << 20)  /* request bodies over 1 MiB get 413 */
#define SRV_MAX_SKILLS 200
#define SRV_MAX_SKILL_CHARS 200
#define SRV_MAX_TOP_K 100

typedef struct srv_config {
    const char *db_url;
    const char *model_dir;
    const char *host;          /* default "127.0.0.1" */
    int port;                  /* default 8080; 0 = any free port (srv_port) */
    int threads;               /* compute workers (default: the CPU count) */
    int max_connections;       /* default 256 */
    int queue;                 /* requests that may wait for a worker (default 128) */
    int queue_timeout_ms;      /* longest wait for a worker (default 5000) */
    int timeout_secs;          /* idle connection timeout (default 30) */
    char **api_keys;           /* bearer keys for writes (and reads with auth_reads) */
    int napi_keys;
    int auth_reads;            /* /v1/ reads need a key too */
    FILE *access_log;          /* one JSON line per request; NULL = none */
    FILE *log;                 /* start-up and state messages (default stderr) */
    rank_opts rank;            /* index mode, refresh interval, weights */
} srv_config;

void srv_config_default(srv_config *c);

/* Append keys: from a comma-separated list, or from a file with one key per
 * line ('#' starts a comment line). Blank entries are skipped; a key shorter
 * than 8 characters or with spaces is refused (JM_EINVAL). */
int srv_keys_from_list(const char *list, char ***keys, int *n, jm_err *err);
int srv_keys_from_file(const char *path, char ***keys, int *n, jm_err *err);
void srv_keys_free(char **keys, int n);

typedef struct srv srv;

/* Load the model and the engine, open the database and start listening. The
 * configuration's strings and files must outlive the server. */
int srv_start(const srv_config *c, srv **out, jm_err *err);
int srv_port(const srv *s); /* the port listened on */

/* Graceful stop: stop accepting, let the requests in flight finish (at most
 * grace_secs), then close connections, the engine and the database. */
void srv_stop(srv *s, double grace_secs);

#endif
