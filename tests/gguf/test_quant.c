/* core/gguf/quant.c against gguf-py (tests/gguf/data/quant_golden.bin, made by
 * models/gen_quant_golden.py) and against exhaustive checks.
 *
 * Everything is compared BIT-EXACTLY: md_dequantize_row orders its float
 * operations like ggml / gguf-py (one rounding per multiply and per add, no
 * FMA), so no tolerance is needed. The one exception: NaN results (from the
 * golden blocks with an infinite scale) only need to be NaN on both sides. */
#include <stdint.h>

#include "md_test.h"
#include "quant.h"

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static int same_float(float a, float b)
{
    return fbits(a) == fbits(b) || (a != a && b != b);
}

static void check_golden(void)
{
    char path[1024];
    md_test_data("gguf/data/quant_golden.bin", path, sizeof path);
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "cannot open %s", path);
    if (!f) return;
    static uint8_t blob[1 << 20];
    size_t n = fread(blob, 1, sizeof blob, f);
    fclose(f);
    CHECK(n > 12 && n < sizeof blob && memcmp(blob, "MDQG", 4) == 0 && ld32(blob + 4) == 1);
    if (!(n > 12 && memcmp(blob, "MDQG", 4) == 0)) return;
    uint32_t n_rec = ld32(blob + 8);
    size_t p = 12;
    int seen[4] = { 0 };
    uint32_t dq_types = 0;
    for (uint32_t r = 0; r < n_rec; r++) {
        CHECK(p + 16 <= n);
        if (p + 16 > n) return;
        uint32_t kind = ld32(blob + p), type = ld32(blob + p + 4);
        uint32_t ne = ld32(blob + p + 8), nb = ld32(blob + p + 12);
        p += 16;
        size_t need = kind == 0 ? nb + 4 * (size_t)ne : 4 * (size_t)ne + nb;
        CHECKF(kind < 4 && p + need <= n, "record %u kind %u truncated", r, kind);
        if (kind >= 4 || p + need > n) return;
        seen[kind]++;
        float *x = malloc(4 * (size_t)ne + 4);
        uint8_t *q = malloc(nb + 64);
        if (!x || !q) { free(x); free(q); CHECK(0); return; }
        int bad = 0;
        if (kind == 0) {
            const uint8_t *src = blob + p;
            CHECKF(md_type_row_bytes(type, ne) == (int64_t)nb, "%s: %u elems in %u bytes",
                   md_type_name(type), ne, nb);
            for (uint32_t i = 0; i < ne; i++) x[i] = bitsf(0xdeadbeefu);
            memcpy(q, src, nb);          /* aligned copy */
            md_dequantize_row(type, q, x, ne);
            for (uint32_t i = 0; i < ne; i++) {
                float want = bitsf(ld32(src + nb + 4 * i));
                if (!same_float(x[i], want) && bad++ < 5)
                    CHECKF(0, "dequant %s elem %u: got %.9g (%08x) want %.9g (%08x)",
                           md_type_name(type), i, x[i], fbits(x[i]), want, fbits(want));
            }
            dq_types |= 1u << (type < 31 ? type : 31);
            printf("dequantize %-5s %5u elems: %s\n", md_type_name(type), ne, bad ? "MISMATCH" : "bit-exact");
        } else if (kind == 1) {
            for (uint32_t i = 0; i < ne; i++) x[i] = bitsf(ld32(blob + p + 4 * i));
            const uint8_t *want = blob + p + 4 * (size_t)ne;
            memset(q, 0xa5, nb + 64);
            if (type == MD_TYPE_Q8_0) md_quantize_row_q8_0(x, q, ne);
            else if (type == MD_TYPE_Q4_0) md_quantize_row_q4_0(x, q, ne);
            else CHECKF(0, "quantize record of type %u", type);
            for (uint32_t i = 0; i < nb; i++)
                if (q[i] != want[i] && bad++ < 5)
                    CHECKF(0, "quantize %s byte %u (block %u): got %02x want %02x",
                           md_type_name(type), i, i / (uint32_t)md_type_block_bytes(type), q[i], want[i]);
            CHECKF(q[nb] == 0xa5, "quantize %s wrote past the end", md_type_name(type));
            printf("quantize   %-5s %5u elems: %s\n", md_type_name(type), ne, bad ? "MISMATCH" : "bit-exact");
        } else {
            for (uint32_t i = 0; i < ne; i++) {
                float in = bitsf(ld32(blob + p + 4 * i));
                const uint8_t *w = blob + p + 4 * (size_t)ne + 2 * i;
                uint16_t want = (uint16_t)(w[0] | (w[1] << 8));
                uint16_t got = kind == 2 ? md_fp32_to_fp16(in) : md_fp32_to_bf16(in);
                if (got != want && bad++ < 5)
                    CHECKF(0, "fp32->%s of %.9g (%08x): got %04x want %04x",
                           kind == 2 ? "fp16" : "bf16", in, fbits(in), got, want);
            }
            printf("fp32->%s %5u values: %s\n", kind == 2 ? "fp16" : "bf16", ne, bad ? "MISMATCH" : "bit-exact");
        }
        free(x);
        free(q);
        p += need;
    }
    CHECK(p == n);
    CHECK(seen[0] == 11 && seen[1] == 2 && seen[2] == 1 && seen[3] == 1);
    static const uint32_t all[] = { MD_TYPE_F32, MD_TYPE_F16, MD_TYPE_BF16, MD_TYPE_Q4_0, MD_TYPE_Q4_1,
        MD_TYPE_Q5_0, MD_TYPE_Q5_1, MD_TYPE_Q8_0, MD_TYPE_Q4_K, MD_TYPE_Q5_K, MD_TYPE_Q6_K };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        CHECKF(dq_types & (1u << (all[i] < 31 ? all[i] : 31)), "no golden for %s", md_type_name(all[i]));
}

