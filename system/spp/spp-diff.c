/*
 * Sub-page write protection (SPP): which protected bytes a step changed
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "system/spp-backend.h"

unsigned spp_diff_page(const uint8_t *before, const uint8_t *after,
                       uint32_t wp, unsigned phase, SppDiffFn *fn,
                       void *opaque)
{
    uint32_t changed = 0;       /* protected sub-pages that changed */
    unsigned sub, calls = 0;
    int start;

    for (sub = 0; sub < SPP_SUBPAGES; sub++) {
        unsigned off = sub * SPP_SUBPAGE_SIZE;

        if (!((wp >> sub) & 1) &&
            memcmp(before + off, after + off, SPP_SUBPAGE_SIZE)) {
            changed |= 1U << sub;
        }
    }
    if (!changed) {
        return 0;
    }
    /* Pieces start at @phase + 8k; the first one may be shorter. */
    for (start = (int)(phase % 8) - 8; start < (int)SPP_PAGE_SIZE;
         start += 8) {
        unsigned lo = MAX(start, 0);
        unsigned hi = MIN(start + 8, (int)SPP_PAGE_SIZE);
        int first = -1, last = -1;
        unsigned i;

        if (lo >= hi) {
            continue;           /* phase 0: no piece before offset 0 */
        }
        if (!(changed & ((1U << (lo >> SPP_SUBPAGE_SHIFT)) |
                         (1U << ((hi - 1) >> SPP_SUBPAGE_SHIFT))))) {
            continue;
        }
        for (i = lo; i < hi; i++) {
            if (((changed >> (i >> SPP_SUBPAGE_SHIFT)) & 1) &&
                before[i] != after[i]) {
                first = first < 0 ? i : first;
                last = i;
            }
        }
        if (first >= 0) {
            fn(first, last - first + 1, opaque);
            calls++;
        }
    }
    return calls;
}
