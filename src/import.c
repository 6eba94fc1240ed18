/* import.c - CSV, JSON Lines and O*NET readers, and the batched upsert glue.
 *
 * Every reader pulls bytes through imp_rd, a fixed-size buffer over a FILE, so
 * memory is bounded by the largest record (IMP_MAX_RECORD), not by the file.
 * A record is checked as a whole (UTF-8, field count, each value) before it
 * becomes a db_job; the first problem found is the reason reported. */
#include "import.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RD_BUF (1 << 18)
#define REASON_LEN 256

/* ---------- buffered reader ---------- */

typedef struct imp_rd {
    FILE *f;
    int own;             /* fclose when done (not for stdin) */
    unsigned char *buf;  /* RD_BUF bytes */
    size_t pos, len;     /* unread bytes are buf[pos, len) */
    int64_t off;         /* file offset of buf[0] */
    int eof, ioerr;
} imp_rd;

static int rd_open(imp_rd *r, const char *path, jm_err *err)
{
    memset(r, 0, sizeof *r);
    if (!strcmp(path, "-")) {
        r->f = stdin;
    } else {
        r->f = fopen(path, "rb");
        if (!r->f)
            return jm_fail(err, errno == ENOENT ? JM_ENOTFOUND : JM_EIO, "cannot open %s: %s", path,
                           strerror(errno));
        r->own = 1;
    }
    r->buf = malloc(RD_BUF);
    if (!r->buf) {
        if (r->own)
            fclose(r->f);
        r->f = NULL;
        return jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
    }
    return JM_OK;
}

static void rd_close(imp_rd *r)
{
    if (r->f && r->own)
        fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* Make sure at least `want` (<= RD_BUF) unread bytes are buffered, unless the
 * file ends first. Returns the number of unread bytes. */
static size_t rd_fill(imp_rd *r, size_t want)
{
    if (r->len - r->pos >= want || r->eof)
        return r->len - r->pos;
    if (r->pos) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->off += (int64_t)r->pos;
        r->len -= r->pos;
        r->pos = 0;
    }
    while (r->len < want && !r->eof) {
        size_t got = fread(r->buf + r->len, 1, RD_BUF - r->len, r->f);
        r->len += got;
        if (got == 0) {
            r->eof = 1;
            r->ioerr = ferror(r->f);
        }
    }
    return r->len - r->pos;
}

static int64_t rd_tell(const imp_rd *r)
{
    return r->off + (int64_t)r->pos;
}

/* Reposition to an absolute offset; fails on pipes. */
static int rd_seek(imp_rd *r, int64_t off)
{
    if (fseeko(r->f, (off_t)off, SEEK_SET) != 0)
        return -1;
    r->pos = r->len = 0;
    r->off = off;
    r->eof = 0;
    r->ioerr = 0;
    return 0;
}

/* Skip a UTF-8 BOM and any white space before the first record, counting
 * newlines into *line. Returns the first byte of content, or -1 at end of file. */
static int rd_skip_lead(imp_rd *r, int64_t *line)
{
    if (rd_fill(r, 3) >= 3 && !memcmp(r->buf + r->pos, "\xEF\xBB\xBF", 3))
        r->pos += 3;
    for (;;) {
        if (r->pos == r->len && rd_fill(r, 1) == 0)
            return -1;
        unsigned char c = r->buf[r->pos];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            return c;
        if (c == '\n')
            (*line)++;
        r->pos++;
    }
}

/* ---------- small helpers ---------- */

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static void trim(const char **s, size_t *n)
{
    const char *p = *s;
    size_t len = *n;
    while (len && is_ws((unsigned char)*p)) {
        p++;
        len--;
    }
    while (len && is_ws((unsigned char)p[len - 1]))
        len--;
    *s = p;
    *n = len;
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* Offset of the first byte that is not part of valid UTF-8 (overlong forms,
 * surrogates and code points above U+10FFFF are invalid) or is NUL; n if none. */
static size_t utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII without NUL, eight bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & 0x8080808080808080ull) ||
                ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = s[i];
        if (c == 0)
            return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return i;
        }
        if (i + len > n || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += len;
    }
    return n;
}

/* A value quoted for a message: at most ~48 bytes (cut on a character
 * boundary), with quotes, backslashes and control bytes escaped. */
static const char *show(char *buf, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    int cut = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o >= 48 && (c & 0xC0) != 0x80) {
            cut = 1;
            break;
        }
        if (o + 8 >= cap)
            break;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (c < 0x20 || c == 0x7F) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02X", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    if (cut && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}

static void reason_set(char *reason, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason_set(char *reason, const char *fmt, ...)
{
    if (reason[0])
        return; /* the first problem of a record is the one reported */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, REASON_LEN, fmt, ap);
    va_end(ap);
}

/* ---------- fields and values ---------- */

enum {
    F_ID, F_TITLE, F_COMPANY, F_LOCATION, F_REMOTE, F_SALARY_MIN, F_SALARY_MAX, F_CURRENCY,
    F_EMPLOYMENT_TYPE, F_SENIORITY, F_DESCRIPTION, F_SKILLS, F_POSTED_AT, F_COUNT
};

static const char *const field_name[F_COUNT] = {
    "id", "title", "company", "location", "remote", "salary_min", "salary_max", "currency",
    "employment_type", "seniority", "description", "skills", "posted_at",
};

static const struct {
    const char *name;
    int field;
} aliases[] = {
    {"id", F_ID},
    {"job_id", F_ID},
    {"title", F_TITLE},
    {"job_title", F_TITLE},
    {"company", F_COMPANY},
    {"company_name", F_COMPANY},
    {"employer", F_COMPANY},
    {"location", F_LOCATION},
    {"remote", F_REMOTE},
    {"is_remote", F_REMOTE},
    {"salary_min", F_SALARY_MIN},
    {"salary_from", F_SALARY_MIN},
    {"min_salary", F_SALARY_MIN},
    {"salary_max", F_SALARY_MAX},
    {"salary_to", F_SALARY_MAX},
    {"max_salary", F_SALARY_MAX},
    {"currency", F_CURRENCY},
    {"salary_currency", F_CURRENCY},
    {"employment_type", F_EMPLOYMENT_TYPE},
    {"job_type", F_EMPLOYMENT_TYPE},
    {"seniority", F_SENIORITY},
    {"seniority_level", F_SENIORITY},
    {"description", F_DESCRIPTION},
    {"job_description", F_DESCRIPTION},
    {"skills", F_SKILLS},
    {"posted_at", F_POSTED_AT},
    {"date_posted", F_POSTED_AT},
};

