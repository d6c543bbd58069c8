/* KV cache bookkeeping: append, keep (compaction) keeps exactly the listed
 * entries with their positions and data, bad index lists change nothing,
 * truncate, per-layer position policies, snapshots, byte counts, F16. */
#include "md_test.h"
#include "kv.h"

enum { N_LAYER = 3, CAP = 16, ROW = 8 };

/* Row r of layer l carries the value 1000*l + r + e/100 in element e. */
static void append_rows(struct md_kv_cache *kv, int l, int first, int n, const int32_t *pos)
{
    struct md_backend *be = kv->be;
    struct md_tensor k, v;
    md_backend_alloc_2d(be, &k, MD_TYPE_F32, ROW, n);
    md_backend_alloc_2d(be, &v, MD_TYPE_F32, ROW, n);
    float buf[CAP * ROW];
    for (int r = 0; r < n; r++)
        for (int e = 0; e < ROW; e++)
            buf[r * ROW + e] = 1000.0f * l + (float)(first + r) + e / 100.0f;
    be->ops->tensor_set(be, &k, 0, buf, sizeof(float) * n * ROW);
    for (int i = 0; i < n * ROW; i++)
        buf[i] = -buf[i];
    be->ops->tensor_set(be, &v, 0, buf, sizeof(float) * n * ROW);
    CHECK(md_kv_cache_append(kv, l, &k, &v, pos) == MD_OK);
    be->ops->tensor_free(be, &k);
    be->ops->tensor_free(be, &v);
}

/* Entry i of layer l must hold original row want[i]. */
static void check_rows(struct md_kv_cache *kv, int l, const int32_t *want, int n)
{
    struct md_backend *be = kv->be;
    CHECK(md_kv_cache_len(kv, l) == n);
    const struct md_kv_layer *L = &kv->layers[l];
    for (int i = 0; i < n; i++) {
        float row[ROW];
        if (kv->type == MD_TYPE_F32) {
            be->ops->tensor_get(be, &L->k, sizeof(float) * i * ROW, row, sizeof row);
        } else {
            uint16_t h[ROW];
            be->ops->tensor_get(be, &L->k, sizeof(uint16_t) * i * ROW, h, sizeof h);
            for (int e = 0; e < ROW; e++)
                row[e] = md_fp16_to_fp32(h[e]);
        }
        float want0 = 1000.0f * l + (float)want[i];
        CHECKF(fabsf(row[0] - want0) <= (kv->type == MD_TYPE_F32 ? 0 : 1.0f),
               "layer %d entry %d holds %g, want %g", l, i, row[0], want0);
        float vrow[ROW];
        if (kv->type == MD_TYPE_F32) {
            be->ops->tensor_get(be, &L->v, sizeof(float) * i * ROW, vrow, sizeof vrow);
            CHECK(vrow[ROW - 1] == -row[ROW - 1]);
        }
    }
}

