/* FlashVID's and HoliTom's rules on hand-made inputs
 * (docs/reduction-methods.md §10, §11): budgets, DySeg cuts, ADTS picks,
 * tree merges and DPC-kNN clusters checked by hand; HoliTom's window gain,
 * its DP against a brute-force search, the beta merge rule, whole clips of
 * identical and of alternating frames; the spec's composition rules. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "md_test.h"
#include "reduce-impl.h"

static bool near(float a, float b) { return fabsf(a - b) < 1e-5f; }

/* Row r of a [.][D] array set to a one-hot (or scaled) vector. */
static void onehot(float *x, int32_t D, int32_t r, int32_t axis, float v)
{
    memset(x + (size_t)r * D, 0, sizeof(float) * (size_t)D);
    x[(size_t)r * D + axis] = v;
}

/* ---- FlashVID ----------------------------------------------------------- */

static void fv_budget(void)
{
    struct md_flashvid_params p = { 0.1f, 0, 0.7f, 0.9f, 0.8f, 1.25f, 8, false };
    int32_t b, a, s;
    md_reduce_flashvid_budget(&p, 196, &b, &a, &s);   /* the digest's example: 25 = 18 + 7 */
    CHECKF(b == 25 && a == 18 && s == 7, "196 x 0.1: %d = %d + %d", b, a, s);
    p.keep = 0.25f;
    md_reduce_flashvid_budget(&p, 169, &b, &a, &s);   /* 53 = 38 + 15 */
    CHECKF(b == 53 && a == 38 && s == 15, "169 x 0.25: %d = %d + %d", b, a, s);
    p.tokens = 4;
    p.expansion = 1.0f;
    md_reduce_flashvid_budget(&p, 9, &b, &a, &s);     /* tokens= is B itself: 4 = 3 + 1 */
    CHECK(b == 4 && a == 3 && s == 1);
    p.tokens = 0;
    p.keep = 0.0f;
    md_reduce_flashvid_budget(&p, 9, &b, &a, &s);     /* never empty */
    CHECK(b == 1 && a == 1 && s == 0);
}

/* Descriptors: frames 0-3 along one axis, 4-7 along an orthogonal one. */
static void fv_dyseg(void)
{
    enum { F = 8, D = 2 };
    float g[F * D];
    for (int32_t f = 0; f < F; f++)
        onehot(g, D, f, f < 4 ? 0 : 1, 1.0f + 0.1f * f);
    int32_t st[F + 1];
    int32_t n = md_reduce_dyseg(g, F, D, 0.9f, 2, st);
    CHECKF(n == 2 && st[0] == 0 && st[1] == 4 && st[2] == F, "hard cut: %d segments", n);
    n = md_reduce_dyseg(g, F, D, 0.9f, 1, st);         /* no fill-up needed */
    CHECK(n == 2 && st[1] == 4);
    /* the fill-up cuts the least similar pairs first: frame 6 turns away a bit */
    g[6 * D + 0] = 0.5f;
    n = md_reduce_dyseg(g, F, D, 0.9f, 4, st);
    CHECKF(n == 4 && st[1] == 4 && st[2] == 6 && st[3] == 7 && st[4] == F,
           "fill-up: %d segments, starts %d %d %d", n, st[1], st[2], st[3]);
    /* 32 identical frames, at least 8 segments: exactly 8, none empty */
    float h[32 * D];
    for (int32_t f = 0; f < 32; f++)
        onehot(h, D, f, 0, 1.0f);
    int32_t s32[33];
    n = md_reduce_dyseg(h, 32, D, 0.9f, 8, s32);
    CHECKF(n == 8, "identical frames: %d segments", n);
    for (int32_t i = 0; i < n; i++)
        CHECK(s32[i + 1] > s32[i]);
    /* fewer frames than min_segs: one segment a frame, never an empty one */
    n = md_reduce_dyseg(g, 3, D, 0.9f, 8, st);
    CHECK(n == 3 && st[0] == 0 && st[1] == 1 && st[2] == 2 && st[3] == 3);
}

/* 9 rows in 3 well-separated directions, equal attention: 3 picks are one
 * per direction; k = n picks every row once; attention weights the pick. */