/* The field a column name stands for, or -1. */
static int field_of(const char *name, size_t n)
{
    trim(&name, &n);
    char key[32];
    if (n == 0 || n >= sizeof key)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (c == ' ' || c == '-')
            c = '_';
        key[i] = c;
    }
    key[n] = 0;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcmp(key, aliases[i].name))
            return aliases[i].field;
    return -1;
}

/* Strict decimal: [+-] digits [. digits] [e [+-] digits], at least one digit
 * in the mantissa; then strtod, which must give a finite value. */
static int parse_number(const char *s, size_t n, double *out)
{
    char buf[80];
    if (n == 0 || n >= sizeof buf)
        return -1;
    size_t i = 0, digits = 0;
    if (s[i] == '+' || s[i] == '-')
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
        digits++;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            digits++;
        }
    }
    if (!digits)
        return -1;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t e = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            e++;
        }
        if (!e)
            return -1;
    }
    if (i != n)
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* 1, 0, or -1 when s is not one of the accepted spellings. */
static int parse_bool(const char *s, size_t n)
{
    static const char *const yes[] = {"true", "yes", "1"}, *const no[] = {"false", "no", "0"};
    for (int i = 0; i < 3; i++) {
        if (n == strlen(yes[i]) && !strncasecmp(s, yes[i], n))
            return 1;
        if (n == strlen(no[i]) && !strncasecmp(s, no[i], n))
            return 0;
    }
    return -1;
}

static int digits_at(const char *s, size_t n, size_t at, size_t count, int *out)
{
    if (at + count > n)
        return -1;
    int v = 0;
    for (size_t i = at; i < at + count; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* YYYY-MM-DD, optionally followed by [T or space] hh:mm[:ss[.fraction]] and
 * an optional zone: Z, ±hh, ±hhmm or ±hh:mm. */
static int is_iso8601(const char *s, size_t n)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec;
    if (digits_at(s, n, 0, 4, &y) || n < 10 || s[4] != '-' || digits_at(s, n, 5, 2, &mo) ||
        s[7] != '-' || digits_at(s, n, 8, 2, &d))
        return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
        return 0;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return 0;
    if (n == 10)
        return 1;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        return 0;
    if (digits_at(s, n, 11, 2, &h) || n < 16 || s[13] != ':' || digits_at(s, n, 14, 2, &mi) ||
        h > 23 || mi > 59)
        return 0;
    size_t i = 16;
    if (i < n && s[i] == ':') {
        if (digits_at(s, n, 17, 2, &sec) || sec > 60)
            return 0;
        i = 19;
        if (i < n && (s[i] == '.' || s[i] == ',')) {
            size_t f = ++i;
            while (i < n && s[i] >= '0' && s[i] <= '9')
                i++;
            if (i == f)
                return 0;
        }
    }
    if (i == n)
        return 1;
    if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n)
        return 1;
    if (s[i] != '+' && s[i] != '-')
        return 0;
    int zh, zm = 0;
    if (digits_at(s, n, i + 1, 2, &zh) || zh > 23)
        return 0;
    i += 3;
    if (i == n)
        return 1;
    if (s[i] == ':')
        i++;
    if (digits_at(s, n, i, 2, &zm) || zm > 59 || i + 2 != n)
        return 0;
    return 1;
}

static char **text_slot(db_job *j, int f)
{
    switch (f) {
    case F_ID: return &j->id;
    case F_TITLE: return &j->title;
    case F_COMPANY: return &j->company;
    case F_LOCATION: return &j->location;
    case F_CURRENCY: return &j->currency;
    case F_EMPLOYMENT_TYPE: return &j->employment_type;
    case F_SENIORITY: return &j->seniority;
    case F_DESCRIPTION: return &j->description;
    case F_POSTED_AT: return &j->posted_at;
    default: return NULL;
    }
}

/* Set field f of j from the text s[0..n) (valid UTF-8; trimmed here; empty
 * means unknown). Returns 0, -1 with reason filled for a bad value, or
 * JM_ENOMEM. */
static int set_text_value(db_job *j, int f, const char *s, size_t n, char *reason)
{
    char shown[REASON_LEN / 2];
    trim(&s, &n);
    if (n == 0) {
        if (f == F_ID) {
            reason_set(reason, "id is empty");
            return -1;
        }
        return 0;
    }
    switch (f) {
    case F_REMOTE: {
        int b = parse_bool(s, n);
        if (b < 0) {
            reason_set(reason, "remote is not true/false/yes/no/1/0: \"%s\"", show(shown, sizeof shown, s, n));
            return -1;
        }
        j->remote = b;
        return 0;
    }
    case F_SALARY_MIN:
    case F_SALARY_MAX:
        if (parse_number(s, n, f == F_SALARY_MIN ? &j->salary_min : &j->salary_max)) {
            reason_set(reason, "%s is not a number: \"%s\"", field_name[f], show(shown, sizeof shown, s, n));
            return -1;
        }
        return 0;
    case F_SKILLS: {
        char *v = dupn(s, n);
        if (!v)
            return JM_ENOMEM;
        db_parse_skills(v, &j->skills, &j->nskills);
        free(v);
        return 0;
    }
    case F_POSTED_AT:
        if (!is_iso8601(s, n)) {
            reason_set(reason, "posted_at is not an ISO 8601 date or date-time: \"%s\"",
                       show(shown, sizeof shown, s, n));
            return -1;
        }
        break;
    default:
        break;
    }
    char **slot = text_slot(j, f);
    free(*slot);
    *slot = dupn(s, n);
    return *slot ? 0 : JM_ENOMEM;
}

/* ---------- reporting ---------- */

