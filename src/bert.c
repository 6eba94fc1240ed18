/* bert.c - load a BERT sentence-transformers model and run its forward pass.
 *
 * Shapes below use T = tokens in a chunk (all texts of the chunk packed one
 * after another, no padding), H = hidden size, FF = intermediate size,
 * A = attention heads, D = H / A. */
#include "bert.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "safetensors.h"

enum { POOL_CLS = 1, POOL_MEAN = 2, POOL_MAX = 4, POOL_MEAN_SQRT = 8 };

/* Tokens per forward chunk: big enough that the linear layers run as large
 * matrix products, small enough that a worker's activations stay ~16 MB. */
#define CHUNK_TOKENS 1024

/* Linear weights are kept packed in 16-column strips (k_pack), in owned
 * 64-byte-aligned copies that k_linear_p streams for any number of tokens.
 * The mapped originals are released after the copy, so each weight is
 * resident once. */
typedef struct layer {
    /* Weights (out, in), packed. */
    const float *qkv_p;         /* (3H, H): query, key, value rows stacked */
    const float *qkv_b;         /* (3H) */
    const float *ao_p, *ao_b;   /* attention output dense (H, H), (H) */
    const float *aln_g, *aln_b; /* attention LayerNorm (H) */
    const float *i_p, *i_b;     /* intermediate dense (FF, H), (FF) */
    const float *o_p, *o_b;     /* output dense (H, FF), (H) */
    const float *oln_g, *oln_b; /* output LayerNorm (H) */
} layer;

struct bert_model {
    int H, FF, A, L, vocab, max_pos, type_vocab, max_seq; /* FF: intermediate size */
    float eps;
    int pool_modes; /* POOL_* bits, concatenated in sentence-transformers' order */
    int normalize;
    int out_dim;
    char id[256];
    tok_tokenizer *tok;
    st_file *st;
    const float *word_emb; /* (vocab, H), mapped; read sparsely, released after each chunk */
    const st_tensor *word_t;
    const float *pos_emb;  /* (max_pos, H) */
    const float *type_emb; /* (type_vocab, H) */
    const float *eln_g, *eln_b;
    layer *layers;         /* L */
    void **owned;          /* buffers we allocated (converted or fused weights) */
    int n_owned;
};

/* ---------- configuration files ---------- */

static int json_load(const char *dir, const char *name, int required, cJSON **out, jm_err *err)
{
    char path[4096];
    char *text = NULL;
    *out = NULL;
    int rc = jm_path_join(path, sizeof path, dir, name, err);
    if (rc)
        return rc;
    rc = jm_read_file(path, &text, NULL, err);
    if (rc == JM_ENOTFOUND && !required)
        return JM_OK;
    if (rc == JM_ENOTFOUND)
        return jm_fail(err, rc, "%s: missing file", path);
    if (rc)
        return rc;
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return jm_fail(err, JM_EFORMAT, "%s: not a JSON object", path);
    }
    *out = j;
    return JM_OK;
}

/* Integer field: must be a whole number in [lo, hi] when present. */
static int cfg_int(const cJSON *j, const char *file, const char *key, int dflt, int lo, int hi,
                   int *out, jm_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) {
        if (dflt < lo)
            return jm_fail(err, JM_EFORMAT, "%s: missing \"%s\"", file, key);
        *out = dflt;
        return JM_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return jm_fail(err, JM_EFORMAT, "%s: \"%s\" must be an integer in [%d, %d]", file, key, lo, hi);
    *out = (int)v->valuedouble;
    return JM_OK;
}

static int cfg_bool(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return v && cJSON_IsTrue(v);
}

