/* idx.h - in-memory vector index of the job embeddings (prefix idx_).
 *
 * Holds one vector per slot in compact quantised form and finds the top-k
 * slots by dot product (= cosine, since the model's vectors are L2-normalised)
 * for a query. It knows nothing about databases or job ids: the caller gives
 * each job a dense slot number (uint32) and keeps the id <-> slot map itself.
 *
 * Storage, per vector (dim = 384 for all-MiniLM-L6-v2), a "row":
 *   codes   4 bits a component, 32 * ceil(dim / 64) bytes (192 at 384):
 *           x[d] ~ centre[d] + scale * LUT[code[d]], LUT the 16 levels of
 *           the Lloyd-Max quantiser of a normal distribution (+-0.128 ...
 *           +-2.733 sigma, as int8 +-6 ... +-127), the levels spaced to
 *           the residual's rms
 *   scale   float
 *   gen     1 byte: which centre the code was taken around (see below)
 *   slot    uint32: whose row it is
 * and per slot the row's position (uint32) and a live bit: 201 bytes a
 * vector and 4 a slot. Rows sit in inverted lists (below), each a chain of
 * chunks of 256 rows; the arrays are page-aligned (mmap), grown by doubling
 * with mremap (no copy, no second array during growth), and every training
 * renumbers the chunks so that each list is one run of memory (chunks
 * added later interleave, 48 KB of codes at a time). Removing a row moves
 * its list's last row into the hole; an emptied chunk is reused, and those
 * left free after a training are given back (madvise). Untouched capacity
 * costs address space, not RSS. At 1M vectors the index's RSS is 207 MiB
 * (it was 234 with the previous design's 48-byte sign codes, gone now).
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
 * uncentred codes), and a search computes q . centre once per centre (at
 * most 32). The scale is |r|^2 / (r . LUT[code]) for r = x - centre, not
 * the least-squares one, so that r . rhat = |r|^2: the Lloyd-Max
 * reconstruction is ~1% shorter than the vector, which would bias every
 * near-neighbour score low by ~0.01. Why these codes: the rms error of the
 * approximate dot product, on 9,761 real all-MiniLM-L6-v2 embeddings (O*NET
 * jobs and skills) / on the benchmark's synthetic data: 16 uniform levels
 * over max|x| 0.0061 / 0.0059, the same centred 0.0054 / 0.0052, Lloyd-Max
 * levels 0.0050 / 0.0047, Lloyd-Max centred (this) 0.0047 / 0.0042 (int8
 * codes: 0.0004). On bench_idx at 1M the exact top 10 lie within the first
 * 54 of the approximate list for every query (p99 35); the exact re-scoring
 * of 100 candidates is what makes the top 10 exact.
 *
 * Inverted lists (IVF): when the live count reaches IDX_IVF_MIN (32768;
 * idx_set_ivf) and each time it has doubled since, L = sqrt(N) lists are
 * trained (~725 when trained at 524k, so at 1M): spherical k-means (at most
 * 8 rounds) on a sample of 64 L stored vectors, in two levels: sqrt(L)
 * coarse cells, then each cell's share of the sample split into leaves in
 * proportion to its size; the leaves are the lists. All of it works on the
 * 4-bit codes: centroids are also kept in int8, and a code's dot product
 * with one is a vpmaddubsw pass (the levels halved, so that two products
 * add in int16), ~5 ns a pair. Each vector goes to the best leaf of its two
 * best cells (~80 centroids at 1M instead of all 725; the second cell buys
 * ~5 points of recall at nprobe 16 on the real embeddings below), all of
 * them again at each training, each new one at once in idx_set (~0.5 us).
 * Searches in between stay exact about what is stored: the lists always
 * hold every live row. Cost of a 1M bulk load through idx_set (5
 * trainings, 32k ... 524k, each moving every row; the old sign-code
 * rebuilds gone; the encoder now vectorised, the same bits as the scalar
 * one): 2.62 -> 3.23 s inside bench_idx, 2.58 -> 2.84 s alone (medians of
 * 3 and 5 alternating runs).
 *
 * Search, for a query q (float[dim], any norm):
 *   1. Which rows: below the training threshold (and with
 *      idx_set_ivf(SIZE_MAX), or nprobe >= the list count) every row, in
 *      memory order. Otherwise q . centroid (float) for every leaf and the
 *      rows of the nprobe best lists (IDX_NPROBE 16; idx_set_probe), at
 *      least as many rows as the search wants.
 *   2. q quantised to int8 (max|q| / 63); the exact int32 dot product with
 *      the 4-bit codes of those rows, levels halved to [-64, 64] (AVX2: the
 *      nibbles become unsigned levels + 64 by vpshufb, times q in
 *      vpmaddubsw; the two halves of each 64-component block add in int16,
 *      which cannot overflow at these bounds, before vpmaddwd widens them;
 *      64 * sum(q) comes off once), scaled,
 *      plus q . centre: a float score; a bounded min-heap keeps the best
 *      (ties: lower slot; which rows a search scores and their scores
 *      depend on the lists only, never on where rows sit in memory).
 *   3. idx_search_exact re-scores the best `candidates` (default 100) with
 *      the exact float32 vectors, which the caller fetches (from the database).
 *   Filters (`allow`, passing a fraction f of the live vectors; one that
 *   passes every live vector is the unfiltered search): rows not allowed
 *   are skipped before scoring. When 3 f N (a row read at a random
 *   place costs ~3 read in a list) is below what the lists would read, the
 *   allowed slots are scored directly through the bitmaps (exact 4-bit
 *   scores of all of them: f <= ~2% at 1M); otherwise the probing goes on
 *   past nprobe until the lists scanned held nprobe * (f N / L) *
 *   f^-filter_exp allowed rows (IDX_FILTER_EXP 0.5: 1.4x the lists at 50%,
 *   3.2x at 10%). Lists holding nothing allowed (a filter correlated with
 *   the embedding, e.g. by category) thus do not count: the probing goes on
 *   to lists that have allowed rows (tested with filters by cluster). The
 *   weak case is a filter that removes exactly the query's nearest few
 *   hundred: the allowed top 10 then sit at the ~300th place of the
 *   unfiltered ranking, beyond what nprobe lists hold (tests: 65-77 of 100
 *   queries exact; raise nprobe if filters can be like that).
 *
 * Measured on one core of an AMD EPYC (Zen 3, KVM, AVX2, no AVX-512),
 * dim 384, bench/bench_idx, 1000 queries, top 10 compared with an exact
 * float32 brute force, a 2-core VM shared with another job busy all along
 * (p99s moved by ~1 ms between runs). Previous design: sign-code Hamming
 * prefilter over all N (48 bytes a vector, 3.3 ms of the 3.6 at 1M, at
 * memory speed), then the 4-bit scan of the 4096 nearest; this one:
 *                         idx_search_exact p50 / p99   top-10 exact   index RSS
 *   100k, previous            0.63-0.72 / 0.78-1.26 ms    100%         23 MiB
 *   100k, IVF (255 lists)     0.22-0.27 / 0.32-0.40 ms    100%         29 MiB
 *   1M,   previous            3.5-4.5   / 5.2-6.2 ms      100%        234 MiB
 *   1M,   IVF (725 lists)     0.55-0.75 / 0.88-1.25 ms    100%        207 MiB
 *   1M,   IVF, after a save
 *         and load (lists
 *         contiguous)         0.46-0.53 / 0.72-1.0 ms     100%        198 MiB
 *   1M,   every row (no IVF)  16-18     / 20-32 ms        100%  (previous: 14-15 ms)
 * (ranges over 4-6 runs each, two more of the previous design's at 7-8 ms
 * left out, the other job at its busiest; 100k: the lists' partly filled
 * chunks cost more than the sign codes saved.)
 * Exact top 10 vs lists probed (p50 of idx_search_exact):
 *   nprobe                     1       2       4       8      16      32      64     128
 *   100k, bench_idx        98.9%   99.9%    100%    100%    100%    100%    100%    100%
 *                          0.09    0.12    0.13    0.14    0.21    0.37    0.65    1.08 ms
 *   1M, bench_idx          90.0%   99.8%    100%    100%    100%    100%    100%    100%
 *                          0.14    0.17    0.24    0.35    0.54    1.13    2.30    4.37 ms
 *   60k real embeddings    13.6%   24.0%   35.2%   50.2%   67.4%   85.2%   94.3%   99.4%
 *   (182 lists)            0.07    0.09    0.10    0.13    0.19    0.37    0.59    0.80 ms
 * With filters at 1M (filter_exp 0.5, 300 queries, against a brute force
 * over the allowed): 50% 0.76-0.92 ms, 10% 0.68-0.88 ms, 1% 0.46-0.51 ms
 * (scored directly), 0.1% 0.13-0.15 ms, all 100% exact (at 100k 10%: 299
 * of 300).
 * The data, honestly: bench_idx's vectors (500 clusters in 50 topics) are
 * strongly clustered, and so is the 1M benchmark store (occupation
 * embeddings plus noise): the exact top 10 of a query sit in 1-2 lists, so
 * the default of 16 has a wide margin there (2 suffice at 1M). The third
 * row is real all-MiniLM-L6-v2 embeddings of 60,000 texts built from O*NET
 * (the 8,745 skill names, the 1,016 occupations, and job-like texts: a
 * title with a random subset of its skills plus up to 4 unrelated ones):
 * neighbours there are near-ties spread over many lists, the IVF needs
 * 70-80% of the rows for 99%, and the exhaustive scan (idx_set_ivf(SIZE_MAX))
 * is the exact choice (bench_idx --vectors FILE --query-vectors FILE
 * measures a deployment's own data; a float k-means does only somewhat
 * better: 77% at 16 lists). Real job ads, many per occupation, should sit
 * between the two; measure, then set nprobe: idx_probe_need does it from
 * sample queries (bench_idx prints the result of calibrating on half the
 * queries and searching with the other half: 60k real embeddings, nprobe
 * 133 of 182, 99.2% exact; the engine calibrates itself, rank.h
 * rank_tune). On the 1M benchmark store with real query profiles (not
 * bench_idx's in-distribution queries) 16 lists gave 94%, 60 gave 100%.
 * Why IVF rather than the sign codes: these read every vector's 48 bytes
 * (48 MB at 1M: 3.3 ms at memory speed, whatever the data); a partition
 * reads a few percent of the rows. Fewer sign bits lose too much (the
 * Hamming rank covering the top 10 on 33k real embeddings, p99/max:
 * 163/253 with 384 bits, 1842/9722 with 128).
 *
 * Snapshot: idx_save writes the settings, centres, centroids and each
 * list's rows; idx_load reads the rows straight into their final memory,
 * each list into consecutive chunks (193 MiB at 1M in ~0.2 s from the page
 * cache: page faults ~35%, the checksum ~12%), checking every count, index
 * and value it reads.
 *
 * Thread-safety: the search functions and idx_save only read the index and
 * may run concurrently from any number of threads. idx_set, idx_remove,
 * idx_reserve, idx_set_ivf, idx_set_probe and idx_free modify it: the
 * caller holds a write lock (no search may run at the same time). Nothing
 * here locks.
 *
 * Errors follow common.h: JM_OK or a negative JM_E* code, text in *err (err
 * may be NULL). A search allocates one scratch block per call (O(dim +
 * lists + candidates) bytes, plus candidates * dim floats for the fetch),
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

/* Make room for slots [0, nslots) now (a bulk load then seldom grows the
 * arrays). Costs address space only until the slots are written. */
