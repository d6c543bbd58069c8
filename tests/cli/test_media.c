/* The CLI's FFmpeg decoding (core/cli/media.c) on media made here with
 * FFmpeg's own encoders:
 *   clip.mkv  FFV1 (lossless, RGB) 33x27, 12 frames at 25 fps, moving squares
 *   clip.avi  MPEG-4 part 2 (yuv420p, lossy) 34x26, 10 frames at 10 fps
 *   image.png 33x27 PNG (the same picture as frame 0 of clip.mkv)
 * Checks the streaming decode (media_decode_video): every frame in display
 * order with its timestamp, conversion of the frames asked for only (exact
 * pixels in the lossless cases, odd sizes, shrinking to a side), stopping and
 * failing from the callback, decode order into the sampling rule
 * (md_vqa_grid), and errors on missing, empty, corrupt and truncated input.
 *
 *   test_media            run the checks in a temporary directory
 *   test_media --write D  only write the media into directory D (for test_cli_vision.sh) */
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#include "md_test.h"
#include "media.h"
#include "mustdrop-vqa.h"

#define W 33
#define H 27

/* Frame i of the test pattern, RGB24 tightly packed: grey background, a red
 * 6x6 square moving right 2 px a frame, a green one moving down 1 px. */
static void pattern(int i, int w, int h, uint8_t *rgb)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + 3 * (y * w + x);
            p[0] = 40; p[1] = 40; p[2] = (uint8_t)(40 + 4 * x);
            int rx = (2 * i) % (w - 6), gy = i % (h - 6);
            if (x >= rx && x < rx + 6 && y >= 2 && y < 8) { p[0] = 230; p[1] = 20; p[2] = 20; }
            if (x >= 20 && x < 26 && y >= gy && y < gy + 6) { p[0] = 20; p[1] = 220; p[2] = 30; }
        }
}

/* Encode n pattern frames with codec id into path; 0 on success. */
static int write_video(const char *path, enum AVCodecID id, enum AVPixelFormat pixfmt, int w, int h,
                       int n, int fps)
{
    const AVCodec *codec = avcodec_find_encoder(id);
    if (!codec)
        return -1;
    AVFormatContext *oc = NULL;
    if (avformat_alloc_output_context2(&oc, NULL, NULL, path) < 0 || !oc)
        return -1;
    AVStream *st = avformat_new_stream(oc, NULL);
    AVCodecContext *c = avcodec_alloc_context3(codec);
    AVFrame *fr = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    uint8_t *rgb = malloc((size_t)w * h * 3);
    struct SwsContext *sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, pixfmt, SWS_POINT,
                                            NULL, NULL, NULL);
    int rc = st && c && fr && pkt && rgb && sws ? 0 : -1;
    if (!rc) {
        c->width = w;
        c->height = h;
        c->pix_fmt = pixfmt;
        c->time_base = (AVRational){ 1, fps };
        c->framerate = (AVRational){ fps, 1 };
        c->gop_size = 4;
        c->max_b_frames = id == AV_CODEC_ID_MPEG4 ? 1 : 0;
        c->thread_count = 1;
        if (oc->oformat->flags & AVFMT_GLOBALHEADER)
            c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
        rc = avcodec_open2(c, codec, NULL);
    }
    if (!rc) {
        st->time_base = c->time_base;
        rc = avcodec_parameters_from_context(st->codecpar, c);
    }
    if (!rc)
        rc = avio_open(&oc->pb, path, AVIO_FLAG_WRITE);
    if (!rc)
        rc = avformat_write_header(oc, NULL) < 0 ? -1 : 0;
    fr->format = pixfmt;
    fr->width = w;
    fr->height = h;
    if (!rc)
        rc = av_frame_get_buffer(fr, 0);
    for (int i = 0; !rc && i <= n; i++) {
        if (i < n) {
            rc = av_frame_make_writable(fr);
            pattern(i, w, h, rgb);
            const uint8_t *src[1] = { rgb };
            int src_stride[1] = { 3 * w };
            sws_scale(sws, src, src_stride, 0, h, fr->data, fr->linesize);
            fr->pts = i;
        }
        if (!rc)
            rc = avcodec_send_frame(c, i < n ? fr : NULL);
        while (!rc) {
            int r = avcodec_receive_packet(c, pkt);
            if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
                break;
            if (r < 0) { rc = r; break; }
            av_packet_rescale_ts(pkt, c->time_base, st->time_base);
            pkt->stream_index = st->index;
            rc = av_interleaved_write_frame(oc, pkt) < 0 ? -1 : 0;
        }
    }
    if (!rc)
        rc = av_write_trailer(oc);
    if (oc->pb)
        avio_closep(&oc->pb);
    sws_freeContext(sws);
    free(rgb);
    av_packet_free(&pkt);
    av_frame_free(&fr);
    avcodec_free_context(&c);
    avformat_free_context(oc);
    return rc ? -1 : 0;
}