/* fp16 -> fp32 by arithmetic, as an independent reference. */
static float half_ref(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(m | 1024), e - 25);
    return s ? -v : v;
}

static void check_fp16_exhaustive(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = md_fp16_to_fp32((uint16_t)h);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan) {
            /* NaN: sign and payload kept; back to fp16 it comes out quiet */
            uint32_t want = ((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13);
            if (fbits(f) != want && bad++ < 5) CHECKF(0, "fp16 %04x -> %08x", h, fbits(f));
            uint16_t back = md_fp32_to_fp16(f);
            if (back != (h | 0x200) && bad++ < 5) CHECKF(0, "fp16 NaN %04x round trip %04x", h, back);
            continue;
        }
        float want = half_ref((uint16_t)h);
        if (fbits(f) != fbits(want) && bad++ < 5)
            CHECKF(0, "fp16 %04x -> %.9g, want %.9g", h, f, want);
        uint16_t back = md_fp32_to_fp16(f);
        if (back != h && bad++ < 5) CHECKF(0, "fp16 round trip %04x -> %04x", h, back);
    }
    /* Rounding: the midpoint between consecutive halves goes to the even one,
     * one float ulp either side to the nearer one. Covers subnormals, the
     * subnormal/normal boundary and the overflow to inf at 65520. */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        for (int sgn = 0; sgn < 2; sgn++) {
            uint16_t a = (uint16_t)(h | (sgn << 15)), b = (uint16_t)((h + 1) | (sgn << 15));
            float mid = h == 0x7bff ? 65520.0f  /* b is inf: the overflow threshold */
                        : (float)(((double)md_fp16_to_fp32(a) + (double)md_fp16_to_fp32(b)) / 2);
            if (sgn) mid = h == 0x7bff ? -65520.0f : mid;
            uint16_t even = (h & 1) ? b : a;
            float below = nextafterf(mid, sgn ? INFINITY : 0.0f);   /* towards a */
            float above = nextafterf(mid, sgn ? -INFINITY : INFINITY);
            if (md_fp32_to_fp16(mid) != even && bad++ < 5)
                CHECKF(0, "midpoint %.9g -> %04x want %04x", mid, md_fp32_to_fp16(mid), even);
            if (md_fp32_to_fp16(below) != a && bad++ < 5)
                CHECKF(0, "%.9g -> %04x want %04x", below, md_fp32_to_fp16(below), a);
            if (md_fp32_to_fp16(above) != b && bad++ < 5)
                CHECKF(0, "%.9g -> %04x want %04x", above, md_fp32_to_fp16(above), b);
        }
    }
    CHECK(md_fp32_to_fp16(1e10f) == 0x7c00);
    CHECK(md_fp32_to_fp16(-INFINITY) == 0xfc00);
    CHECK(md_fp32_to_fp16(1e-30f) == 0x0000);
    CHECK(md_fp32_to_fp16(-1e-30f) == 0x8000);
    CHECK(md_fp32_to_fp16(bitsf(0x7f800001u)) == 0x7e00);     /* sNaN -> quiet */
    CHECK(md_fp32_to_fp16(bitsf(0xffc00000u)) == 0xfe00);
    printf("fp16: all 65536 values and all midpoints checked\n");
}

