/* The CLIs' progress line: see progress.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"
#include "vqa.h"

/* when stderr is not a terminal (--progress into a file or a pipe) */
#define PROGRESS_DEFAULT_COLUMNS 80

double progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void progress_init(struct progress *p, enum progress_when when, const char *name)
{
    memset(p, 0, sizeof *p);
    p->on = when == PROGRESS_ALWAYS || (when == PROGRESS_AUTO && isatty(STDERR_FILENO));
    p->name = name;
    p->start_s = progress_now();
    p->end_s = -1;
}

/* "1:05", or "1:02:03" past an hour. */
static void format_duration(double s, char *buf, size_t len)
{
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

/* The terminal's width; a line as wide as it would wrap on some terminals,
 * so one column less is used. */
static int line_width(void)
{
    struct winsize ws;
    int cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0
                   ? ws.ws_col : PROGRESS_DEFAULT_COLUMNS;
    return cols > 1 ? cols - 1 : 1;
}

static void draw(struct progress *p, double now)
{
    char line[512], elapsed[32], left[32] = "";
    format_duration(now - p->start_s, elapsed, sizeof elapsed);
    if (p->end_s >= 0) {
        char t[24];
        format_duration(p->end_s - now, t, sizeof t);
        snprintf(left, sizeof left, ", %s left", t);
    }
    int n = snprintf(line, sizeof line, "%s | %s elapsed%s", p->text, elapsed, left);
    int width = line_width();
    if (n < 0)
        return;
    if (n > width)
        n = width;
    if (n > (int)sizeof line - 1)
        n = (int)sizeof line - 1;
    /* the text is ASCII (numbers and words, no file names): a byte a column */
    fprintf(stderr, "\r%.*s\033[K", n, line);
    fflush(stderr);
    p->shown = true;
    p->drawn_s = now;
}

static bool due(const struct progress *p, double now)
{
    return p->drawn_s == 0 || now - p->drawn_s >= 1.0 / PROGRESS_HZ;
}

void progress_set(struct progress *p, bool now, double left_s, const char *fmt, ...)
{
    if (!p || !p->on)
        return;
    double t = progress_now();
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->text, sizeof p->text, fmt, ap);
    va_end(ap);
    p->end_s = left_s >= 0 ? t + left_s : -1;
    if (now || due(p, t))
        draw(p, t);
}

void progress_video(struct progress *p, int64_t n_decoded, int64_t n_taken, int64_t pts_ns,
                    int64_t duration_ns, double since_s)
{
    if (!p || !p->on)
        return;
    double now = progress_now();
    if (!due(p, now))
        return;
    double pos = pts_ns / 1e9, dur = duration_ns / 1e9;
    if (duration_ns <= 0 || pts_ns < 0 || pts_ns > duration_ns) {   /* a file stating none, or wrong */
        progress_set(p, false, -1, "decoding %lld frames, %lld taken | %.1f s",
                     (long long)n_decoded, (long long)n_taken, pos);
        return;
    }
    /* the pace so far, over what is left */
    double left = pts_ns > 0 ? (now - since_s) * (dur - pos) / pos : -1;
    progress_set(p, false, left, "decoding %lld frames, %lld taken | %.1f/%.1f s (%.0f%%)",
                 (long long)n_decoded, (long long)n_taken, pos, dur, 100.0 * pos / dur);
}

bool progress_tick(void *user)
{
    struct progress *p = user;
    double now;
    if (p && p->on && p->text[0] && due(p, now = progress_now()))
        draw(p, now);
    return false;
}

void progress_clear(struct progress *p)
{
    if (!p || !p->shown)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->shown = false;
    p->drawn_s = 0;   /* the next update draws at once */
}

void progress_end(struct progress *p)
{
    if (!p)
        return;
    progress_clear(p);
    p->on = false;
}

void progress_log(enum md_log_level level, const char *text, void *user)
{
    struct progress *p = user;
    if (level <= MD_LOG_WARN)
        progress_clear(p);
    vqa_log_stderr(level, text, p ? (void *)p->name : NULL);
}
