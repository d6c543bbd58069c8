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
    const char *backend;   /* "cpu", "cuda"; NULL: auto (CUDA where usable) */
    int32_t index;         /* GPU index */
    char used[32];         /* what the last load ended up on: "cpu", "cuda:0" */
};

/* "auto", "cpu", "cuda" or "cuda:N"; 0, or -1 with *d untouched. */
int cli_device_parse(const char *s, struct cli_device *d);

/* md_model_load / md_vision_load (from a file, or from memory when path is
 * NULL) on the device d names. An explicit device that md_backend_check
 * rejects fails before loading, with its reason. Auto loads on CUDA when
 * md_backend_check says it is usable, else on the CPU (quietly); a CUDA load
 * that fails because of the device (memory, a CUDA error, an unsupported
 * weight type) is retried on the CPU with one notice on stderr, one that
 * fails because of the file (MD_ERR_IO, MD_ERR_FORMAT) is the error. */
int cli_model_load(struct cli_device *d, const char *path, const void *data, size_t size,
                   struct md_model_params *mp, struct md_model **out, char *err, size_t errlen);
int cli_vision_load(struct cli_device *d, const char *path, const void *data, size_t size,
                    struct md_vision_params *vp, struct md_vision **out, char *err, size_t errlen);

#endif
