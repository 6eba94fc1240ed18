/* vcache.c - bounded, thread-safe LRU cache of text embeddings (see vcache.h).
 *
 * Entries live in a fixed array of cap; a chained hash table (2 x cap
 * buckets, chains through the entries) finds a text, and a doubly linked
 * list through the entries keeps the use order (head = most recent). */
#include "vcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct vc_entry {
    char *key;       /* NULL: free */
    uint64_t h;
    int prev, next;  /* use order; -1 ends */
    int chain;       /* next entry in the same bucket; -1 ends */
} vc_entry;

struct vcache {
    pthread_mutex_t mu;
    int dim, cap, n;
    vc_entry *e;
    float *vecs;     /* cap * dim */
    int *bucket;     /* nb heads, -1 empty */
    int nb;
    int head, tail;
    int64_t hits, misses;
    size_t key_bytes;
};

static uint64_t vc_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ^ (h >> 29);
}

int vc_new(int dim, int cap, vcache **out)
{
    *out = NULL;
    if (cap <= 0 || dim <= 0)
        return 0;
    vcache *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->dim = dim;
    c->cap = cap;
    c->nb = 1;
    while (c->nb < 2 * cap)
        c->nb *= 2;
    c->e = calloc((size_t)cap, sizeof(vc_entry));
    c->bucket = malloc(sizeof(int) * (size_t)c->nb);
    /* malloc, not calloc: the pages of unused entries are never touched */
    c->vecs = malloc(sizeof(float) * (size_t)cap * (size_t)dim);
    if (!c->e || !c->bucket || !c->vecs) {
        vc_free(c);
        return -1;
    }
    for (int i = 0; i < c->nb; i++)
        c->bucket[i] = -1;
    c->head = c->tail = -1;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

void vc_free(vcache *c)
{
    if (!c)
        return;
    if (c->e) {
        for (int i = 0; i < c->n; i++)
            free(c->e[i].key);
        pthread_mutex_destroy(&c->mu);
    }
    free(c->e);
    free(c->bucket);
    free(c->vecs);
    free(c);
}

static void unlink_use(vcache *c, int i)
{
    vc_entry *x = &c->e[i];
    if (x->prev >= 0)
        c->e[x->prev].next = x->next;
    else
        c->head = x->next;
    if (x->next >= 0)
        c->e[x->next].prev = x->prev;
    else
        c->tail = x->prev;
    x->prev = x->next = -1;
}

static void push_front(vcache *c, int i)
{
    vc_entry *x = &c->e[i];
    x->prev = -1;
    x->next = c->head;
    if (c->head >= 0)
        c->e[c->head].prev = i;
    c->head = i;
    if (c->tail < 0)
        c->tail = i;
}

static int find(const vcache *c, const char *text, uint64_t h)
{
    for (int i = c->bucket[h & (uint64_t)(c->nb - 1)]; i >= 0; i = c->e[i].chain)
        if (c->e[i].h == h && !strcmp(c->e[i].key, text))
            return i;
    return -1;
}

int vc_get(vcache *c, const char *text, float *out)
{
    if (!c || !text)
        return 0;
    uint64_t h = vc_hash(text);
    pthread_mutex_lock(&c->mu);
    int i = find(c, text, h);
    if (i >= 0) {
        memcpy(out, c->vecs + (size_t)i * c->dim, sizeof(float) * (size_t)c->dim);
        if (c->head != i) {
            unlink_use(c, i);
            push_front(c, i);
        }
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return i >= 0;
}

void vc_put(vcache *c, const char *text, const float *vec)
{
    if (!c || !text)
        return;
    uint64_t h = vc_hash(text);
    pthread_mutex_lock(&c->mu);
    int i = find(c, text, h);
    if (i >= 0) {
        if (c->head != i) {
            unlink_use(c, i);
            push_front(c, i);
        }
        pthread_mutex_unlock(&c->mu);
        return;
    }
    char *key = strdup(text);
    if (!key) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (c->n < c->cap) {
        i = c->n++;
    } else {
        /* drop the least recently used entry: out of its bucket's chain */
        i = c->tail;
        unlink_use(c, i);
        int *p = &c->bucket[c->e[i].h & (uint64_t)(c->nb - 1)];
        while (*p != i)
            p = &c->e[*p].chain;
        *p = c->e[i].chain;
        c->key_bytes -= strlen(c->e[i].key) + 1;
        free(c->e[i].key);
    }
    vc_entry *x = &c->e[i];
    x->key = key;
    x->h = h;
    c->key_bytes += strlen(key) + 1;
    int *b = &c->bucket[h & (uint64_t)(c->nb - 1)];
    x->chain = *b;
    *b = i;
    memcpy(c->vecs + (size_t)i * c->dim, vec, sizeof(float) * (size_t)c->dim);
    push_front(c, i);
    pthread_mutex_unlock(&c->mu);
}

void vc_clear(vcache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++) {
        free(c->e[i].key);
        c->e[i].key = NULL;
    }
    c->n = 0;
    for (int i = 0; i < c->nb; i++)
        c->bucket[i] = -1;
    c->head = c->tail = -1;
    c->hits = c->misses = 0;
    c->key_bytes = 0;
    pthread_mutex_unlock(&c->mu);
}

void vc_get_stats(vcache *c, vc_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    out->hits = c->hits;
    out->misses = c->misses;
    out->entries = c->n;
    out->cap = c->cap;
    out->bytes = (size_t)c->n * (sizeof(float) * (size_t)c->dim + sizeof(vc_entry)) + c->key_bytes;
    pthread_mutex_unlock(&c->mu);
}
