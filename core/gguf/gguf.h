/* GGUF reader: a validating, read-only view of a GGUF v2/v3 file.
 *
 * The file is mmapped, read into memory once (md_gguf_read), or a caller's
 * buffer is borrowed; nothing else is copied.
 * md_gguf_open* validates every count, string length, dimension, offset and
 * byte size against the file size with overflow-safe arithmetic before any
 * of it is used, so every pointer handed out below is inside the mapping.
 * See docs/llama-cpp.md §1-2 for the format.
 *
 * Also rejected at open (with a message naming the field and its byte
 * offset): GGUF v1, duplicate keys, duplicate tensor names, key or tensor
 * names that are empty, contain NUL or are not valid UTF-8, bool values
 * other than 0/1, arrays of arrays, general.alignment not a power-of-2 u32,
 * tensor types md_type_layout() does not know (so every tensor's size is
 * known), tensors whose data is misaligned, past the end of the
 * file, or overlapping another tensor's. String VALUES are raw bytes, not
 * checked for UTF-8. Tensor data may have gaps (llama.cpp's exact packing is
 * not required).
 */
#ifndef MD_GGUF_H
#define MD_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "mustdrop.h"
#include "quant.h"

enum md_gguf_vtype {
    MD_GGUF_UINT8 = 0, MD_GGUF_INT8 = 1, MD_GGUF_UINT16 = 2, MD_GGUF_INT16 = 3,
    MD_GGUF_UINT32 = 4, MD_GGUF_INT32 = 5, MD_GGUF_FLOAT32 = 6, MD_GGUF_BOOL = 7,
    MD_GGUF_STRING = 8, MD_GGUF_ARRAY = 9, MD_GGUF_UINT64 = 10, MD_GGUF_INT64 = 11,
    MD_GGUF_FLOAT64 = 12,
    MD_GGUF_VTYPE_COUNT
};

#define MD_GGUF_MAX_DIMS 4

/* A string inside the mapping: not NUL-terminated. */
struct md_str {
    const char *ptr;
    uint64_t len;
};

struct md_gguf_kv {
    struct md_str key;
    uint32_t type;          /* enum md_gguf_vtype */
    uint32_t arr_type;      /* element type when type == MD_GGUF_ARRAY */
    uint64_t n;             /* element count for arrays, 1 otherwise */
    const uint8_t *data;    /* scalar value, or first array element; for a
                             * STRING scalar, its u64 length prefix */
    /* For arrays of strings: byte offset of element i from `data`
     * (n entries, built at open so access is O(1)). NULL otherwise. */
    uint64_t *str_offsets;
};

struct md_gguf_tensor {
    struct md_str name;
    uint32_t n_dims;
    int64_t ne[MD_GGUF_MAX_DIMS];  /* ne[0] innermost; unused dims are 1 */
    uint32_t type;                 /* enum md_type */
    uint64_t offset;               /* relative to the data section */
    uint64_t nbytes;               /* exact size of the data */
    const void *data;              /* inside the mapping */
};

struct md_gguf {
    const uint8_t *base;    /* start of file bytes */
    uint64_t size;          /* file size */
    uint32_t version;       /* 2 or 3 */
    uint64_t n_kv;
    struct md_gguf_kv *kv;
    uint64_t n_tensors;
    struct md_gguf_tensor *tensors;
    uint32_t alignment;     /* general.alignment or 32 */
    uint64_t data_offset;   /* absolute offset of the data section; may be
                             * past the end of a file without tensors
                             * (vocab-only files carry no final padding) */
    enum md_gguf_owns {
        MD_GGUF_BORROWED = 0,   /* md_gguf_open_memory: the caller's buffer */
        MD_GGUF_MAPPED = 1,     /* md_gguf_open: munmap at close */
        MD_GGUF_READ = 2,       /* md_gguf_read: free at close */
    } owns;
    char *path;             /* the file opened, for messages; NULL from memory */
};

