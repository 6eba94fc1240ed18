/* vcache.h - a bounded, thread-safe LRU cache of text embeddings (prefix vc_).
 *
 * Maps the exact text that was embedded (bytes, NUL-terminated) to its
 * vector of `dim` floats. At most `cap` entries are kept; when full, the least
 * recently used one is dropped. Memory: cap * (dim * 4 + the key + ~48) bytes
 * at most, the vectors in one block whose pages are touched only as entries
 * are added.
 *
 * Thread-safety: every call takes the cache's own mutex for the time of a
 * hash lookup and one copy of a vector, so any number of threads may share a
 * cache. Two threads missing the same text both embed it; the second vc_put
 * finds the entry and only refreshes it.
 *
 * A NULL cache (vc_new with cap 0) is valid: vc_get always misses and the
 * other calls do nothing. */
#ifndef JM_VCACHE_H
#define JM_VCACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct vcache vcache;

typedef struct vc_stats {
    int64_t hits, misses;  /* vc_get calls since vc_new (or vc_clear) */
    int entries, cap;
    size_t bytes;          /* vector block and keys, an upper bound of the RSS */
} vc_stats;

/* *out = NULL when cap <= 0 (no caching). Returns 0, or -1 when out of memory. */
int vc_new(int dim, int cap, vcache **out);
void vc_free(vcache *c); /* accepts NULL */

/* 1 and the vector copied into out[dim] when text is cached (it becomes the
 * most recently used); 0 otherwise. */
int vc_get(vcache *c, const char *text, float *out);
/* Cache vec[dim] under text (copied). Out of memory only skips the caching. */
void vc_put(vcache *c, const char *text, const float *vec);
/* Drop every entry and reset the counters. */
void vc_clear(vcache *c);
void vc_get_stats(vcache *c, vc_stats *out);

#endif
