/* Image and video decoding for the mustdrop CLI with FFmpeg 5.1's API:
 * avformat demuxes, avcodec_send_packet / avcodec_receive_frame decode,
 * sws_scale converts each kept frame to packed RGB24.
 *
 * A video is read twice: the first pass decodes every frame and records its
 * timestamp (so frame counts and times come from the frames themselves, not
 * from container metadata that may be missing or wrong), the second
 * converts only the frames chosen from that list. */
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
#define MEDIA_DEFAULT_MAX_FRAMES 256

/* Called for each decoded frame: < 0 aborts (error set), 1 stops, 0 goes on. */
typedef int (*frame_fn)(void *user, const AVFrame *f, int64_t index, int64_t pts_ns,
                        char *err, size_t errlen);

struct decoder {
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;
    int stream;
    AVRational tb;
    int64_t origin;          /* the first decoded frame's timestamp (time base units) */
    int64_t last_ts;
    int64_t index;
    int64_t n_damaged;
    char codec[32];
};

static void av_err(char *err, size_t errlen, const char *path, const char *what, int code)
{
    char buf[AV_ERROR_MAX_STRING_SIZE] = "";
    av_strerror(code, buf, sizeof buf);
    snprintf(err, errlen, "cannot %s '%s': %s", what, path, buf);
}

static void decoder_close(struct decoder *d)
{
    av_frame_free(&d->frame);
    av_packet_free(&d->pkt);
    avcodec_free_context(&d->dec);
    if (d->fmt)
        avformat_close_input(&d->fmt);
}

static int decoder_open(struct decoder *d, const char *path, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
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
    AVStream *st = d->fmt->streams[d->stream];
    snprintf(d->codec, sizeof d->codec, "%s", codec->name);
    d->dec = avcodec_alloc_context3(codec);
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->dec || !d->pkt || !d->frame) {
        snprintf(err, errlen, "out of memory opening '%s'", path);
        return -1;
    }
    rc = avcodec_parameters_to_context(d->dec, st->codecpar);
    if (rc >= 0) {
        d->dec->thread_count = 0;     /* FFmpeg picks */
        d->dec->pkt_timebase = st->time_base;
        rc = avcodec_open2(d->dec, codec, NULL);
    }
    if (rc < 0) {
        av_err(err, errlen, path, "open the decoder for", rc);
        return -1;
    }
    d->tb = st->time_base;
    if (d->tb.num <= 0 || d->tb.den <= 0)
        d->tb = (AVRational){ 1, 1000000 };
    d->origin = AV_NOPTS_VALUE;    /* times count from the first decoded frame */
    d->last_ts = AV_NOPTS_VALUE;
    return 0;
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

/* Drain decoded frames into fn. */
static int drain(struct decoder *d, frame_fn fn, void *user, const char *path, char *err,
                 size_t errlen)
{
    for (int bad = 0;;) {
        int rc = avcodec_receive_frame(d->dec, d->frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc == AVERROR_INVALIDDATA && ++bad < 64) {
            d->n_damaged++;
            continue;      /* a damaged frame: skip it */
        }
        if (rc < 0) {
            av_err(err, errlen, path, "decode", rc);
            return -1;
        }
        int64_t pts = frame_pts_ns(d, d->frame);
        int r = fn(user, d->frame, d->index++, pts, err, errlen);
        av_frame_unref(d->frame);
        if (r)
            return r;
    }
}

/* Decode the whole stream (or until fn says stop). Packets the decoder
 * rejects as invalid data are skipped, like ffmpeg does. */
static int decode_all(struct decoder *d, frame_fn fn, void *user, const char *path, char *err,
                      size_t errlen)
{
    int r = 0;
    while (!r) {
        int rc = av_read_frame(d->fmt, d->pkt);
        if (rc == AVERROR_EOF)
            break;
        if (rc < 0) {
            /* a damaged tail reads as an I/O or data error: stop reading, keep what we have */
            break;
        }
        if (d->pkt->stream_index == d->stream) {
            rc = avcodec_send_packet(d->dec, d->pkt);
            if (rc == AVERROR_INVALIDDATA)
                d->n_damaged++;
            if (rc < 0 && rc != AVERROR(EAGAIN) && rc != AVERROR_INVALIDDATA) {
                av_packet_unref(d->pkt);
                av_err(err, errlen, path, "decode", rc);
                return -1;
            }
            r = drain(d, fn, user, path, err, errlen);
        }
        av_packet_unref(d->pkt);
    }
    if (r == 0) {
        avcodec_send_packet(d->dec, NULL);   /* flush */
        r = drain(d, fn, user, path, err, errlen);
    }
    return r < 0 ? -1 : 0;
}

