/* ask: answer a question about a video with libmustdrop's md_vqa.
 *
 * The video comes as raw RGB frames on stdin, so this program needs no
 * decoding library; FFmpeg makes them:
 *
 *   cc ask.c $(pkg-config --cflags --libs mustdrop) -o ask
 *   ffmpeg -v error -i shapes.webm -f rawvideo -pix_fmt rgb24 - |
 *       ./ask 128 128 8 "Which shape enters last?"
 *
 * Usage: ask WIDTH HEIGHT FPS QUESTION [MODEL.gguf MMPROJ.gguf]
 * Without the two files, the bundled default model ($MUSTDROP_MODEL_DIR, then
 * the installed data dir). The answer goes to stdout as it is generated;
 * what was loaded and what the answer saw go to stderr. See docs/api.md. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mustdrop/mustdrop-vqa.h>

static void on_log(enum md_log_level level, const char *text, void *user)
{
    (void)user;
    if (level <= MD_LOG_WARN)
        fprintf(stderr, "ask: %s\n", text);
}

/* `text` is the whole answer so far. The final answer (md_vqa_answer.text)
 * has no surrounding whitespace, so what is streamed leaves it out too:
 * whitespace is only printed once something follows it. */
static bool on_token(const char *text, int32_t token, void *user)
{
    size_t *printed = user, start = 0, end = strlen(text);
    (void)token;
    while (start < end && isspace((unsigned char)text[start]))
        start++;
    while (end > start && isspace((unsigned char)text[end - 1]))
        end--;
    if (*printed < start)
        *printed = start;
    if (end > *printed) {
        fwrite(text + *printed, 1, end - *printed, stdout);
        fflush(stdout);
        *printed = end;
    }
    return true;   /* false would stop the answer here */
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: %s WIDTH HEIGHT FPS QUESTION [MODEL.gguf MMPROJ.gguf] < rgb24\n",
                argv[0]);
        return 2;
    }
    int w = atoi(argv[1]), h = atoi(argv[2]);
    double fps = atof(argv[3]);
    if (w <= 0 || h <= 0 || w > 16384 || h > 16384 || !(fps > 0)) {
        fprintf(stderr, "ask: bad WIDTH, HEIGHT or FPS\n");
        return 2;
    }
    char err[1024];
    struct md_vqa_params p = md_vqa_default_params();   /* 1 frame/s, at most 8 */
    if (argc == 7) {
        p.model = argv[5];
        p.mmproj = argv[6];
    }
    p.log = on_log;
    struct md_vqa *vqa;
    if (md_vqa_load(&p, &vqa, err, sizeof err) != MD_OK) {
        fprintf(stderr, "ask: %s\n", err);
        return 1;
    }
    fprintf(stderr, "ask: model %s on %s\n", md_vqa_model_path(vqa), md_vqa_device(vqa));

    /* One window over the whole input: the stream applies the sampling rule
     * (offer every frame, add those it takes) and keeps RGB copies. */
    struct md_vqa_stream *s = NULL;
    int rc = md_vqa_stream_new(vqa, MD_VQA_WINDOW, &s, err, sizeof err);
    size_t frame_bytes = (size_t)w * (size_t)h * 3;
    unsigned char *rgb = rc == MD_OK ? malloc(frame_bytes) : NULL;
    if (rc == MD_OK && !rgb) {
        snprintf(err, sizeof err, "out of memory");
        rc = MD_ERR_NOMEM;
    }
    for (long i = 0; rc == MD_OK && fread(rgb, 1, frame_bytes, stdin) == frame_bytes; i++) {
        int64_t pts_ns = (int64_t)((double)i * 1e9 / fps + 0.5);
        struct md_frame f = { rgb, w, h, w * 3, pts_ns };
        if (md_vqa_stream_offer(s, pts_ns) && (rc = md_vqa_stream_add(s, &f)) != MD_OK)
            snprintf(err, sizeof err, "%s", md_vqa_stream_error(s));
    }

    struct md_vqa_answer a = { 0 };
    size_t printed = 0;
    if (rc == MD_OK) {
        struct md_vqa_ask ask = md_vqa_default_ask(argv[4]);   /* greedy */
        ask.on_token = on_token;
        ask.token_user = &printed;
        rc = md_vqa_answer(s, &ask, &a, err, sizeof err);   /* no frames: MD_ERR_INVALID */
    }
    if (rc == MD_OK) {
        printf("\n");
        fprintf(stderr, "ask: %d frames, %.1f-%.1f s, %d visual tokens, %.0f ms\n", a.frames,
                (double)a.first_pts_ns / 1e9, (double)a.last_pts_ns / 1e9, a.visual_tokens_kept,
                a.timings.encode_ms + a.timings.prefill_ms + a.timings.decode_ms);
    } else {
        fprintf(stderr, "ask: %s (%s)\n", err, md_status_str(rc));
    }
    md_vqa_answer_clear(&a);
    free(rgb);
    md_vqa_stream_free(s);
    md_vqa_free(vqa);
    return rc == MD_OK ? 0 : 1;
}
