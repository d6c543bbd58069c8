/* The CLI's FFmpeg decoding (core/cli/media.c) on media made here with
 * FFmpeg's own encoders:
 *   clip.mkv  FFV1 (lossless, RGB) 33x27, 12 frames at 25 fps, moving squares
 *   clip.avi  MPEG-4 part 2 (yuv420p, lossy) 34x26, 10 frames at 10 fps
 *   image.png 33x27 PNG (the same picture as frame 0 of clip.mkv)
 * Checks frame counts, sampled indices, timestamps, exact pixels (lossless
 * cases), odd sizes, and errors on missing, empty, corrupt, truncated and
 * audio-only-like (no video) input.
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

static void check_mkv(const char *dir)
{
    char p[1024], err[512] = "";
    snprintf(p, sizeof p, "%s/clip.mkv", dir);
    struct media_frames v;
    struct media_sampling s = { .n_frames = 4 };
    int rc = media_load_video(p, &s, &v, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc)
        return;
    CHECK(v.n_decoded == 12);
    CHECK(v.n == 4);
    CHECK(v.duration_ns == 480000000);
    CHECKF(!strcmp(v.codec, "ffv1"), "codec %s", v.codec);
    static const int64_t idx[4] = { 0, 3, 6, 9 };
    for (int i = 0; i < v.n && i < 4; i++) {
        CHECKF(v.frame[i].index == idx[i], "frame %d index %lld", i, (long long)v.frame[i].index);
        CHECKF(v.frame[i].pts_ns == idx[i] * 40000000, "frame %d pts %lld", i, (long long)v.frame[i].pts_ns);
        CHECKF(same_as_pattern(&v.frame[i], (int)idx[i]), "frame %d pixels", i);
        CHECK(v.frame[i].stride >= 3 * W);
    }
    media_frames_free(&v);

    /* more frames asked than there are: all 12 */
    s.n_frames = 100;
    rc = media_load_video(p, &s, &v, err, sizeof err);
    CHECKF(rc == 0 && v.n == 12, "%s", err);
    for (int i = 0; !rc && i < v.n; i++)
        CHECK(v.frame[i].index == i && same_as_pattern(&v.frame[i], i));
    media_frames_free(&v);

    /* 5 fps over 0.44 s: t = 0, 0.2, 0.4 -> frames 0, 5, 10 */
    struct media_sampling sf = { .fps = 5 };
    rc = media_load_video(p, &sf, &v, err, sizeof err);
    CHECKF(rc == 0 && v.n == 3, "%s n=%d", err, (int)v.n);
    for (int i = 0; !rc && i < v.n && i < 3; i++)
        CHECKF(v.frame[i].index == 5 * i && v.frame[i].pts_ns == 200000000LL * i,
               "fps frame %d: index %lld pts %lld", i, (long long)v.frame[i].index,
               (long long)v.frame[i].pts_ns);
    media_frames_free(&v);

    /* 100 fps: each frame once, never twice */
    sf.fps = 100;
    rc = media_load_video(p, &sf, &v, err, sizeof err);
    CHECKF(rc == 0 && v.n == 12, "%s n=%d", err, (int)v.n);
    media_frames_free(&v);
}

static void check_avi(const char *dir)
{
    char p[1024], err[512] = "";
    snprintf(p, sizeof p, "%s/clip.avi", dir);
    struct media_frames v;
    struct media_sampling s = { .n_frames = 3 };
    int rc = media_load_video(p, &s, &v, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    if (rc)
        return;
    CHECK(v.n_decoded == 10 && v.n == 3);
    static const int64_t idx[3] = { 0, 3, 6 };
    for (int i = 0; i < v.n && i < 3; i++) {
        CHECKF(v.frame[i].index == idx[i] && v.frame[i].pts_ns == idx[i] * 100000000,
               "avi frame %d: index %lld pts %lld", i, (long long)v.frame[i].index,
               (long long)v.frame[i].pts_ns);
        CHECK(v.frame[i].width == 34 && v.frame[i].height == 26);
        /* lossy: the green square's centre is still green */
        int gy = (int)idx[i] % 20 + 3;
        const uint8_t *px = v.frame[i].rgb + (size_t)gy * v.frame[i].stride + 3 * 23;
        CHECKF(px[1] > 150 && px[0] < 100, "avi frame %d: green square is %d,%d,%d", i, px[0], px[1], px[2]);
    }
    media_frames_free(&v);
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

static void check_errors(const char *dir)
{
    char p[1024], err[512], src[1024];
    struct media_frames v;
    struct media_frame f;
    struct media_sampling s = { .n_frames = 4 };
    int rc;

    snprintf(p, sizeof p, "%s/nope.mp4", dir);
    CHECK(media_load_video(p, &s, &v, err, sizeof err) < 0 && strstr(err, "cannot open"));
    CHECK(v.n == 0 && v.frame == NULL);
    CHECK(media_load_image(p, &f, err, sizeof err) < 0 && strstr(err, "cannot open"));

    snprintf(p, sizeof p, "%s/empty.mkv", dir);
    FILE *fp = fopen(p, "wb");
    if (fp) fclose(fp);
    CHECK(media_load_video(p, &s, &v, err, sizeof err) < 0);
    printf("empty file: %s\n", err);

    snprintf(p, sizeof p, "%s/garbage.avi", dir);
    fp = fopen(p, "wb");
    for (int i = 0; fp && i < 5000; i++) fputc((i * 7919) & 0xff, fp);
    if (fp) fclose(fp);
    CHECK(media_load_video(p, &s, &v, err, sizeof err) < 0);
    CHECK(media_load_image(p, &f, err, sizeof err) < 0);
    printf("garbage file: %s\n", err);

    struct media_sampling bad = { 0 };
    snprintf(p, sizeof p, "%s/clip.mkv", dir);
    CHECK(media_load_video(p, &bad, &v, err, sizeof err) < 0 && strstr(err, "sampling"));

    /* truncated and corrupted copies of both videos: no crash, and
     * either an error or the frames that could be read */
    static const char *names[2] = { "clip.mkv", "clip.avi" };
    for (int k = 0; k < 2; k++) {
        snprintf(src, sizeof src, "%s/%s", dir, names[k]);
        FILE *in = fopen(src, "rb");
        uint8_t buf[1 << 16];
        size_t n = in ? fread(buf, 1, sizeof buf, in) : 0;
        if (in) fclose(in);
        CHECK(n > 200);
        for (int mode = 0; mode < 4; mode++) {
            snprintf(p, sizeof p, "%s/bad%d-%s", dir, mode, names[k]);
            fp = fopen(p, "wb");
            if (!fp) continue;
            size_t len = mode == 0 ? n / 2 : mode == 1 ? 120 : n;
            uint8_t tmp[1 << 16];
            memcpy(tmp, buf, n);
            if (mode >= 2)      /* flip bytes past the headers */
                for (size_t i = n / 4; i < n; i += (mode == 2 ? 97 : 13)) tmp[i] ^= 0x5a;
            fwrite(tmp, 1, len, fp);
            fclose(fp);
            rc = media_load_video(p, &s, &v, err, sizeof err);
            printf("%s: %s\n", p + strlen(dir) + 1,
                   rc ? err : v.n ? "decoded" : "no frames");
            if (!rc) {
                CHECK(v.n > 0 && v.n <= 4);
                for (int i = 0; i < v.n; i++)
                    CHECK(v.frame[i].rgb && v.frame[i].width > 0);
            } else {
                CHECK(v.n == 0 && v.frame == NULL);
            }
            media_frames_free(&v);
        }
    }
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
