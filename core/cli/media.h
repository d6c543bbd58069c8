/* Still images and video frames for the mustdrop CLI, decoded with FFmpeg
 * (libavformat, libavcodec, libswscale) into packed RGB8. Only the CLI links
 * FFmpeg: libmustdrop takes frames from its caller (struct md_frame).
 *
 * Errors: a negative value and a message in err naming the file and what
 * is wrong ("no video stream", the FFmpeg error text, ...). */
#ifndef MD_CLI_MEDIA_H
#define MD_CLI_MEDIA_H

#include <stddef.h>
#include <stdint.h>

struct media_frame {
    uint8_t *rgb;           /* width * height * 3 bytes, rows of stride bytes */
    int32_t width, height, stride;
    int64_t pts_ns;         /* from the first decoded frame; -1 for a still image */
    int64_t index;          /* the frame's number in decode (display) order */
};

struct media_frames {
    struct media_frame *frame;
    int32_t n;
    int64_t n_decoded;      /* frames the stream had */
    int64_t duration_ns;    /* last frame's end, or its pts when unknown */
    int64_t n_damaged;      /* packets/frames the decoder rejected and we skipped */
    char codec[32];
};

/* Frame selection for a video. */
struct media_sampling {
    int32_t n_frames;       /* > 0: n frames spread uniformly by index over the stream */
    double fps;             /* > 0 (n_frames == 0): one frame every 1/fps seconds */
    int32_t max_frames;     /* cap for fps sampling; 0 = 256 */
};

/* Decode the first picture of an image file (PNG, JPEG, BMP, PPM, ...
 * whatever FFmpeg reads). out->pts_ns is -1. */
int media_load_image(const char *path, struct media_frame *out, char *err, size_t errlen);

/* Decode the first video stream of path and keep the sampled frames.
 * --frames N: indices floor(i * total / N), i < N (all frames when the
 * stream has fewer than N). --fps F: for each time t = k / F from the first
 * frame, the last frame shown at t (pts <= t), each frame at most once. */
int media_load_video(const char *path, const struct media_sampling *s, struct media_frames *out,
                     char *err, size_t errlen);

/* FFmpeg's own log: quiet (default; our errors say what is wrong) or its warnings. */
void media_set_verbose(int verbose);

void media_frame_free(struct media_frame *f);
void media_frames_free(struct media_frames *f);

#endif
