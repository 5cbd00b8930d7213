/*
 * Sub-page write protection (SPP): the step fallback
 *
 * Some stores cannot be split into byte-exact writes before they
 * happen: KVM's instruction emulator does not run AVX, XSAVE or
 * MOVDIR64B stores against the read-only memslots of protected pages.
 * For those, the pages are made plain RAM for exactly one instruction of
 * one vCPU, and what the instruction changed is judged afterwards.
 * While the pages are lifted nothing else may run: the caller holds the
 * BQL (main-loop devices wait) and keeps the other vCPUs out of guest
 * mode.
 *
 * Semantics against the byte-exact write path: the same bytes land and
 * the same bytes are blocked, and violations are counted alike (one per
 * 8-byte piece of the store in each page, the pieces counted from the
 * store's first byte there), but a store that writes the value a
 * protected byte already holds is not seen.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "exec/address-spaces.h"
#include "exec/memory.h"
#include "system/kvm.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-spp.h"
#include "system/runstate.h"
#include "system/spp-backend.h"
#include "system/tcg.h"
#include "trace.h"

typedef struct SppStepPage {
    uint64_t gfn;
    MemoryRegion *ram;          /* referenced */
    hwaddr offset;              /* of the page in @ram */
    uint8_t *host;
    unsigned phase;             /* of the store's pieces in this page */
    uint8_t before[SPP_PAGE_SIZE];
} SppStepPage;

struct SppStep {
    size_t n;
    SppStepPage pages[SPP_STEP_MAX_PAGES];
};

/* The RAM behind @gfn, with a reference, or NULL. */
static MemoryRegion *spp_step_ram(uint64_t gfn, hwaddr *offset)
{
    MemoryRegionSection sec = memory_region_find(get_system_memory(),
                                                 gfn << SPP_PAGE_SHIFT,
                                                 SPP_PAGE_SIZE);
    MemoryRegion *ram;

    if (!sec.mr) {
        return NULL;
    }
    ram = sec.mr;
    if (!memory_region_is_ram(ram) || memory_region_is_ram_device(ram) ||
        int128_get64(sec.size) < SPP_PAGE_SIZE) {
        memory_region_unref(sec.mr);
        return NULL;
    }
    /* A shadow has the offsets of its RAM region: keep @ram alive. */
    memory_region_ref(ram);
    memory_region_unref(sec.mr);
    *offset = sec.offset_within_region;
    return ram;
}

SppStep *spp_step_begin(const uint64_t *gfns, const unsigned *phases,
                        size_t n)
{
    SppStep *step = g_new0(SppStep, 1);
    uint64_t lift[SPP_STEP_MAX_PAGES];
    size_t i, j;

    for (i = 0; i < n && step->n < SPP_STEP_MAX_PAGES; i++) {
        SppStepPage *p = &step->pages[step->n];
        bool dup = false;

        for (j = 0; j < step->n; j++) {
            dup |= step->pages[j].gfn == gfns[i];
        }
        if (dup || !spp_backend_trapped(gfns[i])) {
            continue;
        }
        p->ram = spp_step_ram(gfns[i], &p->offset);
        if (!p->ram) {
            continue;
        }
        p->gfn = gfns[i];
        p->phase = phases ? phases[i] % 8 : 0;
        p->host = (uint8_t *)memory_region_get_ram_ptr(p->ram) + p->offset;
        memcpy(p->before, p->host, SPP_PAGE_SIZE);
        lift[step->n++] = p->gfn;
    }
    if (!step->n) {
        g_free(step);
        return NULL;
    }
    trace_spp_step_begin(step->pages[0].gfn, step->n);
    spp_backend_lift(lift, step->n);
    return step;
}

typedef struct SppStepJudge {
    SppStepPage *page;
    MemTxAttrs attrs;
    unsigned violations;
    unsigned restored;
} SppStepJudge;

static void spp_step_judge(unsigned offset, unsigned len, void *opaque)
{
    SppStepJudge *j = opaque;
    SppStepPage *p = j->page;
    bool allowed[SPP_MAX_ACCESS];
    uint64_t data = 0;
    unsigned i;

    /* Under "unprotect" an earlier word may have opened the sub-page. */

    memcpy(&data, p->host + offset, len);
    data = le64_to_cpu(data);
    j->violations += spp_judge_write((p->gfn << SPP_PAGE_SHIFT) + offset,
                                     len, j->attrs, &data, allowed);
    for (i = 0; i < len; i++) {
        if (!allowed[i]) {
            p->host[offset + i] = p->before[offset + i];
            j->restored++;
        }
    }
}

unsigned spp_step_end(SppStep *step, MemTxAttrs attrs)
{
    unsigned violations = 0, restored = 0;
    size_t i;

    for (i = 0; i < step->n; i++) {
        SppStepPage *p = &step->pages[i];
        SppStepJudge j = { .page = p, .attrs = attrs };

        spp_diff_page(p->before, p->host, spp_get_vector(p->gfn),
                      p->phase, spp_step_judge, &j);
        violations += j.violations;
        if (j.restored) {
            memory_region_set_dirty(p->ram, p->offset, SPP_PAGE_SIZE);
            restored += j.restored;
        }
    }
    spp_backend_lift(NULL, 0);
    trace_spp_step_end(step->n, violations, restored);
    for (i = 0; i < step->n; i++) {
        memory_region_unref(step->pages[i].ram);
    }
    g_free(step);
    return violations;
}

/*
 * x-spp-step: the step fallback without a vCPU, for tests.  With gfns,
 * begin a step and answer how many pages were lifted; without, judge
 * what changed meanwhile as a device write and answer the violations.
 */
static SppStep *spp_qmp_step;

SppStepResult *qmp_x_spp_step(SppStepAction action, bool has_gfns,
                              uint64List *gfns, Error **errp)
{
    SppStepResult *res;
    uint64_t pages[SPP_STEP_MAX_PAGES];
    size_t n = 0;

    if (action == SPP_STEP_ACTION_END) {
        if (has_gfns) {
            error_setg(errp, "gfns are for beginning a step");
            return NULL;
        }
        if (!spp_qmp_step) {
            error_setg(errp, "no step in progress");
            return NULL;
        }
        res = g_new0(SppStepResult, 1);
        res->count = spp_step_end(spp_qmp_step, MEMTXATTRS_UNSPECIFIED);
        spp_qmp_step = NULL;
        return res;
    }
    if (spp_qmp_step) {
        error_setg(errp, "a step is in progress");
        return NULL;
    }
    if (!has_gfns) {
        error_setg(errp, "beginning a step needs gfns");
        return NULL;
    }
    if ((tcg_enabled() || kvm_enabled()) && runstate_is_running()) {
        error_setg(errp, "stop the vCPUs first");
        return NULL;
    }
    for (; gfns; gfns = gfns->next) {
        if (n == SPP_STEP_MAX_PAGES) {
            error_setg(errp, "at most %d page numbers", SPP_STEP_MAX_PAGES);
            return NULL;
        }
        pages[n++] = gfns->value;
    }
    spp_qmp_step = spp_step_begin(pages, NULL, n);
    res = g_new0(SppStepResult, 1);
    res->count = spp_qmp_step ? spp_qmp_step->n : 0;
    return res;
}
