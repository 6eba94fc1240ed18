/* rank_snap.c - the engine snapshot: its state in one file (rank.h, "Snapshots").
 *
 * Layout (this machine's byte order; jm_bin folds every call into a checksum):
 *   snap_head                          magic, version, what the file fits, counts
 *   rjob[njobs]                        the job records, as they are in memory
 *   int32[id_nslots]                   the id -> slot hash (-1 empty)
 *   uint32[strs_nslots]                the interned-strings hash (handles)
 *   per string block: uint32 len, len bytes
 *   arena[arena_n]                     uint16 or uint32 entries
 *   uint64[livebits_words]             live slots
 *   per vocabulary skill: uint32 len, norm, uint32 len, display, int32 df
 *   if accel: post_bit[post_nv], post_off[post_nv + 1], post[post_bytes],
 *             wperm[n], rbits[128 * ((n + 63) / 64)], rcw[n], rcls[n], roff[n + 1],
 *             cls_w[ncls] (cls_lw, cls_bound, cls_logf are derived from
 *             it at load), dirty_list[ndirty]
 *   if memory mode: the vector index (idx_save)
 *   uint64                             the checksum of everything before
 *
 * Loading reads each array straight into the memory the engine keeps, then
 * checks every count, offset, handle and index against the others (so a
 * file that passes cannot make a query read out of bounds) and the
 * checksum (so a damaged one is not used). */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rank_int.h"

#define SNAP_MAGIC "JMSNAP\r\n"
/* 2: the index's probe depth in it is calibrated (rank_tune); a version-1
 * file holds the fixed default, so it is scanned again once. 3: the class
 * bounds derived from cls_w at load, not stored. */
#define SNAP_VERSION 3
#define SNAP_ENDIAN 0x01020304u

typedef struct snap_head {
    char magic[8];
    uint32_t version, endian, head_bytes, rjob_bytes;
    uint32_t dim, index_mode;
    char model_id[256];
    char store_id[64];
    uint64_t source_hash, opts_hash;
    int64_t rev;
    int32_t njobs, id_nslots, strs_nslots, strs_n;
    int32_t sblk_n, arena16, livebits_words, nvoc;
    uint64_t sblk_used, arena_n;
    int32_t accel, post_nv, wperm_n, ncls;
    int32_t ndirty, pad;
    uint64_t post_bytes;
} snap_head;

/* The options a snapshot's arrays depend on (wsum, the bounds). */
static uint64_t opts_hash(const rank_opts *o)
{
    float f[] = {o->nice_weight, o->shrink, o->mu, o->nice_credit, o->length_norm, o->w.query, o->w.coverage};
    return jm_hash64(7, f, sizeof f);
}

/* The store's job source: the table, its columns and the text template (a
 * new template makes the stored embeddings stale). */
static int source_hash(db *d, uint64_t *out, jm_err *err)
{
    db_source s;
    memset(&s, 0, sizeof s);
    int rc = db_source_get(d, &s, err);
    if (rc)
        return rc;
    uint64_t h = jm_hash64(11, db_kind(d), strlen(db_kind(d)));
    h = jm_hash64(h, &s.attached, sizeof s.attached);
    h = jm_hash64(h, s.table, strlen(s.table));
    h = jm_hash64(h ^ 1, s.id_col, strlen(s.id_col));
    h = jm_hash64(h ^ 2, s.skills_col, strlen(s.skills_col));
    *out = jm_hash64(h ^ 3, s.template_, strlen(s.template_));
    return JM_OK;
}

/* The store's identity, created when asked for and missing. */
static int store_id(db *d, int create, char *out, size_t cap, jm_err *err)
{
    char *v = NULL;
    int rc = db_meta_get(d, "store_id", &v, err);
    if (rc == JM_ENOTFOUND || (rc == JM_OK && !v)) {
        rc = JM_OK;
        if (create) {
            unsigned char r[16];
            char hex[33];
            if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
                return jm_fail(err, JM_EIO, "getrandom: %s", strerror(errno));
            for (int i = 0; i < 16; i++)
                snprintf(hex + 2 * i, 3, "%02x", r[i]);
            if ((rc = db_meta_set(d, "store_id", hex, err)))
                return rc;
            v = strdup(hex);
            if (!v)
                return jm_fail(err, JM_ENOMEM, "out of memory");
        }
    }
    if (rc)
        return rc;
    snprintf(out, cap, "%s", v ? v : "");
    free(v);
    return JM_OK;
}

