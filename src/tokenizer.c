/* tokenizer.c - BERT WordPiece tokenizer (see tokenizer.h for the pipeline).
 *
 * The reference is Hugging Face's Rust `tokenizers` (BertNormalizer,
 * BertPreTokenizer, WordPiece). Every rule below was checked code point by
 * code point against it (tests/test_tokdiff.py, tests/fixtures/tokens.jsonl).
 *
 * Design: one pass over the bytes, no intermediate normalized string. Each
 * input code point goes through clean -> CJK -> NFD/strip -> lowercase and the
 * resulting code points are fed to the pre-tokenizer, which collects the
 * current word on the stack and runs WordPiece on it when the word ends.
 * ASCII (the bulk of job text) uses a 128-entry table built at load time by
 * running the generic path once per byte, so both paths agree by
 * construction. */
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---------------------------------------------------------------------------
 * Unicode rules of the reference.
 *
 * The Rust reference mixes three sources of Unicode data, none of them the
 * Unicode 15.0 of utf8proc 2.8:
 *   - the `unicode_categories` crate (is_other, is_punctuation,
 *     is_mark_nonspacing) has Unicode 8.0 tables, and its "Cn" table is
 *     empty: unassigned code points are NOT control characters to it, so
 *     they are kept (and usually become [UNK]);
 *   - the `unicode-normalization-alignments` crate (NFD, combining classes)
 *     has Unicode 9.0 tables;
 *   - Rust std (char::is_whitespace, char::to_lowercase) is Unicode 17.
 * We take everything from utf8proc and emulate the differences with the
 * tables below. They were found by comparing utf8proc with the reference
 * (tokenizers 0.23.3) on each of the 1,112,064 scalar values, stage by stage
 * (clean, CJK, NFD + strip, lowercase, punctuation, combining order); runs of
 * code points where the emulation makes no difference are merged. */

/* Code points that utf8proc files under Mn, P* or Cf but that the Unicode 8.0
 * category tables do not have: to the reference they are unassigned, hence
 * not dropped, not punctuation, not accents. */
static const uint32_t tok_cat_newer[][2] = {
    {0x61D, 0x61D}, {0x7FD, 0x7FD}, {0x890, 0x8E2}, {0x9FD, 0x9FE},
    {0xA76, 0xA76}, {0xAFA, 0xAFF}, {0xB55, 0xB55}, {0xC04, 0xC3C},
    {0xC77, 0xC77}, {0xC84, 0xC84}, {0xD00, 0xD00}, {0xD3B, 0xD3C},
    {0xD81, 0xD81}, {0xEBA, 0xEBA}, {0xECE, 0xECE}, {0x180F, 0x1886},
    {0x1ABF, 0x1ACE}, {0x1B7D, 0x1B7E}, {0x1DF6, 0x1DFB}, {0x2E43, 0x2E5D},
    {0xA82C, 0xA82C}, {0xA8C5, 0xA8C5}, {0xA8FF, 0xA8FF}, {0xA9BD, 0xA9BD},
    {0x10D24, 0x10F89}, {0x11070, 0x11074}, {0x110C2, 0x110CD}, {0x111CF, 0x111CF},
    {0x1123E, 0x11241}, {0x1133B, 0x1133B}, {0x11438, 0x1145E}, {0x11660, 0x1166C},
    {0x116B9, 0x116B9}, {0x1182F, 0x11FFF}, {0x12FF1, 0x13455}, {0x16E97, 0x16F4F},
    {0x16FE2, 0x16FE4}, {0x1CF00, 0x1CF46}, {0x1E000, 0x1E4EF}, {0x1E944, 0x1E95F},
};

/* Code points to which utf8proc gives a combining class or a canonical
 * decomposition (U+11938) but the Unicode 9.0 normalization tables do not:
 * to the reference they are starters that decompose to themselves. */
static const uint32_t tok_nfd_newer[][2] = {
    {0x7FD, 0x7FD}, {0x898, 0x8D3}, {0x9FE, 0x9FE}, {0xC3C, 0xC3C},
    {0xD3B, 0xD3C}, {0xEBA, 0xEBA}, {0x1715, 0x1715}, {0x1ABF, 0x1ACE},
    {0x1DF6, 0x1DFA}, {0xA82C, 0xA82C}, {0x10D24, 0x10F85}, {0x11070, 0x11070},
    {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x11A99}, {0x11D42, 0x11F42},
    {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E4EF},
};

/* Lower-case mappings of Unicode 16 and 17 (Rust std) that utf8proc's 15.0
 * lacks: {first, last, target of first}; each range maps one to one. */
static const uint32_t tok_lower_extra[][3] = {
    {0x1C89, 0x1C89, 0x1C8A}, {0xA7CB, 0xA7CB, 0x0264}, {0xA7CC, 0xA7CC, 0xA7CD},
    {0xA7CE, 0xA7CE, 0xA7CF}, {0xA7D2, 0xA7D2, 0xA7D3}, {0xA7D4, 0xA7D4, 0xA7D5},
    {0xA7DA, 0xA7DA, 0xA7DB}, {0xA7DC, 0xA7DC, 0x019B}, {0x10D50, 0x10D65, 0x10D70},
    {0x16EA0, 0x16EB8, 0x16EBB},
};