static int write_png(const char *path, int w, int h)
{
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    if (!codec)
        return -1;
    AVCodecContext *c = avcodec_alloc_context3(codec);
    AVFrame *fr = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    int rc = c && fr && pkt ? 0 : -1;
    if (!rc) {
        c->width = w;
        c->height = h;
        c->pix_fmt = AV_PIX_FMT_RGB24;
        c->time_base = (AVRational){ 1, 1 };
        rc = avcodec_open2(c, codec, NULL);
    }
    fr->format = AV_PIX_FMT_RGB24;
    fr->width = w;
    fr->height = h;
    if (!rc)
        rc = av_frame_get_buffer(fr, 0);
    if (!rc) {
        uint8_t *rgb = malloc((size_t)w * h * 3);
        if (rgb) {
            pattern(0, w, h, rgb);
            for (int y = 0; y < h; y++)
                memcpy(fr->data[0] + (size_t)y * fr->linesize[0], rgb + (size_t)y * w * 3, (size_t)w * 3);
        }
        free(rgb);
        rc = rgb ? avcodec_send_frame(c, fr) : -1;
    }
    if (!rc)
        rc = avcodec_receive_packet(c, pkt);
    if (!rc) {
        FILE *f = fopen(path, "wb");
        rc = f && fwrite(pkt->data, 1, (size_t)pkt->size, f) == (size_t)pkt->size ? 0 : -1;
        if (f && fclose(f))
            rc = -1;
    }
    av_packet_free(&pkt);
    av_frame_free(&fr);
    avcodec_free_context(&c);
    return rc ? -1 : 0;
}

static int write_all(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/clip.mkv", dir);
    if (write_video(p, AV_CODEC_ID_FFV1, AV_PIX_FMT_0RGB32, W, H, 12, 25)) {
        fprintf(stderr, "cannot write %s\n", p);
        return -1;
    }
    snprintf(p, sizeof p, "%s/clip.avi", dir);
    if (write_video(p, AV_CODEC_ID_MPEG4, AV_PIX_FMT_YUV420P, 34, 26, 10, 10)) {
        fprintf(stderr, "cannot write %s\n", p);
        return -1;
    }
    snprintf(p, sizeof p, "%s/image.png", dir);
    if (write_png(p, W, H)) {
        fprintf(stderr, "cannot write %s\n", p);
        return -1;
    }
    return 0;
}

/* Byte-exact comparison of a decoded frame with pattern i. */
static bool same_as_pattern(const struct media_frame *f, int i)
{
    uint8_t want[W * H * 3];
    pattern(i, W, H, want);
    if (f->width != W || f->height != H)
        return false;
    for (int y = 0; y < H; y++)
        if (memcmp(f->rgb + (size_t)y * f->stride, want + y * W * 3, W * 3))
            return false;
    return true;
}

/* What a decode handed over: every frame's index and pts, and the frames
 * asked for (want[i] true) converted at max_side. */
#define MAX_SEEN 64
struct seen {
    int64_t n, index[MAX_SEEN], pts[MAX_SEEN];
    bool all;                 /* convert every frame */
    const bool *want;         /* else those marked (NULL: none) */
    int32_t max_side;
    struct media_frame rgb[MAX_SEEN];
    int64_t stop_after;       /* > 0: stop after this many frames */
    bool fail_at_2;
};

static int see(void *user, const struct media_video_frame *f, char *err, size_t errlen)
{
    struct seen *s = user;
    if (s->n == MAX_SEEN)
        return 1;
    s->index[s->n] = f->index;
    s->pts[s->n] = f->pts_ns;
    if (s->fail_at_2 && s->n == 2) {
        snprintf(err, errlen, "stopped by the test");
        return -1;
    }
    bool convert = s->all || (s->want && s->want[s->n]);
    if (convert && media_video_frame_rgb(f, s->max_side, &s->rgb[s->n], err, errlen))
        return -1;
    s->n++;
    return s->stop_after > 0 && s->n >= s->stop_after ? 1 : 0;
}

static void seen_free(struct seen *s)
{
    for (int i = 0; i < MAX_SEEN; i++)
        media_frame_free(&s->rgb[i]);
}