/* ---------- writing ---------- */

static size_t block_len(const rank_engine *e, int i)
{
    if (i == e->sblk_n - 1)
        return e->sblk_used;
    size_t n = strlen(e->sblk[i]) + 1; /* a block of one long string */
    return n > SBLK_SIZE ? n : SBLK_SIZE;
}

static int put_str(jm_bin *b, const char *s, jm_err *err)
{
    uint32_t n = s ? (uint32_t)strlen(s) : 0;
    int rc = jm_bin_write(b, &n, 4, err);
    return rc ? rc : jm_bin_write(b, s, n, err);
}

static int write_all(rank_engine *e, jm_bin *b, const snap_head *h, jm_err *err)
{
    int rc = jm_bin_write(b, h, sizeof *h, err);
#define W(p, n)                                                                                                        \
    do {                                                                                                               \
        if (rc == JM_OK)                                                                                               \
            rc = jm_bin_write(b, (p), (n), err);                                                                       \
    } while (0)
    W(e->jobs, sizeof(rjob) * (size_t)e->njobs);
    W(e->id_slots, sizeof(int) * (size_t)e->id_nslots);
    W(e->strs, sizeof(uint32_t) * (size_t)e->strs_nslots);
    for (int i = 0; rc == JM_OK && i < e->sblk_n; i++) {
        uint32_t n = (uint32_t)block_len(e, i);
        W(&n, 4);
        W(e->sblk[i], n);
    }
    W(e->arena, (e->arena16 ? 2 : 4) * e->arena_n);
    W(e->livebits, sizeof(uint64_t) * (size_t)e->livebits_words);
    for (int i = 0; rc == JM_OK && i < h->nvoc; i++) {
        int32_t df = sk_df(e->voc, i);
        rc = put_str(b, sk_norm(e->voc, i), err);
        if (rc == JM_OK)
            rc = put_str(b, sk_display(e->voc, i), err);
        W(&df, 4);
    }
    if (h->accel) {
        size_t n = (size_t)e->wperm_n, c = (size_t)e->ncls;
        W(e->post_bit, (size_t)e->post_nv);
        W(e->post_off, sizeof(uint32_t) * ((size_t)e->post_nv + 1));
        W(e->post, h->post_bytes);
        W(e->wperm, sizeof(uint32_t) * n);
        W(e->rbits, sizeof(uint64_t) * 128 * ((n + 63) / 64));
        W(e->rcw, n);
        W(e->rcls, sizeof(uint32_t) * n);
        W(e->roff, sizeof(uint32_t) * (n + 1));
        W(e->cls_w, sizeof(float) * c);
        W(e->dirty_list, sizeof(int) * (size_t)e->ndirty);
    }
#undef W
    if (rc == JM_OK && e->ix)
        rc = idx_save(e->ix, b, err);
    uint64_t sum = jm_bin_sum(b);
    if (rc == JM_OK)
        rc = jm_bin_write(b, &sum, sizeof sum, err);
    return rc;
}

