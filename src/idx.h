/* idx.h - in-memory vector index of the job embeddings (prefix idx_).
 *
 * Holds one vector per slot in compact quantised form and finds the top-k
 * slots by dot product (= cosine, since the model's vectors are L2-normalised)
 * for a query. It knows nothing about databases or job ids: the caller gives
 * each job a dense slot number (uint32) and keeps the id <-> slot map itself.
 *
 * Storage, per slot (dim = 384 for all-MiniLM-L6-v2):
 *   codes   4 bits a component, 32 * ceil(dim / 64) bytes (192 at 384):
 *           x[d] ~ centre[d] + scale * LUT[code[d]], LUT the 16 levels of
 *           the Lloyd-Max quantiser of a normal distribution (+-0.128 ...
 *           +-2.733 sigma, as int8 +-6 ... +-127), the levels spaced to
 *           the residual's rms; all slots in one array, page-aligned (mmap),
 *           grown by doubling with mremap (no copy, no second array during
 *           growth: the peak RSS is the final one)
 *   scale   float
 *   gen     1 byte: which centre the code was taken around (see below)
 *   live    1 bit
 *   sign    dim bits (48 bytes at 384): bit d = (x/|x| - centre)[d] > 0, only
 *           while the index holds >= IDX_PREFILTER_MIN (65536) live vectors
 * so 197 bytes per vector, 245 with the sign codes (234 MiB at 1M, was 436
 * MiB with int8 codes; 188 without). Untouched capacity costs address
 * space, not RSS.
 *
 * Centres: a code is taken of x - centre, the mean of the live unit
 * vectors, which removes the direction all job texts share (its norm is
 * ~0.37 on real MiniLM embeddings, ~0.5 on the benchmark's) from what the
 * 16 levels must span. The stored codes cannot be re-encoded around a new
 * centre without the float vectors (re-quantising the codes would add a
 * second error), so each keeps the centre it was taken around: centres are
 * computed when the live count reaches 1024 and each time it doubles (the
 * mean of at most 16384 live vectors, as stored: ~0.0004 per component from
 * the true mean), new codes use the newest (the first 1023 vectors have
 * uncentred codes),
 * and a search computes q . centre once per centre (at most 32). The sign
 * codes use the newest centre and are all recomputed (from the stored codes)
 * when it changes, as they were before. The scale is |r|^2 / (r . LUT[code])
 * for r = x - centre, not the least-squares one, so that r . rhat = |r|^2:
 * the Lloyd-Max reconstruction is ~1% shorter than the vector, which would
 * bias every near-neighbour score low by ~0.01.
 * Why these codes: the rms error of the approximate dot product, on 9,761
 * real all-MiniLM-L6-v2 embeddings (O*NET jobs and skills) / on the
 * benchmark's synthetic data: 16 uniform levels over max|x| 0.0061 / 0.0059,
 * the same centred 0.0054 / 0.0052, Lloyd-Max levels 0.0050 / 0.0047,
 * Lloyd-Max centred (this) 0.0047 / 0.0042 (int8 codes: 0.0004); the
 * least-squares scale instead of this one: the same rms, but self scores
 * 0.991 instead of 1.000. At 1M on bench_idx the exact top 10 lay within
 * the first 42 of the approximate list for every query with these codes
 * (p99 33; 25 / 21 at 100k); with uniform uncentred ones p99 50, and one
 * query in 1000 lost a neighbour altogether.
 *
 * Search, for a query q (float[dim], any norm):
 *   1. Above IDX_PREFILTER_MIN allowed live slots: Hamming distance between
 *      the sign codes of q and of every allowed slot (48 bytes read per
 *      vector instead of 192), keeping the nearest `keep` = max(4096, N/256,
 *      8 * wanted) slots.
 *   2. q quantised to int8 (max|q| / 127); the exact int32 dot product with
 *      the 4-bit codes of every slot left (AVX2: the nibbles become int8
 *      levels by vpshufb, then |q| . sign(level, q) in vpmaddubsw, which
 *      cannot saturate for levels in [-127, 127], widened by vpmaddwd),
 *      scaled, plus q . centre: a float score; a bounded min-heap keeps the
 *      best (no sort of N).
 *   3. idx_search_exact re-scores the best `candidates` (default 100) with
 *      the exact float32 vectors, which the caller fetches (from the database).
 *
 * Measured on one core of an AMD EPYC (Zen 3, KVM, AVX2, no AVX-512; one core
 * reads DRAM at 16-18 GB/s), dim 384, bench/bench_idx on clustered data
 * shaped like MiniLM job embeddings (mean norm 0.5, near-tied neighbours),
 * 1000 queries, top-10 compared with an exact float32 brute force; a shared
 * 2-core VM with another benchmark busy on the other core all along, so the
 * p99s are noisy (they moved by 1-2 ms between runs). The int8 rows are the
 * previous index (int8 codes, 384 bytes), run right after this one:
 *                         idx_search_exact p50 / p99   top-10 exact   index RSS
 *   100k, sign + 4-bit        0.70 / 0.83 ms              100%         23 MiB
 *   100k, 4-bit scan only     1.33 / 1.64 ms              100%         19 MiB
 *   1M,   sign + 4-bit        3.6  / 5.9  ms              100%        234 MiB
 *   1M,   4-bit scan only    14.2  / 21.6 ms              100%        188 MiB
 *   100k, sign + int8         0.78 / 1.12 ms              100%         42 MiB
 *   100k, int8 scan only      2.0  / 2.6  ms              100%         37 MiB
 *   1M,   sign + int8         3.9  / 5.6  ms              100%        416 MiB
 *   1M,   int8 scan only     27.1  / 36.0 ms              100%        370 MiB
 * (index RSS: the growth of the process's RSS; 245 bytes per vector with
 * the sign codes, 436 before. bench/bench_rank at 1M jobs: RSS with the
 * model and the index loaded 537 MB, was 720, before the engine's own
 * records were shrunk too; its latency and bench/quality's figures
 * unchanged.) Across four runs each at 1M the p50 of
 * idx_search_exact was 3.49-3.63 ms (int8: 3.53-3.88 ms; at 100k 0.66-1.0
 * ms, int8 0.75-0.78): the Hamming scan is ~3.3 ms of it, at memory speed,
 * and the 4-bit stage over the 4096 slots kept ~0.3 ms. The 4-bit scan
 * without the prefilter runs at ~13.5 GB/s (192 MB at 1M in 14 ms), memory
 * speed again. Building: 2.6-2.8 us per idx_set at 100k, 3.4-3.5 us at 1M
 * (int8: 2.0-2.2 / 4.2-4.5), centre and sign-code rebuilds included. The
 * 4-bit scores alone, idx_search, give the exact top 10 in the exact order
 * on ~0-2% of these queries (int8: 19-36%): neighbours are ~0.003 apart,
 * the 4-bit error ~0.004 rms; the exact re-scoring of 100 candidates, over
 * twice the 42 needed, is what makes it 100%.
 * Why the sign codes: on 33k real all-MiniLM-L6-v2 embeddings of O*NET
 * texts, the Hamming rank that covers a query's whole exact top 10 was at
 * most 163 (p99) / 253 (max) of 32k with dim bits of x/|x| - mean for both
 * sides; 205/859 with the query's bits uncentred, 235/743 with neither
 * centred; 714/2233 with 256 random-hyperplane bits, 1842/9722 with 128
 * bits (sums of 3 components): fewer bits cost far more candidates than
 * they save in reading. On the synthetic data the p99 rank grows from 130
 * at 33k to 1569 at 1M (max 2686), under the 4096 kept. Reading the sign
 * bits of the 4-bit codes instead would read 192 bytes a vector, not 48.
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

/* Default live count at which the inverted lists are first trained (below
 * it, and with idx_set_ivf(x, SIZE_MAX), a search scans every vector). */
