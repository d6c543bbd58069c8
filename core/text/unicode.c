/* UTF-8 coding and codepoint classes for the tokenizers. */
#include "unicode.h"

#include <string.h>

size_t md_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp)
{
    const uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t n;
    uint32_t c, min;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        n = 2; c = b0 & 0x1Fu; min = 0x80;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3; c = b0 & 0x0Fu; min = 0x800;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4; c = b0 & 0x07u; min = 0x10000;
    } else {
        *cp = MD_CP_INVALID;   /* continuation byte, C0/C1, F5..FF */
        return 1;
    }
    if (len < n) {
        *cp = MD_CP_INVALID;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = MD_CP_INVALID;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3Fu);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        *cp = MD_CP_INVALID;
        return 1;
    }
    *cp = c;
    return n;
}

size_t md_utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0;
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        out[0] = (uint8_t)(0xF0 | (cp >> 18));
        out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (uint8_t)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

uint32_t md_cp_flags(uint32_t cp)
{
    if (cp < 0x80)
        return md_unicode_ascii_flags[cp];
    size_t lo = 0, hi = md_unicode_n_ranges;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const struct md_unicode_range *r = &md_unicode_ranges[mid];
        if (cp < r->first)
            hi = mid;
        else if (cp > r->last)
            lo = mid + 1;
        else
            return r->flags;
    }
    return 0;
}

uint32_t md_cp_fold_ascii(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    for (size_t i = 0; i < md_unicode_n_folds; i++)
        if (md_unicode_folds[i].cp == cp)
            return md_unicode_folds[i].ascii;
    return cp;
}

long md_utf8_first_invalid(const char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = md_utf8_decode((const uint8_t *)s + i, len - i, &cp);
        if (cp == MD_CP_INVALID)
            return (long)i;
        i += k;
    }
    return -1;
}