/* Open a GGUF file: mapped (md_gguf_open) or read into memory the md_gguf
 * owns (md_gguf_read). Both return MD_OK or a negative enum md_status:
 *   MD_ERR_IO           the bytes cannot be had: no such file, permission
 *                       denied, a directory or another non-regular file,
 *                       a failed read or map;
 *   MD_ERR_FORMAT       the bytes are not a GGUF this reader accepts: an
 *                       empty file, not a GGUF file, truncated, malformed;
 *   MD_ERR_UNSUPPORTED  a real GGUF feature this reader does not take: a
 *                       version other than 2 and 3, big-endian, an unknown
 *                       tensor type, arrays of arrays;
 *   MD_ERR_NOMEM, MD_ERR_INVALID (NULL out or path).
 * The message in err (always NUL-terminated when errlen > 0) is
 * "<path>: <cause>[: <detail>]": the cause first, in words without ": ",
 * then the field and its byte offset, e.g.
 *   "m.gguf: truncated: the file has 1000 bytes, its header (kv count 28,
 *    tensor count 39) needs at least 1636"
 *   "m.gguf: malformed GGUF: tensor 3 'blk.0.attn_q.weight': offset 100 is
 *    not a multiple of the alignment 32".
 * Causes: "no such file", "permission denied", "is a directory, not a GGUF
 * file", "not a regular file (a FIFO)", "cannot open", "cannot read",
 * "cannot map the file", "empty file (0 bytes)", "not a GGUF file" or "not
 * a GGUF file (a PNG image)" (what it is when its first bytes say),
 * "truncated", "malformed GGUF", "unsupported GGUF version N",
 * "unsupported tensor type", "unsupported GGUF value", "out of memory ...".
 * A truncated file is MD_ERR_FORMAT, not MD_ERR_IO: it was read, it holds
 * less than its header declares (and a buffer cut the same way gives the
 * same status from md_gguf_open_memory). */
int md_gguf_open(const char *path, struct md_gguf **out, char *err, size_t errlen);
int md_gguf_read(const char *path, struct md_gguf **out, char *err, size_t errlen);
/* Parse a caller-owned buffer that must outlive the md_gguf (fuzzing,
 * tests); the same statuses and messages, without the path. */
int md_gguf_open_memory(const void *data, size_t size, struct md_gguf **out,
                        char *err, size_t errlen);
void md_gguf_close(struct md_gguf *g);

/* Write "<path>: " into err (for messages about a file) and return its
 * length, at most errlen - 1; 0 when path or err is NULL. */
size_t md_gguf_err_path(const char *path, char *err, size_t errlen);

/* Lookups: NULL / -1 when absent. */
const struct md_gguf_kv *md_gguf_find_kv(const struct md_gguf *g, const char *key);
const struct md_gguf_tensor *md_gguf_find_tensor(const struct md_gguf *g, const char *name);

/* Typed getters. Return 0 on success, -1 when absent, -2 when of an
 * incompatible type or out of range. Integer getters accept any integer
 * type (and bool) whose value fits. md_gguf_get_f32 accepts F32/F64/ints. */
int md_gguf_get_u32(const struct md_gguf *g, const char *key, uint32_t *v);
int md_gguf_get_i64(const struct md_gguf *g, const char *key, int64_t *v);
int md_gguf_get_f32(const struct md_gguf *g, const char *key, float *v);
int md_gguf_get_bool(const struct md_gguf *g, const char *key, bool *v);
int md_gguf_get_str(const struct md_gguf *g, const char *key, struct md_str *v);

/* Array element access; the kv must be an array of the matching type.
 * Return 0 or -2 (wrong type / index out of range). */
int md_gguf_arr_str(const struct md_gguf_kv *kv, uint64_t i, struct md_str *v);
int md_gguf_arr_f32(const struct md_gguf_kv *kv, uint64_t i, float *v);
int md_gguf_arr_i64(const struct md_gguf_kv *kv, uint64_t i, int64_t *v); /* any int type */

/* Compare an md_str with a C string. */
bool md_str_eq(struct md_str s, const char *c);

const char *md_gguf_vtype_name(uint32_t t);
/* Bytes of one value of a scalar type; 0 for STRING, ARRAY and unknown types. */
uint64_t md_gguf_vtype_size(uint32_t t);

/* (Added) Strict UTF-8 check: no overlongs, surrogates or code points above
 * U+10FFFF. Key and tensor names are checked at open; string values are not
 * (they are handed out as raw bytes). */
bool md_utf8_valid(const void *data, uint64_t len);

#endif