/* ---- conversion to RGB24 ------------------------------------------------------ */

static int to_rgb(const AVFrame *f, struct media_frame *out, const char *path, char *err,
                  size_t errlen)
{
    memset(out, 0, sizeof *out);
    int w = f->width, h = f->height;
    if (w <= 0 || h <= 0 || w > MEDIA_MAX_SIDE || h > MEDIA_MAX_SIDE) {
        snprintf(err, errlen, "'%s': frame size %dx%d out of range", path, w, h);
        return -1;
    }
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(f->format);
    if (!desc) {
        snprintf(err, errlen, "'%s': frame has an unknown pixel format", path);
        return -1;
    }
    struct SwsContext *sws = sws_getContext(w, h, f->format, w, h, AV_PIX_FMT_RGB24,
                                            SWS_POINT | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
                                            NULL, NULL, NULL);
    if (!sws) {
        snprintf(err, errlen, "'%s': cannot convert pixel format %s to RGB", path, desc->name);
        return -1;
    }
    /* YUV -> RGB with the frame's matrix and range (BT.601 when unspecified) */
    if (!(desc->flags & AV_PIX_FMT_FLAG_RGB)) {
        int *inv, *tbl, src_range, dst_range, bri, con, sat;
        if (sws_getColorspaceDetails(sws, &inv, &src_range, &tbl, &dst_range, &bri, &con, &sat) >= 0) {
            int cs = f->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : (int)f->colorspace;
            const int *coefs = sws_getCoefficients(cs);
            src_range = f->color_range == AVCOL_RANGE_JPEG || src_range;
            sws_setColorspaceDetails(sws, coefs, src_range, tbl, 1, bri, con, sat);
        }
    }
    int stride = (3 * w + 63) & ~63;
    uint8_t *buf = malloc((size_t)stride * (size_t)h + 64);
    if (!buf) {
        sws_freeContext(sws);
        snprintf(err, errlen, "out of memory for a %dx%d frame of '%s'", w, h, path);
        return -1;
    }
    uint8_t *dst[4] = { buf, NULL, NULL, NULL };
    int dst_stride[4] = { stride, 0, 0, 0 };
    int rows = sws_scale(sws, (const uint8_t *const *)f->data, f->linesize, 0, h, dst, dst_stride);
    sws_freeContext(sws);
    if (rows != h) {
        free(buf);
        snprintf(err, errlen, "'%s': pixel conversion failed", path);
        return -1;
    }
    out->rgb = buf;
    out->width = w;
    out->height = h;
    out->stride = stride;
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

void media_frames_free(struct media_frames *f)
{
    if (!f)
        return;
    for (int32_t i = 0; i < f->n; i++)
        media_frame_free(&f->frame[i]);
    free(f->frame);
    memset(f, 0, sizeof *f);
}

/* ---- images -------------------------------------------------------------------- */

struct first_frame {
    struct media_frame *out;
    const char *path;
    bool got;
};

static int keep_first(void *user, const AVFrame *f, int64_t index, int64_t pts_ns, char *err,
                      size_t errlen)
{
    struct first_frame *ff = user;
    (void)index;
    (void)pts_ns;
    if (to_rgb(f, ff->out, ff->path, err, errlen))
        return -1;
    ff->out->pts_ns = -1;
    ff->out->index = 0;
    ff->got = true;
    return 1;
}

int media_load_image(const char *path, struct media_frame *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct decoder d;
    int rc = decoder_open(&d, path, err, errlen);
    struct first_frame ff = { out, path, false };
    if (!rc)
        rc = decode_all(&d, keep_first, &ff, path, err, errlen);
    if (!rc && !ff.got) {
        snprintf(err, errlen, "'%s': no picture could be decoded", path);
        rc = -1;
    }
    decoder_close(&d);
    if (rc)
        media_frame_free(out);
    return rc;
}

/* ---- video ---------------------------------------------------------------------- */

struct pts_list {
    int64_t *v;
    int64_t n, cap;
};

static int record_pts(void *user, const AVFrame *f, int64_t index, int64_t pts_ns, char *err,
                      size_t errlen)
{
    struct pts_list *l = user;
    (void)f;
    (void)index;
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 256;
        int64_t *nv = realloc(l->v, sizeof(int64_t) * (size_t)cap);
        if (!nv) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = pts_ns;
    return 0;
}

/* Chosen frame indices, increasing, into sel (room for cap); returns the count. */
static int32_t choose_frames(const struct pts_list *l, const struct media_sampling *s,
                             int64_t *sel, int32_t cap)
{
    int32_t n = 0;
    if (s->n_frames > 0) {
        int64_t want = s->n_frames < l->n ? s->n_frames : l->n;
        for (int64_t i = 0; i < want && n < cap; i++)
            sel[n++] = i * l->n / want;
        return n;
    }
    /* every 1/fps seconds from the first frame until the last one's end:
     * the frame on screen then */
    int64_t t0 = l->v[0], last = -1;
    int64_t step = l->n >= 2 ? l->v[l->n - 1] - l->v[l->n - 2] : 0;
    double end = (double)l->v[l->n - 1] + (double)(step > 0 ? step : 1);
    int64_t j = 0;
    for (int64_t k = 0; n < cap; k++) {
        double t = (double)t0 + (double)k * 1e9 / s->fps;
        if (t >= end)
            break;
        int64_t target = (int64_t)t;
        while (j + 1 < l->n && l->v[j + 1] <= target)
            j++;
        if (j != last) {
            sel[n++] = j;
            last = j;
        }
    }
    return n;
}

struct keep_sel {
    struct media_frames *out;
    const int64_t *sel;
    int32_t n_sel, next;
    const char *path;
};

static int keep_selected(void *user, const AVFrame *f, int64_t index, int64_t pts_ns, char *err,
                         size_t errlen)
{
    struct keep_sel *k = user;
    if (k->next >= k->n_sel)
        return 1;
    if (index != k->sel[k->next])
        return 0;
    struct media_frame *mf = &k->out->frame[k->out->n];
    if (to_rgb(f, mf, k->path, err, errlen))
        return -1;
    mf->pts_ns = pts_ns;
    mf->index = index;
    k->out->n++;
    k->next++;
    return k->next >= k->n_sel ? 1 : 0;
}

int media_load_video(const char *path, const struct media_sampling *s, struct media_frames *out,
                     char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!s || (s->n_frames <= 0 && !(s->fps > 0 && s->fps < 1e6))) {
        snprintf(err, errlen, "bad frame sampling (need --frames N > 0 or --fps F > 0)");
        return -1;
    }
    struct decoder d;
    struct pts_list l = { NULL, 0, 0 };
    int rc = decoder_open(&d, path, err, errlen);
    if (!rc)
        rc = decode_all(&d, record_pts, &l, path, err, errlen);
    if (!rc) {
        snprintf(out->codec, sizeof out->codec, "%s", d.codec);
        out->n_damaged = d.n_damaged;
    }
    decoder_close(&d);
    if (!rc && l.n == 0) {
        snprintf(err, errlen, "'%s': no video frame could be decoded", path);
        rc = -1;
    }
    int32_t cap = s->n_frames > 0 ? s->n_frames
                : s->max_frames > 0 ? s->max_frames : MEDIA_DEFAULT_MAX_FRAMES;
    int64_t *sel = rc ? NULL : malloc(sizeof(int64_t) * (size_t)cap);
    if (!rc && !sel) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    int32_t n_sel = rc ? 0 : choose_frames(&l, s, sel, cap);
    if (!rc) {
        out->n_decoded = l.n;
        int64_t step = l.n >= 2 ? l.v[l.n - 1] - l.v[l.n - 2] : 0;
        out->duration_ns = l.v[l.n - 1] + (step > 0 ? step : 0);
        out->frame = calloc((size_t)n_sel, sizeof *out->frame);
        if (!out->frame) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    if (!rc) {
        rc = decoder_open(&d, path, err, errlen);
        struct keep_sel k = { out, sel, n_sel, 0, path };
        if (!rc)
            rc = decode_all(&d, keep_selected, &k, path, err, errlen);
        decoder_close(&d);
        if (!rc && out->n != n_sel) {
            snprintf(err, errlen, "'%s': decoded %d frames the second time, expected %d",
                     path, (int)out->n, (int)n_sel);
            rc = -1;
        }
    }
    free(sel);
    free(l.v);
    if (rc)
        media_frames_free(out);
    return rc;
}