typedef struct imp_sink {
    imp_row_fn row;
    imp_bad_fn bad;
    void *ctx;
    imp_stats *st;
} imp_sink;

static void sink_bad(imp_sink *k, int64_t line, const char *reason)
{
    k->st->failed++;
    if (k->bad)
        k->bad(k->ctx, line, reason);
}

/* Hand a good job to the callback and clear it. */
static int sink_row(imp_sink *k, db_job *job, jm_err *err)
{
    int rc = k->row ? k->row(k->ctx, job, err) : 0;
    db_job_clear(job);
    if (rc == 0)
        k->st->imported++;
    return rc;
}

/* ---------- CSV ---------- */

enum { S_START, S_UNQ, S_QUO, S_QQ, S_CLOSED, S_SKIP };

typedef struct csv {
    imp_rd *rd;
    char *rec;          /* stored field bytes, each field NUL-terminated */
    size_t len, cap;
    size_t *fstart;     /* fstart[i]: offset of field i in rec; fstart[nstored] = len */
    int fcap;
    int nf;             /* fields seen in this record */
    int nstored;        /* fields stored (<= store_max) */
    int store_max;      /* fields to keep: the header's count (+1 to see an extra) */
    int nostore;        /* record already too large: stop storing */
    size_t cur;         /* offset where the current field starts */
    int64_t line;       /* current physical line (1-based) */
    int64_t rec_line;   /* line where the record started */
    int64_t rec_bytes;
    int64_t first_nl;   /* offset just past the record's first '\n', or -1 */
    int open_at_eof;    /* the record ended inside an open quoted field */
    char **hname;       /* header names, for messages (NULL while reading the header) */
    int ncols;
    char reason[REASON_LEN];
} csv;

static const char *col_label(const csv *c, int i, char *buf, size_t cap)
{
    if (c->hname && i < c->ncols && c->hname[i][0])
        snprintf(buf, cap, "field %d (%s)", i + 1, c->hname[i]);
    else
        snprintf(buf, cap, "field %d", i + 1);
    return buf;
}

static int csv_grow(csv *c, size_t need)
{
    size_t nc = c->cap ? c->cap : 4096;
    while (nc < need)
        nc *= 2;
    char *p = realloc(c->rec, nc);
    if (!p)
        return -1;
    c->rec = p;
    c->cap = nc;
    return 0;
}

/* Append byte ch to the current field. */
static inline int csv_put(csv *c, char ch)
{
    if (c->nostore)
        return 0;
    if (c->len - c->cur >= IMP_MAX_FIELD) {
        char lb[96];
        reason_set(c->reason, "%s is larger than 1 MiB", col_label(c, c->nf, lb, sizeof lb));
        c->nostore = 1;
        return 0;
    }
    if (c->len + 1 >= c->cap && csv_grow(c, c->len + 2))
        return -1;
    c->rec[c->len++] = ch;
    return 0;
}

static int csv_end_field(csv *c)
{
    if (!c->nostore && c->nstored < c->store_max) {
        if (c->nstored + 1 >= c->fcap) {
            int nc = c->fcap ? c->fcap * 2 : 64;
            size_t *p = realloc(c->fstart, sizeof *p * (size_t)nc);
            if (!p)
                return -1;
            c->fstart = p;
            c->fcap = nc;
        }
        if (c->len + 1 >= c->cap && csv_grow(c, c->len + 2))
            return -1;
        c->rec[c->len++] = 0;
        c->fstart[c->nstored++] = c->cur;
        c->fstart[c->nstored] = c->len;
    } else {
        c->len = c->cur; /* drop what an unstored field put */
    }
    c->nf++;
    c->cur = c->len;
    return 0;
}

static size_t csv_flen(const csv *c, int i)
{
    return c->fstart[i + 1] - c->fstart[i] - 1;
}

/* Read the next record. Returns 1 (a record, possibly with c->reason set),
 * 0 at end of file, JM_ENOMEM or JM_EIO. Blank lines are skipped. */
