/* Analytic FLOPs (2 per multiply-add) and the JSON form of the stats.
 *
 * LLM layer on n new rows after p cached entries (causal, GQA):
 *   projections  2n(D*H*d + 2*D*Hkv*d + H*d*D)
 *   FFN (SwiGLU) 2n(3*D*F)
 *   attention    2*2*H*d * sum_i (p + i + 1) = 4*H*d*(n*p + n(n+1)/2)
 * Decode step against n_kv entries: the same with n = 1, attention
 * 4*H*d*n_kv. Output head 2*D*V per row with logits (one row).
 * Vision layer on n tokens (bidirectional): 2n(4*D^2 + 2*D*F) + 4*n^2*D;
 * projector 2n(D*M + M*E). Norms, RoPE and softmax are left out (O(nD)). */
#include <stdio.h>
#include <string.h>

#include "reduce-impl.h"

double md_reduce_flops_llm_layer(const struct md_llm_dims *m, int64_t n, int64_t n_past)
{
    double lin = 2.0 * n * (m->D * m->H * m->d + 2.0 * m->D * m->Hkv * m->d + m->H * m->d * m->D
                            + 3.0 * m->D * m->F);
    double att = 4.0 * m->H * m->d * ((double)n * n_past + (double)n * (n + 1) / 2.0);
    return lin + att;
}

double md_reduce_flops_llm_decode(const struct md_llm_dims *m, int64_t n_kv)
{
    double lin = 2.0 * (m->D * m->H * m->d + 2.0 * m->D * m->Hkv * m->d + m->H * m->d * m->D
                        + 3.0 * m->D * m->F);
    return lin + 4.0 * m->H * m->d * (double)n_kv;
}

double md_reduce_flops_vit_layer(const struct md_vit_dims *v, int64_t n)
{
    return 2.0 * n * (4.0 * v->D * v->D + 2.0 * v->D * v->F) + 4.0 * (double)n * n * v->D;
}

double md_reduce_flops_projector(const struct md_vit_dims *v, int64_t n)
{
    return 2.0 * n * ((double)v->D * v->M + (double)v->M * v->E);
}

/* JSON string body with the few escapes a spec can need. */
static size_t put_escaped(char *buf, size_t n, size_t o, const char *s)
{
    for (; s && *s; s++) {
        char c = *s;
        char *dst = o < n ? buf + o : NULL;   /* never offset a NULL or past the end */
        size_t room = o < n ? n - o : 0;
        int w = (c == '"' || c == '\\') ? snprintf(dst, room, "\\%c", c)
              : (unsigned char)c < 0x20 ? snprintf(dst, room, "\\u%04x", c)
              : snprintf(dst, room, "%c", c);
        o += w > 0 ? (size_t)w : 0;
    }
    return o;
}

int md_reduce_stats_json(const struct md_reduce_stats *st, const char *spec, char *buf, size_t n)
{
    if (!st || (!buf && n))
        return MD_ERR_INVALID;
    size_t o = 0;
#define PUT(...) do { int w_ = snprintf(o < n ? buf + o : NULL, o < n ? n - o : 0, __VA_ARGS__); \
                      o += w_ > 0 ? (size_t)w_ : 0; } while (0)
    PUT("{\"spec\":\"");
    o = put_escaped(buf, n, o, spec ? spec : "");
    PUT("\",\"images\":%d,\"parts\":%d,\"tokens\":{\"input\":%d,\"after_vision\":%d,"
        "\"after_select\":%d,\"final\":%d,\"kv_after_decode\":%d,\"key\":%d,"
        "\"layer_avg\":%.3f,\"layer_avg_per_part\":%.3f,\"per_layer\":[",
        st->n_images, st->n_parts, st->vis_in, st->vis_after_vision, st->vis_after_select,
        st->vis_final, st->vis_kv_after_decode, st->n_key_tokens, st->vis_layer_avg,
        st->vis_layer_avg_per_part);
    for (int32_t l = 0; l < st->n_layer && l < MD_REDUCE_MAX_LLM_LAYERS; l++)
        PUT("%s%d", l ? "," : "", st->vis_per_layer[l]);
    PUT("]},\"prompt_rows\":%d,\"generated\":%d,"
        "\"flops\":{\"vision\":%.6g,\"prefill\":%.6g,\"decode\":%.6g},"
        "\"kv_bytes\":{\"prefill\":%zu,\"decode\":%zu},"
        "\"ms\":{\"vision\":%.3f,\"select\":%.3f,\"prefill\":%.3f,\"decode\":%.3f}}",
        st->n_prompt, st->n_generated, st->flops_vision, st->flops_prefill, st->flops_decode,
        st->kv_bytes_prefill, st->kv_bytes_decode, st->ms_vision, st->ms_select, st->ms_prefill,
        st->ms_decode);
#undef PUT
    if (n)
        buf[o < n ? o : n - 1] = '\0';
    return (int)o;
}
