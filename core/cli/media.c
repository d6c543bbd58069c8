/* Image and video decoding for the mustdrop CLIs with FFmpeg 5.1's API:
 * avformat demuxes, avcodec_send_packet / avcodec_receive_frame decode,
 * sws_scale converts the frames the caller asks for to packed RGB24.
 *
 * A video is decoded once, as a stream: each frame goes to the caller's
 * callback with its timestamp (taken from the frames themselves, not from
 * container metadata that may be missing or wrong), and is converted only
 * if the callback asks for it. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "media.h"

#define MEDIA_MAX_SIDE 16384
/* a run of frames the decoder rejects this long means the stream is not
 * worth reading further */
#define MEDIA_MAX_BAD_RUN 64

struct decoder {
    const char *path;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;
    struct SwsContext *sws;  /* reused while frames keep their size and format */
    int stream;
    AVRational tb;
    int64_t origin;          /* the first decoded frame's timestamp (time base units) */
    int64_t last_ts;
    int64_t prev_pts_ns, last_pts_ns;
    int64_t index;
    int64_t n_damaged;
    int32_t width, height;   /* of the first frame */
    int64_t announced_ns;    /* the duration the container states, -1 if none */
    char codec[32];
};

/* What media_video_frame.priv points to. */
struct frame_ref {
    struct decoder *d;
    const AVFrame *f;
};

static void av_err(char *err, size_t errlen, const char *path, const char *what, int code)
{
    char buf[AV_ERROR_MAX_STRING_SIZE] = "";
    av_strerror(code, buf, sizeof buf);
    snprintf(err, errlen, "cannot %s '%s': %s", what, path, buf);
}

static void decoder_close(struct decoder *d)
{
    sws_freeContext(d->sws);
    d->sws = NULL;
    av_frame_free(&d->frame);
    av_packet_free(&d->pkt);
    avcodec_free_context(&d->dec);
    if (d->fmt)
        avformat_close_input(&d->fmt);
}

static int open_codec(struct decoder *d, const AVCodec *codec, char *err, size_t errlen)
{
    AVStream *st = d->fmt->streams[d->stream];
    snprintf(d->codec, sizeof d->codec, "%s", codec->name);
    d->dec = avcodec_alloc_context3(codec);
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->dec || !d->pkt || !d->frame) {
        snprintf(err, errlen, "out of memory opening '%s'", d->path);
        return -1;
    }
    int rc = avcodec_parameters_to_context(d->dec, st->codecpar);
    if (rc >= 0) {
        d->dec->thread_count = 0;     /* FFmpeg picks */
        d->dec->pkt_timebase = st->time_base;
        rc = avcodec_open2(d->dec, codec, NULL);
    }
    if (rc < 0) {
        av_err(err, errlen, d->path, "open the decoder for", rc);
        return -1;
    }
    d->tb = st->time_base;
    if (d->tb.num <= 0 || d->tb.den <= 0)
        d->tb = (AVRational){ 1, 1000000 };
    /* the stream's duration, else the file's (WebM states only the latter) */
    d->announced_ns = st->duration > 0 ? av_rescale_q(st->duration, d->tb, (AVRational){ 1, 1000000000 })
                      : d->fmt->duration > 0 ? d->fmt->duration * (1000000000 / AV_TIME_BASE) : -1;
    return 0;
}

