/* tool_tokdump - print token ids for length-prefixed records, for comparing
 * the tokenizer with the Python reference (tests/test_tokdiff.py).
 *
 *   tool_tokdump MODEL_DIR [MAX_LEN] < records
 *
 * Each record on stdin is a 4-byte little-endian length followed by that many
 * raw bytes (any content, invalid UTF-8 included). For each record one line
 * of space-separated ids goes to stdout. MAX_LEN defaults to 256. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static int read_full(void *buf, size_t n)
{
    return fread(buf, 1, n, stdin) == n;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MODEL_DIR [MAX_LEN] < records\n", argv[0]);
        return 2;
    }
    long max_len = 256;
    if (argc == 3) {
        char *end;
        max_len = strtol(argv[2], &end, 10);
        if (*end || max_len < 2 || max_len > 1 << 20) {
            fprintf(stderr, "tool_tokdump: bad MAX_LEN %s\n", argv[2]);
            return 2;
        }
    }
    jm_err err = {0};
    tok_tokenizer *tok = NULL;
    if (tok_load(argv[1], &tok, &err)) {
        fprintf(stderr, "tool_tokdump: %s\n", err.msg);
        return 1;
    }
    int32_t *ids = malloc((size_t)max_len * sizeof *ids);
    size_t cap = 1 << 16;
    char *text = malloc(cap);
    /* A line holds at most max_len ids of at most 11 characters each. */
    char *line = malloc((size_t)max_len * 12 + 2);
    int rc = 0;
    if (!ids || !text || !line) {
        fprintf(stderr, "tool_tokdump: out of memory\n");
        rc = 1;
        goto out;
    }
    unsigned char hdr[4];
    while (read_full(hdr, 4)) {
        size_t n = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
        if (n > cap) {
            char *nt = realloc(text, n);
            if (!nt) {
                fprintf(stderr, "tool_tokdump: out of memory\n");
                rc = 1;
                goto out;
            }
            text = nt;
            cap = n;
        }
        if (n && !read_full(text, n)) {
            fprintf(stderr, "tool_tokdump: truncated record\n");
            rc = 1;
            goto out;
        }
        int k = tok_encode(tok, text, n, ids, (int)max_len);
        if (k < 0) {
            fprintf(stderr, "tool_tokdump: tok_encode failed (%d)\n", k);
            rc = 1;
            goto out;
        }
        char *p = line;
        for (int i = 0; i < k; i++)
            p += sprintf(p, i ? " %d" : "%d", ids[i]);
        *p++ = '\n';
        fwrite(line, 1, (size_t)(p - line), stdout);
    }
    if (ferror(stdin)) {
        fprintf(stderr, "tool_tokdump: read error\n");
        rc = 1;
    }
out:
    if (fflush(stdout) != 0)
        rc = 1;
    free(line);
    free(text);
    free(ids);
    tok_free(tok);
    return rc;
}