static void fv_adts(void)
{
    enum { N = 9, D = 3 };
    float x[N * D];
    for (int32_t i = 0; i < N; i++) {
        onehot(x, D, i, i % 3, 1.0f);
        x[(size_t)i * D + (i % 3 + 1) % 3] = 0.01f * (float)(i / 3);   /* tiny jitter */
    }
    int32_t idx[N];
    CHECK(md_reduce_adts(x, NULL, NULL, N, D, 3, idx) == 3);
    bool dir[3] = { false, false, false };
    for (int32_t i = 0; i < 3; i++)
        dir[idx[i] % 3] = true;
    CHECKF(dir[0] && dir[1] && dir[2], "picks %d %d %d", idx[0], idx[1], idx[2]);
    CHECK(idx[0] < idx[1] && idx[1] < idx[2]);
    CHECK(md_reduce_adts(x, NULL, NULL, N, D, N, idx) == N);
    for (int32_t i = 0; i < N; i++)
        CHECKF(idx[i] == i, "k = n: index %d is %d", i, idx[i]);
    /* duplicates and negative relevance: still no index twice */
    float rel[N];
    for (int32_t i = 0; i < N; i++)
        rel[i] = i % 2 ? -1.0f : 1.0f;
    CHECK(md_reduce_adts(x, NULL, rel, N, D, 6, idx) == 6);
    for (int32_t i = 1; i < 6; i++)
        CHECK(idx[i] > idx[i - 1]);
    /* one pick: all rows equally far apart (3 orthogonal), attention decides */
    float y[3 * 3] = { 1, 0, 0, 0, 1, 0, 0, 0, 1 }, a[3] = { 0.1f, 0.5f, 0.2f };
    CHECK(md_reduce_adts(y, a, NULL, 3, 3, 1, idx) == 1 && idx[0] == 1);
}

/* Three frames of two tokens: token 0 matches itself across frames, so its
 * tree is (a + b + c) / 3 at frame 0; token 1 is an ADTS pick in frame 1,
 * which cuts its chain: frames 0 and 2 keep their own token 1. */
static void fv_tstm(void)
{
    enum { F = 3, N = 2, D = 2 };
    float x[F * N * D] = {
        1.0f, 0.1f,   0.0f, 1.0f,     /* frame 0 */
        1.0f, 0.2f,   0.0f, 1.0f,     /* frame 1 */
        1.0f, 0.3f,   0.0f, 1.0f,     /* frame 2 */
    };
    bool skip[F * N] = { false, false, false, true, false, false }, root[F * N];
    int32_t roots = md_reduce_tstm(x, skip, F, N, D, 0.8f, 0, root);
    CHECKF(roots == 3, "roots %d", roots);
    CHECK(root[0] && root[1] && !root[2] && !root[3] && !root[4] && root[5]);
    CHECKF(near(x[0], 1.0f) && near(x[1], 0.2f), "tree mean (%g, %g)", x[0], x[1]);
    CHECK(near(x[2 * N * D + 2], 0.0f) && near(x[2 * N * D + 3], 1.0f));   /* untouched */
    /* lower bound: with thresh -1 every link would merge; bound 5 keeps 5
     * roots counting the ADTS pick, i.e. 4 roots of the rest */
    float z[F * N * D];
    for (int32_t i = 0; i < F * N; i++) {
        z[i * D] = 1.0f;
        z[i * D + 1] = 0.1f * (float)i;
    }
    roots = md_reduce_tstm(z, skip, F, N, D, -1.0f, 5, root);
    CHECKF(roots >= 4, "bound: %d roots", roots);
    roots = md_reduce_tstm(z, skip, F, N, D, -1.0f, 0, root);
    CHECKF(roots == 2, "no bound: %d roots (frame 0's two)", roots);
}

/* Two tight groups of three far apart: the middle row of each is the
 * densest, so the centres; members go to their own group's centre. */