#define IDX_IVF_MIN 32768
/* Default number of lists a search probes (idx_set_probe). */
#define IDX_NPROBE 16
/* Default filter exponent (idx_set_probe). */
#define IDX_FILTER_EXP 0.5f
/* Most lists an index trains (sqrt of the live count, capped) or loads. */
#define IDX_MAX_LISTS 65536

/* Largest dimension. */
#define IDX_MAX_DIM 16384

/* New empty index for vectors of `dim` floats (1 <= dim <= IDX_MAX_DIM). *out is
 * owned by the caller (idx_free). */
int idx_new(int dim, idx **out, jm_err *err);
void idx_free(idx *x); /* accepts NULL */

/* Make room for slots [0, nslots) now (a bulk load then never grows the
 * arrays). Costs address space only until the slots are written. */
int idx_reserve(idx *x, uint32_t nslots, jm_err *err);

/* Insert or replace the vector of `slot` (vec: float[dim], copied; should be
 * L2-normalised for the scores to be cosines). Grows the arrays as needed.
 * JM_EINVAL for a non-finite component or slot > IDX_MAX_SLOT, JM_ENOMEM if
 * growing fails (the index is then unchanged). O(dim) plus the assignment to
 * a list (~0.2 us), except the calls where the live count reaches 1024 and
 * each doubling after (a new centre, from at most 16384 vectors), and those
 * where it reaches the IVF threshold and each doubling after, which train
 * the lists again and move every vector into its new list: O(N), ~0.4 s at
 * 500k vectors. */
int idx_set(idx *x, uint32_t slot, const float *vec, jm_err *err);

