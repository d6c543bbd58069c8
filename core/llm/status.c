/* The library's constant strings: its version and the words for each
 * status code (enum md_status, mustdrop.h). Every module reports through
 * these; this file depends on nothing but the public header. */
#include "mustdrop.h"

const char *md_version(void)
{
    return MD_VERSION_STRING;
}

const char *md_status_str(int status)
{
    switch (status) {
    case MD_OK: return "ok";
    case MD_ERR_INVALID: return "invalid argument";
    case MD_ERR_IO: return "I/O error";
    case MD_ERR_FORMAT: return "bad file format";
    case MD_ERR_UNSUPPORTED: return "unsupported";
    case MD_ERR_NOMEM: return "out of memory";
    case MD_ERR_CONTEXT_FULL: return "context full";
    case MD_ERR_ABORTED: return "aborted";
    case MD_ERR_BACKEND: return "backend failure";
    }
    return "unknown status";
}