static int read_config(bert_model *m, const char *dir, jm_err *err)
{
    cJSON *c = NULL;
    int rc = json_load(dir, "config.json", 1, &c, err);
    if (rc)
        return rc;
    const char *f = "config.json";
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(c, "model_type");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(c, "hidden_act");
    const cJSON *pet = cJSON_GetObjectItemCaseSensitive(c, "position_embedding_type");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(c, "layer_norm_eps");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "bert") != 0)) {
        rc = jm_fail(err, JM_EFORMAT, "%s/%s: model_type \"%s\" is not supported (only bert)", dir, f,
                     cJSON_IsString(mt) ? mt->valuestring : "?");
        goto out;
    }
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu") != 0)) {
        rc = jm_fail(err, JM_EFORMAT, "%s/%s: hidden_act \"%s\" is not supported (only gelu)", dir, f,
                     cJSON_IsString(act) ? act->valuestring : "?");
        goto out;
    }
    if (pet && (!cJSON_IsString(pet) || strcmp(pet->valuestring, "absolute") != 0)) {
        rc = jm_fail(err, JM_EFORMAT, "%s/%s: position_embedding_type must be absolute", dir, f);
        goto out;
    }
    if ((rc = cfg_int(c, f, "hidden_size", -1, 1, 1 << 16, &m->H, err)) ||
        (rc = cfg_int(c, f, "intermediate_size", -1, 1, 1 << 18, &m->FF, err)) ||
        (rc = cfg_int(c, f, "num_attention_heads", -1, 1, 1024, &m->A, err)) ||
        (rc = cfg_int(c, f, "num_hidden_layers", -1, 1, 1024, &m->L, err)) ||
        (rc = cfg_int(c, f, "vocab_size", -1, 1, 1 << 24, &m->vocab, err)) ||
        (rc = cfg_int(c, f, "max_position_embeddings", 512, 1, 1 << 16, &m->max_pos, err)) ||
        (rc = cfg_int(c, f, "type_vocab_size", 2, 1, 1 << 16, &m->type_vocab, err)))
        goto out;
    if (m->H % m->A) {
        rc = jm_fail(err, JM_EFORMAT, "%s/%s: hidden_size %d is not a multiple of num_attention_heads %d",
                     dir, f, m->H, m->A);
        goto out;
    }
    m->eps = 1e-12f;
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0) || eps->valuedouble > 1) {
            rc = jm_fail(err, JM_EFORMAT, "%s/%s: layer_norm_eps must be a small positive number", dir, f);
            goto out;
        }
        m->eps = (float)eps->valuedouble;
    }
out:
    cJSON_Delete(c);
    return rc;
}