static int decoder_open(struct decoder *d, const char *path, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->path = path;
    d->origin = d->last_ts = AV_NOPTS_VALUE;   /* times count from the first decoded frame */
    d->prev_pts_ns = d->last_pts_ns = -1;
    int rc = avformat_open_input(&d->fmt, path, NULL, NULL);
    if (rc < 0) {
        av_err(err, errlen, path, "open", rc);
        return -1;
    }
    rc = avformat_find_stream_info(d->fmt, NULL);
    if (rc < 0) {
        av_err(err, errlen, path, "read the streams of", rc);
        return -1;
    }
    const AVCodec *codec = NULL;
    d->stream = av_find_best_stream(d->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (d->stream == AVERROR_DECODER_NOT_FOUND) {
        snprintf(err, errlen, "'%s': no decoder for its video stream", path);
        return -1;
    }
    if (d->stream < 0 || !codec) {
        snprintf(err, errlen, "'%s' has no video stream", path);
        return -1;
    }
    return open_codec(d, codec, err, errlen);
}

/* Timestamp of a decoded frame in ns from the stream's start. Frames
 * without one get the previous one plus a frame at the stream's rate. */
static int64_t frame_pts_ns(struct decoder *d, const AVFrame *f)
{
    int64_t ts = f->best_effort_timestamp;
    if (ts == AV_NOPTS_VALUE)
        ts = f->pts;
    if (ts == AV_NOPTS_VALUE) {
        AVRational rate = d->fmt->streams[d->stream]->avg_frame_rate;
        int64_t step = rate.num > 0 && rate.den > 0 ? av_rescale_q(1, av_inv_q(rate), d->tb) : 1;
        ts = d->last_ts == AV_NOPTS_VALUE ? 0 : d->last_ts + (step > 0 ? step : 1);
    }
    if (d->origin == AV_NOPTS_VALUE)
        d->origin = ts;
    d->last_ts = ts;
    return av_rescale_q(ts - d->origin, d->tb, (AVRational){ 1, 1000000000 });
}

/* Hand the decoded frame in d->frame to fn. */
static int deliver(struct decoder *d, media_video_fn fn, void *user, char *err, size_t errlen)
{
    const AVFrame *f = d->frame;
    int64_t pts = frame_pts_ns(d, f);
    if (d->index == 0) {
        d->width = f->width;
        d->height = f->height;
    }
    d->prev_pts_ns = d->last_pts_ns;
    d->last_pts_ns = pts;
    struct frame_ref ref = { d, f };
    struct media_video_frame vf = { d->index++, pts, f->width, f->height, d->announced_ns, &ref };
    return fn(user, &vf, err, errlen);
}

/* Drain decoded frames into fn. */
static int drain(struct decoder *d, media_video_fn fn, void *user, char *err, size_t errlen)
{
    for (int bad = 0;;) {
        int rc = avcodec_receive_frame(d->dec, d->frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc == AVERROR_INVALIDDATA && ++bad < MEDIA_MAX_BAD_RUN) {
            d->n_damaged++;
            continue;      /* a damaged frame: skip it */
        }
        if (rc < 0) {
            av_err(err, errlen, d->path, "decode", rc);
            return -1;
        }
        int r = deliver(d, fn, user, err, errlen);
        av_frame_unref(d->frame);
        if (r)
            return r;
    }
}

/* One packet of the video stream into the decoder, then its frames. */
static int feed(struct decoder *d, media_video_fn fn, void *user, char *err, size_t errlen)
{
    int rc = avcodec_send_packet(d->dec, d->pkt);
    if (rc == AVERROR_INVALIDDATA)
        d->n_damaged++;
    if (rc < 0 && rc != AVERROR(EAGAIN) && rc != AVERROR_INVALIDDATA) {
        av_err(err, errlen, d->path, "decode", rc);
        return -1;
    }
    return drain(d, fn, user, err, errlen);
}

/* Decode the whole stream (or until fn says stop). Packets the decoder
 * rejects as invalid data are skipped, like ffmpeg does. */
static int decode_all(struct decoder *d, media_video_fn fn, void *user, char *err, size_t errlen)
{
    int r = 0;
    while (!r) {
        /* the end, or a damaged tail (an I/O or data error): keep what we have */
        if (av_read_frame(d->fmt, d->pkt) < 0)
            break;
        if (d->pkt->stream_index == d->stream)
            r = feed(d, fn, user, err, errlen);
        av_packet_unref(d->pkt);
    }
    if (r == 0) {
        avcodec_send_packet(d->dec, NULL);   /* flush */
        r = drain(d, fn, user, err, errlen);
    }
    return r < 0 ? -1 : 0;
}

/* ---- conversion to RGB24 ------------------------------------------------------ */

/* The size a frame is converted to: its own, or (max_side > 0) its display
 * size fitted into max_side x max_side, aspect kept, never enlarged; the
 * GStreamer element's formula, so that both give the same sizes. */
static void output_size(const struct decoder *d, const AVFrame *f, int32_t max_side, int *ow,
                        int *oh)
{
    *ow = f->width;
    *oh = f->height;
    if (max_side <= 0)
        return;
    AVRational sar = d->fmt ? av_guess_sample_aspect_ratio(d->fmt, d->fmt->streams[d->stream],
                                                           (AVFrame *)f)
                            : f->sample_aspect_ratio;
    double dw = f->width, dh = f->height;
    if (sar.num > 0 && sar.den > 0)
        dw = dw * sar.num / sar.den;
    double scale = fmin(1.0, max_side / fmax(dw, dh));
    *ow = (int)fmax(1.0, floor(dw * scale + 0.5));
    *oh = (int)fmax(1.0, floor(dh * scale + 0.5));
}

/* YUV -> RGB with the frame's matrix and range (BT.601 when unspecified). */
static void set_colorspace(struct SwsContext *sws, const AVFrame *f)
{
    int *inv, *tbl, src_range, dst_range, bri, con, sat;
    if (sws_getColorspaceDetails(sws, &inv, &src_range, &tbl, &dst_range, &bri, &con, &sat) < 0)
        return;
    int cs = f->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : (int)f->colorspace;
    src_range = f->color_range == AVCOL_RANGE_JPEG || src_range;
    sws_setColorspaceDetails(sws, sws_getCoefficients(cs), src_range, tbl, 1, bri, con, sat);
}

/* The converter for f at ow x oh: exact pixels at the same size, bilinear
 * when shrinking. */
static struct SwsContext *converter(struct decoder *d, const AVFrame *f, int ow, int oh)
{
    int flags = SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT |
                (ow == f->width && oh == f->height ? SWS_POINT : SWS_BILINEAR);
    d->sws = sws_getCachedContext(d->sws, f->width, f->height, f->format, ow, oh,
                                  AV_PIX_FMT_RGB24, flags, NULL, NULL, NULL);
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(f->format);
    if (d->sws && !(desc->flags & AV_PIX_FMT_FLAG_RGB))
        set_colorspace(d->sws, f);
    return d->sws;
}

static int to_rgb(struct decoder *d, const AVFrame *f, int32_t max_side, struct media_frame *out,
                  char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int w = f->width, h = f->height, ow, oh;
    if (w <= 0 || h <= 0 || w > MEDIA_MAX_SIDE || h > MEDIA_MAX_SIDE) {
        snprintf(err, errlen, "'%s': frame size %dx%d out of range", d->path, w, h);
        return -1;
    }
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(f->format);
    if (!desc) {
        snprintf(err, errlen, "'%s': frame has an unknown pixel format", d->path);
        return -1;
    }
    output_size(d, f, max_side, &ow, &oh);
    struct SwsContext *sws = converter(d, f, ow, oh);
    if (!sws) {
        snprintf(err, errlen, "'%s': cannot convert pixel format %s to RGB", d->path, desc->name);
        return -1;
    }
    int stride = (3 * ow + 63) & ~63;
    uint8_t *buf = malloc((size_t)stride * (size_t)oh + 64);
    if (!buf) {
        snprintf(err, errlen, "out of memory for a %dx%d frame of '%s'", ow, oh, d->path);
        return -1;
    }
    uint8_t *dst[4] = { buf, NULL, NULL, NULL };
    int dst_stride[4] = { stride, 0, 0, 0 };
    int rows = sws_scale(sws, (const uint8_t *const *)f->data, f->linesize, 0, h, dst, dst_stride);
    if (rows != oh) {
        free(buf);
        snprintf(err, errlen, "'%s': pixel conversion failed", d->path);
        return -1;
    }
    *out = (struct media_frame){ buf, ow, oh, stride, -1, 0 };
    return 0;
}

int media_video_frame_rgb(const struct media_video_frame *f, int32_t max_side,
                          struct media_frame *out, char *err, size_t errlen)
{
    const struct frame_ref *ref = f ? f->priv : NULL;
    if (!ref || !out) {
        snprintf(err, errlen, "no frame to convert");
        return -1;
    }
    if (to_rgb(ref->d, ref->f, max_side, out, err, errlen))
        return -1;
    out->pts_ns = f->pts_ns;
    out->index = f->index;
    return 0;
}

void media_set_verbose(int verbose)
{
    av_log_set_level(verbose ? AV_LOG_WARNING : AV_LOG_QUIET);
}

void media_frame_free(struct media_frame *f)
{
    if (!f)
        return;
    free(f->rgb);
    memset(f, 0, sizeof *f);
}

/* ---- video ---------------------------------------------------------------------- */

static void fill_info(const struct decoder *d, struct media_video_info *info)
{
    memset(info, 0, sizeof *info);
    snprintf(info->codec, sizeof info->codec, "%s", d->codec);
    info->width = d->width;
    info->height = d->height;
    info->n_decoded = d->index;
    info->n_damaged = d->n_damaged;
    int64_t step = d->prev_pts_ns >= 0 ? d->last_pts_ns - d->prev_pts_ns : 0;
    info->duration_ns = d->last_pts_ns < 0 ? 0 : d->last_pts_ns + (step > 0 ? step : 0);
}

int media_decode_video(const char *path, media_video_fn fn, void *user,
                       struct media_video_info *info, char *err, size_t errlen)
{
    struct decoder d;
    int rc = fn ? decoder_open(&d, path, err, errlen) : -1;
    if (!fn) {
        snprintf(err, errlen, "no frame callback");
        memset(&d, 0, sizeof d);
    }
    if (!rc)
        rc = decode_all(&d, fn, user, err, errlen);
    if (!rc && d.index == 0) {
        snprintf(err, errlen, "'%s': no video frame could be decoded", path);
        rc = -1;
    }
    if (info)
        fill_info(&d, info);
    decoder_close(&d);
    return rc;
}

/* ---- images -------------------------------------------------------------------- */

static int keep_first(void *user, const struct media_video_frame *f, char *err, size_t errlen)
{
    if (media_video_frame_rgb(f, 0, user, err, errlen))
        return -1;
    ((struct media_frame *)user)->pts_ns = -1;
    return 1;
}

int media_load_image(const char *path, struct media_frame *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct decoder d;
    int rc = decoder_open(&d, path, err, errlen);
    if (!rc)
        rc = decode_all(&d, keep_first, out, err, errlen);
    if (!rc && !out->rgb) {
        snprintf(err, errlen, "'%s': no picture could be decoded", path);
        rc = -1;
    }
    decoder_close(&d);
    if (rc)
        media_frame_free(out);
    return rc;
}