static int csv_next(csv *c)
{
    imp_rd *rd = c->rd;
    int st = S_START, started = 0;
    c->len = c->cur = 0;
    c->nf = c->nstored = 0;
    c->nostore = 0;
    c->rec_bytes = 0;
    c->first_nl = -1;
    c->open_at_eof = 0;
    c->reason[0] = 0;
    for (;;) {
        if (rd->pos == rd->len && rd_fill(rd, 1) == 0) {
            if (rd->ioerr)
                return JM_EIO;
            if (!started)
                return 0;
            if (st == S_QUO) {
                char lb[96];
                reason_set(c->reason, "quoted %s is not closed at end of file",
                           col_label(c, c->nf, lb, sizeof lb));
                c->open_at_eof = 1;
            }
            if (c->nf == 0 && st <= S_UNQ) {
                const char *s = c->rec + c->cur;
                size_t n = c->len - c->cur;
                trim(&s, &n);
                if (n == 0 && !c->reason[0])
                    return 0; /* trailing white space */
            }
            if (csv_end_field(c))
                return JM_ENOMEM;
            return 1;
        }
        if (!started) {
            started = 1;
            c->rec_line = c->line;
        }
        /* Fast path: a run of ordinary bytes inside a field. */
        if ((st == S_UNQ || st == S_QUO) && !c->nostore) {
            const unsigned char *p = rd->buf + rd->pos, *e = rd->buf + rd->len;
            const unsigned char *q = p;
            if (st == S_UNQ)
                while (q < e && *q != ',' && *q != '\n' && *q != '"')
                    q++;
            else
                while (q < e && *q != '\n' && *q != '"')
                    q++;
            size_t n = (size_t)(q - p);
            /* up to the limits; the byte past one goes the slow way and is reported */
            size_t room = IMP_MAX_FIELD - (c->len - c->cur);
            if (n > room)
                n = room;
            if ((int64_t)n > IMP_MAX_RECORD - c->rec_bytes)
                n = (size_t)(IMP_MAX_RECORD - c->rec_bytes);
            if (n) {
                if (c->len + n + 1 >= c->cap && csv_grow(c, c->len + n + 2))
                    return JM_ENOMEM;
                memcpy(c->rec + c->len, p, n);
                c->len += n;
                c->rec_bytes += (int64_t)n;
                rd->pos += n;
                continue;
            }
        }
        unsigned char ch = rd->buf[rd->pos++];
        if (++c->rec_bytes > IMP_MAX_RECORD && !c->nostore) {
            reason_set(c->reason, "record is larger than 16 MiB");
            c->nostore = 1;
        }
        if (ch == '\n') {
            c->line++;
            if (c->first_nl < 0)
                c->first_nl = rd_tell(rd);
        }
        char lb[96];
        switch (st) {
        case S_START:
            if (ch == '"') {
                st = S_QUO;
                break;
            }
            st = S_UNQ;
            /* fall through */
        case S_UNQ:
            if (ch == ',') {
                if (csv_end_field(c))
                    return JM_ENOMEM;
                st = S_START;
            } else if (ch == '\n') {
                if (!c->nostore && c->len > c->cur && c->rec[c->len - 1] == '\r')
                    c->len--;
                if (c->nf == 0) {
                    const char *s = c->rec + c->cur;
                    size_t n = c->len - c->cur;
                    trim(&s, &n);
                    if (n == 0 && !c->reason[0]) { /* blank line */
                        c->len = c->cur = 0;
                        c->rec_bytes = 0;
                        c->first_nl = -1;
                        started = 0;
                        st = S_START;
                        break;
                    }
                }
                if (csv_end_field(c))
                    return JM_ENOMEM;
                return 1;
            } else if (ch == '"') {
                reason_set(c->reason, "quote inside unquoted %s", col_label(c, c->nf, lb, sizeof lb));
                st = S_SKIP;
            } else if (csv_put(c, (char)ch)) {
                return JM_ENOMEM;
            }
            break;
        case S_QUO:
            if (ch == '"') {
                st = S_QQ;
            } else if (ch == '\n' && !c->nostore && c->len > c->cur && c->rec[c->len - 1] == '\r') {
                c->rec[c->len - 1] = '\n'; /* CRLF inside quotes reads as LF */
            } else if (csv_put(c, (char)ch)) {
                return JM_ENOMEM;
            }
            break;
        case S_QQ:
        case S_CLOSED:
            if (ch == '"' && st == S_QQ) {
                if (csv_put(c, '"'))
                    return JM_ENOMEM;
                st = S_QUO;
            } else if (ch == ',') {
                if (csv_end_field(c))
                    return JM_ENOMEM;
                st = S_START;
            } else if (ch == '\n') {
                if (csv_end_field(c))
                    return JM_ENOMEM;
                return 1;
            } else if (ch == '\r') {
                st = S_CLOSED;
            } else {
                reason_set(c->reason, "text after the closing quote of %s",
                           col_label(c, c->nf, lb, sizeof lb));
                st = S_SKIP;
            }
            break;
        case S_SKIP: /* a broken record ends at the next line end, quotes or not */
            if (ch == '\n') {
                c->nf++;
                return 1;
            }
            break;
        }
    }
}

/* Check a record's fields and build the job. Returns 0 (job filled), -1 (bad,
 * c->reason set) or JM_ENOMEM. */
static int csv_to_job(csv *c, const int *colmap, db_job *job)
{
    char lb[96];
    if (c->reason[0])
        return -1;
    if (c->nf > c->ncols) {
        reason_set(c->reason, "%d fields, but the header has %d", c->nf, c->ncols);
        return -1;
    }
    for (int i = 0; i < c->nstored; i++) {
        size_t n = csv_flen(c, i);
        size_t at = utf8_check((const unsigned char *)c->rec + c->fstart[i], n);
        if (at < n) {
            reason_set(c->reason, "%s in %s at byte %zu", c->rec[c->fstart[i] + at] ? "invalid UTF-8" : "NUL byte",
                       col_label(c, i, lb, sizeof lb), at + 1);
            return -1;
        }
    }
    db_job_init(job);
    int have_id = 0;
    for (int i = 0; i < c->nstored; i++) {
        int f = colmap[i];
        if (f < 0)
            continue;
        if (f == F_ID)
            have_id = 1;
        int rc = set_text_value(job, f, c->rec + c->fstart[i], csv_flen(c, i), c->reason);
        if (rc) {
            db_job_clear(job);
            return rc;
        }
    }
    if (!have_id) {
        reason_set(c->reason, "id is missing");
        db_job_clear(job);
        return -1;
    }
    return 0;
}

