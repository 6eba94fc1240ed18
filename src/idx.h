/* idx.h - in-memory vector index of the job embeddings (prefix idx_).
 *
 * Holds one vector per slot in compact quantised form and finds the top-k
 * slots by dot product (= cosine, since the model's vectors are L2-normalised)
 * for a query. It knows nothing about databases or job ids: the caller gives
 * each job a dense slot number (uint32) and keeps the id <-> slot map itself.
 *
 * Storage, per slot (dim = 384 for all-MiniLM-L6-v2):
 *   codes   int8[dim], symmetric: x[d] ~ scale * code[d], scale = max|x| / 127,
 *           codes in [-127, 127]; all slots in one array, slot * dim bytes
 *           apart, page-aligned (mmap), grown by doubling with mremap (no copy,
 *           no second array during growth: the peak RSS is the final one)
 *   scale   float
 *   live    1 bit
 *   sign    dim bits (48 bytes at 384): bit d = (x/|x| - mean)[d] > 0, only
 *           while the index holds >= IDX_PREFILTER_MIN (65536) live vectors
 * so 388 bytes per vector, 436 with the sign codes (416 MiB at 1M; 370
 * without). Untouched capacity costs address space, not RSS.
 *
 * Search, for a query q (float[dim], any norm):
 *   1. Above IDX_PREFILTER_MIN allowed live slots: Hamming distance between
 *      the sign codes of q and of every allowed slot (48 bytes read per
 *      vector instead of 384), keeping the nearest `keep` = max(4096, N/256,
 *      8 * wanted) slots.
 *   2. q quantised like the vectors; the exact int32 dot product of the codes
 *      for every slot left (AVX2: |q| . sign(code, q) in vpmaddubsw, which
 *      cannot saturate for codes in [-127, 127], widened by vpmaddwd), scaled
 *      to a float score; a bounded min-heap keeps the best (no sort of N).
 *   3. idx_search_exact re-scores the best `candidates` (default 100) with
 *      the exact float32 vectors, which the caller fetches (from the database).
 *
 * Measured on one core of an AMD EPYC (Zen 3, KVM, AVX2, no AVX-512; one core
 * reads DRAM at 16-18 GB/s), dim 384, bench/bench_idx on clustered data
 * shaped like MiniLM job embeddings (mean norm 0.5, near-tied neighbours),
 * 1000 queries, top-10 compared with an exact float32 brute force (quietest
 * of three runs on a shared 2-core VM; with other jobs running, p50/p99 rose
 * to 1.0/1.4 ms at 100k and 4.2/10 ms at 1M):
 *                         idx_search_exact p50 / p99   top-10 exact   index RSS
 *   100k, sign + int8         0.8 /  1.2 ms               100%         42 MiB
 *   100k, int8 scan only      2.2 /  2.9 ms               100%         37 MiB
 *   1M,   sign + int8         3.7 /  5.9 ms               100%        416 MiB
 *   1M,   int8 scan only     29   / 37   ms               100%        370 MiB
 * Building: 2.5-4 us per idx_set (1M in ~4 s, sign-code rebuilds included).
 * (int8 scores alone, idx_search, give the exact top 10 in the exact order
 * on only 20-40% of these queries: neighbours are ~0.003 apart, the int8
 * error ~0.001; the exact re-scoring is what makes it 100%). The int8 scan
 * runs at ~13 GB/s, i.e. at memory speed: 384 MB per query at 1M cannot meet
 * a 5 ms budget, hence the first stage; the Hamming scan is ~3.5 of the 3.8
 * ms at 1M, again at memory speed.
 * Why these sign codes: on 33k real all-MiniLM-L6-v2 embeddings of O*NET
 * texts, the Hamming rank that covers a query's whole exact top 10 was at
 * most 163 (p99) / 253 (max) of 32k with dim bits of x/|x| - mean for both
 * sides; 205/859 with the query's bits uncentred, 235/743 with neither
 * centred; 714/2233 with 256 random-hyperplane bits, 1842/9722 with 128
 * bits (sums of 3 components): fewer bits cost far more candidates than
 * they save in reading. On the synthetic data the p99 rank grows from 130
 * at 33k to 1569 at 1M (max 2686), under the 4096 kept. The centre is the
 * mean of the live unit vectors, recomputed (with all codes, O(N * dim))
 * each time the live count doubles.
 *
 * Thread-safety: the search functions only read the index and may run
 * concurrently from any number of threads. idx_set, idx_remove, idx_reserve,
 * idx_set_prefilter and idx_free modify it: the caller holds a write lock
 * (no search may run at the same time). Nothing here locks.
 *
 * Errors follow common.h: JM_OK or a negative JM_E* code, text in *err (err
 * may be NULL). A search allocates one scratch block per call (O(dim +
 * keep + candidates) bytes, plus candidates * dim floats for the fetch),
 * never O(N). */