/* sentence_bert_config.json, modules.json and the pooling module's config. */
static int read_st_config(bert_model *m, const char *dir, jm_err *err)
{
    cJSON *sb = NULL, *mods = NULL, *pool = NULL;
    int rc = json_load(dir, "sentence_bert_config.json", 0, &sb, err);
    if (rc)
        return rc;
    int dflt = m->max_pos < 512 ? m->max_pos : 512;
    m->max_seq = dflt;
    if (sb && (rc = cfg_int(sb, "sentence_bert_config.json", "max_seq_length", dflt, 2, 1 << 16,
                            &m->max_seq, err)))
        goto out;
    if (m->max_seq > m->max_pos)
        m->max_seq = m->max_pos; /* positions past the table do not exist */

    /* modules.json is an array, so load it by hand rather than with json_load. */
    char path[4096], *text = NULL;
    if ((rc = jm_path_join(path, sizeof path, dir, "modules.json", err)))
        goto out;
    char pool_dir[4096] = "";
    m->normalize = 0;
    rc = jm_read_file(path, &text, NULL, err);
    if (rc == JM_ENOTFOUND) {
        rc = JM_OK; /* a bare Hugging Face model: sentence-transformers' default is mean pooling */
        m->pool_modes = POOL_MEAN;
    } else if (rc) {
        goto out;
    } else {
        mods = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsArray(mods)) {
            rc = jm_fail(err, JM_EFORMAT, "%s: not a JSON array", path);
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, mods)
        {
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(it, "type");
            const cJSON *pa = cJSON_GetObjectItemCaseSensitive(it, "path");
            if (!cJSON_IsString(ty)) {
                rc = jm_fail(err, JM_EFORMAT, "%s: a module has no \"type\"", path);
                goto out;
            }
            const char *t = ty->valuestring;
            const char *dot = strrchr(t, '.');
            const char *base = dot ? dot + 1 : t;
            if (strcmp(base, "Transformer") == 0) {
                if (cJSON_IsString(pa) && pa->valuestring[0]) {
                    rc = jm_fail(err, JM_EFORMAT, "%s: a Transformer module in a subfolder is not supported", path);
                    goto out;
                }
            } else if (strcmp(base, "Pooling") == 0) {
                if (!cJSON_IsString(pa) || strstr(pa->valuestring, "..") || pa->valuestring[0] == '/') {
                    rc = jm_fail(err, JM_EFORMAT, "%s: Pooling module has no valid \"path\"", path);
                    goto out;
                }
                snprintf(pool_dir, sizeof pool_dir, "%s", pa->valuestring);
            } else if (strcmp(base, "Normalize") == 0) {
                m->normalize = 1;
            } else {
                rc = jm_fail(err, JM_EFORMAT, "%s: module type %s is not supported", path, t);
                goto out;
            }
        }
        if (!pool_dir[0]) {
            rc = jm_fail(err, JM_EFORMAT, "%s: no Pooling module", path);
            goto out;
        }
        char pdir[4096];
        if ((rc = jm_path_join(pdir, sizeof pdir, dir, pool_dir, err)) ||
            (rc = json_load(pdir, "config.json", 1, &pool, err)))
            goto out;
        static const struct { const char *key; int bit; } modes[] = {
            {"pooling_mode_cls_token", POOL_CLS},
            {"pooling_mode_max_tokens", POOL_MAX},
            {"pooling_mode_mean_tokens", POOL_MEAN},
            {"pooling_mode_mean_sqrt_len_tokens", POOL_MEAN_SQRT},
        };
        m->pool_modes = 0;
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
            if (cfg_bool(pool, modes[i].key))
                m->pool_modes |= modes[i].bit;
        static const char *unsupported[] = {"pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"};
        for (size_t i = 0; i < 2; i++)
            if (cfg_bool(pool, unsupported[i])) {
                rc = jm_fail(err, JM_EFORMAT, "%s/config.json: %s is not supported", pdir, unsupported[i]);
                goto out;
            }
        if (!m->pool_modes) {
            rc = jm_fail(err, JM_EFORMAT, "%s/config.json: no pooling mode is enabled", pdir);
            goto out;
        }
        int wdim;
        if ((rc = cfg_int(pool, "1_Pooling/config.json", "word_embedding_dimension", m->H, 1, 1 << 16,
                          &wdim, err)))
            goto out;
        if (wdim != m->H) {
            rc = jm_fail(err, JM_EFORMAT, "%s/config.json: word_embedding_dimension %d != hidden_size %d",
                         pdir, wdim, m->H);
            goto out;
        }
    }
    m->out_dim = m->H * __builtin_popcount((unsigned)m->pool_modes);
out:
    cJSON_Delete(sb);
    cJSON_Delete(mods);
    cJSON_Delete(pool);
    return rc;
}

/* ---------- weights ---------- */

static void *own(bert_model *m, size_t bytes)
{
    void **no = realloc(m->owned, sizeof(void *) * (size_t)(m->n_owned + 1));
    if (!no)
        return NULL;
    m->owned = no;
    size_t n = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p)
        m->owned[m->n_owned++] = p;
    return p;
}

/* Find `name` (with or without the "bert." prefix some checkpoints carry),
 * check dtype and shape, and return a float32 view: the mapping itself for F32,
 * an owned converted copy for F16/BF16. */
static int weight(bert_model *m, const char *prefix, const char *name, int ndim, int64_t d0,
                  int64_t d1, const float **out, jm_err *err)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const st_tensor *t = st_find(m->st, full);
    if (!t)
        return jm_fail(err, JM_EFORMAT, "%s: missing tensor '%s'", st_path(m->st), full);
    int64_t shape[2] = {d0, d1};
    st_dtype dt = t->dtype == ST_F16 || t->dtype == ST_BF16 ? t->dtype : ST_F32;
    int rc = st_expect(m->st, full, dt, ndim, shape, &t, err);
    if (rc)
        return rc;
    if (dt == ST_F32) {
        if ((uintptr_t)t->data % sizeof(float))
            return jm_fail(err, JM_EFORMAT, "%s: tensor '%s' is not 4-byte aligned", st_path(m->st), full);
        *out = t->data;
        return JM_OK;
    }
    float *buf = own(m, t->nbytes / st_dtype_size(dt) * sizeof(float));
    if (!buf)
        return jm_fail(err, JM_ENOMEM, "out of memory converting '%s'", full);
    if ((rc = st_to_f32(t, buf, err)))
        return rc;
    *out = buf;
    return JM_OK;
}