/* The slot becomes dead: no search returns it until it is set again. Slots
 * never set are ignored. Memory is not returned. */
void idx_remove(idx *x, uint32_t slot);

size_t idx_count(const idx *x);  /* live vectors */
size_t idx_bytes(const idx *x);  /* bytes of the index's arrays in use (~ its RSS) */
uint32_t idx_slots(const idx *x); /* 1 + the highest slot ever set (0 when empty) */
int idx_dim(const idx *x);
int idx_is_live(const idx *x, uint32_t slot);

/* The inverted lists are trained when the live count reaches min_n
 * (default IDX_IVF_MIN; at once, in this call, if it already has) and again
 * each time it has doubled since. min_n = SIZE_MAX: no (re)training, and
 * searches scan every vector (exact 4-bit scores of all; lists already
 * trained are kept and still filled). JM_EINVAL for min_n = 0, JM_ENOMEM if
 * the training cannot allocate (nothing changes then). */
int idx_set_ivf(idx *x, size_t min_n, jm_err *err);

/* Search breadth: a search scores the vectors of the nprobe lists whose
 * centroids are nearest the query (default IDX_NPROBE; nprobe >= the list
 * count scans everything). With an `allow` filter passing a fraction f of
 * the live vectors it goes on probing until the lists scanned held nprobe *
 * (allowed vectors per list) * f^-filter_exp allowed vectors (filter_exp in
 * [0, 1], default IDX_FILTER_EXP: 0 = as many as the nprobe nearest lists
 * hold on average, 1 = as many as an unfiltered search scores), or scores
 * the allowed vectors directly when that reads less. JM_EINVAL for nprobe <
 * 1 or filter_exp outside [0, 1]. */
int idx_set_probe(idx *x, int nprobe, float filter_exp, jm_err *err);

/* Number of inverted lists (0 before the first training). */
int idx_nlist(const idx *x);

/* Writes the whole index (everything a search and later idx_set calls need)
 * to b: the settings, centres and centroids, and every list's rows. */
int idx_save(const idx *x, jm_bin *b, jm_err *err);
/* Reads an index written by idx_save into a new index (*out, owned by the
 * caller). Validates every count, size and value it reads (a corrupt or
 * truncated file gives JM_EFORMAT or JM_EIO with a clear message and no
 * leak); the caller checks the checksum afterwards. The loaded index gives
 * the same results as the saved one, before and after further updates. */
int idx_load(jm_bin *b, idx **out, jm_err *err);

/* The top k live slots by approximate score (dot product with the stored
 * 4-bit vector: ~0.004 rms from the exact one, a few hundredths at most),
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
 * Each instruction-set variant of the kernels; the scalar reference is
 * first. The 4-bit and centroid results of every variant equal the
 * reference exactly; the float32 dot products within rounding (1e-6 for
 * unit vectors). */
typedef struct idx_kernel {
    const char *name;
    /* out[i] = sum_d q[d] * lut[nibble d of row rows[i]] (exact int32) over
     * d < 2 * row, rows `row` bytes apart (a multiple of 32; nibble d is the
     * low half of byte (d / 64) * 32 + d % 32 when d % 64 < 32, else the high
     * half). q[2 * row] (zero beyond dim) and lut[16] in [-127, 127]. */
    void (*dot_u4)(const int8_t *q, const int8_t *lut, const uint8_t *codes, size_t row,
                   const uint32_t *rows, int n, int32_t *out);
    /* out[j] = sum_d lut[nibble d of code] * (cent[j * 2 * row + d] - 64)
     * (exact int32) over d < 2 * row, for j < m: one 4-bit row (layout as
     * above) against m int8 centroids stored + 64, components in [1, 127]
     * (64 past dim); lut[16] in [-64, 64]. */
    void (*dot_c8)(const int8_t *lut, const uint8_t *code, size_t row, const uint8_t *cent, int m,
                   int32_t *out);
    /* sum[d] += (float)lut[nibble d of code] * scale for d < 2 * row (the
     * k-means update; a product and a sum, no fused multiply-add, so every
     * variant gives the same bits). */
    void (*acc_u4)(const int8_t *lut, const uint8_t *code, size_t row, float scale, float *sum);
    /* out[i] = q . vecs[i * dim ...] in float32. */
    void (*dot_f32)(const float *q, const float *vecs, int dim, int n, float *out);
} idx_kernel;

/* Fills out[] with up to `cap` variants this CPU can run; returns how many. */
int idx_kernel_variants(idx_kernel *out, int cap);
/* Name of the variant the searches use: "avx2" or "scalar" (JOBMATCH_ISA=scalar
 * or a CPU without AVX2 forces the scalar reference). */
const char *idx_isa(void);

#endif
