/* import.h - turn job files into db_job records and load them (prefix imp_).
 *
 * Formats
 *   CSV (RFC 4180)   A header row is required. Fields may be quoted; inside
 *                    quotes "" is a quote and commas and line breaks are data.
 *                    CRLF or LF line ends; a UTF-8 BOM at the start is skipped;
 *                    blank lines are skipped. CRLF inside a quoted field becomes
 *                    LF, so a file reads the same whichever line ends it has.
 *   JSON Lines       One JSON object per line (.jsonl, .ndjson, .json-lines);
 *                    blank lines are skipped.
 *   IMP_AUTO picks by extension, else by content: the first byte that is not
 *   white space being '{' means JSON Lines, anything else CSV.
 *
 * Columns (CSV header cells, JSONL keys), matched after trimming, ignoring
 * case, and treating ' ' and '-' as '_' (so "Job ID" is job_id); unknown ones
 * are ignored, and when two name the same field the first one is used:
 *   id               also job_id                         required, non-empty
 *   title            also job_title
 *   company          also company_name, employer
 *   location
 *   remote           also is_remote      true/false/yes/no/1/0 (any case) or empty
 *   salary_min       also salary_from, min_salary         a number or empty
 *   salary_max       also salary_to, max_salary           a number or empty
 *   currency         also salary_currency
 *   employment_type  also job_type
 *   seniority        also seniority_level
 *   description      also job_description
 *   skills           a JSON array of strings or {"name", "required"} objects,
 *                    or a comma/semicolon-separated list (db_parse_skills)
 *   posted_at        also date_posted     YYYY-MM-DD or an ISO 8601 date-time
 *
 * Values are trimmed of ASCII white space; an empty value means unknown (NULL
 * text, NAN number, remote -1). Numbers are plain decimals ("1200", "-3.5",
 * "1e5"); "12k", "inf", "0x10" are not numbers. In JSON Lines a number may be a
 * JSON number or a numeric string, remote a bool, 0/1 or one of the strings
 * above, skills an array or a string, id a string or an integer; null means
 * unknown. A CSV row with fewer fields than the header is accepted (the
 * missing ones are unknown).
 *
 * Bad rows are reported and skipped, and parsing goes on with the next record:
 * no or empty id; broken quoting (a quote inside an unquoted field, text after
 * a closing quote, a quoted field still open at end of file); invalid UTF-8 or
 * a NUL byte anywhere in the record; a value that does not parse; more fields
 * than the header; a field over IMP_MAX_FIELD bytes; a record over
 * IMP_MAX_RECORD bytes; a JSONL line that is not a JSON object. Each report
 * carries the 1-based physical line where the record starts (the header is
 * line 1 when it is the first line) and a reason naming the column.
 *
 * When a quoted field is still open at end of file, the file is read again
 * from the line after that record's first line (when it can seek), so one
 * stray quote costs one row, not the rest of the file.
 *
 * Files are streamed through a fixed buffer: memory is bounded by the largest
 * record, never by the file. Numbers are read with strtod: keep the C locale
 * for LC_NUMERIC. */
#ifndef JM_IMPORT_H
#define JM_IMPORT_H

#include <stdint.h>

#include "common.h"
#include "db.h"

enum { IMP_AUTO = 0, IMP_CSV = 1, IMP_JSONL = 2 };

#define IMP_MAX_FIELD (1 << 20)   /* bytes in one field (CSV) or one string value (JSONL) */
#define IMP_MAX_RECORD (16 << 20) /* bytes in one record, line ends included */
#define IMP_BATCH 1000            /* rows per db_upsert_jobs call (one transaction) */

typedef struct imp_stats {
    int64_t read;     /* records seen, good or bad (not the header, not blank lines) */
    int64_t imported; /* good rows: handed to the callback (imp_read*), or
                       * committed to the database (imp_file, imp_onet) */
    int64_t changed;  /* of the committed rows, inserted or modified (imp_file, imp_onet) */
    int64_t failed;   /* bad rows reported */
} imp_stats;

/* Called once per good row, in file order. `job` belongs to the parser, which
 * clears it when the callback returns. To keep the row, move it out:
 *     kept = *job; db_job_init(job);
 * A nonzero return stops the parse and is returned by imp_read as is: use a
 * JM_E* code and fill err. */
typedef int (*imp_row_fn)(void *ctx, db_job *job, jm_err *err);

/* Called once per bad row: `line` as described above, `reason` one line of
 * text (valid only during the call), e.g. "salary_min is not a number: \"abc\"". */
typedef void (*imp_bad_fn)(void *ctx, int64_t line, const char *reason);

/* "csv", "jsonl" (or "ndjson", "json-lines"), "auto" -> IMP_*; -1 otherwise. */
int imp_format_parse(const char *name);

/* IMP_CSV or IMP_JSONL from the extension of path, IMP_AUTO if it says nothing. */
int imp_format_from_path(const char *path);

/* Parse `path` ("-" = standard input) in `format` (IMP_AUTO, IMP_CSV,
 * IMP_JSONL). `row` (NULL: just validate), `bad` and `st` may be NULL; *st is
 * zeroed first, then counts.
 * Returns JM_OK when the file was read to the end, whatever the bad rows
 * (an empty file is zero rows, not an error); JM_ENOTFOUND / JM_EIO when it
 * cannot be read; JM_EFORMAT when a CSV header is unusable (no id column,
 * broken quoting, invalid UTF-8 in it); or the callback's nonzero return. */
int imp_read(const char *path, int format, imp_row_fn row, imp_bad_fn bad, void *ctx,
             imp_stats *st, jm_err *err);

/* One job per O*NET occupation in dir: "Occupation Data.txt" gives id (the
 * O*NET-SOC code, e.g. "15-1252.00"), title and description; "Technology
 * Skills.txt" the skills, in file order, de-duplicated by exact name, with
 * required = Hot Technology or In Demand (Y in either column, on any of the
 * duplicate rows). Company, location, salary and remote stay unknown;
 * occupations without technology skills are jobs without skills. Jobs come in
 * the order of "Occupation Data.txt". A missing file or column is an error
 * naming it; a malformed line is a bad row (its reason names the file).
 * st->read counts the lines of "Occupation Data.txt". Otherwise the same
 * contract as imp_read. */
int imp_read_onet(const char *dir, imp_row_fn row, imp_bad_fn bad, void *ctx, imp_stats *st,
                  jm_err *err);

/* Parse `path` and upsert its good rows into d with db_upsert_jobs, in batches
 * of IMP_BATCH rows (one transaction each), in file order, so of two rows with
 * the same id the later one wins. A database error stops the import and is
 * returned; the batches committed before it stay. *st (optional) is zeroed
 * first; st->imported counts committed rows. */
int imp_file(db *d, const char *path, int format, imp_bad_fn bad, void *ctx, imp_stats *st,
             jm_err *err);

/* imp_read_onet into d, batched like imp_file. Bad rows only count in st->failed. */
int imp_onet(db *d, const char *dir, imp_stats *st, jm_err *err);

#endif