/* An nn.Linear weight W (out, in) as an owned packed copy (k_pack). */
static int linear_p(bert_model *m, const char *prefix, const char *name, int out_f, int in_f, const float **wp,
                    jm_err *err)
{
    const float *w;
    int rc = weight(m, prefix, name, 2, out_f, in_f, &w, err);
    if (rc)
        return rc;
    float *t = own(m, sizeof(float) * k_pack_floats(out_f, in_f));
    if (!t)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    k_pack(w, out_f, in_f, t);
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    st_release(m->st, st_find(m->st, full));
    *wp = t;
    return JM_OK;
}

static int load_weights(bert_model *m, jm_err *err)
{
    const char *pre = st_find(m->st, "embeddings.word_embeddings.weight") ? "" : "bert.";
    int H = m->H, FF = m->FF, rc;
    m->word_t = st_find(m->st, strcmp(pre, "") ? "bert.embeddings.word_embeddings.weight"
                                               : "embeddings.word_embeddings.weight");
    if ((rc = weight(m, pre, "embeddings.word_embeddings.weight", 2, m->vocab, H, &m->word_emb, err)) ||
        (rc = weight(m, pre, "embeddings.position_embeddings.weight", 2, m->max_pos, H, &m->pos_emb, err)) ||
        (rc = weight(m, pre, "embeddings.token_type_embeddings.weight", 2, m->type_vocab, H, &m->type_emb, err)) ||
        (rc = weight(m, pre, "embeddings.LayerNorm.weight", 1, H, 0, &m->eln_g, err)) ||
        (rc = weight(m, pre, "embeddings.LayerNorm.bias", 1, H, 0, &m->eln_b, err)))
        return rc;
    m->layers = calloc((size_t)m->L, sizeof(layer));
    if (!m->layers)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    for (int l = 0; l < m->L; l++) {
        layer *y = &m->layers[l];
        char n[160];
#define W(field, suffix, nd, a, b)                                                  \
    do {                                                                            \
        snprintf(n, sizeof n, "encoder.layer.%d.%s", l, suffix);                    \
        if ((rc = weight(m, pre, n, nd, a, b, &y->field, err)))                     \
            return rc;                                                              \
    } while (0)
        const float *qw, *qb, *kw, *kb, *vw, *vb;
#define WP(field, suffix, out_f, in_f)                                              \
    do {                                                                            \
        snprintf(n, sizeof n, "encoder.layer.%d.%s", l, suffix);                    \
        if ((rc = linear_p(m, pre, n, out_f, in_f, &y->field, err)))                \
            return rc;                                                              \
    } while (0)
        WP(ao_p, "attention.output.dense.weight", H, H);
        W(ao_b, "attention.output.dense.bias", 1, H, 0);
        W(aln_g, "attention.output.LayerNorm.weight", 1, H, 0);
        W(aln_b, "attention.output.LayerNorm.bias", 1, H, 0);
        WP(i_p, "intermediate.dense.weight", FF, H);
        W(i_b, "intermediate.dense.bias", 1, FF, 0);
        WP(o_p, "output.dense.weight", H, FF);
#undef WP
        W(o_b, "output.dense.bias", 1, H, 0);
        W(oln_g, "output.LayerNorm.weight", 1, H, 0);
        W(oln_b, "output.LayerNorm.bias", 1, H, 0);
#undef W
#define WL(var, suffix, nd, a, b)                                                   \
    do {                                                                            \
        snprintf(n, sizeof n, "encoder.layer.%d.%s", l, suffix);                    \
        if ((rc = weight(m, pre, n, nd, a, b, &var, err)))                          \
            return rc;                                                              \
    } while (0)
        WL(qw, "attention.self.query.weight", 2, H, H);
        WL(qb, "attention.self.query.bias", 1, H, 0);
        WL(kw, "attention.self.key.weight", 2, H, H);
        WL(kb, "attention.self.key.bias", 1, H, 0);
        WL(vw, "attention.self.value.weight", 2, H, H);
        WL(vb, "attention.self.value.bias", 1, H, 0);
#undef WL
        /* One (H, 3H) product instead of three (H, H) ones: fewer, larger GEMMs. */
        size_t hh = (size_t)H * H;
        float *w = malloc(sizeof(float) * 3 * hh);
        float *wp = own(m, sizeof(float) * k_pack_floats(3 * H, H));
        float *b = own(m, sizeof(float) * 3 * (size_t)H);
        if (!w || !wp || !b) {
            free(w);
            return jm_fail(err, JM_ENOMEM, "out of memory");
        }
        memcpy(w, qw, hh * sizeof(float));
        memcpy(w + hh, kw, hh * sizeof(float));
        memcpy(w + 2 * hh, vw, hh * sizeof(float));
        k_pack(w, 3 * H, H, wp);
        free(w);
        memcpy(b, qb, H * sizeof(float));
        memcpy(b + H, kb, H * sizeof(float));
        memcpy(b + 2 * H, vb, H * sizeof(float));
        y->qkv_p = wp;
        y->qkv_b = b;
        static const char *qkv_names[3] = {"query", "key", "value"};
        for (int k = 0; k < 3; k++) {
            snprintf(n, sizeof n, "%sencoder.layer.%d.attention.self.%s.weight", pre, l, qkv_names[k]);
            st_release(m->st, st_find(m->st, n));
        }
    }
    return JM_OK;
}