#ifndef JM_IDX_H
#define JM_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef struct idx idx;

/* One search result: the slot and its score (a dot product). */
typedef struct idx_hit {
    uint32_t slot;
    float score;
} idx_hit;

/* Largest slot number accepted (so that slot * dim never overflows and the
 * bitmaps stay whole words). */
#define IDX_MAX_SLOT 0x7fffffc0u

/* Default for the prefilter threshold: the sign-code stage runs only when a
 * search covers more allowed live slots than this, and the sign codes exist
 * only while the index has had at least this many live vectors. */
#define IDX_PREFILTER_MIN 65536
/* Default number of slots the sign-code stage passes to the int8 stage;
 * more when N / 256 or 8 * the hits wanted is larger. */
#define IDX_PREFILTER_KEEP 4096

/* Largest dimension (Hamming distances are kept in 16 bits). */
#define IDX_MAX_DIM 16384

/* New empty index for vectors of `dim` floats (1 <= dim <= IDX_MAX_DIM). *out is
 * owned by the caller (idx_free). */
int idx_new(int dim, idx **out, jm_err *err);
void idx_free(idx *x); /* accepts NULL */

/* Make room for slots [0, nslots) now (a bulk load then never grows the
 * arrays). Costs address space only until the slots are written. */
int idx_reserve(idx *x, uint32_t nslots, jm_err *err);

/* Insert or replace the vector of `slot` (vec: float[dim], copied; should be
 * L2-normalised for the scores to be cosines). Grows the arrays as needed
 * (capacity doubles). JM_EINVAL for a non-finite component or slot >
 * IDX_MAX_SLOT, JM_ENOMEM if growing fails (the index is then unchanged).
 * O(dim), except the calls where the live count reaches the prefilter
 * threshold and each doubling after it, which recompute every sign code:
 * O(N * dim), ~0.5 s per million vectors. */
int idx_set(idx *x, uint32_t slot, const float *vec, jm_err *err);

/* The slot becomes dead: no search returns it until it is set again. Slots
 * never set are ignored. Memory is not returned. */
void idx_remove(idx *x, uint32_t slot);

size_t idx_count(const idx *x);  /* live vectors */
size_t idx_bytes(const idx *x);  /* bytes the index has mapped (an upper bound of its RSS) */
uint32_t idx_slots(const idx *x); /* 1 + the highest slot ever set (0 when empty) */
int idx_dim(const idx *x);
int idx_is_live(const idx *x, uint32_t slot);

/* Prefilter policy (defaults IDX_PREFILTER_MIN, IDX_PREFILTER_KEEP): the
 * sign-code stage runs when a search covers more than `min_n` allowed live
 * slots, keeping max(keep, N / 256, 8 * wanted) slots for the int8 stage.
 * min_n = SIZE_MAX switches it off and frees the sign codes (dim / 8 bytes
 * per vector: 46 MiB at 1M, for ~8x slower searches there). The codes are
 * computed when the live count reaches min_n, in that idx_set call (or in
 * this one): O(N * dim). JM_EINVAL for keep < 1. */
int idx_set_prefilter(idx *x, size_t min_n, int keep, jm_err *err);

/* The top k live slots by approximate score (dequantised int8 dot product),
 * sorted by score descending, then slot ascending. allow: NULL for all live
 * slots, or a bitmap (bit s of allow[s / 64] set = slot s may be returned)
 * of at least (idx_slots(x) + 63) / 64 words. out: room for k hits; *nout
 * gets how many were found (< k when fewer slots qualify; 0 is not an
 * error). JM_EINVAL for k < 0 or a non-finite query. */