static void check_bf16_exhaustive(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = md_bf16_to_fp32((uint16_t)h);
        if (fbits(f) != h << 16 && bad++ < 5) CHECKF(0, "bf16 %04x -> %08x", h, fbits(f));
        int is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        uint16_t back = md_fp32_to_bf16(f), want = (uint16_t)(is_nan ? h | 0x40 : h);
        if (back != want && bad++ < 5) CHECKF(0, "bf16 round trip %04x -> %04x", h, back);
        if (h < 0x7f7f || (h >= 0x8000 && h < 0xff7f)) {
            /* ties between h and h+1 (same sign) go to even */
            uint32_t mid = (h << 16) | 0x8000u;
            uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);
            if (md_fp32_to_bf16(bitsf(mid)) != even && bad++ < 5)
                CHECKF(0, "bf16 tie %08x -> %04x", mid, md_fp32_to_bf16(bitsf(mid)));
            if (md_fp32_to_bf16(bitsf(mid - 1)) != h && bad++ < 5) CHECKF(0, "bf16 below tie %08x", mid);
            if (md_fp32_to_bf16(bitsf(mid + 1)) != h + 1 && bad++ < 5) CHECKF(0, "bf16 above tie %08x", mid);
        }
    }
    CHECK(md_fp32_to_bf16(bitsf(0x7f7fffffu)) == 0x7f80);     /* FLT_MAX rounds to inf */
    printf("bf16: all 65536 values and all ties checked\n");
}