int idx_reserve(idx *x, uint32_t nslots, jm_err *err);

/* A bulk load is about to bring the live count to about n (an estimate):
 * the trainings of the lists that a later one of the schedule (ivf_min and
 * each doubling) would replace before n are skipped, so the lists are first
 * trained at the last point of the schedule at or below n: a load of 1M
 * vectors trains once (at 524,288) instead of five times, and gets the same
 * lists (a training starts afresh from the vectors there are). No-op once
 * the lists exist. idx_bulk_end ends it: trains now if the load stopped
 * short of that point with ivf_min vectors or more, else restores the
 * schedule. */
void idx_bulk_begin(idx *x, size_t n);
int idx_bulk_end(idx *x, jm_err *err);

/* Insert or replace the vector of `slot` (vec: float[dim], copied; should be
 * L2-normalised for the scores to be cosines). Grows the arrays as needed.
 * JM_EINVAL for a non-finite component or slot > IDX_MAX_SLOT, JM_ENOMEM if
 * growing fails (the index is then unchanged). O(dim) plus the assignment to
 * a list (~0.5 us), except the calls where the live count reaches 1024 and
 * each doubling after (a new centre, from at most 16384 vectors), and those
 * where it reaches the IVF threshold and each doubling after, which train
 * the lists again and move every vector into its new list: O(N), ~0.6 s at
 * 524k vectors. */
