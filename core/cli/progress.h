/* A progress line for the CLIs' long runs (mustdrop --video, mustdrop-eval):
 * one line on stderr, redrawn in place ("\r", the rest of the line erased),
 * cut to the terminal's width, at most PROGRESS_HZ times a second. By
 * default it is drawn only when stderr is a terminal, so a redirected run
 * prints exactly what it printed without it; --progress / --no-progress
 * force it on or off.
 *
 * The line says what is happening (the caller's text), then the time since
 * progress_init and, where the caller gave an estimate, the time left. Any
 * other stderr output must come after progress_clear (or progress_end), so
 * that it starts on a clean line; the next update draws the line again. */
#ifndef MD_CLI_PROGRESS_H
#define MD_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "mustdrop-vqa.h"

#define PROGRESS_HZ 4

enum progress_when {
    PROGRESS_AUTO,      /* when stderr is a terminal */
    PROGRESS_ALWAYS,    /* --progress */
    PROGRESS_NEVER,     /* --no-progress */
};

struct progress {
    bool on;            /* drawing at all (off for good after progress_end) */
    bool shown;         /* a line is on the screen */
    const char *name;   /* the program, for progress_log's messages */
    double start_s;     /* progress_init's time (monotonic) */
    double drawn_s;     /* the last draw, for the rate limit; 0: none yet */
    double end_s;       /* the estimated end (monotonic); < 0: unknown */
    char text[256];     /* what the line says, without the times */
};

/* Seconds on the monotonic clock. */
double progress_now(void);

void progress_init(struct progress *p, enum progress_when when, const char *name);

/* The line's text (printf) and the estimated seconds left (< 0: unknown).
 * Drawn now when `now`, else when the last draw is 1/PROGRESS_HZ s old. */
void progress_set(struct progress *p, bool now, double left_s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The decode of a video: frames decoded and taken, the position against
 * the duration the file states (<= 0: unknown), the time left estimated
 * from the decode's pace since since_s (progress_now's clock). */
void progress_video(struct progress *p, int64_t n_decoded, int64_t n_taken, int64_t pts_ns,
                    int64_t duration_ns, double since_s);

/* An md_abort_callback (user: the struct progress): redraws the line with
 * the times updated when one is due; never aborts. md_vqa calls it often
 * while it encodes and answers. */
bool progress_tick(void *user);

/* Erase the line, for other output; the next update draws it again. */
void progress_clear(struct progress *p);

/* Erase the line and draw no more (the answer or the report follows). */
void progress_end(struct progress *p);

/* An md_log_callback (user: the struct progress): vqa_log_stderr's message
 * on a clean line. */
void progress_log(enum md_log_level level, const char *text, void *user);

#endif