static void check_types(void)
{
    static const struct { uint32_t t; const char *name; int64_t be, bb; } tt[] = {
        { MD_TYPE_F32, "F32", 1, 4 }, { MD_TYPE_F16, "F16", 1, 2 }, { MD_TYPE_BF16, "BF16", 1, 2 },
        { MD_TYPE_Q4_0, "Q4_0", 32, 18 }, { MD_TYPE_Q4_1, "Q4_1", 32, 20 },
        { MD_TYPE_Q5_0, "Q5_0", 32, 22 }, { MD_TYPE_Q5_1, "Q5_1", 32, 24 },
        { MD_TYPE_Q8_0, "Q8_0", 32, 34 }, { MD_TYPE_Q4_K, "Q4_K", 256, 144 },
        { MD_TYPE_Q5_K, "Q5_K", 256, 176 }, { MD_TYPE_Q6_K, "Q6_K", 256, 210 },
    };
    for (size_t i = 0; i < sizeof tt / sizeof tt[0]; i++) {
        CHECK(md_type_supported(tt[i].t));
        CHECK(strcmp(md_type_name(tt[i].t), tt[i].name) == 0);
        CHECK(strcmp(md_ggml_type_name(tt[i].t), tt[i].name) == 0);
        CHECK(md_type_block_elems(tt[i].t) == tt[i].be);
        CHECK(md_type_block_bytes(tt[i].t) == tt[i].bb);
        CHECK(md_type_row_bytes(tt[i].t, 0) == 0);
        CHECK(md_type_row_bytes(tt[i].t, 4096) == 4096 / tt[i].be * tt[i].bb);
        CHECK(md_type_row_bytes(tt[i].t, -tt[i].be) == -1);
        if (tt[i].be > 1) CHECK(md_type_row_bytes(tt[i].t, tt[i].be + 1) == -1);
        /* overflow-safe near 2^62 */
        int64_t big = ((int64_t)1 << 62) / tt[i].be * tt[i].be;
        int64_t rb = md_type_row_bytes(tt[i].t, big);
        CHECK(rb == -1 || rb == big / tt[i].be * tt[i].bb);
        CHECK(md_type_row_bytes(tt[i].t, INT64_MAX / tt[i].be * tt[i].be) == -1 || tt[i].bb <= tt[i].be);
    }
    static const uint32_t unsup[] = { 4, 5, 9, 10, 11, 15, 16, 23, 29, 31, 200, 0xffffffffu };
    for (size_t i = 0; i < sizeof unsup / sizeof unsup[0]; i++) {
        CHECK(!md_type_supported(unsup[i]));
        CHECK(strcmp(md_type_name(unsup[i]), "?") == 0);
        CHECK(md_type_block_elems(unsup[i]) == 0 && md_type_block_bytes(unsup[i]) == 0);
        CHECK(md_type_row_bytes(unsup[i], 256) == -1);
    }
    CHECK(strcmp(md_ggml_type_name(10), "Q2_K") == 0);
    CHECK(strcmp(md_ggml_type_name(23), "IQ4_XS") == 0);
    CHECK(strcmp(md_ggml_type_name(4), "?") == 0);

    /* bad calls write nothing */
    float out[64];
    uint8_t src[256] = { 0 };
    for (int i = 0; i < 64; i++) out[i] = 42.0f;
    md_dequantize_row(10, src, out, 32);
    md_dequantize_row(MD_TYPE_Q8_0, src, out, 33);
    md_dequantize_row(MD_TYPE_Q8_0, src, out, -32);
    md_dequantize_row(MD_TYPE_Q8_0, NULL, out, 32);
    md_quantize_row_q8_0(out, src, 31);
    int untouched = 1;
    for (int i = 0; i < 64; i++) untouched &= out[i] == 42.0f;
    CHECK(untouched);
    for (int i = 0; i < 256; i++) untouched &= src[i] == 0;
    CHECK(untouched);
}

static void check_q8_0_properties(void)
{
    /* |x - dequant(quant(x))| <= d/2 + 127 d 2^-11 (the fp16 rounding of d), and
     * NaN / inf inputs give no undefined behaviour. */
    float x[64], y[64];
    uint8_t q[68];
    uint32_t s = 1;
    for (int i = 0; i < 64; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 10.0f;
    }
    md_quantize_row_q8_0(x, q, 64);
    md_dequantize_row(MD_TYPE_Q8_0, q, y, 64);
    for (int b = 0; b < 2; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
        for (int j = 0; j < 32; j++)
            CHECKF(fabsf(x[32 * b + j] - y[32 * b + j]) <= amax / 127 * 0.57f + 1e-6f,
                   "q8_0 error at %d", 32 * b + j);
    }
    x[3] = NAN;
    x[40] = INFINITY;
    md_quantize_row_q8_0(x, q, 64);
    md_quantize_row_q4_0(x, q, 64);
    CHECK(1);
}

int main(void)
{
    check_types();
    check_golden();
    check_fp16_exhaustive();
    check_bf16_exhaustive();
    check_q8_0_properties();
    return md_test_finish("gguf_quant");
}