static void run(uint32_t type)
{
    struct md_backend *be;
    char err[128];
    struct md_backend_params bp = { .n_threads = 1 };
    CHECK(md_backend_new(NULL, &bp, &be, err, sizeof err) == MD_OK);
    struct md_kv_cache *kv;
    CHECK(md_kv_cache_new(be, N_LAYER, CAP, ROW, type, &kv, err, sizeof err) == MD_OK);
    CHECK(md_kv_cache_n_layer(kv) == N_LAYER && md_kv_cache_capacity(kv) == CAP);

    int32_t pos[10];
    for (int i = 0; i < 10; i++)
        pos[i] = 100 + i;
    for (int l = 0; l < N_LAYER; l++)
        append_rows(kv, l, 0, 10, pos);
    size_t row_bytes = ROW * (type == MD_TYPE_F32 ? 4 : 2);
    CHECK(md_kv_cache_bytes(kv) == 2 * row_bytes * 10 * N_LAYER);

    /* keep entries 1, 4, 5, 9 of layer 1 only */
    const int32_t keep[4] = { 1, 4, 5, 9 };
    CHECK(md_kv_cache_keep(kv, 1, keep, 4) == MD_OK);
    check_rows(kv, 1, keep, 4);
    const int32_t *p = md_kv_cache_pos(kv, 1);
    CHECK(p[0] == 101 && p[1] == 104 && p[2] == 105 && p[3] == 109);
    const int32_t all10[10] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    check_rows(kv, 0, all10, 10);   /* other layers untouched */
    check_rows(kv, 2, all10, 10);
    CHECK(md_kv_cache_bytes(kv) == 2 * row_bytes * 24);

    /* bad lists are refused and change nothing */
    const int32_t dup[3] = { 0, 2, 2 }, down[3] = { 3, 1, 2 }, oob[2] = { 0, 4 }, neg[2] = { -1, 0 };
    CHECK(md_kv_cache_keep(kv, 1, dup, 3) == MD_ERR_INVALID);
    CHECK(md_kv_cache_keep(kv, 1, down, 3) == MD_ERR_INVALID);
    CHECK(md_kv_cache_keep(kv, 1, oob, 2) == MD_ERR_INVALID);
    CHECK(md_kv_cache_keep(kv, 1, neg, 2) == MD_ERR_INVALID);
    CHECK(md_kv_cache_keep(kv, 1, NULL, 2) == MD_ERR_INVALID);
    CHECK(md_kv_cache_keep(kv, 1, all10, 5) == MD_ERR_INVALID);   /* n > len */
    CHECK(md_kv_cache_keep(kv, N_LAYER, keep, 1) == MD_ERR_INVALID);
    CHECK(md_kv_cache_keep(kv, -1, keep, 1) == MD_ERR_INVALID);
    check_rows(kv, 1, keep, 4);
    CHECK(md_kv_cache_pos(kv, 1)[3] == 109);

    /* identity keep and keep-none */
    CHECK(md_kv_cache_keep(kv, 2, all10, 10) == MD_OK);
    check_rows(kv, 2, all10, 10);
    CHECK(md_kv_cache_keep(kv, 2, NULL, 0) == MD_OK && md_kv_cache_len(kv, 2) == 0);

    /* truncate */
    CHECK(md_kv_cache_truncate(kv, 0, 11) == MD_ERR_INVALID);
    CHECK(md_kv_cache_truncate(kv, 0, 3) == MD_OK);
    check_rows(kv, 0, all10, 3);

    /* position policies: sequence (shared) vs the layer's own length */
    CHECK(md_kv_cache_set_seq_pos(kv, 10) == MD_OK);
    CHECK(md_kv_cache_next_pos(kv, 1) == 10);
    CHECK(md_kv_cache_set_pos_policy(kv, 1, MD_KV_POS_LAYER_LEN) == MD_OK);
    CHECK(md_kv_cache_pos_policy(kv, 1) == MD_KV_POS_LAYER_LEN);
    CHECK(md_kv_cache_pos_policy(kv, 0) == MD_KV_POS_SEQUENCE);
    CHECK(md_kv_cache_next_pos(kv, 1) == 4);
    CHECK(md_kv_cache_next_pos(kv, 0) == 10);
    CHECK(md_kv_cache_set_pos_policy(kv, 7, MD_KV_POS_LAYER_LEN) == MD_ERR_INVALID);
    CHECK(md_kv_cache_set_pos_policy(kv, 0, (enum md_kv_pos_policy)5) == MD_ERR_INVALID);
    CHECK(md_kv_cache_set_pos_policy(kv, -1, MD_KV_POS_LAYER_LEN) == MD_OK);
    CHECK(md_kv_cache_next_pos(kv, 0) == 3 && md_kv_cache_next_pos(kv, 2) == 0);

    /* snapshot/restore drops what was appended after it */
    struct md_kv_snapshot snap;
    CHECK(md_kv_snapshot_init(&snap, N_LAYER) == MD_OK);
    md_kv_snapshot_take(kv, &snap);
    append_rows(kv, 1, 50, 2, pos);
    kv->seq_pos = 99;
    md_kv_snapshot_restore(kv, &snap);
    check_rows(kv, 1, keep, 4);
    CHECK(md_kv_cache_seq_pos(kv) == 10);
    md_kv_snapshot_free(&snap);

    /* appending past the capacity is refused */
    struct md_tensor big;
    md_backend_alloc_2d(be, &big, MD_TYPE_F32, ROW, CAP);
    CHECK(md_kv_cache_append(kv, 0, &big, &big, pos) == MD_ERR_CONTEXT_FULL);
    be->ops->tensor_free(be, &big);

    md_kv_cache_clear(kv);
    CHECK(md_kv_cache_bytes(kv) == 0 && md_kv_cache_seq_pos(kv) == 0);
    CHECK(md_kv_cache_len(kv, 99) == 0 && md_kv_cache_pos(kv, 99) == NULL);
    md_kv_cache_free(kv);

    CHECK(md_kv_cache_new(be, 0, CAP, ROW, type, &kv, err, sizeof err) == MD_ERR_INVALID);
    CHECK(md_kv_cache_new(be, 1, CAP, ROW, MD_TYPE_Q4_0, &kv, err, sizeof err) == MD_ERR_INVALID);
    md_backend_free(be);
}

int main(void)
{
    run(MD_TYPE_F32);
    run(MD_TYPE_F16);
    return md_test_finish("kv");
}
