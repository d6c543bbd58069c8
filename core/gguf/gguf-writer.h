/* A small GGUF v2/v3 writer, for tests and for synthetic model files.
 *
 * Usage:
 *   struct md_gguf_writer *w = md_gguf_writer_new();
 *   md_gguf_writer_add_str(w, "general.architecture", "llama");
 *   md_gguf_writer_add_u32(w, "llama.block_count", 1);
 *   md_gguf_writer_add_tensor(w, "output_norm.weight", MD_TYPE_F32, 1, ne, data);
 *   if (md_gguf_writer_write_file(w, "x.gguf", err, sizeof err)) ...
 *   md_gguf_writer_free(w);
 *
 * The adders validate their arguments (non-empty, NUL-free, UTF-8, unique
 * names; supported tensor type; 1..4 dims; ne >= 0; ne[0] a multiple of the
 * block size) and return 0 or -1. The first error is remembered
 * (md_gguf_writer_error) and makes the write functions fail, so a caller may
 * add everything and check once at the end.
 *
 * Layout written: header, the kv pairs in the order added (general.alignment
 * first when the alignment is not the default 32), the tensor infos in the
 * order added, padding to the alignment, then each tensor's data at the
 * running offset, padded to the alignment (the layout llama.cpp requires).
 * Scalars passed to the adders are in host representation; everything is
 * written little-endian.
 */
#ifndef MD_GGUF_WRITER_H
#define MD_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "gguf.h"

struct md_gguf_writer;

struct md_gguf_writer *md_gguf_writer_new(void);   /* NULL when out of memory */
void md_gguf_writer_free(struct md_gguf_writer *w);

/* GGUF version to write: 2 or 3 (default 3; the two differ only in the field). */
int md_gguf_writer_set_version(struct md_gguf_writer *w, uint32_t version);
/* Alignment: a power of 2 (default 32). A non-default one is stored as the
 * u32 general.alignment, which is also what add_u32("general.alignment") does. */
int md_gguf_writer_set_alignment(struct md_gguf_writer *w, uint32_t alignment);

/* Scalar of any non-string, non-array type; value points at that C type
 * (uint8_t, int16_t, float, double, bool as uint8_t 0/1, ...). */
int md_gguf_writer_add_scalar(struct md_gguf_writer *w, const char *key, uint32_t vtype,
                              const void *value);
int md_gguf_writer_add_u8(struct md_gguf_writer *w, const char *key, uint8_t v);
int md_gguf_writer_add_i8(struct md_gguf_writer *w, const char *key, int8_t v);
int md_gguf_writer_add_u16(struct md_gguf_writer *w, const char *key, uint16_t v);
int md_gguf_writer_add_i16(struct md_gguf_writer *w, const char *key, int16_t v);
int md_gguf_writer_add_u32(struct md_gguf_writer *w, const char *key, uint32_t v);
int md_gguf_writer_add_i32(struct md_gguf_writer *w, const char *key, int32_t v);
int md_gguf_writer_add_u64(struct md_gguf_writer *w, const char *key, uint64_t v);
int md_gguf_writer_add_i64(struct md_gguf_writer *w, const char *key, int64_t v);
int md_gguf_writer_add_f32(struct md_gguf_writer *w, const char *key, float v);
int md_gguf_writer_add_f64(struct md_gguf_writer *w, const char *key, double v);
int md_gguf_writer_add_bool(struct md_gguf_writer *w, const char *key, bool v);
int md_gguf_writer_add_str(struct md_gguf_writer *w, const char *key, const char *s);
/* A string value of len raw bytes (may hold NULs or non-UTF-8 bytes). */
int md_gguf_writer_add_str_n(struct md_gguf_writer *w, const char *key, const void *s, uint64_t len);

/* Array of n scalars of elem_type (not STRING/ARRAY), host representation. */
int md_gguf_writer_add_arr(struct md_gguf_writer *w, const char *key, uint32_t elem_type,
                           const void *elems, uint64_t n);
int md_gguf_writer_add_arr_f32(struct md_gguf_writer *w, const char *key, const float *v, uint64_t n);
int md_gguf_writer_add_arr_i32(struct md_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* Array of n NUL-terminated strings. */
int md_gguf_writer_add_arr_str(struct md_gguf_writer *w, const char *key,
                               const char *const *strs, uint64_t n);

/* Tensor with ne[0..n_dims-1] (ne[0] innermost). data holds exactly the
 * tensor's bytes (md_type_row_bytes(type, ne[0]) * ne[1] * ...); it is
 * BORROWED and must stay valid until the last write. NULL data writes zeros. */
int md_gguf_writer_add_tensor(struct md_gguf_writer *w, const char *name, uint32_t type,
                              uint32_t n_dims, const int64_t *ne, const void *data);

/* Tensor whose bytes are produced while writing, in chunks: fill(user, buf,
 * offset, n) must write bytes [offset, offset+n) of the tensor into buf.
 * For multi-GB synthetic files that never sit in memory whole. */
typedef void (*md_gguf_fill_fn)(void *user, void *buf, uint64_t offset, uint64_t n);
int md_gguf_writer_add_tensor_fill(struct md_gguf_writer *w, const char *name, uint32_t type,
                                   uint32_t n_dims, const int64_t *ne,
                                   md_gguf_fill_fn fill, void *user);

/* The first error of an adder, or "" when none. */
const char *md_gguf_writer_error(const struct md_gguf_writer *w);

/* Total size of the file that would be written (0 after an error). */
uint64_t md_gguf_writer_size(struct md_gguf_writer *w);

/* Write the file; on failure a partial file is removed. 0 or -1 (err set). */
int md_gguf_writer_write_file(struct md_gguf_writer *w, const char *path, char *err, size_t errlen);
/* Write into a malloc'd buffer (*buf, *size); the caller frees it. */
int md_gguf_writer_write_mem(struct md_gguf_writer *w, void **buf, size_t *size,
                             char *err, size_t errlen);

#endif