static void dpc_knn(void)
{
    enum { N = 6, D = 2 };
    float x[N * D] = { 0, 0,  0.1f, 0,  -0.1f, 0,  10, 10,  10.2f, 10,  9.8f, 10 };
    int32_t c[N], as[N];
    CHECK(md_reduce_dpc_knn(x, N, D, 2, 3, c, as) == 2);
    CHECKF(c[0] == 0 && c[1] == 3, "centres %d %d (the groups' middles)", c[0], c[1]);
    CHECKF(c[0] < 3 && c[1] >= 3, "centres %d %d", c[0], c[1]);
    for (int32_t i = 0; i < N; i++)
        CHECKF(as[i] == (i < 3 ? 0 : 1), "row %d -> centre %d", i, as[i]);
    CHECK(md_reduce_dpc_knn(x, N, D, 99, 7, c, as) == N);   /* clamped: every row a centre */
    for (int32_t i = 0; i < N; i++)
        CHECK(c[i] == i && as[i] == i);
    CHECK(md_reduce_dpc_knn(x, 0, D, 2, 2, c, as) == 0);
}

/* A clip of 4 identical frames of 9 tokens, one segment (segs=1): ADTS
 * keeps B_adts a frame, the other tokens chain to frame 0 and are merged
 * into B_sttm * F rows at most; every output row belongs to a frame. */
static void fv_clip(void)
{
    enum { F = 4, N = 9, D = 3 };
    float x[F * N * D], out[F * N * D];
    for (int32_t f = 0; f < F; f++)
        for (int32_t j = 0; j < N; j++)
            for (int32_t d = 0; d < D; d++)
                x[((size_t)f * N + j) * D + d] = (float)((j * 7 + d * 3) % 5) + 0.5f * (float)d;
    struct md_flashvid_params p = { 0.5f, 0, 0.7f, 0.9f, 0.8f, 1.0f, 1, false };
    int32_t fr[F * N], src[F * N], B, BA, BS;
    md_reduce_flashvid_budget(&p, N, &B, &BA, &BS);   /* 5 = 4 + 1 */
    int32_t m = md_reduce_flashvid(x, NULL, F, N, D, &p, out, fr, src);
    CHECKF(m >= F * BA && m <= F * B, "kept %d (ADTS %d a frame, budget %d)", m, BA, B);
    for (int32_t i = 1; i < m; i++)
        CHECK(fr[i] > fr[i - 1] || (fr[i] == fr[i - 1] && src[i] > src[i - 1]));
    int32_t per[F] = { 0 };
    for (int32_t i = 0; i < m; i++)
        per[fr[i]]++;
    for (int32_t f = 0; f < F; f++)
        CHECKF(per[f] >= BA, "frame %d keeps %d", f, per[f]);
}

/* ---- HoliTom ------------------------------------------------------------- */

/* 4 frames, 5 positions: positions 0-2 above tau on all 3 pairs -> G = 9;
 * position 3 dips once; position 4 never similar. */
static void ht_gain(void)
{
    enum { N = 5 };
    float sg[3 * N] = {
        0.9f, 0.95f, 0.99f, 0.9f, 0.1f,
        0.9f, 0.95f, 0.99f, 0.5f, 0.1f,
        0.9f, 0.95f, 0.99f, 0.9f, 0.1f,
    };
    CHECK(md_reduce_holitom_gain(sg, N, 0, 3, 0.8f) == 9);
    CHECK(md_reduce_holitom_gain(sg, N, 0, 0, 0.8f) == 0);
    CHECK(md_reduce_holitom_gain(sg, N, 2, 3, 0.8f) == 4);    /* one pair: 4 static */
    CHECK(md_reduce_holitom_gain(sg, N, 0, 3, 0.95f) == 3);   /* strict: 0.95 is not > */
}

static int64_t brute(const float *sg, int32_t F, int32_t N, float tau, int32_t from)
{
    if (from >= F)
        return 0;
    int64_t best = -1;
    for (int32_t e = from; e < F; e++) {
        int64_t g = md_reduce_holitom_gain(sg, N, from, e, tau) + brute(sg, F, N, tau, e + 1);
        best = g > best ? g : best;
    }
    return best;
}

/* The DP's partition gains exactly the brute-force best over all
 * partitions, on pseudo-random similarities. */