int idx_search(const idx *x, const float *query, int k, const uint64_t *allow, idx_hit *out,
               int *nout, jm_err *err);

/* query . (the stored, dequantised vector of slot), the query in float32:
 * the approximate score of one slot, e.g. for a candidate found elsewhere.
 * NaN if the slot is not live. O(dim). */
float idx_score(const idx *x, const float *query, uint32_t slot);
/* out[i] = idx_score(x, query, slots[i]) for i < n, the same bits, several
 * slots at a time. */
void idx_score_many(const idx *x, const float *query, const uint32_t *slots, int n, float *out);

/* Fetches the exact float32 vectors of n slots (ascending) into vecs[n][dim].
 * Returns JM_OK or a JM_E* code with *err filled. A vector that no longer
 * exists can be reported by setting its first component to NaN: that slot is
 * skipped. */
typedef int (*idx_fetch_fn)(void *ctx, const uint32_t *slots, int n, float *vecs, jm_err *err);

/* idx_search for `candidates` hits (at least k; 0 = the default max(100,
 * 10 * k)), then the candidates' exact vectors from fetch (one call) are
 * scored with the float32 dot product and the best k returned, sorted as in
 * idx_search, with exact scores. Errors from fetch are passed on. */
int idx_search_exact(const idx *x, const float *query, int k, int candidates,
                     const uint64_t *allow, idx_fetch_fn fetch, void *ctx, idx_hit *out,
                     int *nout, jm_err *err);

/* ---- Streaming top-k, for a caller that keeps no vectors in memory ----
 * Feed chunks of float32 vectors (from the database) with their slot numbers;
 * the accumulator keeps the k best by exact dot product (same order as
 * idx_search). One accumulator per thread: it is not synchronised. */
typedef struct idx_topk idx_topk;

/* NULL if k < 0 or out of memory. Owned by the caller (idx_topk_free). */
idx_topk *idx_topk_new(int k);
/* Scores vecs[n][dim] (row-major) against query[dim] and keeps the best.
 * Vectors whose score is NaN are skipped. */
void idx_topk_add_f32(idx_topk *t, const float *query, const float *vecs, const uint32_t *slots,
                      int n, int dim);
/* Writes the hits so far to out (room for k), best first; returns how many.
 * The accumulator is unchanged and can take more vectors. */
int idx_topk_result(idx_topk *t, idx_hit *out);
/* Forgets all hits (to reuse the accumulator for another query). */
void idx_topk_reset(idx_topk *t);
void idx_topk_free(idx_topk *t); /* accepts NULL */

/* ---- Kernels, exposed for tests and benchmarks ----
 * Each instruction-set variant of the scan kernels; the scalar reference is
 * first. The int8 and Hamming results of every variant equal the reference
 * exactly; the float32 dot products within rounding (1e-6 for unit vectors). */
typedef struct idx_kernel {
    const char *name;
    /* out[i] = sum_d q[d] * codes[slots[i] * dim + d] (exact int32). q has
     * room for dim rounded up to 32, zero beyond dim; codes in [-127, 127];
     * the codes array may be read up to 32 bytes past the last row. */
    void (*dot_i8)(const int8_t *q, const int8_t *codes, size_t dim, const uint32_t *slots,
                   int n, int32_t *out);
    /* out[i] = popcount(q ^ bits[(first + i) * words ...]) over `words` words,
     * for i < n <= 64; returns the mask of the i with out[i] <= bound. */
    uint64_t (*hamming)(const uint64_t *q, const uint64_t *bits, int words, uint32_t first, int n,
                        int bound, uint16_t *out);
    /* out[i] = q . vecs[i * dim ...] in float32. */
    void (*dot_f32)(const float *q, const float *vecs, int dim, int n, float *out);
} idx_kernel;

/* Fills out[] with up to `cap` variants this CPU can run; returns how many. */
int idx_kernel_variants(idx_kernel *out, int cap);
/* Name of the variant the searches use: "avx2" or "scalar" (JOBMATCH_ISA=scalar
 * or a CPU without AVX2 forces the scalar reference). */
const char *idx_isa(void);

#endif