static void check_mkv_frames(const char *p)
{
    char err[512] = "";
    struct seen s = { .all = true };
    struct media_video_info info;
    int rc = media_decode_video(p, see, &s, &info, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    CHECKF(s.n == 12 && info.n_decoded == 12, "n %lld, n_decoded %lld", (long long)s.n,
           (long long)info.n_decoded);
    CHECK(info.duration_ns == 480000000);
    CHECK(info.width == W && info.height == H && info.n_damaged == 0);
    CHECKF(!strcmp(info.codec, "ffv1"), "codec %s", info.codec);
    for (int i = 0; i < s.n; i++) {
        CHECKF(s.index[i] == i && s.pts[i] == i * 40000000LL, "frame %d: index %lld pts %lld", i,
               (long long)s.index[i], (long long)s.pts[i]);
        CHECKF(same_as_pattern(&s.rgb[i], i), "frame %d pixels", i);
        CHECK(s.rgb[i].stride >= 3 * W && s.rgb[i].pts_ns == s.pts[i] && s.rgb[i].index == i);
    }
    seen_free(&s);
}

/* Shrunk to a side: the display size fitted, aspect kept, never enlarged. */
static void check_mkv_shrink(const char *p)
{
    char err[512] = "";
    bool want[MAX_SEEN] = { [4] = true, [5] = true };
    struct seen s = { .want = want, .max_side = 16 };
    int rc = media_decode_video(p, see, &s, NULL, err, sizeof err);
    CHECKF(rc == 0 && s.rgb[4].rgb && s.rgb[5].rgb && !s.rgb[3].rgb, "%s", err);
    CHECKF(s.rgb[4].width == 16 && s.rgb[4].height == 13, "shrunk to %dx%d",
           (int)s.rgb[4].width, (int)s.rgb[4].height);
    /* the background's red and green stay 40 under bilinear filtering */
    const uint8_t *px = s.rgb[4].rgb + (size_t)12 * s.rgb[4].stride;
    CHECKF(abs(px[0] - 40) <= 2 && abs(px[1] - 40) <= 2, "background %d,%d", px[0], px[1]);
    seen_free(&s);
    struct seen big = { .all = true, .max_side = 1000 };
    rc = media_decode_video(p, see, &big, NULL, err, sizeof err);
    CHECKF(rc == 0 && big.rgb[0].width == W && same_as_pattern(&big.rgb[0], 0),
           "a side larger than the frame keeps it as it is: %s", err);
    seen_free(&big);
}

/* The callback stops the decode, or fails it with its message. */
static void check_mkv_stop(const char *p)
{
    char err[512] = "";
    struct seen s = { .stop_after = 3 };
    struct media_video_info info;
    int rc = media_decode_video(p, see, &s, &info, err, sizeof err);
    CHECKF(rc == 0 && s.n == 3 && info.n_decoded == 3, "stop after 3: %s, n %lld", err,
           (long long)s.n);
    struct seen f = { .fail_at_2 = true };
    rc = media_decode_video(p, see, &f, &info, err, sizeof err);
    CHECKF(rc < 0 && !strcmp(err, "stopped by the test") && f.n == 2, "fail at 2: %d %s", rc, err);
    CHECK(media_decode_video(p, NULL, NULL, NULL, err, sizeof err) < 0);
}

/* Decode order into the sampling rule (as the CLIs do): 5 a second over
 * 25 fps takes frames 0, 5, 10. */
static void check_mkv_grid(const char *p)
{
    char err[512] = "";
    struct seen s = { 0 };
    CHECK(media_decode_video(p, see, &s, NULL, err, sizeof err) == 0);
    struct md_vqa_grid g;
    md_vqa_grid_init(&g, 5.0);
    int64_t taken[12], n = 0;
    for (int64_t i = 0; i < s.n; i++)
        if (md_vqa_grid_take(&g, s.pts[i]))
            taken[n++] = s.index[i];
    CHECKF(n == 3 && taken[0] == 0 && taken[1] == 5 && taken[2] == 10, "5 fps: %lld frames",
           (long long)n);
}

static void check_mkv(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/clip.mkv", dir);
    check_mkv_frames(p);
    check_mkv_shrink(p);
    check_mkv_stop(p);
    check_mkv_grid(p);
}

static void check_avi(const char *dir)
{
    char p[1024], err[512] = "";
    snprintf(p, sizeof p, "%s/clip.avi", dir);
    bool want[MAX_SEEN] = { [0] = true, [3] = true, [6] = true };
    struct seen s = { .want = want };
    struct media_video_info info;
    int rc = media_decode_video(p, see, &s, &info, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc)
        return;
    CHECK(info.n_decoded == 10 && s.n == 10 && !strcmp(info.codec, "mpeg4"));
    for (int i = 0; i < 10; i++)   /* B-frames: display order, from 0 */
        CHECKF(s.index[i] == i && s.pts[i] == i * 100000000LL, "avi frame %d: index %lld pts %lld",
               i, (long long)s.index[i], (long long)s.pts[i]);
    for (int i = 0; i < 10; i += 3) {
        if (i == 9)
            break;
        const struct media_frame *f = &s.rgb[i];
        CHECK(f->width == 34 && f->height == 26);
        /* lossy: the green square's centre is still green */
        int gy = i % 20 + 3;
        const uint8_t *px = f->rgb + (size_t)gy * f->stride + 3 * 23;
        CHECKF(px[1] > 150 && px[0] < 100, "avi frame %d: green square is %d,%d,%d", i, px[0], px[1], px[2]);
    }
    seen_free(&s);
}

static void check_image(const char *dir)
{
    char p[1024], err[512] = "";
    snprintf(p, sizeof p, "%s/image.png", dir);
    struct media_frame f;
    int rc = media_load_image(p, &f, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (!rc) {
        CHECK(f.pts_ns == -1);
        CHECK(same_as_pattern(&f, 0));
        media_frame_free(&f);
    }
    /* a video given as an image: its first frame */
    snprintf(p, sizeof p, "%s/clip.mkv", dir);
    rc = media_load_image(p, &f, err, sizeof err);
    CHECKF(rc == 0 && same_as_pattern(&f, 0), "%s", err);
    media_frame_free(&f);
}

/* Truncated and corrupted copies of both videos: no crash, and either an
 * error or the frames that could be read. */
static void check_damaged(const char *dir)
{
    static const char *names[2] = { "clip.mkv", "clip.avi" };
    char p[1024], err[512], src[1024];
    for (int k = 0; k < 2; k++) {
        snprintf(src, sizeof src, "%s/%s", dir, names[k]);
        FILE *in = fopen(src, "rb");
        uint8_t buf[1 << 16];
        size_t n = in ? fread(buf, 1, sizeof buf, in) : 0;
        if (in) fclose(in);
        CHECK(n > 200);
        for (int mode = 0; mode < 4; mode++) {
            snprintf(p, sizeof p, "%s/bad%d-%s", dir, mode, names[k]);
            FILE *fp = fopen(p, "wb");
            if (!fp) continue;
            size_t len = mode == 0 ? n / 2 : mode == 1 ? 120 : n;
            uint8_t tmp[1 << 16];
            memcpy(tmp, buf, n);
            if (mode >= 2)      /* flip bytes past the headers */
                for (size_t i = n / 4; i < n; i += (mode == 2 ? 97 : 13)) tmp[i] ^= 0x5a;
            fwrite(tmp, 1, len, fp);
            fclose(fp);
            struct seen s = { .all = true };
            int rc = media_decode_video(p, see, &s, NULL, err, sizeof err);
            printf("%s: %s\n", p + strlen(dir) + 1, rc ? err : s.n ? "decoded" : "no frames");
            CHECK(rc ? 1 : s.n > 0);
            for (int i = 0; !rc && i < s.n; i++)
                CHECK(s.rgb[i].rgb && s.rgb[i].width > 0);
            seen_free(&s);
        }
    }
}

static void check_errors(const char *dir)
{
    char p[1024], err[512];
    struct media_frame f;
    struct seen s = { 0 };

    snprintf(p, sizeof p, "%s/nope.mp4", dir);
    CHECK(media_decode_video(p, see, &s, NULL, err, sizeof err) < 0 && strstr(err, "cannot open"));
    CHECK(s.n == 0);
    CHECK(media_load_image(p, &f, err, sizeof err) < 0 && strstr(err, "cannot open"));

    snprintf(p, sizeof p, "%s/empty.mkv", dir);
    FILE *fp = fopen(p, "wb");
    if (fp) fclose(fp);
    CHECK(media_decode_video(p, see, &s, NULL, err, sizeof err) < 0);
    printf("empty file: %s\n", err);

    snprintf(p, sizeof p, "%s/garbage.avi", dir);
    fp = fopen(p, "wb");
    for (int i = 0; fp && i < 5000; i++) fputc((i * 7919) & 0xff, fp);
    if (fp) fclose(fp);
    CHECK(media_decode_video(p, see, &s, NULL, err, sizeof err) < 0);
    CHECK(media_load_image(p, &f, err, sizeof err) < 0);
    printf("garbage file: %s\n", err);
    check_damaged(dir);
}

int main(int argc, char **argv)
{
    av_log_set_level(AV_LOG_QUIET);
    if (argc == 3 && !strcmp(argv[1], "--write"))
        return write_all(argv[2]) ? 1 : 0;
    char dir[] = "/tmp/md-test-media-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (write_all(dir)) {
        printf("FAIL: this FFmpeg cannot encode the test media (FFV1/MPEG-4/PNG encoders "
               "missing; bash .ci/install-deps)\n");
        return 1;
    }
    check_mkv(dir);
    check_avi(dir);
    check_image(dir);
    check_errors(dir);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "note: could not remove %s\n", dir);
    return md_test_finish("media");
}
