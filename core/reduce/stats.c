/* The JSON form of the stats (the FLOP counts in them come from flops.c). */
#include <stdio.h>
#include <string.h>

#include "reduce-impl.h"

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