int idx_set(idx *x, uint32_t slot, const float *vec, jm_err *err);

/* The slot becomes dead: no search returns it until it is set again. Slots
 * never set are ignored. O(dim) (its list's last row fills the hole); the
 * memory is kept for later rows. */
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

/* The order a search probes the lists in: by query . centroid divided by
 * m^spread, m the mean cosine of the list's vectors with its centroid
 * (spread 0, the default: by query . centroid alone). A spread-out list's
 * best vectors lie further above its centroid's score than a tight list's,
 * so with spread > 0 it comes earlier. Which order reads fewer vectors for
 * the same exactness depends on the data: calibrate it (idx_probe_needs
 * with several spreads, idx_probe_pick, idx_probe_rows). JM_EINVAL outside
 * [0, IDX_MAX_SPREAD]. Kept in the snapshot. */
#define IDX_MAX_SPREAD 4.0f
int idx_set_spread(idx *x, float spread, jm_err *err);
float idx_spread(const idx *x);

/* Number of inverted lists (0 before the first training). */
int idx_nlist(const idx *x);
/* The probe depth set (idx_set_probe). */
int idx_probe(const idx *x);

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
 * 4-bit vector: ~0.004 rms from the exact one, a few hundredths at most)
 * among those the search scores (with the lists on, the rows of the lists
 * it probes: see the top comment), sorted by score descending, then slot
 * ascending. allow: NULL for all live slots, or a bitmap (bit s of
 * allow[s / 64] set = slot s may be returned) of at least (idx_slots(x) +
 * 63) / 64 words. out: room for k hits; *nout gets how many were found (< k
 * only when fewer slots qualify; 0 is not an error). JM_EINVAL for k < 0 or
 * a non-finite query. */
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

