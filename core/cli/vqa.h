/* What `mustdrop` and `mustdrop-eval` share around md_vqa (mustdrop-vqa.h),
 * the library call that answers a question about frames: the default
 * model's files, md_vqa's messages on stderr, and a video file decoded into
 * an md_vqa stream by the one sampling rule.
 *
 * The video part needs FFmpeg (media.c) and exists only when MD_HAVE_FFMPEG
 * is defined. */
#ifndef MD_CLI_VQA_H
#define MD_CLI_VQA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mustdrop-vqa.h"

/* The element's defaults (max-frames, sample-fps), so that the CLIs and the
 * element take the same frames of a clip. */
#define VQA_DEFAULT_FRAMES 8
#define VQA_DEFAULT_FPS 1.0

/* The default model pair (md_default_model_paths). On failure -1 and err
 * says which files were looked for and in which directories. */
int vqa_default_model(char *llm, size_t llm_len, char *mmproj, size_t mmproj_len, char *err,
                      size_t errlen);

/* An md_log_callback: warnings and errors on stderr as "PROGRAM: text" (user
 * is the program's name); what md_vqa chose (info, debug) is not shown. */
void vqa_log_stderr(enum md_log_level level, const char *text, void *user);

#ifdef MD_HAVE_FFMPEG
#include "media.h"
#include "progress.h"

/* What vqa_add_video saw. */
struct vqa_video {
    struct media_video_info info;
    int64_t n_taken;        /* frames the sampling rule took (before thinning) */
};

/* Decode path in display order into the window stream s: every frame is
 * offered to the sampling rule (md_vqa_stream_offer), and only the ones it
 * takes are converted to RGB, shrunk to md_vqa_frame_side as the element
 * does, and added. 0, or -1 with err ("cannot open 'x.mp4': ...", "frame 7
 * at 0.280 s: ..."); out (may be NULL) is filled either way. The decode's
 * progress goes to pr (NULL: none; the line stays up, progress_clear it). */
int vqa_add_video(struct md_vqa *vqa, struct md_vqa_stream *s, const char *path,
                  struct progress *pr, struct vqa_video *out, char *err, size_t errlen);
#endif

#endif