int rank_snapshot_save(rank_engine *e, const char *path, jm_err *err)
{
    if (!path || !*path)
        return jm_fail(err, JM_EINVAL, "no snapshot path");
    snap_head h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SNAP_MAGIC, 8);
    h.version = SNAP_VERSION;
    h.endian = SNAP_ENDIAN;
    h.head_bytes = sizeof h;
    h.rjob_bytes = sizeof(rjob);
    h.dim = (uint32_t)e->dim;
    h.index_mode = e->ix ? RANK_INDEX_MEMORY : RANK_INDEX_STREAM;
    snprintf(h.model_id, sizeof h.model_id, "%s", e->model_id);
    h.opts_hash = opts_hash(&e->o);
    pthread_mutex_lock(&e->dblock);
    int rc = store_id(e->d, 1, h.store_id, sizeof h.store_id, err);
    if (rc == JM_OK)
        rc = source_hash(e->d, &h.source_hash, err);
    pthread_mutex_unlock(&e->dblock);
    if (rc)
        return rc;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    jm_bin b;
    pthread_rwlock_rdlock(&e->lock);
    h.rev = e->rev;
    h.njobs = e->njobs;
    h.id_nslots = e->id_nslots;
    h.strs_nslots = e->strs_nslots;
    h.strs_n = e->strs_n;
    h.sblk_n = e->sblk_n;
    h.sblk_used = e->sblk_used;
    h.arena16 = e->arena16;
    h.arena_n = e->arena_n;
    h.livebits_words = e->livebits_words;
    h.nvoc = sk_count(e->voc);
    h.accel = e->accel;
    if (e->accel) {
        h.post_nv = e->post_nv;
        h.wperm_n = e->wperm_n;
        h.ncls = e->ncls;
        h.ndirty = e->ndirty;
        h.post_bytes = e->post_nv ? e->post_off[e->post_nv] : 0;
    }
    rc = jm_bin_open(&b, tmp, "w", err);
    if (rc == JM_OK)
        rc = write_all(e, &b, &h, err);
    if (rc == JM_OK)
        __atomic_store_n(&e->snap_rev, e->rev, __ATOMIC_RELAXED);
    pthread_rwlock_unlock(&e->lock);
    jm_err cerr = {0};
    int crc = jm_bin_close(&b, &cerr);
    if (rc == JM_OK && crc) {
        rc = crc;
        *err = cerr;
    }
    if (rc == JM_OK && rename(tmp, path))
        rc = jm_fail(err, JM_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc) {
        unlink(tmp);
        if (err && rc != JM_ENOMEM) {
            char m[JM_ERRLEN];
            snprintf(m, sizeof m, "%s", err->msg);
            jm_fail(err, rc, "writing the snapshot %s: %s", path, m);
        }
    }
    free(tmp);
    return rc;
}

/* ---------- reading ---------- */

typedef struct rd {
    jm_bin b;
    uint64_t size; /* the file's */
    jm_err *err;
    const char *why;
    int rc;
} rd;

/* Reads n bytes into a new malloc'd buffer (*out), after checking the file
 * still holds them (a damaged count cannot make us allocate terabytes). */
static int rd_alloc(rd *r, void **out, size_t n, const char *what)
{
    *out = NULL;
    if (r->rc)
        return r->rc;
    if (n > r->size - r->b.bytes) {
        r->why = what;
        return r->rc = 1;
    }
    *out = malloc(n ? n : 1);
    if (!*out)
        return r->rc = jm_fail(r->err, JM_ENOMEM, "out of memory reading the snapshot");
    if (jm_bin_read(&r->b, *out, n, r->err)) {
        r->why = "truncated";
        return r->rc = 1;
    }
    return JM_OK;
}

static int rd_into(rd *r, void *p, size_t n)
{
    if (r->rc)
        return r->rc;
    if (jm_bin_read(&r->b, p, n, r->err)) {
        r->why = "truncated";
        return r->rc = 1;
    }
    return JM_OK;
}

/* A string of at most cap - 1 bytes into buf. */
static int rd_str(rd *r, char *buf, size_t cap)
{
    uint32_t n = 0;
    if (rd_into(r, &n, 4))
        return r->rc;
    if (n >= cap) {
        r->why = "a skill name is too long";
        return r->rc = 1;
    }
    if (rd_into(r, buf, n))
        return r->rc;
    buf[n] = 0;
    if (memchr(buf, 0, n)) {
        r->why = "a skill name holds a NUL";
        return r->rc = 1;
    }
    return JM_OK;
}

static int bad(rd *r, const char *why)
{
    r->why = why;
    return r->rc = 1;
}

/* A string handle (0 allowed when null_ok) that points into a block. */
static int handle_ok(const rank_engine *e, const uint32_t *blen, uint32_t hd, int null_ok)
{
    if (!hd)
        return null_ok;
    uint32_t blk = (hd - 1) >> 16, at = (hd - 1) & 0xffff;
    return (int)blk < e->sblk_n && at < blen[blk];
}

static int pow2(int32_t n) { return n > 0 && (n & (n - 1)) == 0; }