/* How many lists each query needs probed (the calibration of nprobe): for
 * each of nq queries (float[dim] each, in a row), the exact top k as
 * idx_search_exact finds them when it scans every list, and need[i] = the
 * rank (1 = the nearest) in the query's order of lists of the farthest
 * list holding one of them; 0 before the lists are trained, or when only
 * rows not yet assigned (which every search scans) hold them. With nprobe
 * >= need[i], an unfiltered idx_search_exact finds those k rows for that
 * query (or some that score better exactly). Read-only: may run beside
 * searches. O(nq * N), a full scan per query (~16 ms at 1M). */
int idx_probe_need(const idx *x, const float *queries, int nq, int k, int candidates,
                   idx_fetch_fn fetch, void *ctx, int *need, jm_err *err);
/* The same for ns probe orders at once (idx_set_spread; the full scan per
 * query is shared): need[o * nq + i] is query i's need in the order of
 * spreads[o]. */
int idx_probe_needs(const idx *x, const float *queries, int nq, int k, int candidates,
                    idx_fetch_fn fetch, void *ctx, const float *spreads, int ns, int *need,
                    jm_err *err);
/* The mean number of vectors an unfiltered search of these queries reads at
 * depth nprobe in the order of spread (the cost to weigh orders by); -1 when
 * out of memory. */
double idx_probe_rows(const idx *x, const float *queries, int nq, int nprobe, float spread);

/* The nprobe to set from the needs of n sample queries (idx_probe_need): the
 * smallest depth that covers a share (0..1] of them, plus a quarter for the
 * queries the sample did not see, at least 1. Does not change need. */
int idx_probe_pick(const int *need, int n, double share);

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
 * first. The 4-bit, centroid, accumulation and encoding results of every
 * variant equal the reference exactly; the float32 dot products within
 * rounding (1e-6 for unit vectors). */
typedef struct idx_kernel {
    const char *name;
    /* out[i] = sum_d q[d] * lut[nibble d of row rows[i]] (exact int32) over
     * d < 2 * row, rows `row` bytes apart (a multiple of 32; nibble d is the
     * low half of byte (d / 64) * 32 + d % 32 when d % 64 < 32, else the high
     * half). q[2 * row] (zero beyond dim) in [-63, 63] and lut[16] in
     * [-64, 64]: the AVX2 kernel adds products in int16. */
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
    /* The 4-bit code of v - c (c NULL: zero) into code[row] (row = 32 *
     * ceil(dim / 64)); returns its scale (see the top comment). Every
     * variant gives the same bits. */
    float (*encode)(const float *v, const float *c, int dim, size_t row, uint8_t *code);
    /* q . (lut[nibble d of r] for d < dim) in float32 (q[dim], lut[16]
     * float): eight partial sums, sum k of block b holding the products of
     * components 64b + 4i + k (k < 4) and 64b + 32 + 4i + k - 4 (k >= 4),
     * each a product then a sum; the components past the last whole block
     * go to sum 0; the result ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 +
     * s7)). Every variant gives the same bits. */
    float (*score_u4)(const float *q, const float *lut, const uint8_t *r, int dim);
} idx_kernel;

/* Fills out[] with up to `cap` variants this CPU can run; returns how many. */
int idx_kernel_variants(idx_kernel *out, int cap);
/* Name of the variant the searches use: "avx512" (AVX-512 with VNNI; its
 * 4-bit product, the rest AVX2's), "avx2", either with "-nta" (AMD CPUs:
 * non-temporal prefetches) or "scalar" (JOBMATCH_ISA=scalar or a CPU
 * without AVX2 forces the scalar reference; JOBMATCH_ISA=avx2 caps it at
 * AVX2). */
const char *idx_isa(void);

#endif
