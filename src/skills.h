/* skills.h - the skill vocabulary and skill-to-skill matching (prefix sk_).
 *
 * The vocabulary holds every distinct skill the jobs name (normalised with
 * db_skill_norm), with its embedding (from the skills table), its document
 * frequency over the jobs and its IDF. Matching a user's skill to a job's
 * skill is, in order:
 *   exact     the same normalised name ("PostgreSQL" / "postgresql");
 *   alias     the same loose key: case-folded letters and digits with '+' and
 *             '#' kept ("Node.js" / "nodejs", "C++" is not "C"), the name
 *             without a vendor prefix or a trailing "software" ("Microsoft
 *             Excel" / "Excel", "ESRI ArcGIS software" / "ArcGIS"), the
 *             acronym a name spells out ("Structured query language SQL" /
 *             "SQL", "Amazon Web Services AWS software" / "AWS"), or a small
 *             table of common abbreviations ("JS" / "JavaScript", "k8s" /
 *             "Kubernetes", "Postgres" / "PostgreSQL");
 *   semantic  the cosine of the two skills' embeddings.
 * Exact and alias matches have similarity 1. */
#ifndef JM_SKILLS_H
#define JM_SKILLS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum { SK_NONE = 0, SK_EXACT, SK_ALIAS, SK_SEMANTIC } sk_kind;

const char *sk_kind_name(sk_kind k); /* "exact", "alias", "semantic", "none" */

typedef struct sk_vocab sk_vocab;

int sk_vocab_new(int dim, sk_vocab **out, jm_err *err);
void sk_vocab_free(sk_vocab *v); /* accepts NULL */

/* Add a skill (norm must be db_skill_norm's form; display as first seen) and
 * return its index, or the existing index when norm is known. emb may be NULL
 * (set later with sk_set_embedding). Returns -1 when out of memory. */
int sk_add(sk_vocab *v, const char *norm, const char *display);
int sk_set_embedding(sk_vocab *v, int i, const float *emb);
int sk_count(const sk_vocab *v);
int sk_find(const sk_vocab *v, const char *norm); /* index or -1 */
const char *sk_display(const sk_vocab *v, int i);
const char *sk_norm(const sk_vocab *v, int i);
const float *sk_embedding(const sk_vocab *v, int i); /* NULL if none */
int sk_dim(const sk_vocab *v);

/* Document frequencies: call sk_df_add once per (job, skill) pair, then
 * sk_finish(v, njobs) computes IDF = ln(1 + (N - df + 0.5) / (df + 0.5)) and
 * builds the alias keys. Until sk_finish, aliases and IDFs are not ready. */
void sk_df_add(sk_vocab *v, int i, int delta);
int sk_finish(sk_vocab *v, int64_t njobs, jm_err *err);
float sk_idf(const sk_vocab *v, int i);
int sk_df(const sk_vocab *v, int i);

/* Vocabulary skills sharing a loose/alias key with `text` (any form the user
 * typed): fills out[] with up to cap indices, returns how many. */
int sk_alias_matches(const sk_vocab *v, const char *text, int *out, int cap);

/* Loose key of a name into buf (see above); returns its length. */
size_t sk_loose_key(const char *name, char *buf, size_t cap);

/* For one query: the similarity of every vocabulary skill to the best of the
 * user's skills, with which one and how. user_emb[u * dim] are the user skills'
 * embeddings, user_norm their normalised names. Fills best_sim[V], best_user[V]
 * (-1 if none), kind[V]. One matrix product, O(V * nuser * dim). */
int sk_match_all(const sk_vocab *v, const char *const *user_norm, const float *user_emb, int nuser,
                 float *best_sim, int *best_user, unsigned char *kind, jm_err *err);

#endif