static int check_jobs(rd *r, rank_engine *e, const uint32_t *blen)
{
    int64_t live = 0, vec = 0;
    for (int s = 0; s < e->njobs; s++) {
        const rjob *j = &e->jobs[s];
        if (!handle_ok(e, blen, j->id, 0) || !handle_ok(e, blen, j->title, 1) || !handle_ok(e, blen, j->company, 1) ||
            !handle_ok(e, blen, j->location, 1) || !handle_ok(e, blen, j->emp, 1) || !handle_ok(e, blen, j->sen, 1))
            return bad(r, "a job's string handle is out of range");
        if (j->nsk && (size_t)j->sk_off + j->nsk > e->arena_n)
            return bad(r, "a job's skills lie outside the arena");
        if (!(j->wsum >= 0) || !isfinite(j->wsum))
            return bad(r, "a job's skill weight is not a number");
        if (j->live != (e->livebits[s / 64] >> (s % 64) & 1))
            return bad(r, "the live bits disagree with the jobs");
        if (j->has_vec && !j->live)
            return bad(r, "a deleted job has a vector");
        if (e->ix && j->has_vec != (idx_is_live(e->ix, (uint32_t)s) != 0))
            return bad(r, "the index disagrees with the jobs");
        live += j->live;
        vec += j->has_vec;
    }
    for (int w = 0; w < e->livebits_words; w++) {
        int64_t first = (int64_t)w * 64; /* bits of slots >= njobs must be clear */
        uint64_t beyond = first + 64 <= e->njobs ? 0 : first >= e->njobs ? ~0ULL : ~0ULL << (e->njobs - first);
        if (e->livebits[w] & beyond)
            return bad(r, "live bits beyond the last slot");
    }
    e->live = live;
    e->with_vec = vec;
    int nv = sk_count(e->voc);
    for (size_t k = 0; k < e->arena_n; k++)
        if ((int)(rank_ask(e, k) >> 1) >= nv)
            return bad(r, "a job skill is not in the vocabulary");
    int used = 0;
    for (int i = 0; i < e->id_nslots; i++) {
        if (e->id_slots[i] < -1 || e->id_slots[i] >= e->njobs)
            return bad(r, "the id hash points outside the jobs");
        used += e->id_slots[i] >= 0;
    }
    if (used != e->njobs)
        return bad(r, "the id hash does not hold every job");
    used = 0;
    for (int i = 0; i < e->strs_nslots; i++) {
        if (!handle_ok(e, blen, e->strs[i], 1))
            return bad(r, "the string hash points outside the blocks");
        used += e->strs[i] != 0;
    }
    if (used != e->strs_n)
        return bad(r, "the string hash's count is wrong");
    return JM_OK;
}

static int check_accel(rd *r, rank_engine *e)
{
    int n = e->wperm_n;
    if (e->post_nv > sk_count(e->voc))
        return bad(r, "the postings cover more skills than the vocabulary");
    for (int v = 0; v < e->post_nv; v++) {
        if (e->post_bit[v] < -1 || e->post_bit[v] > 63)
            return bad(r, "a skill's mask bit is out of range");
        if (e->post_off[v] > e->post_off[v + 1])
            return bad(r, "the postings offsets are not ascending");
    }
    if (e->post_off[0] != 0)
        return bad(r, "the postings do not start at 0");
    /* Each list's entries: LEB128 varints of at most 32 bits that end inside
     * the list (its last byte ends one), ranks below the rank count (they
     * ascend, so the last one tells). The skill pass reads them without
     * bounds checks (rank.c, pcur). */
    for (int v = 0; v < e->post_nv; v++) {
        const uint8_t *q = e->post + e->post_off[v], *qe = e->post + e->post_off[v + 1];
        if (q == qe)
            continue;
        if (qe[-1] >= 128)
            return bad(r, "a postings entry runs past its list");
        uint64_t rank = 0; /* the last rank + 1 */
        while (q < qe) {
            uint64_t x = *q++;
            if (x >= 128) {
                x &= 127;
                for (int sh = 7;; sh += 7) {
                    uint64_t b = *q++;
                    if (sh == 28 && b > 15)
                        return bad(r, "a postings entry is longer than 32 bits");
                    x |= (b & 127) << sh;
                    if (b < 128)
                        break;
                }
            }
            rank += 1 + (x >> 1);
        }
        if (rank > (uint64_t)n)
            return bad(r, "a postings entry's rank is beyond the jobs");
    }
    if (e->roff[0] != 0 || e->roff[n] > e->arena_n)
        return bad(r, "the rank offsets lie outside the arena");
    for (int i = 0; i < e->ndirty; i++) {
        int s = e->dirty_list[i];
        if (s < 0 || s >= e->njobs)
            return bad(r, "a changed job's slot is out of range");
        e->dirty[s / 64] |= 1ULL << (s % 64);
    }
    for (int k = 0; k < n; k++) {
        uint32_t s = e->wperm[k];
        if (s >= (uint32_t)e->njobs)
            return bad(r, "the rank order names a slot beyond the jobs");
        if (e->roff[k] > e->roff[k + 1] || e->rcls[k] >= (uint32_t)e->ncls || (k && e->rcls[k] < e->rcls[k - 1]))
            return bad(r, "the rank offsets or classes are not ascending");
        const rjob *j = &e->jobs[s];
        int dirty = e->dirty[s / 64] >> (s % 64) & 1;
        if (j->live && !dirty && (j->nsk != e->roff[k + 1] - e->roff[k] || (j->nsk && j->sk_off != e->roff[k])))
            return bad(r, "a job's skills are not where its rank says");
    }
    return JM_OK;
}