int bert_load(const char *dir, bert_model **out, jm_err *err)
{
    *out = NULL;
    k_init();
    bert_model *m = calloc(1, sizeof *m);
    if (!m)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    char path[4096];
    int rc;
    if ((rc = read_config(m, dir, err)) || (rc = read_st_config(m, dir, err)) ||
        (rc = tok_load(dir, &m->tok, err)) ||
        (rc = jm_path_join(path, sizeof path, dir, "model.safetensors", err)) ||
        (rc = st_open(path, &m->st, err)) || (rc = load_weights(m, err)))
        goto fail;
    if (tok_vocab_size(m->tok) > m->vocab) {
        rc = jm_fail(err, JM_EFORMAT, "%s: vocab.txt has %d entries but config.json says vocab_size %d",
                     dir, tok_vocab_size(m->tok), m->vocab);
        goto fail;
    }
    /* The id is the directory's last component, e.g. "all-MiniLM-L6-v2". */
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    size_t s = dl;
    while (s > 0 && dir[s - 1] != '/')
        s--;
    snprintf(m->id, sizeof m->id, "%.*s", (int)(dl - s), dir + s);
    *out = m;
    return JM_OK;
fail:
    bert_free(m);
    return rc;
}

void bert_free(bert_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    tok_free(m->tok);
    st_close(m->st);
    free(m);
}

int bert_dim(const bert_model *m) { return m->out_dim; }
int bert_max_seq(const bert_model *m) { return m->max_seq; }
int bert_normalizes(const bert_model *m) { return m->normalize; }
const char *bert_model_id(const bert_model *m) { return m->id; }
const tok_tokenizer *bert_tokenizer(const bert_model *m) { return m->tok; }

double bert_flops(const bert_model *m, int n)
{
    double H = m->H, FF = m->FF;
    double linear = 2.0 * (4 * H * H + 2 * H * FF) * n;
    double attn = 2.0 * 2.0 * (double)n * n * H; /* QK^T and PV */
    return m->L * (linear + attn);
}

/* ---------- forward pass ---------- */

typedef struct workspace {
    int cap;                     /* tokens */
    float *x, *t, *qkv, *ctx, *inter, *scores;
} workspace;

static void ws_free(workspace *w)
{
    free(w->x);
    free(w->t);
    free(w->qkv);
    free(w->ctx);
    free(w->inter);
    free(w->scores);
    memset(w, 0, sizeof *w);
}

static int ws_alloc(workspace *w, const bert_model *m, int cap)
{
    size_t T = (size_t)cap, H = (size_t)m->H;
    w->cap = cap;
    w->x = malloc(T * H * sizeof(float));
    w->t = malloc(T * H * sizeof(float));
    w->qkv = malloc(T * 3 * H * sizeof(float));
    w->ctx = malloc(T * H * sizeof(float));
    w->inter = malloc(T * (size_t)m->FF * sizeof(float));
    w->scores = malloc((size_t)m->max_seq * m->max_seq * sizeof(float));
    if (!w->x || !w->t || !w->qkv || !w->ctx || !w->inter || !w->scores) {
        ws_free(w);
        return JM_ENOMEM;
    }
    return JM_OK;
}