static void ht_dp(void)
{
    enum { N = 4 };
    uint64_t st = 7;
    for (int32_t trial = 0; trial < 40; trial++) {
        int32_t F = 2 + trial % 7;
        float sg[8 * N];
        for (int32_t i = 0; i < (F - 1) * N; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            sg[i] = (float)(st >> 40) / (float)(1ull << 24);
        }
        int32_t start[9];
        int64_t removed = -1;
        int32_t w = md_reduce_holitom_windows(sg, F, N, 0.5f, 1024, start, &removed);
        int64_t sum = 0;
        CHECK(w >= 1 && start[0] == 0 && start[w] == F);
        for (int32_t i = 0; i < w; i++) {
            CHECK(start[i + 1] > start[i]);
            sum += md_reduce_holitom_gain(sg, N, start[i], start[i + 1] - 1, 0.5f);
        }
        int64_t best = brute(sg, F, N, 0.5f, 0);
        CHECKF(removed == best && sum == best, "F=%d: dp %lld, partition %lld, brute %lld", F,
               (long long)removed, (long long)sum, (long long)best);
    }
    /* window cap: 6 identical frames, windows of at most 2 */
    float one[5 * N];
    for (int32_t i = 0; i < 5 * N; i++)
        one[i] = 1.0f;
    int32_t start[7];
    int64_t removed;
    CHECK(md_reduce_holitom_windows(one, 6, N, 0.8f, 2, start, &removed) == 3 && removed == 3 * N);
    CHECK(md_reduce_holitom_windows(one, 6, N, 0.8f, 1024, start, &removed) == 1 && removed == 5 * N);
}

static void ht_merge(void)
{
    float x[3 * 2] = { 1, 2,  3, 4,  5, 8 }, out[2];
    int32_t mem[3] = { 0, 1, 2 };
    md_reduce_holitom_merge(x, 2, 0, mem, 3, 0.6f, out);   /* 0.6 c + 0.4 (m1 + m2) / 2 */
    CHECKF(near(out[0], 0.6f * 1 + 0.4f * 4) && near(out[1], 0.6f * 2 + 0.4f * 6),
           "(%g, %g)", out[0], out[1]);
    md_reduce_holitom_merge(x, 2, 1, mem + 1, 1, 0.6f, out);   /* a centre alone stays */
    CHECK(out[0] == 3 && out[1] == 4);
}

/* Identical frames: one window, every position static, round(N * r')
 * rows (r' = min(r * F, 1)) in frame 0, all flagged static. Alternating
 * frames: windows of one frame each, per-frame top ceil(N * r) by score. */
static void ht_clip(void)
{
    enum { F = 6, N = 9, D = 3 };
    float x[F * N * D], out[F * N * D], a[F * N];
    for (int32_t f = 0; f < F; f++)
        for (int32_t j = 0; j < N; j++) {
            for (int32_t d = 0; d < D; d++)
                x[((size_t)f * N + j) * D + d] = (float)((j * 5 + d * 2) % 7) + 1.0f;
            a[f * N + j] = (float)j;
        }
    int32_t fr[F * N], src[F * N];
    bool stat[F * N];
    struct md_holitom_params p = { 0.1f, 0.8f, 0.6f, 1024, true };
    int32_t m = md_reduce_holitom(x, a, F, N, D, &p, out, fr, src, stat);
    int32_t want = (int32_t)lround(N * fmin(0.1 * F, 1.0));   /* 5 */
    CHECKF(m == want, "identical frames: %d rows, want %d", m, want);
    for (int32_t i = 0; i < m; i++)
        CHECK(fr[i] == 0 && stat[i]);
    /* alternating A, B: each position flips to an orthogonal row */
    for (int32_t f = 0; f < F; f++)
        for (int32_t j = 0; j < N; j++)
            onehot(x, D, f * N + j, f % 2 ? 0 : 1, 1.0f + 0.1f * (float)j);
    p.keep = 0.25f;
    m = md_reduce_holitom(x, a, F, N, D, &p, out, fr, src, stat);
    CHECKF(m == F * 3, "alternating: %d rows, want %d", m, F * 3);   /* ceil(9 * 0.25) = 3 */
    for (int32_t i = 0; i < m; i++)
        CHECKF(!stat[i] && fr[i] == i / 3 && src[i] == 6 + i % 3, "row %d: frame %d src %d", i,
               fr[i], src[i]);
    /* dynamic rows left whole for a per-frame method */
    p.select_dynamic = false;
    CHECK(md_reduce_holitom(x, a, F, N, D, &p, out, fr, src, stat) == F * N);
}

