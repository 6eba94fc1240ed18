/* bert.h - BERT-family sentence-transformers encoder (prefix bert_).
 *
 * bert_load reads a sentence-transformers model directory: config.json (the
 * BERT shape), model.safetensors (weights, mmapped and validated),
 * sentence_bert_config.json (max_seq_length), modules.json and the Pooling
 * module's config.json (CLS / mean / max / mean-sqrt-len pooling, and whether a
 * Normalize module follows), and the tokenizer files. Dtypes and shapes of every
 * weight are checked against config.json before use.
 *
 * A bert_model is immutable after loading and shared by any number of threads.
 * The work happens in a bert_pool, which owns one activation workspace per
 * thread, allocated once and reused: a pool is used by one caller at a time. */
#ifndef JM_BERT_H
#define JM_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "tokenizer.h"

typedef struct bert_model bert_model;
typedef struct bert_pool bert_pool;

/* Load the model in `dir`. On success *out is owned by the caller (bert_free). */
int bert_load(const char *dir, bert_model **out, jm_err *err);
void bert_free(bert_model *m); /* accepts NULL; free pools first */

int bert_dim(const bert_model *m);          /* output embedding size, e.g. 384 */
int bert_max_seq(const bert_model *m);      /* ids per text incl. [CLS]/[SEP], e.g. 256 */
int bert_normalizes(const bert_model *m);   /* 1 if outputs are L2-normalised */
const char *bert_model_id(const bert_model *m); /* directory name, e.g. "all-MiniLM-L6-v2" */
const tok_tokenizer *bert_tokenizer(const bert_model *m);
/* Multiply-adds x2 of one forward pass over a text of n ids (for reports). */
double bert_flops(const bert_model *m, int n);

/* A pool of `threads` workers (0 = all cores). threads == 1 runs everything on
 * the calling thread. On success *out is owned by the caller (bert_pool_free). */
int bert_pool_new(const bert_model *m, int threads, bert_pool **out, jm_err *err);
void bert_pool_free(bert_pool *p); /* accepts NULL */
int bert_pool_threads(const bert_pool *p);

/* Embed n texts (texts[i] has lens[i] bytes, any bytes; lens may be NULL for
 * NUL-terminated texts) into out[n * bert_dim]. Texts of any lengths are packed
 * without padding; each result equals the text embedded alone (to ~1e-7).
 * If ntokens is non-NULL it receives the number of ids processed. */
int bert_embed(bert_pool *p, int n, const char *const *texts, const size_t *lens,
               float *out, int64_t *ntokens, jm_err *err);

/* Embed already tokenized texts: ids[i] has lens[i] ids (each <= max_seq,
 * starting with [CLS] and ending with [SEP]). */
int bert_embed_ids(bert_pool *p, int n, const int32_t *const *ids, const int *lens,
                   float *out, jm_err *err);

#endif