/* Self-attention of one text of n tokens: qkv rows (n, 3H) -> ctx rows (n, H). */
static void attention(const bert_model *m, workspace *w, const float *qkv, float *ctx, int n)
{
    int H = m->H, D = H / m->A;
    float scale = 1.0f / sqrtf((float)D);
    float *S = w->scores;
    for (int h = 0; h < m->A; h++) {
        const float *q = qkv + h * D, *k = qkv + H + h * D, *v = qkv + 2 * H + h * D;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, D, 1.0f, q, 3 * H, k, 3 * H,
                    0.0f, S, n);
        k_softmax(S, n, n, n, scale);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, n, 1.0f, S, n, v, 3 * H,
                    0.0f, ctx + h * D, H);
    }
}

/* Forward one chunk of `n` texts, packed: ids[i] has lens[i] ids; writes the
 * pooled (and maybe normalised) embeddings to out[n * out_dim]. */
static void forward_chunk(const bert_model *m, workspace *w, int n, const int32_t *const *ids,
                          const int *lens, float *out)
{
    int H = m->H, FF = m->FF;
    int T = 0;
    float *x = w->x, *t = w->t;
    for (int s = 0; s < n; s++) {
        for (int p = 0; p < lens[s]; p++, T++) {
            const float *we = m->word_emb + (size_t)ids[s][p] * H;
            const float *pe = m->pos_emb + (size_t)p * H;
            float *row = x + (size_t)T * H;
            for (int i = 0; i < H; i++)
                row[i] = we[i] + pe[i] + m->type_emb[i];
        }
    }
    /* The word table is 47 MB of which a chunk reads a few hundred rows: let
     * those pages go again instead of letting the table fill the RSS. */
    if (m->word_t)
        st_release(m->st, m->word_t);
    k_add_layernorm(x, NULL, T, H, NULL, m->eln_g, m->eln_b, m->eps);

    for (int l = 0; l < m->L; l++) {
        const layer *y = &m->layers[l];
        k_linear_p(T, 3 * H, H, x, H, y->qkv_p, y->qkv_b, w->qkv, 3 * H);
        for (int s = 0, off = 0; s < n; off += lens[s], s++)
            attention(m, w, w->qkv + (size_t)off * 3 * H, w->ctx + (size_t)off * H, lens[s]);
        k_linear_p(T, H, H, w->ctx, H, y->ao_p, NULL, t, H);
        k_add_layernorm(t, x, T, H, y->ao_b, y->aln_g, y->aln_b, m->eps);
        k_linear_p(T, FF, H, t, H, y->i_p, NULL, w->inter, FF);
        k_bias_gelu(w->inter, T, FF, y->i_b);
        k_linear_p(T, H, FF, w->inter, FF, y->o_p, NULL, x, H);
        k_add_layernorm(x, t, T, H, y->o_b, y->oln_g, y->oln_b, m->eps);
    }

    /* Pooling, in sentence-transformers' concatenation order: cls, max, mean, mean_sqrt_len. */
    for (int s = 0, off = 0; s < n; off += lens[s], s++) {
        float *o = out + (size_t)s * m->out_dim;
        const float *rows = x + (size_t)off * H;
        int len = lens[s];
        if (m->pool_modes & POOL_CLS) {
            memcpy(o, rows, H * sizeof(float));
            o += H;
        }
        if (m->pool_modes & POOL_MAX) {
            for (int i = 0; i < H; i++) {
                float v = rows[i];
                for (int p = 1; p < len; p++)
                    v = fmaxf(v, rows[(size_t)p * H + i]);
                o[i] = v;
            }
            o += H;
        }
        if (m->pool_modes & (POOL_MEAN | POOL_MEAN_SQRT)) {
            float *sum = o;
            for (int i = 0; i < H; i++)
                sum[i] = 0.0f;
            for (int p = 0; p < len; p++)
                for (int i = 0; i < H; i++)
                    sum[i] += rows[(size_t)p * H + i];
            if (m->pool_modes & POOL_MEAN) {
                for (int i = 0; i < H; i++)
                    o[i] = sum[i] / (float)len;
                o += H;
            }
            if (m->pool_modes & POOL_MEAN_SQRT) {
                const float *src = (m->pool_modes & POOL_MEAN) ? o - H : o;
                float f = (m->pool_modes & POOL_MEAN) ? (float)len / sqrtf((float)len) : 1.0f / sqrtf((float)len);
                for (int i = 0; i < H; i++)
                    o[i] = src[i] * f;
                o += H;
            }
        }
        if (m->normalize) {
            float *e = out + (size_t)s * m->out_dim;
            double ss = 0;
            for (int i = 0; i < m->out_dim; i++)
                ss += (double)e[i] * e[i];
            /* torch.nn.functional.normalize: x / max(||x||, 1e-12) */
            float inv = 1.0f / (float)fmax(sqrt(ss), 1e-12);
            for (int i = 0; i < m->out_dim; i++)
                e[i] *= inv;
        }
    }
}

