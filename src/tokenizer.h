/* tokenizer.h - BERT WordPiece tokenizer (prefix tok_), id-for-id equal to
 * Hugging Face's Rust `tokenizers` BertTokenizerFast for BERT-family
 * sentence-transformers models (all-MiniLM-L6-v2, bge-small-en-v1.5, ...).
 *
 * Pipeline for one text (bytes, any content):
 *   1. repair invalid UTF-8 (each invalid sequence becomes U+FFFD, as Python's
 *      bytes.decode('utf-8', 'replace'); U+FFFD is then dropped by step 3);
 *   2. split out added/special tokens ("[CLS]", "[MASK]", ... from
 *      tokenizer.json's added_tokens) matched literally in the raw text;
 *   3. clean text: drop NUL, U+FFFD and control characters; whitespace -> ' ';
 *   4. put spaces around CJK ideographs (Rust tokenizers' ranges);
 *   5. lower-case and strip accents (NFD, drop Mn) when the config says so;
 *   6. split on whitespace and punctuation (Unicode P* and ASCII symbol ranges);
 *   7. greedy longest-match WordPiece with "##" continuations; a word longer
 *      than 100 chars, or one whose remainder cannot be matched, is one [UNK];
 *   8. [CLS] ids [SEP], truncated to max_len ids in total.
 *
 * A tok_tokenizer is immutable after tok_load and safe to share between threads. */
#ifndef JM_TOKENIZER_H
#define JM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef struct tok_tokenizer tok_tokenizer;

/* Load from a model directory: vocab.txt (required), tokenizer_config.json
 * (do_lower_case, strip_accents, tokenize_chinese_chars; optional, BERT
 * defaults otherwise) and tokenizer.json (added_tokens; optional).
 * On success *out is owned by the caller: release with tok_free. */
int tok_load(const char *model_dir, tok_tokenizer **out, jm_err *err);

void tok_free(tok_tokenizer *t); /* accepts NULL */

/* Tokenize `len` bytes of `text` (need not be NUL-terminated nor valid UTF-8)
 * into at most max_len ids, written to ids[]: [CLS] pieces... [SEP], with the
 * pieces truncated so the total is <= max_len (max_len >= 2).
 * Returns the number of ids written (>= 2), or a negative JM_E* code.
 * Thread-safe; allocates only for very long words. */
int tok_encode(const tok_tokenizer *t, const char *text, size_t len,
               int32_t *ids, int max_len);

/* Like tok_encode, but without the max_len cap: returns the total number of
 * ids the text would need (handy for "how long is this text"). */
int tok_count(const tok_tokenizer *t, const char *text, size_t len);

int tok_vocab_size(const tok_tokenizer *t);
/* The token string for an id, or NULL if out of range. Owned by t. */
const char *tok_id_to_token(const tok_tokenizer *t, int32_t id);
/* The id of an exact vocabulary entry, or -1. */
int32_t tok_token_to_id(const tok_tokenizer *t, const char *token);
int32_t tok_cls_id(const tok_tokenizer *t);
int32_t tok_sep_id(const tok_tokenizer *t);
int32_t tok_unk_id(const tok_tokenizer *t);
int32_t tok_pad_id(const tok_tokenizer *t);

#endif