static int csv_read(imp_rd *rd, int64_t line, const char *path, imp_sink *k, jm_err *err)
{
    csv c;
    memset(&c, 0, sizeof c);
    c.rd = rd;
    c.line = line;
    c.store_max = IMP_MAX_RECORD; /* the header: every cell */
    int *colmap = NULL, rc = JM_OK;
    db_job job;
    db_job_init(&job);

    int r = csv_next(&c);
    if (r <= 0) {
        rc = r == 0 ? JM_OK : r == JM_EIO ? jm_fail(err, JM_EIO, "%s: read error", path)
                                          : jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (c.reason[0]) {
        rc = jm_fail(err, JM_EFORMAT, "%s: line %lld: bad header: %s", path, (long long)c.rec_line, c.reason);
        goto done;
    }
    c.ncols = c.nstored;
    colmap = malloc(sizeof *colmap * (size_t)c.ncols);
    c.hname = calloc((size_t)c.ncols, sizeof *c.hname);
    if (!colmap || !c.hname) {
        rc = jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    int seen[F_COUNT] = {0};
    for (int i = 0; i < c.ncols; i++) {
        const char *s = c.rec + c.fstart[i];
        size_t n = csv_flen(&c, i);
        if (utf8_check((const unsigned char *)s, n) < n) {
            rc = jm_fail(err, JM_EFORMAT, "%s: line %lld: bad header: invalid UTF-8 in field %d", path,
                         (long long)c.rec_line, i + 1);
            goto done;
        }
        trim(&s, &n);
        char shown[64];
        c.hname[i] = strdup(show(shown, sizeof shown, s, n));
        if (!c.hname[i]) {
            rc = jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        int f = field_of(s, n);
        colmap[i] = (f >= 0 && !seen[f]) ? f : -1; /* the first column naming a field wins */
        if (f >= 0)
            seen[f] = 1;
    }
    if (!seen[F_ID]) {
        rc = jm_fail(err, JM_EFORMAT, "%s: line %lld: the header has no id column", path,
                     (long long)c.rec_line);
        goto done;
    }
    c.store_max = c.ncols;
    for (;;) {
        r = csv_next(&c);
        if (r == 0)
            break;
        if (r < 0) {
            rc = r == JM_EIO ? jm_fail(err, JM_EIO, "%s: read error", path)
                             : jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        k->st->read++;
        r = csv_to_job(&c, colmap, &job);
        if (r == JM_ENOMEM) {
            rc = jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        if (r < 0) {
            sink_bad(k, c.rec_line, c.reason);
            /* Read again from the line after the record's first one, so that
             * the rows a stray quote swallowed still count. */
            if (c.open_at_eof && c.first_nl >= 0 && rd_seek(rd, c.first_nl) == 0)
                c.line = c.rec_line + 1;
            continue;
        }
        if ((rc = sink_row(k, &job, err)) != 0)
            goto done;
    }
done:
    db_job_clear(&job);
    if (c.hname)
        for (int i = 0; i < c.ncols; i++)
            free(c.hname[i]);
    free(c.hname);
    free(colmap);
    free(c.rec);
    free(c.fstart);
    return rc;
}

/* ---------- line reader (JSON Lines, O*NET) ---------- */

typedef struct line_buf {
    char *s;
    size_t len, cap;
    int too_long; /* the line had more than IMP_MAX_RECORD bytes; s holds a prefix */
} line_buf;

/* Read one line (without its '\n'; a trailing '\r' dropped) into lb.
 * Returns 1, 0 at end of file, JM_EIO or JM_ENOMEM. */
static int read_line(imp_rd *rd, line_buf *lb)
{
    lb->len = 0;
    lb->too_long = 0;
    int any = 0;
    for (;;) {
        if (rd->pos == rd->len && rd_fill(rd, 1) == 0) {
            if (rd->ioerr)
                return JM_EIO;
            if (!any)
                return 0;
            break;
        }
        any = 1;
        const unsigned char *p = rd->buf + rd->pos;
        size_t avail = rd->len - rd->pos;
        const unsigned char *nl = memchr(p, '\n', avail);
        size_t n = nl ? (size_t)(nl - p) : avail;
        if (!lb->too_long) {
            if (lb->len + n > IMP_MAX_RECORD) {
                lb->too_long = 1;
            } else {
                if (lb->len + n + 1 > lb->cap) {
                    size_t nc = lb->cap ? lb->cap : 4096;
                    while (nc < lb->len + n + 1)
                        nc *= 2;
                    char *q = realloc(lb->s, nc);
                    if (!q)
                        return JM_ENOMEM;
                    lb->s = q;
                    lb->cap = nc;
                }
                memcpy(lb->s + lb->len, p, n);
                lb->len += n;
            }
        }
        rd->pos += n + (nl ? 1 : 0);
        if (nl)
            break;
    }
    if (!lb->s) {
        lb->s = malloc(1);
        if (!lb->s)
            return JM_ENOMEM;
        lb->cap = 1;
    }
    if (lb->len && lb->s[lb->len - 1] == '\r')
        lb->len--;
    lb->s[lb->len] = 0;
    return 1;
}

/* ---------- JSON Lines ---------- */

/* Set field f of job from a JSON value. Returns 0, -1 (reason set) or JM_ENOMEM. */
static int json_value(db_job *job, int f, const cJSON *v, char *reason)
{
    if (cJSON_IsNull(v)) {
        if (f == F_ID) {
            reason_set(reason, "id is empty");
            return -1;
        }
        return 0;
    }
    if (cJSON_IsString(v)) {
        size_t n = strlen(v->valuestring);
        if (n > IMP_MAX_FIELD) {
            reason_set(reason, "%s is larger than 1 MiB", field_name[f]);
            return -1;
        }
        return set_text_value(job, f, v->valuestring, n, reason);
    }
    if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        switch (f) {
        case F_SALARY_MIN:
        case F_SALARY_MAX:
            if (!isfinite(x)) {
                reason_set(reason, "%s is out of range", field_name[f]);
                return -1;
            }
            *(f == F_SALARY_MIN ? &job->salary_min : &job->salary_max) = x;
            return 0;
        case F_REMOTE:
            if (x != 0 && x != 1) {
                reason_set(reason, "remote is not true/false/yes/no/1/0: %g", x);
                return -1;
            }
            job->remote = x == 1;
            return 0;
        case F_ID: {
            /* integers only, and only those a double holds exactly */
            if (!(x == floor(x) && fabs(x) <= 9007199254740992.0)) {
                reason_set(reason, "id is not a string or an integer up to 2^53: %g", x);
                return -1;
            }
            char buf[32];
            snprintf(buf, sizeof buf, "%lld", (long long)x);
            free(job->id);
            job->id = strdup(buf);
            return job->id ? 0 : JM_ENOMEM;
        }
        default:
            reason_set(reason, "%s is a number, expected a string", field_name[f]);
            return -1;
        }
    }
    if (cJSON_IsBool(v)) {
        if (f == F_REMOTE) {
            job->remote = cJSON_IsTrue(v) ? 1 : 0;
            return 0;
        }
        reason_set(reason, "%s is a boolean, expected %s", field_name[f],
                   f == F_SALARY_MIN || f == F_SALARY_MAX ? "a number" : "a string");
        return -1;
    }
    if (cJSON_IsArray(v) && f == F_SKILLS) {
        char *text = cJSON_PrintUnformatted(v);
        if (!text)
            return JM_ENOMEM;
        db_parse_skills(text, &job->skills, &job->nskills);
        free(text);
        return 0;
    }
    reason_set(reason, "%s is %s, expected %s", field_name[f], cJSON_IsArray(v) ? "an array" : "an object",
               f == F_SKILLS ? "an array or a string"
               : f == F_SALARY_MIN || f == F_SALARY_MAX ? "a number"
               : f == F_REMOTE ? "a boolean"
                               : "a string");
    return -1;
}

/* Returns 0 (job filled), -1 (bad, reason set) or JM_ENOMEM. */
static int jsonl_to_job(const line_buf *lb, db_job *job, char *reason)
{
    if (lb->too_long) {
        reason_set(reason, "line is larger than 16 MiB");
        return -1;
    }
    size_t at = utf8_check((const unsigned char *)lb->s, lb->len);
    if (at < lb->len) {
        reason_set(reason, "%s at column %zu", lb->s[at] ? "invalid UTF-8" : "NUL byte", at + 1);
        return -1;
    }
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(lb->s, lb->len + 1, &end, 1);
    if (!o) {
        size_t col = end && end >= lb->s ? (size_t)(end - lb->s) + 1 : 1;
        reason_set(reason, "invalid JSON at column %zu", col);
        return -1;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        reason_set(reason, "not a JSON object");
        return -1;
    }
    db_job_init(job);
    int seen[F_COUNT] = {0}, rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        if (!it->string)
            continue;
        int f = field_of(it->string, strlen(it->string));
        if (f < 0 || seen[f])
            continue;
        seen[f] = 1;
        if ((rc = json_value(job, f, it, reason)) != 0)
            break;
    }
    cJSON_Delete(o);
    if (rc == 0 && !seen[F_ID]) {
        reason_set(reason, "id is missing");
        rc = -1;
    }
    if (rc)
        db_job_clear(job);
    return rc;
}

static int jsonl_read(imp_rd *rd, int64_t line, const char *path, imp_sink *k, jm_err *err)
{
    line_buf lb = {0};
    db_job job;
    db_job_init(&job);
    char reason[REASON_LEN];
    int rc = JM_OK;
    line--; /* read_line is about to read `line` */
    for (;;) {
        int r = read_line(rd, &lb);
        if (r == 0)
            break;
        if (r < 0) {
            rc = r == JM_EIO ? jm_fail(err, JM_EIO, "%s: read error", path)
                             : jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
            break;
        }
        line++;
        const char *s = lb.s;
        size_t n = lb.len;
        trim(&s, &n);
        if (n == 0 && !lb.too_long)
            continue;
        k->st->read++;
        reason[0] = 0;
        r = jsonl_to_job(&lb, &job, reason);
        if (r == JM_ENOMEM) {
            rc = jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
            break;
        }
        if (r < 0) {
            sink_bad(k, line, reason);
            continue;
        }
        if ((rc = sink_row(k, &job, err)) != 0)
            break;
    }
    db_job_clear(&job);
    free(lb.s);
    return rc;
}

/* ---------- format choice and imp_read ---------- */

int imp_format_parse(const char *name)
{
    if (!name)
        return -1;
    if (!strcasecmp(name, "auto"))
        return IMP_AUTO;
    if (!strcasecmp(name, "csv"))
        return IMP_CSV;
    if (!strcasecmp(name, "jsonl") || !strcasecmp(name, "ndjson") || !strcasecmp(name, "json-lines"))
        return IMP_JSONL;
    return -1;
}

int imp_format_from_path(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    if (!dot)
        return IMP_AUTO;
    if (!strcasecmp(dot, ".csv"))
        return IMP_CSV;
    if (!strcasecmp(dot, ".jsonl") || !strcasecmp(dot, ".ndjson") || !strcasecmp(dot, ".json-lines"))
        return IMP_JSONL;
    return IMP_AUTO;
}

int imp_read(const char *path, int format, imp_row_fn row, imp_bad_fn bad, void *ctx,
             imp_stats *st, jm_err *err)
{
    imp_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    if (!path)
        return jm_fail(err, JM_EINVAL, "imp_read: no path");
    if (format != IMP_AUTO && format != IMP_CSV && format != IMP_JSONL)
        return jm_fail(err, JM_EINVAL, "imp_read: unknown format %d", format);
    imp_rd rd;
    int rc = rd_open(&rd, path, err);
    if (rc)
        return rc;
    int64_t line = 1;
    int first = rd_skip_lead(&rd, &line);
    if (first < 0) {
        rc = rd.ioerr ? jm_fail(err, JM_EIO, "%s: read error: %s", path, strerror(errno)) : JM_OK;
        rd_close(&rd);
        return rc;
    }
    if (format == IMP_AUTO)
        format = imp_format_from_path(path);
    if (format == IMP_AUTO)
        format = first == '{' ? IMP_JSONL : IMP_CSV;
    imp_sink k = {row, bad, ctx, st};
    rc = format == IMP_CSV ? csv_read(&rd, line, path, &k, err) : jsonl_read(&rd, line, path, &k, err);
    rd_close(&rd);
    return rc;
}

/* ---------- O*NET ---------- */

typedef struct onet_occ {
    char *code, *title, *desc;
    db_skill *skills;
    int nskills, cap;
} onet_occ;

typedef struct onet {
    onet_occ *occ;
    int n, cap;
    onet_occ **by_code; /* into occ (complete before this is built), sorted by code */
} onet;

static void onet_free(onet *o)
{
    for (int i = 0; i < o->n; i++) {
        free(o->occ[i].code);
        free(o->occ[i].title);
        free(o->occ[i].desc);
        for (int s = 0; s < o->occ[i].nskills; s++)
            free(o->occ[i].skills[s].name);
        free(o->occ[i].skills);
    }
    free(o->occ);
    free(o->by_code);
}

/* Split a tab-separated line in place; returns the number of fields (at most max). */
static int split_tabs(char *s, char **out, int max)
{
    int n = 0;
    out[n++] = s;
    for (char *p = s; *p && n < max; p++)
        if (*p == '\t') {
            *p = 0;
            out[n++] = p + 1;
        }
    return n;
}

static int find_col(char **cells, int n, const char *name)
{
    for (int i = 0; i < n; i++) {
        const char *s = cells[i];
        size_t len = strlen(s);
        trim(&s, &len);
        if (len == strlen(name) && !strncasecmp(s, name, len))
            return i;
    }
    return -1;
}

#define ONET_MAXCOLS 32

/* Open dir/name and read its header; cols[i] gets the index of want[i] (-1 if
 * absent). A missing required column (the first nreq of want) is an error. */
static int onet_open(const char *dir, const char *name, imp_rd *rd, line_buf *lb, char *path,
                     size_t cap, const char *const *want, int nwant, int nreq, int *cols,
                     jm_err *err)
{
    int rc = jm_path_join(path, cap, dir, name, err);
    if (rc)
        return rc;
    if ((rc = rd_open(rd, path, err)))
        return rc;
    if (rd_fill(rd, 3) >= 3 && !memcmp(rd->buf + rd->pos, "\xEF\xBB\xBF", 3))
        rd->pos += 3;
    int r = read_line(rd, lb);
    if (r <= 0) {
        rc = r == 0 ? jm_fail(err, JM_EFORMAT, "%s: empty file, expected a header", path)
             : r == JM_EIO ? jm_fail(err, JM_EIO, "%s: read error", path)
                           : jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
        rd_close(rd);
        return rc;
    }
    char *cells[ONET_MAXCOLS];
    int n = split_tabs(lb->s, cells, ONET_MAXCOLS);
    for (int i = 0; i < nwant; i++) {
        cols[i] = find_col(cells, n, want[i]);
        if (cols[i] < 0 && i < nreq) {
            rd_close(rd);
            return jm_fail(err, JM_EFORMAT, "%s: no \"%s\" column in the header", path, want[i]);
        }
    }
    return JM_OK;
}

static int cmp_code(const void *a, const void *b)
{
    return strcmp((*(onet_occ *const *)a)->code, (*(onet_occ *const *)b)->code);
}

static onet_occ *onet_find(onet *o, const char *code)
{
    int lo = 0, hi = o->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        onet_occ *m = o->by_code[mid];
        int c = strcmp(code, m->code);
        if (!c)
            return m;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Report a bad line of an O*NET file: the reason names the file. */
static void onet_bad(imp_sink *k, const char *name, int64_t line, const char *what)
{
    char reason[REASON_LEN];
    snprintf(reason, sizeof reason, "%s: %s", name, what);
    sink_bad(k, line, reason);
}

static int onet_load(const char *dir, onet *o, imp_sink *k, jm_err *err)
{
    static const char *const occ_cols[] = {"O*NET-SOC Code", "Title", "Description"};
    static const char *const sk_cols[] = {"O*NET-SOC Code", "Example", "Hot Technology", "In Demand"};
    static const char occ_name[] = "Occupation Data.txt", sk_name[] = "Technology Skills.txt";
    char path[4096];
    imp_rd rd;
    line_buf lb = {0};
    int cols[4], rc;
    char *cells[ONET_MAXCOLS];

    /* occupations */
    if ((rc = onet_open(dir, occ_name, &rd, &lb, path, sizeof path, occ_cols, 3, 3, cols, err)))
        goto out;
    int ncols = cols[0] > cols[1] ? cols[0] : cols[1];
    ncols = (ncols > cols[2] ? ncols : cols[2]) + 1;
    for (int64_t line = 2;; line++) {
        int r = read_line(&rd, &lb);
        if (r == 0)
            break;
        if (r < 0) {
            rc = jm_fail(err, r, "%s: %s", path, r == JM_EIO ? "read error" : "out of memory");
            goto close;
        }
        if (lb.len == 0)
            continue;
        k->st->read++;
        if (lb.too_long || utf8_check((const unsigned char *)lb.s, lb.len) < lb.len) {
            onet_bad(k, occ_name, line, lb.too_long ? "line is larger than 16 MiB" : "invalid UTF-8");
            continue;
        }
        int n = split_tabs(lb.s, cells, ONET_MAXCOLS);
        const char *code = n >= ncols ? cells[cols[0]] : "";
        size_t clen = strlen(code);
        trim(&code, &clen);
        if (n < ncols || clen == 0) {
            onet_bad(k, occ_name, line, n < ncols ? "too few fields" : "empty O*NET-SOC code");
            continue;
        }
        if (o->n == o->cap) {
            int nc = o->cap ? o->cap * 2 : 1024;
            onet_occ *p = realloc(o->occ, sizeof *p * (size_t)nc);
            if (!p) {
                rc = jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
                goto close;
            }
            o->occ = p;
            o->cap = nc;
        }
        onet_occ *oc = &o->occ[o->n];
        memset(oc, 0, sizeof *oc);
        const char *t = cells[cols[1]], *d = cells[cols[2]];
        size_t tl = strlen(t), dl = strlen(d);
        trim(&t, &tl);
        trim(&d, &dl);
        oc->code = dupn(code, clen);
        oc->title = tl ? dupn(t, tl) : NULL;
        oc->desc = dl ? dupn(d, dl) : NULL;
        o->n++;
        if (!oc->code || (tl && !oc->title) || (dl && !oc->desc)) {
            rc = jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
            goto close;
        }
    }
    rd_close(&rd);

    o->by_code = malloc(sizeof *o->by_code * (size_t)(o->n ? o->n : 1));
    if (!o->by_code) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < o->n; i++)
        o->by_code[i] = &o->occ[i];
    qsort(o->by_code, (size_t)o->n, sizeof *o->by_code, cmp_code);

    /* technology skills */
    if ((rc = onet_open(dir, sk_name, &rd, &lb, path, sizeof path, sk_cols, 4, 3, cols, err)))
        goto out;
    ncols = 0;
    for (int i = 0; i < 4; i++)
        if (cols[i] + 1 > ncols)
            ncols = cols[i] + 1;
    for (int64_t line = 2;; line++) {
        int r = read_line(&rd, &lb);
        if (r == 0)
            break;
        if (r < 0) {
            rc = jm_fail(err, r, "%s: %s", path, r == JM_EIO ? "read error" : "out of memory");
            goto close;
        }
        if (lb.len == 0)
            continue;
        if (lb.too_long || utf8_check((const unsigned char *)lb.s, lb.len) < lb.len) {
            onet_bad(k, sk_name, line, lb.too_long ? "line is larger than 16 MiB" : "invalid UTF-8");
            continue;
        }
        int n = split_tabs(lb.s, cells, ONET_MAXCOLS);
        if (n < ncols) {
            onet_bad(k, sk_name, line, "too few fields");
            continue;
        }
        const char *code = cells[cols[0]], *name = cells[cols[1]];
        size_t clen = strlen(code), nlen = strlen(name);
        trim(&code, &clen);
        trim(&name, &nlen);
        if (nlen == 0)
            continue;
        ((char *)code)[clen] = 0;
        onet_occ *oc = onet_find(o, code);
        if (!oc) {
            char what[128];
            char shown[64];
            snprintf(what, sizeof what, "unknown occupation \"%s\"", show(shown, sizeof shown, code, clen));
            onet_bad(k, sk_name, line, what);
            continue;
        }
        int req = (cells[cols[2]][0] == 'Y' || cells[cols[2]][0] == 'y') ||
                  (cols[3] >= 0 && (cells[cols[3]][0] == 'Y' || cells[cols[3]][0] == 'y'));
        int dup = -1;
        for (int s = 0; s < oc->nskills; s++)
            if (strlen(oc->skills[s].name) == nlen && !memcmp(oc->skills[s].name, name, nlen)) {
                dup = s;
                break;
            }
        if (dup >= 0) {
            oc->skills[dup].required |= req;
            continue;
        }
        if (oc->nskills == oc->cap) {
            int nc = oc->cap ? oc->cap * 2 : 16;
            db_skill *p = realloc(oc->skills, sizeof *p * (size_t)nc);
            if (!p) {
                rc = jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
                goto close;
            }
            oc->skills = p;
            oc->cap = nc;
        }
        oc->skills[oc->nskills].name = dupn(name, nlen);
        oc->skills[oc->nskills].required = req;
        if (!oc->skills[oc->nskills].name) {
            rc = jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
            goto close;
        }
        oc->nskills++;
    }
close:
    rd_close(&rd);
out:
    free(lb.s);
    return rc;
}

int imp_read_onet(const char *dir, imp_row_fn row, imp_bad_fn bad, void *ctx, imp_stats *st,
                  jm_err *err)
{
    imp_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    if (!dir)
        return jm_fail(err, JM_EINVAL, "imp_read_onet: no directory");
    imp_sink k = {row, bad, ctx, st};
    onet o = {0};
    int rc = onet_load(dir, &o, &k, err);
    db_job job;
    for (int i = 0; rc == JM_OK && i < o.n; i++) {
        onet_occ *oc = &o.occ[i];
        db_job_init(&job);
        /* the occupation's strings move into the job */
        job.id = oc->code;
        job.title = oc->title;
        job.description = oc->desc;
        job.skills = oc->skills;
        job.nskills = oc->nskills;
        memset(oc, 0, sizeof *oc);
        rc = sink_row(&k, &job, err);
    }
    onet_free(&o);
    return rc;
}

/* ---------- into the database ---------- */

typedef struct imp_batch {
    db *d;
    db_job *jobs; /* IMP_BATCH slots; jobs[0..n) are owned here */
    int n;
    int64_t imported, changed;
} imp_batch;

static void batch_clear(imp_batch *b)
{
    for (int i = 0; i < b->n; i++)
        db_job_clear(&b->jobs[i]);
    b->n = 0;
}

static int batch_flush(imp_batch *b, jm_err *err)
{
    if (b->n == 0)
        return JM_OK;
    int changed = 0;
    int rc = db_upsert_jobs(b->d, b->jobs, b->n, &changed, err);
    if (rc == JM_OK) {
        b->imported += b->n;
        b->changed += changed;
    }
    batch_clear(b);
    return rc;
}

static int batch_row(void *ctx, db_job *job, jm_err *err)
{
    imp_batch *b = ctx;
    b->jobs[b->n++] = *job;
    db_job_init(job);
    return b->n == IMP_BATCH ? batch_flush(b, err) : JM_OK;
}

typedef struct imp_fwd {
    imp_batch b;
    imp_bad_fn bad;
    void *ctx;
} imp_fwd;

static void fwd_bad(void *ctx, int64_t line, const char *reason)
{
    imp_fwd *f = ctx;
    if (f->bad)
        f->bad(f->ctx, line, reason);
}

static int fwd_row(void *ctx, db_job *job, jm_err *err)
{
    return batch_row(&((imp_fwd *)ctx)->b, job, err);
}

/* Shared by imp_file and imp_onet: onet_dir non-NULL reads O*NET. */
static int import_into(db *d, const char *path, const char *onet_dir, int format, imp_bad_fn bad,
                       void *ctx, imp_stats *st, jm_err *err)
{
    imp_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    if (!d)
        return jm_fail(err, JM_EINVAL, "import: no database");
    imp_fwd f = {{d, calloc(IMP_BATCH, sizeof(db_job)), 0, 0, 0}, bad, ctx};
    if (!f.b.jobs)
        return jm_fail(err, JM_ENOMEM, "import: out of memory");
    int rc = onet_dir ? imp_read_onet(onet_dir, fwd_row, fwd_bad, &f, st, err)
                      : imp_read(path, format, fwd_row, fwd_bad, &f, st, err);
    if (rc == JM_OK)
        rc = batch_flush(&f.b, err);
    batch_clear(&f.b);
    free(f.b.jobs);
    st->imported = f.b.imported;
    st->changed = f.b.changed;
    return rc;
}

int imp_file(db *d, const char *path, int format, imp_bad_fn bad, void *ctx, imp_stats *st,
             jm_err *err)
{
    return import_into(d, path, NULL, format, bad, ctx, st, err);
}

int imp_onet(db *d, const char *dir, imp_stats *st, jm_err *err)
{
    int rc = import_into(d, NULL, dir, IMP_AUTO, NULL, NULL, st, err);
    /* The store now holds O*NET data: its licence asks for a credit line,
     * which the web page shows when this is set. */
    if (rc == JM_OK && st->imported > 0)
        rc = db_meta_set(d, "corpus", "onet", err);
    return rc;
}