/* ---------- pool: threads, tokenization and chunking ---------- */

struct bert_pool {
    const bert_model *m;
    int threads;
    workspace *ws;  /* one per thread, allocated on first use */
    int32_t *ids;   /* tokenized texts, max_seq ids per text (grown as needed) */
    int *lens;
    int cap_texts;
};

int bert_pool_new(const bert_model *m, int threads, bert_pool **out, jm_err *err)
{
    *out = NULL;
    if (threads < 0)
        return jm_fail(err, JM_EINVAL, "threads must be >= 0");
    if (threads == 0)
        threads = jm_ncpu();
    if (threads > 256)
        threads = 256;
    bert_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->ws = calloc((size_t)threads, sizeof(workspace)))) {
        free(p);
        return jm_fail(err, JM_ENOMEM, "out of memory");
    }
    p->m = m;
    p->threads = threads;
    *out = p;
    return JM_OK;
}

void bert_pool_free(bert_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->threads; i++)
        ws_free(&p->ws[i]);
    free(p->ws);
    free(p->ids);
    free(p->lens);
    free(p);
}

int bert_pool_threads(const bert_pool *p) { return p->threads; }

typedef struct job {
    bert_pool *p;
    int n;
    /* tokenize phase */
    const char *const *texts;
    const size_t *tlens;
    /* forward phase: chunk c covers texts [chunk_start[c], chunk_start[c+1]) */
    const int32_t *const *ids;
    const int *lens;
    const int *chunk_start;
    int nchunks;
    float *out;
    atomic_int next;
    atomic_int failed;
} job;

typedef struct worker_arg {
    job *j;
    int idx;
    int phase; /* 0 tokenize, 1 forward */
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *a = arg;
    job *j = a->j;
    bert_pool *p = j->p;
    const bert_model *m = p->m;
    if (a->phase == 0) {
        /* Texts are claimed 16 at a time: tokenizing is cheap per text. */
        for (;;) {
            int i0 = atomic_fetch_add(&j->next, 16);
            if (i0 >= j->n)
                break;
            int i1 = i0 + 16 < j->n ? i0 + 16 : j->n;
            for (int i = i0; i < i1; i++) {
                size_t len = j->tlens ? j->tlens[i] : strlen(j->texts[i]);
                int r = tok_encode(m->tok, j->texts[i], len, p->ids + (size_t)i * m->max_seq, m->max_seq);
                if (r < 0) {
                    atomic_store(&j->failed, r);
                    r = 0;
                }
                p->lens[i] = r;
            }
        }
        return NULL;
    }
    workspace *w = &p->ws[a->idx];
    if (!w->cap) {
        int cap = CHUNK_TOKENS > m->max_seq ? CHUNK_TOKENS : m->max_seq;
        if (ws_alloc(w, m, cap)) {
            atomic_store(&j->failed, JM_ENOMEM);
            return NULL;
        }
    }
    for (;;) {
        int c = atomic_fetch_add(&j->next, 1);
        if (c >= j->nchunks || atomic_load(&j->failed))
            break;
        int s0 = j->chunk_start[c], s1 = j->chunk_start[c + 1];
        forward_chunk(m, w, s1 - s0, j->ids + s0, j->lens + s0, j->out + (size_t)s0 * m->out_dim);
    }
    return NULL;
}

