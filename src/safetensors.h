/* safetensors.h - read-only, validated access to a .safetensors file (prefix st_).
 *
 * The file is mmapped. st_open validates the header strictly before anything is
 * handed out: the 8-byte little-endian header length is inside the file and
 * sane; the header is well-formed JSON object; every tensor entry has a known
 * dtype, a shape of non-negative dimensions, data_offsets [begin, end] inside the
 * data area with end - begin == product(shape) * dtype size (no overflow);
 * tensors do not overlap. A truncated or hostile file is an error with a
 * message naming the file and the problem, never a crash. */
#ifndef JM_SAFETENSORS_H
#define JM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    const char *name;     /* owned by the st_file */
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;     /* points into the mapping; valid until st_close */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;

/* Map and validate `path`. On success *out is owned by the caller (st_close). */
int st_open(const char *path, st_file **out, jm_err *err);
void st_close(st_file *f); /* accepts NULL */

const char *st_path(const st_file *f);
int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);
/* Tensor by exact name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);
size_t st_dtype_size(st_dtype d);
const char *st_dtype_name(st_dtype d);

/* Check that `t` exists with this dtype and shape (ndim dims); fills err with
 * "FILE: tensor NAME: expected F32 [384, 384], found ..." on mismatch. */
int st_expect(const st_file *f, const char *name, st_dtype dtype, int ndim,
              const int64_t *shape, const st_tensor **out, jm_err *err);

/* Tell the kernel that the mapped pages of `t` are not needed any more (after
 * the caller copied them, or between uses of a large table read sparsely):
 * they leave this process's resident set and come back from the file on the
 * next access. The data stays valid to read. */
void st_release(const st_file *f, const st_tensor *t);

/* Copy tensor `t` into dst as float32 (F32, F16 and BF16 accepted). */
int st_to_f32(const st_tensor *t, float *dst, jm_err *err);

#endif
