/* Helpers for tests that make quantized blocks by hand (test_matmul,
 * test_qdot): a small deterministic random stream and an fp16 field
 * writer. Include after quant.h. */
#ifndef MD_TEST_QUANT_H
#define MD_TEST_QUANT_H

#include <stdint.h>

struct rng { uint64_t s; };

/* xorshift64: the same seed gives the same blocks on every machine */
static inline uint32_t rng_u32(struct rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)(r->s >> 11);
}

static inline float rng_f(struct rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)(rng_u32(r) & 0xffffff) / (float)0x1000000;
}

/* A little-endian fp16 field, as GGUF blocks store their scales. */
static inline void put_f16(uint8_t *p, float v)
{
    uint16_t h = md_fp32_to_fp16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

#endif
