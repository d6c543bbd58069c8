/* Shared by mustdrop and mustdrop-eval: see vqa.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vqa.h"

int vqa_default_model(char *llm, size_t llm_len, char *mmproj, size_t mmproj_len, char *err,
                      size_t errlen)
{
    if (md_default_model_paths(llm, llm_len, mmproj, mmproj_len) == 0)
        return 0;
    const char *env = getenv("MUSTDROP_MODEL_DIR");
    int w = snprintf(err, errlen, "the default model (%s + %s) was not found; searched:",
                     MD_DEFAULT_LLM_FILE, MD_DEFAULT_MMPROJ_FILE);
    char dir[4096];
    for (int i = 0; md_default_model_dir(i, dir, sizeof dir) == 0; i++) {
        if (w < 0 || (size_t)w >= errlen) break;
        bool from_env = i == 0 && env && env[0];
        w += snprintf(err + w, errlen - (size_t)w, "%s %s%s", i ? "," : "",
                      from_env ? "$MUSTDROP_MODEL_DIR=" : "", dir);
    }
    if (w >= 0 && (size_t)w < errlen && !(env && env[0]))
        snprintf(err + w, errlen - (size_t)w, " (set MUSTDROP_MODEL_DIR, or give -m and --mmproj)");
    return -1;
}

void vqa_log_stderr(enum md_log_level level, const char *text, void *user)
{
    if (level <= MD_LOG_WARN)
        fprintf(stderr, "%s: %s\n", user ? (const char *)user : "mustdrop", text);
}

#ifdef MD_HAVE_FFMPEG
struct feed {
    struct md_vqa_stream *s;
    int32_t side;
    int64_t n_taken;
    struct progress *pr;
    double start_s;         /* the decode's start, for its pace */
};

/* One decoded frame: converted and added only when the rule takes it. */
static int feed_frame(void *user, const struct media_video_frame *f, char *err, size_t errlen)
{
    struct feed *fd = user;
    /* a file's duration is the window's span, as a window's bounds are the
     * element's: max_frames frames spread over all of it */
    if (f->index == 0 && f->duration_ns > 0)
        md_vqa_stream_set_span(fd->s, f->pts_ns, f->duration_ns);
    /* this frame decoded; whether it is taken shows on the next draw */
    progress_video(fd->pr, f->index + 1, fd->n_taken, f->pts_ns, f->duration_ns, fd->start_s);
    if (!md_vqa_stream_offer(fd->s, f->pts_ns))
        return 0;
    struct media_frame rgb;
    if (media_video_frame_rgb(f, fd->side, &rgb, err, errlen))
        return -1;
    struct md_frame fr = { rgb.rgb, rgb.width, rgb.height, rgb.stride, f->pts_ns };
    int rc = md_vqa_stream_add(fd->s, &fr);
    media_frame_free(&rgb);
    if (rc != MD_OK) {
        snprintf(err, errlen, "frame %lld at %.3f s: %s", (long long)f->index, f->pts_ns / 1e9,
                 md_vqa_stream_error(fd->s));
        return -1;
    }
    fd->n_taken++;
    return 0;
}

int vqa_add_video(struct md_vqa *vqa, struct md_vqa_stream *s, const char *path,
                  struct progress *pr, struct vqa_video *out, char *err, size_t errlen)
{
    struct feed fd = { s, md_vqa_frame_side(vqa), 0, pr, progress_now() };
    struct vqa_video v;
    int rc = media_decode_video(path, feed_frame, &fd, &v.info, err, errlen);
    v.n_taken = fd.n_taken;
    if (out)
        *out = v;
    return rc ? -1 : 0;
}
#endif