/* ---- spec: composition of stage (b)'s two parts --------------------------- */

static void bad(const char *spec, const char *want)
{
    struct md_reduce_config c;
    char err[256] = "";
    CHECKF(md_reduce_parse(spec, &c, err, sizeof err) == MD_ERR_INVALID && strstr(err, want),
           "'%s' -> '%s' (want '%s')", spec, err, want);
}

static void spec(void)
{
    struct md_reduce_config c;
    char err[256] = "", buf[512];
    CHECK(md_reduce_parse("flashvid", &c, err, sizeof err) == MD_OK);
    CHECK(c.methods == MD_REDUCE_FLASHVID && c.fv_keep == 0.25f && c.fv_alpha == 0.7f &&
          c.fv_seg_thresh == 0.9f && c.fv_min_segs == 8 && c.fv_temp_thresh == 0.8f &&
          c.fv_expansion == 1.0f && !c.fv_adts_v1 && md_reduce_stages(&c) == MD_STAGE_SELECT);
    CHECK(md_reduce_parse("holitom", &c, err, sizeof err) == MD_OK);
    CHECK(c.ht_keep == 0.1f && c.ht_tau == 0.8f && c.ht_beta == 0.6f && c.ht_max_window == 1024);
    CHECK(md_reduce_parse("flashvid:tokens=20,alpha=0.5,seg=0.8,segs=4,temporal=0.7,"
                          "expansion=1.25,adts=v1+fastv:k=20,r=0.7", &c, err, sizeof err) == MD_OK);
    CHECK(c.fv_tokens == 20 && c.fv_min_segs == 4 && c.fv_adts_v1 && c.fastv_k == 20 &&
          md_reduce_stages(&c) == (MD_STAGE_SELECT | MD_STAGE_PREFILL));
    /* a temporal and a per-frame method compose (either order) */
    static const char *ok[] = { "holitom:keep=0.25+visionzip:keep=0.25",
                                "cdpruner:keep=0.25+holitom:keep=0.25,tau=0.7",
                                "holitom+random:keep=0.5", "dycoke:k=0.7+visionzip",
                                "stmerge+cdpruner", "holitom:tokens=3,beta=0.5,window=4+hired",
                                "holitom+uniform:tokens=4+fastv:k=2+cap:tokens=40",
                                "flashvid:keep=0.5,pos=renumber" };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CHECKF(md_reduce_parse(ok[i], &c, err, sizeof err) == MD_OK, "%s: %s", ok[i], err);
        /* the canonical text reads back to the same config */
        struct md_reduce_config d;
        CHECK(md_reduce_format(&c, buf, sizeof buf) > 0);
        CHECKF(md_reduce_parse(buf, &d, err, sizeof err) == MD_OK &&
               !memcmp(&c, &d, sizeof c), "%s -> %s", ok[i], buf);
    }
    bad("holitom+dycoke", "temporal");
    bad("stmerge+holitom", "temporal");
    bad("flashvid+visionzip", "per-frame");
    bad("cdpruner+flashvid", "per-frame");
    bad("flashvid+holitom", "temporal");
    bad("holitom+visionzip+random", "per-frame");
    bad("mustdrop:kv=off+holitom", "patch grid");
    bad("flashvid+mustdrop", "patch grid");
    bad("flashvid:adts=v3", "'adts'");
    bad("flashvid:keep=1.5", "'keep'");
    bad("holitom:beta=-0.1", "'beta'");
    bad("holitom:window=0", "'window'");
    bad("holitom:q=1", "keys: keep, tokens, tau, beta, window");
    bad("flashvid:segs=2.5", "integer");
}

int main(void)
{
    spec();
    fv_budget();
    fv_dyseg();
    fv_adts();
    fv_tstm();
    dpc_knn();
    fv_clip();
    ht_gain();
    ht_dp();
    ht_merge();
    ht_clip();
    return md_test_finish("reduce_video_methods");
}