#define TOK_NRANGES(a) (sizeof(a) / sizeof((a)[0]))

/* Binary search in a sorted table of inclusive [lo, hi] ranges. */
static bool tok_in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0])
            hi = mid;
        else if (c > r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* General category as the reference's Unicode 8.0 tables see it. */
static int tok_ref_category(uint32_t c)
{
    /* Three characters whose category changed after Unicode 8.0. */
    if (c == 0x166D || c == 0x111C9) /* now So and Mn */
        return UTF8PROC_CATEGORY_PO;
    if (c == 0x1734) /* now Mc */
        return UTF8PROC_CATEGORY_MN;
    if (tok_in_ranges(tok_cat_newer, TOK_NRANGES(tok_cat_newer), c))
        return UTF8PROC_CATEGORY_CN;
    return utf8proc_get_property((utf8proc_int32_t)c)->category;
}

static bool tok_nfd_unknown(uint32_t c)
{
    return tok_in_ranges(tok_nfd_newer, TOK_NRANGES(tok_nfd_newer), c);
}

/* Rust char::is_whitespace: the White_Space property (stable since 6.3). */
static bool tok_is_ws(uint32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= 9 && c <= 13);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* BertNormalizer's is_control: categories Cc, Cf, Co, Cs of the crate, but
 * not \t \n \r (those count as whitespace). The crate has no Cn entries. */
static bool tok_is_control(uint32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return false;
    int cat = tok_ref_category(c);
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
           cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS;
}

/* BertPreTokenizer's punctuation: ASCII punctuation (which includes the
 * symbols $+<=>^`| that Unicode files under S*) or any P* category. */
static bool tok_is_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
               (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
    int cat = tok_ref_category(c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

static bool tok_is_mn(uint32_t c)
{
    return tok_ref_category(c) == UTF8PROC_CATEGORY_MN;
}

static int tok_ccc(uint32_t c)
{
    if (c < 0x300 || tok_nfd_unknown(c))
        return 0;
    return utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
}

/* Rust's ranges of "Chinese characters" (BertNormalizer::is_chinese_char). */
static bool tok_is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Canonical decomposition of c into out[] (room for 8), as the reference's
 * NFD crate would do it. Returns the count. */
static int tok_nfd(uint32_t c, uint32_t *out)
{
    if (c < 0xC0 || tok_nfd_unknown(c)) {
        out[0] = c;
        return 1;
    }
    utf8proc_int32_t buf[8];
    int bound = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)c, buf, 8, UTF8PROC_DECOMPOSE, &bound);
    if (n < 1 || n > 8) { /* cannot happen for canonical mappings (max 4) */
        out[0] = c;
        return 1;
    }
    for (int i = 0; i < n; i++)
        out[i] = (uint32_t)buf[i];
    return (int)n;
}

/* Rust char::to_lowercase: the simple mapping, except U+0130 whose full
 * (SpecialCasing) lower-case is "i" + U+0307, plus the mappings Unicode added
 * after utf8proc's 15.0 (tok_lower_extra). Writes 1 or 2 code points. */
static int tok_lower(uint32_t c, uint32_t *out)
{
    if (c < 0x80) {
        out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        return 1;
    }
    if (c == 0x130) {
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    if (c >= 0x1C89 && c <= 0x16EB8)
        for (size_t i = 0; i < TOK_NRANGES(tok_lower_extra); i++)
            if (c >= tok_lower_extra[i][0] && c <= tok_lower_extra[i][1]) {
                out[0] = tok_lower_extra[i][2] + (c - tok_lower_extra[i][0]);
                return 1;
            }
    out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    return 1;
}

/* ---------------------------------------------------------------------------
 * Vocabulary hash tables: open addressing with linear probing. Each slot keeps
 * the low 32 bits of the hash next to the id, so a miss rarely touches the
 * string pool. Load factor <= 1/2. */

typedef struct tok_slot {
    uint32_t hash;
    int32_t id; /* -1: empty */
} tok_slot;

typedef struct tok_table {
    tok_slot *slots;
    uint32_t mask;
    uint32_t skip; /* bytes of each vocab string that are not part of the key */
} tok_table;

typedef struct tok_added {
    const char *s; /* points into the added-token pool */
    size_t len;
    int32_t id;
} tok_added;

/* What one BMP code point does, precomputed at load (tok_classify):
 *   DROP      nothing (control chars, accents with a combining class);
 *   SPACE     ends the current word;
 *   ISOLATE   a word of its own (punctuation, CJK ideograph): flush, add, flush;
 *   WORD      appends one starter char to the current word;
 *   GENERIC   anything else (expands to several chars, non-starter, ...). */
enum { TOK_K_DROP = 0, TOK_K_SPACE, TOK_K_ISOLATE, TOK_K_WORD, TOK_K_GENERIC };

#define TOK_WORD_STACK 256 /* chars of one word kept on the stack */

struct tok_tokenizer {
    char *pool;        /* vocab.txt contents, each line NUL-terminated in place */
    const char **tok;  /* (n_vocab) token strings, into pool */
    uint32_t *toklen;  /* (n_vocab) byte lengths */
    int n_vocab;
    tok_table words;   /* word-initial pieces */
    tok_table conts;   /* continuation pieces, keyed without the "##" prefix */
    char prefix[32];
    size_t prefix_len;
    int max_word_chars;
    bool clean, cjk, strip, lower;
    int32_t cls, sep, unk, pad;
    tok_added *added;
    int n_added;
    char *added_pool;
    uint8_t added_first[32]; /* bitmap of first bytes of added tokens */
    int max_tok_bytes;      /* longest vocab entry, bytes: bounds WordPiece probes */
    uint8_t *bmp_kind;      /* (0x10000) TOK_K_* of each BMP code point */
    uint16_t *bmp_map;      /* (0x10000) the char it becomes for ISOLATE/WORD */
};

/* Hash of a key: FNV-1a over the bytes, which can be extended one byte at a
 * time (WordPiece hashes all prefixes of a word in one pass), then a
 * murmur-style finalizer so that the low bits used for the slot index mix
 * in every byte and the length. */
#define TOK_FNV_INIT 0xCBF29CE484222325ull

static inline uint64_t tok_fnv(uint64_t h, unsigned char b)
{
    return (h ^ b) * 0x100000001B3ull;
}

static inline uint64_t tok_hash_final(uint64_t h, size_t n)
{
    h ^= (uint64_t)n * 0x9E3779B97F4A7C15ull;
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t tok_hash(const char *s, size_t n)
{
    uint64_t h = TOK_FNV_INIT;
    for (size_t i = 0; i < n; i++)
        h = tok_fnv(h, (unsigned char)s[i]);
    return tok_hash_final(h, n);
}

/* Look up key s[0..n) whose tok_hash is h. */
static int32_t tok_table_geth(const tok_tokenizer *t, const tok_table *tb, const char *s, size_t n, uint64_t h)
{
    uint32_t i = (uint32_t)h & tb->mask, h32 = (uint32_t)(h >> 32);
    for (;;) {
        const tok_slot *sl = &tb->slots[i];
        if (sl->id < 0)
            return -1;
        if (sl->hash == h32 && t->toklen[sl->id] - tb->skip == n &&
            memcmp(t->tok[sl->id] + tb->skip, s, n) == 0)
            return sl->id;
        i = (i + 1) & tb->mask;
    }
}

static int32_t tok_table_get(const tok_tokenizer *t, const tok_table *tb, const char *s, size_t n)
{
    return tok_table_geth(t, tb, s, n, tok_hash(s, n));
}

/* Insert id under its own string minus tb->skip bytes. A repeated string maps
 * to its last line, as the reference's HashMap insert does. */
static void tok_table_put(const tok_tokenizer *t, tok_table *tb, int32_t id)
{
    const char *s = t->tok[id] + tb->skip;
    size_t n = t->toklen[id] - tb->skip;
    uint64_t h = tok_hash(s, n);
    uint32_t i = (uint32_t)h & tb->mask, h32 = (uint32_t)(h >> 32);
    for (;;) {
        tok_slot *sl = &tb->slots[i];
        if (sl->id < 0) {
            sl->hash = h32;
            sl->id = id;
            return;
        }
        if (sl->hash == h32 && t->toklen[sl->id] - tb->skip == n &&
            memcmp(t->tok[sl->id] + tb->skip, s, n) == 0) {
            sl->id = id;
            return;
        }
        i = (i + 1) & tb->mask;
    }
}

static int tok_table_init(tok_table *tb, int n, uint32_t skip)
{
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2u)
        cap *= 2;
    tb->slots = malloc(cap * sizeof *tb->slots);
    if (!tb->slots)
        return JM_ENOMEM;
    for (uint32_t i = 0; i < cap; i++)
        tb->slots[i].id = -1;
    tb->mask = cap - 1;
    tb->skip = skip;
    return JM_OK;
}

static bool tok_is_cont(const tok_tokenizer *t, const char *s, size_t n)
{
    return t->prefix_len > 0 && n > t->prefix_len && memcmp(s, t->prefix, t->prefix_len) == 0;
}

int32_t tok_token_to_id(const tok_tokenizer *t, const char *token)
{
    if (!t || !token)
        return -1;
    size_t n = strlen(token);
    if (tok_is_cont(t, token, n))
        return tok_table_get(t, &t->conts, token + t->prefix_len, n - t->prefix_len);
    return tok_table_get(t, &t->words, token, n);
}

/* ---------------------------------------------------------------------------
 * Encoding state. Everything lives on the caller's stack. */

typedef struct tok_state {
    const tok_tokenizer *t;
    int32_t *ids;   /* NULL when only counting */
    int cap;        /* room for pieces (max_len - 2) when ids != NULL */
    int n;          /* pieces produced so far */
    bool full;      /* ids[] is full: the rest of the text cannot matter */
    uint32_t *w;    /* current word, code points (wcap of them stored) */
    uint8_t *wccc;  /* their canonical combining classes, for NFD ordering */
    int wcap;       /* max_word_chars + 1: anything longer is [UNK] anyway */
    int nw;         /* chars in the current word (may exceed wcap) */
    int run;        /* NFD reordering may not move a char before w[run] */
} tok_state;

static void tok_emit(tok_state *st, int32_t id)
{
    if (st->ids) {
        if (st->n >= st->cap) {
            st->full = true;
            return;
        }
        st->ids[1 + st->n] = id;
        if (st->n + 1 >= st->cap)
            st->full = true;
    }
    st->n++;
}

/* Greedy longest-match WordPiece over the current word; the whole word is
 * one [UNK] if it is too long or some position matches no piece. */
static void tok_flush(tok_state *st)
{
    const tok_tokenizer *t = st->t;
    int nc = st->nw;
    st->nw = 0;
    st->run = 0;
    if (nc == 0)
        return;
    if (nc > t->max_word_chars) {
        tok_emit(st, t->unk);
        return;
    }
    /* The word's UTF-8 bytes b, the byte offset of each char, the FNV state
     * after each char, and the pieces found. */
    char b_stack[TOK_WORD_STACK * 4];
    int off_stack[TOK_WORD_STACK + 1];
    uint64_t hp_stack[TOK_WORD_STACK + 1];
    int32_t piece_stack[TOK_WORD_STACK];
    char *b = b_stack;
    int *off = off_stack;
    uint64_t *hp = hp_stack;
    int32_t *piece = piece_stack;
    void *heap = NULL;
    if (nc > TOK_WORD_STACK) { /* only with a max_input_chars_per_word > 255 */
        heap = malloc((size_t)(nc + 1) * (sizeof *hp + sizeof *off + sizeof *piece + 4));
        if (!heap) {
            tok_emit(st, t->unk);
            return;
        }
        hp = heap;
        off = (int *)(hp + nc + 1);
        piece = (int32_t *)(off + nc + 1);
        b = (char *)(piece + nc + 1);
    }
    int nb = 0;
    for (int i = 0; i < nc; i++) {
        off[i] = nb;
        uint32_t c = st->w[i];
        if (c < 0x80)
            b[nb++] = (char)c;
        else
            nb += (int)utf8proc_encode_char((utf8proc_int32_t)c, (utf8proc_uint8_t *)b + nb);
    }
    off[nc] = nb;

    int np = 0, start = 0;
    while (start < nc) {
        const tok_table *tb = start == 0 ? &t->words : &t->conts;
        /* No piece is longer than the longest vocab entry: skip those probes
         * (long words would otherwise cost a quadratic number of them). */
        int lim = t->max_tok_bytes - (start == 0 ? 0 : (int)t->prefix_len);
        int end = nc;
        while (end > start && off[end] - off[start] > lim)
            end--;
        /* Hash every candidate once, in one forward pass. */
        const char *s = b + off[start];
        uint64_t h = TOK_FNV_INIT;
        for (int j = start; j < end; j++) {
            for (int q = off[j]; q < off[j + 1]; q++)
                h = tok_fnv(h, (unsigned char)b[q]);
            hp[j + 1] = h;
        }
        int32_t id = -1;
        for (; end > start; end--) {
            size_t n = (size_t)(off[end] - off[start]);
            /* A word-initial piece that itself starts with "##" lives in the
             * continuation table (never happens for BERT: '#' is punctuation). */
            if (start == 0 && tok_is_cont(t, s, n))
                id = tok_table_get(t, &t->conts, s + t->prefix_len, n - t->prefix_len);
            else
                id = tok_table_geth(t, tb, s, n, tok_hash_final(hp[end], n));
            if (id >= 0)
                break;
        }
        if (id < 0) {
            np = -1;
            break;
        }
        piece[np++] = id;
        start = end;
    }
    if (np < 0)
        tok_emit(st, t->unk);
    else
        for (int i = 0; i < np; i++)
            tok_emit(st, piece[i]);
    free(heap);
}

/* Append one normalized char to the current word. With strip_accents the
 * text went through NFD, whose canonical ordering moves a non-starter left
 * past non-starters of higher class; dropped marks were removed before the
 * sort, which is equivalent because a stable sort commutes with filtering,
 * except that dropped starters still end a run (see tok_feed_nfd). */
static void tok_word_add(tok_state *st, uint32_t c, int ccc)
{
    int i = st->nw;
    if (i < st->wcap) {
        if (ccc == 0) {
            st->run = i + 1;
        } else {
            while (i > st->run && st->wccc[i - 1] > ccc) {
                st->w[i] = st->w[i - 1];
                st->wccc[i] = st->wccc[i - 1];
                i--;
            }
        }
        st->w[i] = c;
        st->wccc[i] = (uint8_t)ccc;
    }
    st->nw++;
}

/* The pre-tokenizer on one normalized char: whitespace ends the word,
 * punctuation is a word of its own. */
static void tok_pretok(tok_state *st, uint32_t c, int ccc)
{
    if (tok_is_ws(c)) {
        tok_flush(st);
    } else if (tok_is_punct(c)) {
        tok_flush(st);
        tok_word_add(st, c, 0);
        tok_flush(st);
    } else {
        tok_word_add(st, c, ccc);
    }
}

static void tok_feed_lower(tok_state *st, uint32_t c, int ccc)
{
    if (!st->t->lower) {
        tok_pretok(st, c, ccc);
        return;
    }
    uint32_t lc[2];
    int n = tok_lower(c, lc);
    if (n == 1) {
        tok_pretok(st, lc[0], ccc);
    } else {
        /* U+0130 -> "i" U+0307: the lowercase runs after NFD, so the mark
         * it produces is not reordered. */
        tok_pretok(st, lc[0], 0);
        tok_pretok(st, lc[1], 0);
    }
}

static void tok_feed_nfd(tok_state *st, uint32_t c)
{
    if (!st->t->strip) {
        tok_feed_lower(st, c, 0);
        return;
    }
    uint32_t d[8];
    int n = tok_nfd(c, d);
    for (int i = 0; i < n; i++) {
        int ccc = tok_ccc(d[i]);
        if (tok_is_mn(d[i])) {
            if (ccc == 0 && st->nw <= st->wcap)
                st->run = st->nw; /* a dropped starter still blocks reordering */
            continue;
        }
        tok_feed_lower(st, d[i], ccc);
    }
}

/* The whole normalizer + pre-tokenizer for one decoded code point. */
static void tok_feed(tok_state *st, uint32_t c)
{
    const tok_tokenizer *t = st->t;
    if (t->clean) {
        if (c == 0 || c == 0xFFFD || tok_is_control(c))
            return;
        if (tok_is_ws(c))
            c = ' ';
    }
    if (t->cjk && tok_is_cjk(c)) {
        tok_flush(st);
        tok_feed_nfd(st, c);
        tok_flush(st);
        return;
    }
    tok_feed_nfd(st, c);
}

/* Decode one code point at s[0..len) (len >= 1) like Python's
 * bytes.decode('utf-8', 'replace'): a maximal prefix of a well-formed
 * sequence that cannot be completed becomes one U+FFFD, and so does each
 * byte that cannot start a sequence. *adv gets the bytes consumed. */
static uint32_t tok_utf8(const unsigned char *s, size_t len, size_t *adv)
{
    unsigned b = s[0];
    if (b < 0x80) {
        *adv = 1;
        return b;
    }
    int need;
    uint32_t c;
    unsigned lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        c = b & 0x0F;
        if (b == 0xE0)
            lo = 0xA0; /* overlong */
        else if (b == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        c = b & 0x07;
        if (b == 0xF0)
            lo = 0x90; /* overlong */
        else if (b == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else {
        *adv = 1;
        return 0xFFFD;
    }
    size_t i = 1;
    for (; need > 0; need--, i++) {
        if (i >= len || s[i] < lo || s[i] > hi) {
            *adv = i;
            return 0xFFFD;
        }
        c = (c << 6) | (s[i] & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *adv = i;
    return c;
}

/* Longest added token starting at s, or NULL. */
static const tok_added *tok_match_added(const tok_tokenizer *t, const char *s, size_t len)
{
    const tok_added *best = NULL;
    for (int i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        if (a->len <= len && (!best || a->len > best->len) && memcmp(s, a->s, a->len) == 0)
            best = a;
    }
    return best;
}

static int tok_run(const tok_tokenizer *t, const char *text, size_t len, int32_t *ids, int cap)
{
    uint32_t w_stack[TOK_WORD_STACK];
    uint8_t ccc_stack[TOK_WORD_STACK];
    tok_state st = {.t = t, .ids = ids, .cap = cap, .w = w_stack, .wccc = ccc_stack,
                    .wcap = t->max_word_chars + 1};
    void *heap = NULL;
    if (st.wcap > TOK_WORD_STACK) {
        heap = malloc((size_t)st.wcap * (sizeof(uint32_t) + 1));
        if (!heap)
            return JM_ENOMEM;
        st.w = heap;
        st.wccc = (uint8_t *)(st.w + st.wcap);
    }
    if (ids && cap == 0)
        st.full = true;
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len && !st.full) {
        unsigned b = s[i];
        if (t->added_first[b >> 3] & (1u << (b & 7))) {
            const tok_added *a = tok_match_added(t, text + i, len - i);
            if (a) {
                tok_flush(&st);
                tok_emit(&st, a->id);
                i += a->len;
                continue;
            }
        }
        uint32_t c = b;
        if (b < 0x80) {
            i++;
        } else {
            size_t adv;
            c = tok_utf8(s + i, len - i, &adv);
            i += adv;
            if (c > 0xFFFF) {
                tok_feed(&st, c);
                continue;
            }
        }
        switch (t->bmp_kind[c]) {
        case TOK_K_DROP:
            break;
        case TOK_K_SPACE:
            tok_flush(&st);
            break;
        case TOK_K_ISOLATE:
            tok_flush(&st);
            tok_word_add(&st, t->bmp_map[c], 0);
            tok_flush(&st);
            break;
        case TOK_K_WORD:
            if (st.nw < st.wcap) {
                st.w[st.nw] = t->bmp_map[c];
                st.wccc[st.nw] = 0;
                st.run = st.nw + 1;
            }
            st.nw++;
            break;
        default:
            tok_feed(&st, c);
            break;
        }
    }
    if (!st.full)
        tok_flush(&st);
    free(heap);
    return st.n;
}

int tok_encode(const tok_tokenizer *t, const char *text, size_t len, int32_t *ids, int max_len)
{
    if (!t || !ids || max_len < 2 || (!text && len > 0))
        return JM_EINVAL;
    int n = tok_run(t, text ? text : "", len, ids, max_len - 2);
    if (n < 0)
        return n;
    ids[0] = t->cls;
    ids[n + 1] = t->sep;
    return n + 2;
}

int tok_count(const tok_tokenizer *t, const char *text, size_t len)
{
    if (!t || (!text && len > 0))
        return JM_EINVAL;
    int n = tok_run(t, text ? text : "", len, NULL, 0);
    return n < 0 ? n : n + 2;
}

int tok_vocab_size(const tok_tokenizer *t)
{
    return t ? t->n_vocab : 0;
}

const char *tok_id_to_token(const tok_tokenizer *t, int32_t id)
{
    if (!t || id < 0)
        return NULL;
    if (id < t->n_vocab)
        return t->tok[id];
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id)
            return t->added[i].s;
    return NULL;
}

int32_t tok_cls_id(const tok_tokenizer *t) { return t ? t->cls : -1; }
int32_t tok_sep_id(const tok_tokenizer *t) { return t ? t->sep : -1; }
int32_t tok_unk_id(const tok_tokenizer *t) { return t ? t->unk : -1; }
int32_t tok_pad_id(const tok_tokenizer *t) { return t ? t->pad : -1; }

void tok_free(tok_tokenizer *t)
{
    if (!t)
        return;
    free(t->pool);
    free(t->tok);
    free(t->toklen);
    free(t->words.slots);
    free(t->conts.slots);
    free(t->added);
    free(t->added_pool);
    free(t->bmp_kind);
    free(t->bmp_map);
    free(t);
}

/* ---------------------------------------------------------------------------
 * Loading. */

/* vocab.txt: one token per line, id = line number. Trailing whitespace is
 * trimmed as the reference's reader does (it also covers "\r\n" files). */
static int tok_load_vocab(tok_tokenizer *t, const char *dir, jm_err *err)
{
    char path[4096];
    size_t size;
    int rc = jm_path_join(path, sizeof path, dir, "vocab.txt", err);
    if (rc)
        return rc;
    if ((rc = jm_read_file(path, &t->pool, &size, err)))
        return rc;
    int n = 0;
    for (size_t i = 0; i < size; i++)
        n += t->pool[i] == '\n';
    if (size > 0 && t->pool[size - 1] != '\n')
        n++;
    if (n == 0)
        return jm_fail(err, JM_EFORMAT, "%s: empty vocabulary", path);
    if (size > UINT32_MAX)
        return jm_fail(err, JM_EFORMAT, "%s: too large", path);
    t->tok = malloc((size_t)n * sizeof *t->tok);
    t->toklen = malloc((size_t)n * sizeof *t->toklen);
    if (!t->tok || !t->toklen)
        return jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
    char *p = t->pool, *end = t->pool + size;
    for (int id = 0; id < n; id++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\v' || e[-1] == '\f'))
            e--;
        *e = '\0';
        t->tok[id] = p;
        t->toklen[id] = (uint32_t)(e - p);
        p = nl ? nl + 1 : end;
    }
    t->n_vocab = n;
    return JM_OK;
}

static int tok_build_tables(tok_tokenizer *t, jm_err *err)
{
    int nc = 0;
    for (int i = 0; i < t->n_vocab; i++)
        nc += tok_is_cont(t, t->tok[i], t->toklen[i]);
    if (tok_table_init(&t->words, t->n_vocab - nc, 0) ||
        tok_table_init(&t->conts, nc, (uint32_t)t->prefix_len))
        return jm_fail(err, JM_ENOMEM, "tokenizer: out of memory");
    for (int i = 0; i < t->n_vocab; i++) {
        tok_table_put(t, tok_is_cont(t, t->tok[i], t->toklen[i]) ? &t->conts : &t->words, i);
        if ((int)t->toklen[i] > t->max_tok_bytes)
            t->max_tok_bytes = (int)t->toklen[i];
    }
    return JM_OK;
}

/* Reads an optional JSON file; *out is NULL (and JM_OK) when it is absent. */
static int tok_read_json(const char *dir, const char *name, cJSON **out, jm_err *err)
{
    char path[4096];
    char *text = NULL;
    size_t size;
    *out = NULL;
    int rc = jm_path_join(path, sizeof path, dir, name, err);
    if (rc)
        return rc;
    rc = jm_read_file(path, &text, &size, err);
    if (rc == JM_ENOTFOUND)
        return JM_OK;
    if (rc)
        return rc;
    *out = cJSON_ParseWithLength(text, size);
    free(text);
    if (!*out)
        return jm_fail(err, JM_EFORMAT, "%s: invalid JSON", path);
    return JM_OK;
}

/* A JSON boolean member, or dflt when absent or null. */
static bool tok_json_bool(const cJSON *o, const char *key, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v);
    return dflt;
}

static const char *tok_json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* tokenizer_config.json (the slow BertTokenizer's options). */
static void tok_apply_config(tok_tokenizer *t, const cJSON *cfg)
{
    t->lower = tok_json_bool(cfg, "do_lower_case", true);
    t->cjk = tok_json_bool(cfg, "tokenize_chinese_chars", true);
    /* strip_accents null means "follow lowercase". */
    t->strip = tok_json_bool(cfg, "strip_accents", t->lower);
}

static int tok_add_added(tok_tokenizer *t, const char *s, int32_t id, size_t *pool_used)
{
    size_t n = strlen(s);
    if (n == 0)
        return JM_OK;
    memcpy(t->added_pool + *pool_used, s, n + 1);
    t->added[t->n_added++] = (tok_added){t->added_pool + *pool_used, n, id};
    *pool_used += n + 1;
    unsigned char b = (unsigned char)s[0];
    t->added_first[b >> 3] |= (uint8_t)(1u << (b & 7));
    return JM_OK;
}

/* tokenizer.json: normalizer options, WordPiece options and added tokens.
 * Parts of the format this tokenizer cannot reproduce are refused rather
 * than silently tokenized differently. */
static int tok_apply_tokenizer_json(tok_tokenizer *t, const cJSON *tj, jm_err *err)
{
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(tj, "normalizer");
    if (cJSON_IsObject(norm)) {
        const char *type = tok_json_str(norm, "type");
        if (!type || strcmp(type, "BertNormalizer") != 0)
            return jm_fail(err, JM_EFORMAT, "tokenizer.json: unsupported normalizer %s", type ? type : "?");
        t->clean = tok_json_bool(norm, "clean_text", true);
        t->cjk = tok_json_bool(norm, "handle_chinese_chars", true);
        t->lower = tok_json_bool(norm, "lowercase", true);
        t->strip = tok_json_bool(norm, "strip_accents", t->lower);
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(tj, "pre_tokenizer");
    if (cJSON_IsObject(pre)) {
        const char *type = tok_json_str(pre, "type");
        if (!type || strcmp(type, "BertPreTokenizer") != 0)
            return jm_fail(err, JM_EFORMAT, "tokenizer.json: unsupported pre_tokenizer %s", type ? type : "?");
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
    if (cJSON_IsObject(model)) {
        const char *type = tok_json_str(model, "type");
        if (type && strcmp(type, "WordPiece") != 0)
            return jm_fail(err, JM_EFORMAT, "tokenizer.json: unsupported model %s", type);
        const char *pfx = tok_json_str(model, "continuing_subword_prefix");
        if (pfx) {
            if (strlen(pfx) >= sizeof t->prefix)
                return jm_fail(err, JM_EFORMAT, "tokenizer.json: continuing_subword_prefix too long");
            strcpy(t->prefix, pfx);
            t->prefix_len = strlen(pfx);
        }
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
        if (cJSON_IsNumber(mx)) {
            if (mx->valuedouble < 0 || mx->valuedouble > 1e6)
                return jm_fail(err, JM_EFORMAT, "tokenizer.json: bad max_input_chars_per_word");
            t->max_word_chars = (int)mx->valuedouble;
        }
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    if (cJSON_IsArray(added)) {
        int n = cJSON_GetArraySize(added);
        size_t pool = 0;
        const cJSON *a;
        cJSON_ArrayForEach(a, added) {
            const char *s = tok_json_str(a, "content");
            pool += s ? strlen(s) + 1 : 0;
        }
        t->added = calloc((size_t)n + 1, sizeof *t->added);
        t->added_pool = malloc(pool + 1);
        if (!t->added || !t->added_pool)
            return jm_fail(err, JM_ENOMEM, "tokenizer: out of memory");
        size_t used = 0;
        cJSON_ArrayForEach(a, added) {
            const char *s = tok_json_str(a, "content");
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
            if (!s || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX)
                return jm_fail(err, JM_EFORMAT, "tokenizer.json: malformed added_tokens entry");
            if (tok_json_bool(a, "normalized", false) || tok_json_bool(a, "lstrip", false) ||
                tok_json_bool(a, "rstrip", false) || tok_json_bool(a, "single_word", false))
                return jm_fail(err, JM_EFORMAT,
                               "tokenizer.json: added token %s uses normalized/lstrip/rstrip/single_word, unsupported", s);
            tok_add_added(t, s, (int32_t)id->valuedouble, &used);
        }
    }
    return JM_OK;
}

/* Without tokenizer.json, BertTokenizerFast registers the special tokens
 * found in the vocabulary as literal added tokens. */
static int tok_default_added(tok_tokenizer *t, jm_err *err)
{
    static const char *const names[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    t->added = calloc(5, sizeof *t->added);
    t->added_pool = malloc(64);
    if (!t->added || !t->added_pool)
        return jm_fail(err, JM_ENOMEM, "tokenizer: out of memory");
    size_t used = 0;
    for (int i = 0; i < 5; i++) {
        int32_t id = tok_token_to_id(t, names[i]);
        if (id >= 0)
            tok_add_added(t, names[i], id, &used);
    }
    return JM_OK;
}

/* What code point c does in the pipeline of tok_feed, if it can be said
 * with one TOK_K_* kind and at most one resulting char (*mapped). Mirrors
 * tok_feed step by step; the differential tests cover both paths. */
static int tok_classify(const tok_tokenizer *t, uint32_t c, uint32_t *mapped)
{
    *mapped = c;
    if (t->clean) {
        if (c == 0 || c == 0xFFFD || tok_is_control(c))
            return TOK_K_DROP;
        if (tok_is_ws(c))
            c = ' ';
    }
    bool iso = t->cjk && tok_is_cjk(c);
    uint32_t d[8], k = 0;
    int n = 1, kept = 0;
    d[0] = c;
    if (t->strip)
        n = tok_nfd(c, d);
    for (int i = 0; i < n; i++) {
        if (t->strip && tok_is_mn(d[i])) {
            if (tok_ccc(d[i]) == 0)
                return TOK_K_GENERIC; /* blocks canonical reordering */
            continue;
        }
        k = d[i];
        kept++;
    }
    if (kept == 0)
        return iso ? TOK_K_SPACE : TOK_K_DROP;
    if (kept > 1 || (t->strip && tok_ccc(k) != 0))
        return TOK_K_GENERIC;
    if (t->lower) {
        uint32_t lc[2];
        if (tok_lower(k, lc) != 1)
            return TOK_K_GENERIC;
        k = lc[0];
    }
    *mapped = k;
    if (tok_is_ws(k))
        return TOK_K_SPACE;
    if (iso || tok_is_punct(k))
        return TOK_K_ISOLATE;
    return TOK_K_WORD;
}

/* The BMP fast-path table: 192 KiB per tokenizer, ~10 ms at load, and then
 * one lookup per char instead of a dozen Unicode property queries. */
static int tok_build_bmp(tok_tokenizer *t, jm_err *err)
{
    t->bmp_kind = malloc(0x10000);
    t->bmp_map = malloc(0x10000 * sizeof *t->bmp_map);
    if (!t->bmp_kind || !t->bmp_map)
        return jm_fail(err, JM_ENOMEM, "tokenizer: out of memory");
    for (uint32_t c = 0; c < 0x10000; c++) {
        uint32_t m;
        int kind = tok_classify(t, c, &m);
        if (m > 0xFFFF || (c >= 0xD800 && c <= 0xDFFF))
            kind = TOK_K_GENERIC; /* surrogates are never decoded anyway */
        t->bmp_kind[c] = (uint8_t)kind;
        t->bmp_map[c] = (uint16_t)(kind == TOK_K_GENERIC ? c : m);
    }
    return JM_OK;
}

static int tok_load_inner(tok_tokenizer *t, const char *dir, jm_err *err)
{
    cJSON *cfg = NULL, *tj = NULL;
    int rc = tok_load_vocab(t, dir, err);
    if (rc)
        goto out;
    if ((rc = tok_read_json(dir, "tokenizer_config.json", &cfg, err)))
        goto out;
    if ((rc = tok_read_json(dir, "tokenizer.json", &tj, err)))
        goto out;
    t->clean = true;
    t->cjk = t->lower = t->strip = true;
    strcpy(t->prefix, "##");
    t->prefix_len = 2;
    t->max_word_chars = 100;
    if (cfg)
        tok_apply_config(t, cfg);
    if (tj && (rc = tok_apply_tokenizer_json(t, tj, err)))
        goto out;
    if ((rc = tok_build_tables(t, err)))
        goto out;
    if (!tj && (rc = tok_default_added(t, err)))
        goto out;

    const char *unk = NULL;
    if (tj)
        unk = tok_json_str(cJSON_GetObjectItemCaseSensitive(tj, "model"), "unk_token");
    if (!unk && cfg)
        unk = tok_json_str(cfg, "unk_token");
    if (!unk)
        unk = "[UNK]";
    const char *cls = cfg && tok_json_str(cfg, "cls_token") ? tok_json_str(cfg, "cls_token") : "[CLS]";
    const char *sep = cfg && tok_json_str(cfg, "sep_token") ? tok_json_str(cfg, "sep_token") : "[SEP]";
    const char *pad = cfg && tok_json_str(cfg, "pad_token") ? tok_json_str(cfg, "pad_token") : "[PAD]";
    t->unk = tok_token_to_id(t, unk);
    t->cls = tok_token_to_id(t, cls);
    t->sep = tok_token_to_id(t, sep);
    t->pad = tok_token_to_id(t, pad);
    if (t->unk < 0 || t->cls < 0 || t->sep < 0) {
        rc = jm_fail(err, JM_EFORMAT, "%s/vocab.txt: missing %s, %s or %s", dir, unk, cls, sep);
        goto out;
    }
    if (t->pad < 0)
        t->pad = 0;
    rc = tok_build_bmp(t, err);
out:
    cJSON_Delete(cfg);
    cJSON_Delete(tj);
    return rc;
}

int tok_load(const char *model_dir, tok_tokenizer **out, jm_err *err)
{
    if (!out)
        return jm_fail(err, JM_EINVAL, "tok_load: out is NULL");
    *out = NULL;
    if (!model_dir)
        return jm_fail(err, JM_EINVAL, "tok_load: model_dir is NULL");
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return jm_fail(err, JM_ENOMEM, "tokenizer: out of memory");
    int rc = tok_load_inner(t, model_dir, err);
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return JM_OK;
}
