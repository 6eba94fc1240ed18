/* report.h - the JSON form of recommendations, gap reports and jobs (prefix
 * rep_), shared by the CLI's --json output and the HTTP API, so both give the
 * same documented shapes (docs/ranking.md, docs/api.md). Numbers are rounded
 * to 4 decimals. Each returns a new cJSON tree (cJSON_Delete it), or NULL when
 * out of memory. */
#ifndef JM_REPORT_H
#define JM_REPORT_H

#include <cjson/cJSON.h>

#include "db.h"
#include "gap.h"
#include "rank.h"

/* {"skills", "considered", "took_ms", "results": [{id, title, company,
 * location, score, parts, matched, missing[, alignment]}]}; the per-skill
 * alignment only when explain is set. */
cJSON *rep_recommend(const rank_response *r, int explain);

/* {"mode": "job", "job", "skills", "readiness", "have", "partial",
 * "missing_count", "items", "missing", "took_ms"} */
cJSON *rep_gap_job(const gap_report *g);

/* {"mode": "career", "skills", "top_n", "target", "ready_now", "learn_next"
 * (at most 50), "jobs", "took_ms"} */
cJSON *rep_career(const gap_career *c);

/* A stored job: {"id", "title", "company", "location", "remote",
 * "salary_min", "salary_max", "currency", "employment_type", "seniority",
 * "posted_at", "description", "skills": [{"name", "required"}], "embedded"} */
cJSON *rep_job(const db_job *j, int embedded);

double rep_round(double x); /* to 4 decimals */

#endif
