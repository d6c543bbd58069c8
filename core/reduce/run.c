/* md_reduce_run: a whole prompt (images or frames, then the question)
 * through one new session, on top of the stages' public calls. */
#include <stdio.h>

#include "session.h"

int md_reduce_run(struct md_context *ctx, struct md_vision *vis, const struct md_reduce_config *cfg,
                  const struct md_frame *frames, int32_t n, bool video, const char *question,
                  struct md_reduce_session **out, char *err, size_t errlen)
{
    int rc = md_reduce_session_new(ctx, vis, cfg, out, err, errlen);
    if (rc)
        return rc;
    struct md_reduce_session *s = *out;
    for (int32_t i = 0; !rc && !video && i < n; i++)
        rc = frames ? md_reduce_add_image(s, frames[i].rgb, frames[i].width, frames[i].height,
                                          frames[i].stride)
                    : MD_ERR_INVALID;
    if (!rc && video)
        rc = md_reduce_add_frames(s, frames, n);
    if (!rc)
        rc = md_reduce_prefill(s, NULL, NULL, question);
    if (rc && err && errlen)
        snprintf(err, errlen, "%s", s->err[0] ? s->err : md_status_str(rc));
    return rc;
}
