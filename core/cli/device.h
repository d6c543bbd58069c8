/* --device for the command-line programs: where the model and the vision
 * tower run. The same words as the element's "device" property. */
#ifndef MD_CLI_DEVICE_H
#define MD_CLI_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mustdrop-vision.h"
#include "mustdrop.h"

struct cli_device {
    const char *backend;   /* "cpu", "cuda"; NULL: auto (CUDA where built and present) */
    int32_t index;         /* GPU index */
    char used[32];         /* what the last load ended up on: "cpu", "cuda:0" */
};

/* "auto", "cpu", "cuda" or "cuda:N"; 0, or -1 with *d untouched. */
int cli_device_parse(const char *s, struct cli_device *d);

/* md_model_load / md_vision_load (from a file, or from memory when path is
 * NULL) on the device d names. Auto tries CUDA first and falls back to the
 * CPU, saying why on stderr unless CUDA simply is not there. */
int cli_model_load(struct cli_device *d, const char *path, const void *data, size_t size,
                   struct md_model_params *mp, struct md_model **out, char *err, size_t errlen);
int cli_vision_load(struct cli_device *d, const char *path, const void *data, size_t size,
                    struct md_vision_params *vp, struct md_vision **out, char *err, size_t errlen);

#endif
