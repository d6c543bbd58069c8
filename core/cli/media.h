/* Still images and video frames for the mustdrop CLIs, decoded with FFmpeg
 * (libavformat, libavcodec, libswscale) into packed RGB8. Only the CLIs link
 * FFmpeg: libmustdrop takes frames from its caller (struct md_frame).
 *
 * A video is decoded as a stream: every frame is handed to a callback in
 * display order with its timestamp, and only the frames the callback wants
 * are converted to RGB (media_video_frame_rgb), so a long video is never
 * held in memory. Which frames to take is the caller's business (the CLIs
 * ask md_vqa_stream_offer: the one sampling rule).
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

/* A decoded video frame, valid only during the callback that receives it. */
struct media_video_frame {
    int64_t index;          /* number in display order, from 0 */
    int64_t pts_ns;         /* from the first decoded frame (which is at 0) */
    int32_t width, height;  /* as decoded */
    int64_t duration_ns;    /* the duration the file states (before decoding it all), -1 if none */
    const void *priv;       /* the decoder's state, for media_video_frame_rgb */
};

/* What a decode saw; filled as far as it got, also on failure. */
struct media_video_info {
    char codec[32];
    int32_t width, height;  /* of the first frame */
    int64_t n_decoded;      /* frames handed to the callback */
    int64_t duration_ns;    /* last frame's end (its pts plus the last step) */
    int64_t n_damaged;      /* packets/frames the decoder rejected and we skipped */
};

/* Called for each decoded frame in display order: 0 goes on, 1 stops the
 * decode (successfully), < 0 fails it (with err set). */
typedef int (*media_video_fn)(void *user, const struct media_video_frame *f, char *err,
                              size_t errlen);

/* Decode the first video stream of path, frame by frame, into fn. Damaged
 * packets are skipped and counted; a damaged tail ends the stream. Fails
 * when the file cannot be read, has no video stream, or no frame decodes.
 * info may be NULL. */
int media_decode_video(const char *path, media_video_fn fn, void *user,
                       struct media_video_info *info, char *err, size_t errlen);

/* The frame in hand as RGB24 (out->rgb is the caller's to free with
 * media_frame_free). max_side <= 0: the decoded size, pixel for pixel
 * (nearest-neighbour chroma, as FFmpeg's "neighbor"); else frames whose
 * display size (sample aspect applied) exceeds max_side are shrunk to fit
 * it, aspect kept, with bilinear filtering, as the GStreamer element does,
 * so that both hand md_vqa the same pictures. */
int media_video_frame_rgb(const struct media_video_frame *f, int32_t max_side,
                          struct media_frame *out, char *err, size_t errlen);

/* Decode the first picture of an image file (PNG, JPEG, BMP, PPM, ...
 * whatever FFmpeg reads), at its own size. out->pts_ns is -1. */
int media_load_image(const char *path, struct media_frame *out, char *err, size_t errlen);

/* FFmpeg's own log: quiet (default; our errors say what is wrong) or its warnings. */
void media_set_verbose(int verbose);

void media_frame_free(struct media_frame *f);

#endif