int rank_snap_load(rank_engine *e, const char *path, const char **why, jm_err *err)
{
    *why = NULL;
    rd r;
    memset(&r, 0, sizeof r);
    r.err = err;
    jm_err oerr = {0};
    if (jm_bin_open(&r.b, path, "r", &oerr)) {
        *why = "cannot be opened (no such file?)";
        return 1;
    }
    struct stat st;
    if (fstat(fileno((FILE *)r.b.f), &st) || !S_ISREG(st.st_mode)) {
        jm_bin_close(&r.b, NULL);
        *why = "not a regular file";
        return 1;
    }
    r.size = (uint64_t)st.st_size;
    snap_head h;
    int rc = JM_OK;
    uint32_t *blen = NULL;
    char *name = NULL, *disp = NULL;
    if (rd_into(&r, &h, sizeof h))
        goto out;
    if (memcmp(h.magic, SNAP_MAGIC, 8)) {
        bad(&r, "not a jobmatch snapshot");
        goto out;
    }
    if (h.version != SNAP_VERSION || h.endian != SNAP_ENDIAN || h.head_bytes != sizeof h ||
        h.rjob_bytes != sizeof(rjob)) {
        bad(&r, "written by another version or machine type");
        goto out;
    }
    h.model_id[sizeof h.model_id - 1] = h.store_id[sizeof h.store_id - 1] = 0;
    if (h.dim != (uint32_t)e->dim || strcmp(h.model_id, e->model_id)) {
        bad(&r, "written for another model");
        goto out;
    }
    if (h.index_mode != (uint32_t)(e->ix ? RANK_INDEX_MEMORY : RANK_INDEX_STREAM)) {
        bad(&r, "written for the other index mode");
        goto out;
    }
    if (h.opts_hash != opts_hash(&e->o)) {
        bad(&r, "written with other scoring options");
        goto out;
    }
    /* the store: the same one, its source unchanged, not rolled back */
    char sid[64];
    uint64_t sh = 0;
    int64_t now = 0;
    if ((rc = store_id(e->d, 0, sid, sizeof sid, err)) || (rc = source_hash(e->d, &sh, err)) ||
        (rc = rank_db_rev(e, &now, err)))
        goto out;
    if (!*sid || strcmp(sid, h.store_id)) {
        bad(&r, "written for another store");
        goto out;
    }
    if (sh != h.source_hash) {
        bad(&r, "the job source or its text template changed since");
        goto out;
    }
    if (h.rev > now) {
        bad(&r, "newer than the store's change log (a restored backup?)");
        goto out;
    }
    /* Changes since are applied as a refresh does, holding each changed row
     * in memory: after a bulk change (a new embedding of every job) a scan
     * is both quicker and smaller. Revs count changes (one per change). */
    if (now - h.rev > 50000 && now - h.rev > (int64_t)h.njobs / 8) {
        bad(&r, "too far behind the store (more changes since than a scan costs)");
        goto out;
    }
    /* counts */
    if (h.njobs < 0 || (uint32_t)h.njobs > IDX_MAX_SLOT || h.id_nslots < 0 || h.strs_nslots < 0 || h.strs_n < 0 ||
        h.sblk_n < 0 || h.sblk_n > SBLK_MAX || h.nvoc < 0 || h.livebits_words < h.njobs / 64 + 1 ||
        (h.njobs && (!pow2(h.id_nslots) || h.id_nslots < 2 * h.njobs)) || (h.id_nslots && !pow2(h.id_nslots)) ||
        (h.strs_nslots && (!pow2(h.strs_nslots) || h.strs_n * 2 > h.strs_nslots)) ||
        (h.sblk_n && (h.sblk_used < 1 || h.sblk_used > UINT32_MAX)) || h.arena_n > UINT32_MAX ||
        (h.arena16 != 0 && h.arena16 != 1) || (h.accel != 0 && h.accel != 1)) {
        bad(&r, "its counts are inconsistent");
        goto out;
    }
    e->rev = h.rev;
    e->arena16 = h.arena16;
    /* the arrays, each straight into the engine */
    rd_alloc(&r, (void **)&e->jobs, sizeof(rjob) * (size_t)h.njobs, "truncated jobs");
    e->njobs = e->cap = r.rc ? 0 : h.njobs;
    rd_alloc(&r, (void **)&e->id_slots, sizeof(int) * (size_t)h.id_nslots, "truncated id hash");
    e->id_nslots = r.rc ? 0 : h.id_nslots;
    rd_alloc(&r, (void **)&e->strs, sizeof(uint32_t) * (size_t)h.strs_nslots, "truncated string hash");
    e->strs_nslots = r.rc ? 0 : h.strs_nslots;
    e->strs_n = h.strs_n;
    if (r.rc)
        goto out;
    blen = malloc(sizeof(uint32_t) * (size_t)(h.sblk_n ? h.sblk_n : 1));
    e->sblk = calloc((size_t)(h.sblk_n ? h.sblk_n : 1), sizeof(char *));
    if (!blen || !e->sblk) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory reading the snapshot");
        goto out;
    }
    e->sblk_cap = h.sblk_n ? h.sblk_n : 1;
    for (int i = 0; i < h.sblk_n; i++) {
        uint32_t n = 0;
        if (rd_into(&r, &n, 4))
            goto out;
        int last = i == h.sblk_n - 1;
        if (n < 1 || (!last && n < SBLK_SIZE) || (last && n != h.sblk_used) || n > r.size - r.b.bytes) {
            bad(&r, "a string block has a wrong length");
            goto out;
        }
        /* a block keeps its full size, so later strings can be appended */
        size_t cap = n > SBLK_SIZE ? n : SBLK_SIZE;
        e->sblk[i] = calloc(1, cap);
        if (!e->sblk[i]) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory reading the snapshot");
            goto out;
        }
        e->sblk_n = i + 1;
        if (rd_into(&r, e->sblk[i], n))
            goto out;
        if (e->sblk[i][n - 1]) {
            bad(&r, "a string block does not end a string");
            goto out;
        }
        blen[i] = n;
    }
    e->sblk_used = h.sblk_used;
    rd_alloc(&r, &e->arena, (h.arena16 ? 2 : 4) * h.arena_n, "truncated skill arena");
    e->arena_n = e->arena_cap = r.rc ? 0 : h.arena_n;
    rd_alloc(&r, (void **)&e->livebits, sizeof(uint64_t) * (size_t)h.livebits_words, "truncated live bits");
    e->dirty = calloc((size_t)h.livebits_words, sizeof(uint64_t));
    if (r.rc)
        goto out;
    if (!e->dirty) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory reading the snapshot");
        goto out;
    }
    e->livebits_words = h.livebits_words;
    /* the vocabulary, in its order */
    name = malloc(1 << 16);
    disp = malloc(1 << 16);
    if (!name || !disp) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory reading the snapshot");
        goto out;
    }
    for (int i = 0; i < h.nvoc; i++) {
        int32_t df = 0;
        if (rd_str(&r, name, 1 << 16) || rd_str(&r, disp, 1 << 16) || rd_into(&r, &df, 4))
            goto out;
        int v = sk_add(e->voc, name, disp);
        if (v < 0) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory reading the snapshot");
            goto out;
        }
        if (v != i || df < 0) {
            bad(&r, "the vocabulary repeats a skill");
            goto out;
        }
        sk_df_add(e->voc, i, df);
    }
    if (h.accel) {
        if (h.post_nv < 0 || h.wperm_n < 0 || h.wperm_n > h.njobs || h.ncls < 0 || h.ncls > h.wperm_n + 1 ||
            h.ndirty < 0 || h.ndirty > h.njobs || h.post_bytes > UINT32_MAX) {
            bad(&r, "its counts are inconsistent");
            goto out;
        }
        size_t n = (size_t)h.wperm_n, c = (size_t)h.ncls;
        e->post_nv = h.post_nv;
        e->wperm_n = h.wperm_n;
        e->ncls = h.ncls;
        rd_alloc(&r, (void **)&e->post_bit, (size_t)h.post_nv, "truncated postings");
        rd_alloc(&r, (void **)&e->post_off, sizeof(uint32_t) * ((size_t)h.post_nv + 1), "truncated postings");
        rd_alloc(&r, (void **)&e->post, h.post_bytes, "truncated postings");
        rd_alloc(&r, (void **)&e->wperm, sizeof(uint32_t) * n, "truncated rank order");
        /* the bitmaps: as accel_build allocates them (one word a bitmap
         * even for no jobs), the words it wrote */
        size_t rw = (n + 63) / 64;
        if (!r.rc && sizeof(uint64_t) * 128 * rw > r.size - r.b.bytes) {
            bad(&r, "truncated masks");
            goto out;
        }
        if (!r.rc && !(e->rbits = calloc(128 * (rw ? rw : 1), sizeof(uint64_t)))) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory reading the snapshot");
            goto out;
        }
        rd_into(&r, e->rbits, sizeof(uint64_t) * 128 * rw);
        rd_alloc(&r, (void **)&e->rcw, n, "truncated mask counts");
        rd_alloc(&r, (void **)&e->rcls, sizeof(uint32_t) * n, "truncated classes");
        rd_alloc(&r, (void **)&e->roff, sizeof(uint32_t) * (n + 1), "truncated rank offsets");
        rd_alloc(&r, (void **)&e->cls_w, sizeof(float) * c, "truncated classes");
        e->dirty_cap = h.ndirty;
        rd_alloc(&r, (void **)&e->dirty_list, sizeof(int) * (size_t)h.ndirty, "truncated changed jobs");
        if (r.rc)
            goto out;
        for (size_t k = 0; k < c; k++)
            if (!(e->cls_w[k] >= 0) || !isfinite(e->cls_w[k])) {
                bad(&r, "a class weight is negative or not a number");
                goto out;
            }
        if (rank_cls_derive(e)) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory reading the snapshot");
            goto out;
        }
        e->ndirty = h.ndirty;
        if (e->post_off[h.post_nv] != h.post_bytes) {
            bad(&r, "the postings' size is wrong");
            goto out;
        }
    }
    if (e->ix) {
        idx *ix = NULL;
        jm_err ierr = {0};
        int irc = idx_load(&r.b, &ix, &ierr);
        if (irc == JM_ENOMEM) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory reading the snapshot's index");
            goto out;
        }
        if (irc) {
            bad(&r, "its vector index is damaged");
            goto out;
        }
        idx_free(e->ix);
        e->ix = ix;
        if (idx_dim(ix) != e->dim || idx_slots(ix) > (uint32_t)e->njobs) {
            bad(&r, "its vector index does not fit the jobs");
            goto out;
        }
    }
    uint64_t sum = jm_bin_sum(&r.b), stored = 0;
    if (rd_into(&r, &stored, sizeof stored))
        goto out;
    if (sum != stored) {
        bad(&r, "its checksum does not match (a damaged file)");
        goto out;
    }
    if (r.b.bytes != r.size) {
        bad(&r, "it has bytes after its end");
        goto out;
    }
    if (check_jobs(&r, e, blen))
        goto out;
    if (h.accel) {
        if (check_accel(&r, e))
            goto out;
        e->accel = 1;
    }
    e->snap_rev = h.rev;
out:
    free(blen);
    free(name);
    free(disp);
    jm_bin_close(&r.b, NULL);
    if (rc == JM_OK && r.rc) {
        *why = r.why ? r.why : "unreadable";
        return r.rc < 0 ? r.rc : 1;
    }
    if (rc && !*why)
        *why = NULL;
    return rc;
}
