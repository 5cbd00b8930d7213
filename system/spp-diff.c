/*
 * Sub-page write protection (SPP): which protected bytes a step changed
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "system/spp.h"

unsigned spp_diff_page(const uint8_t *before, const uint8_t *after,
                       uint32_t wp, SppDiffFn *fn, void *opaque)
{
    unsigned sub, off, calls = 0;

    for (sub = 0; sub < SPP_SUBPAGES; sub++) {
        unsigned start = sub * SPP_SUBPAGE_SIZE;

        if ((wp >> sub) & 1) {
            continue;
        }
        if (!memcmp(before + start, after + start, SPP_SUBPAGE_SIZE)) {
            continue;
        }
        for (off = start; off < start + SPP_SUBPAGE_SIZE; off += 8) {
            unsigned first = 8, last = 0, i;

            for (i = 0; i < 8; i++) {
                if (before[off + i] != after[off + i]) {
                    first = MIN(first, i);
                    last = i;
                }
            }
            if (first < 8) {
                fn(off + first, last - first + 1, opaque);
                calls++;
            }
        }
    }
    return calls;
}