/* Run `phase` on all pool threads (the caller is thread 0). */
static void run_phase(job *j, int phase, int nthreads)
{
    pthread_t tid[256];
    worker_arg args[256];
    int started = 0;
    atomic_store(&j->next, 0);
    for (int i = 0; i < nthreads; i++) {
        args[i].j = j;
        args[i].idx = i;
        args[i].phase = phase;
    }
    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&tid[i], NULL, worker, &args[i]) != 0)
            break; /* fewer threads: the work queue still gets done */
        started = i;
    }
    worker(&args[0]);
    for (int i = 1; i <= started; i++)
        pthread_join(tid[i], NULL);
}

static int embed_packed(bert_pool *p, job *j, int n, const int32_t *const *ids, const int *lens,
                        float *out, jm_err *err)
{
    const bert_model *m = p->m;
    int cap = CHUNK_TOKENS > m->max_seq ? CHUNK_TOKENS : m->max_seq;
    int *starts = malloc(sizeof(int) * (size_t)(n + 1));
    if (!starts)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    int nc = 0, tokens = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 2 || lens[i] > m->max_seq) {
            free(starts);
            return jm_fail(err, JM_EINVAL, "text %d has %d ids (must be 2..%d)", i, lens[i], m->max_seq);
        }
        for (int k = 0; k < lens[i]; k++)
            if (ids[i][k] < 0 || ids[i][k] >= m->vocab) {
                free(starts);
                return jm_fail(err, JM_EINVAL, "text %d: token id %d out of range", i, ids[i][k]);
            }
        if (i == 0 || tokens + lens[i] > cap) {
            starts[nc++] = i;
            tokens = 0;
        }
        tokens += lens[i];
    }
    starts[nc] = n;
    j->ids = ids;
    j->lens = lens;
    j->chunk_start = starts;
    j->nchunks = nc;
    j->out = out;
    int nt = p->threads < nc ? p->threads : nc;
    run_phase(j, 1, nt < 1 ? 1 : nt);
    free(starts);
    if (atomic_load(&j->failed))
        return jm_fail(err, JM_ENOMEM, "out of memory for activations");
    return JM_OK;
}

int bert_embed_ids(bert_pool *p, int n, const int32_t *const *ids, const int *lens, float *out,
                   jm_err *err)
{
    if (n < 0)
        return jm_fail(err, JM_EINVAL, "negative text count");
    if (n == 0)
        return JM_OK;
    job j = {.p = p, .n = n};
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, 0);
    return embed_packed(p, &j, n, ids, lens, out, err);
}

int bert_embed(bert_pool *p, int n, const char *const *texts, const size_t *lens, float *out,
               int64_t *ntokens, jm_err *err)
{
    const bert_model *m = p->m;
    if (ntokens)
        *ntokens = 0;
    if (n < 0)
        return jm_fail(err, JM_EINVAL, "negative text count");
    if (n == 0)
        return JM_OK;
    if (n > p->cap_texts) {
        int32_t *ni = realloc(p->ids, sizeof(int32_t) * (size_t)n * m->max_seq);
        if (ni)
            p->ids = ni;
        int *nl = realloc(p->lens, sizeof(int) * (size_t)n);
        if (nl)
            p->lens = nl;
        if (!ni || !nl)
            return jm_fail(err, JM_ENOMEM, "out of memory for %d texts", n);
        p->cap_texts = n;
    }
    const int32_t **idp = malloc(sizeof(int32_t *) * (size_t)n);
    if (!idp)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    job j = {.p = p, .n = n, .texts = texts, .tlens = lens};
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, 0);
    int nt = p->threads < (n + 15) / 16 ? p->threads : (n + 15) / 16;
    run_phase(&j, 0, nt < 1 ? 1 : nt);
    int rc = JM_OK;
    if (atomic_load(&j.failed)) {
        rc = jm_fail(err, JM_ENOMEM, "tokenizer failed (out of memory)");
        goto out;
    }
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        idp[i] = p->ids + (size_t)i * m->max_seq;
        total += p->lens[i];
    }
    rc = embed_packed(p, &j, n, idp, p->lens, out, err);
    if (rc == JM_OK && ntokens)
        *ntokens = total;
out:
    free(idp);
    return rc;
}
