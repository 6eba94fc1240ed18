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
 * (-1 if none), kind[V]. One pass of sk_dots over the vocabulary, O(V * nuser *
 * dim), reading each skill's embedding once. */
int sk_match_all(const sk_vocab *v, const char *const *user_norm, const float *user_emb, int nuser,
                 float *best_sim, int *best_user, unsigned char *kind, jm_err *err);

/* sk_match_all for a caller that needs exact similarities only where they
 * reach `floor` (the partial threshold): an int8 copy of the embeddings
 * bounds every similarity first (a proven bound, see skills.c), and only
 * skills some user skill may reach `floor` with are computed exactly. The
 * others get best_sim = SK_SIM_UNRESOLVED (below any threshold),
 * best_user = -1 and kind SK_NONE; sk_similarity gives their exact value.
 * Exact and alias matches are as in sk_match_all, and every resolved value
 * is the one sk_match_all gives. floor <= -0.5 computes everything. */
#define SK_SIM_UNRESOLVED (-3.0f)
int sk_match_floor(const sk_vocab *v, const char *const *user_norm, const float *user_emb, int nuser, float floor,
                   float *best_sim, int *best_user, unsigned char *kind, jm_err *err);
/* The similarity of skill s to the best of the user skills, as sk_match_all
 * computes it before exact and alias matches (-1 without an embedding). */
float sk_similarity(const sk_vocab *v, const float *user_emb, int nuser, int s);

/* The similarity kernel sk_match_all uses: out[u * ldo + s] = U[u] . S[s] for
 * u < nu, s < ns (vectors of D floats, row-major). Each pair is summed in one
 * fixed order (8 lanes, then a fixed tree, see skills_avx2.c), so a value
 * does not depend on nu, ns or the blocking, and the AVX2 and scalar variants
 * give the same bits. JOBMATCH_ISA=scalar forces the scalar one. */
void sk_dots(const float *U, int nu, const float *S, int ns, int D, float *out, size_t ldo);
/* One variant explicitly (tests): avx2 = 1 only on a CPU with AVX2 and FMA. */
void sk_dots_variant(int avx2, const float *U, int nu, const float *S, int ns, int D, float *out, size_t ldo);
/* The prefilter's kernel: out[u * ldo + s] = U[u] . S[s] over int8 codes in
 * [-127, 127], exact in int32; avx2 as above. */
void sk_dots_i8_variant(int avx2, const int8_t *U, int nu, const int8_t *S, int ns, int D, int32_t *out, size_t ldo);

#endif
