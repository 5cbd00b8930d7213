/*
 * Sub-page write protection (SPP): the emulated backend on write traps
 *
 * A write trap (exec/ram-write-trap.h) on each protected page is all
 * the enforcement there is to do: the memory core hands each write to
 * a trapped page to spp_trap_write(), which lets the writable bytes
 * land.  That covers TCG's stores, DMA, and under KVM the vCPUs' stores
 * too, as the trapped pages become read-only memslots.  Only protected
 * pages are trapped, whatever their number or pattern; the flat views
 * never change; and changing a page's vector costs a hash lookup, plus
 * a TLB flush under TCG or a memslot split under KVM when the page
 * becomes trapped.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qapi/error.h"
#include "exec/address-spaces.h"
#include "exec/ram-write-trap.h"
#include "qemu/accel.h"
#include "system/hostmem.h"
#include "system/spp-backend.h"
#include "trace.h"

/* A trapped page: protected guest page @gfn is @offset of RAM @mr. */
typedef struct SppTrapPage {
    uint64_t gfn;
    MemoryRegion *mr;
    hwaddr offset;
} SppTrapPage;

typedef struct SppTrapState {
    GHashTable *by_gfn;     /* gfn -> SppTrapPage, owns the pages */
    GHashTable *by_ram;     /* ram_addr_t page -> SppTrapPage */
    GHashTable *ram_refs;   /* ram_addr_t page -> gfns trapping it */
    GHashTable *rams;       /* RAM MemoryRegion -> its pages in by_gfn */
    bool ram_unused;        /* a RAM region's count fell to 0 */
    GArray *lifted;         /* gfns spp_trap_lift() released */
    MemoryListener listener;
    MemoryWriteTrapHandler handler;
    QEMUBH *unplug_bh;
} SppTrapState;

static SppTrapState spp_trap;

static gsize spp_trap_ram_page(MemoryRegion *mr, hwaddr offset)
{
    return (memory_region_get_ram_addr(mr) + offset) >> SPP_PAGE_SHIFT;
}

/*
 * The write-trap handler: from any thread, with or without the BQL, and
 * with the core's lock held (spp_trap_lock()), under which by_ram is
 * read and changed.
 */
static uint8_t spp_trap_write(MemoryWriteTrapHandler *h, MemoryRegion *mr,
                              hwaddr offset, unsigned size, MemTxAttrs attrs,
                              uint64_t data)
{
    SppTrapState *st = container_of(h, SppTrapState, handler);
    SppTrapPage *p = g_hash_table_lookup(st->by_ram,
                        GSIZE_TO_POINTER(spp_trap_ram_page(mr, offset)));

    if (!p) {
        return 0xff;
    }
    return spp_judge_write_mask((p->gfn << SPP_PAGE_SHIFT) |
                                (offset & (SPP_PAGE_SIZE - 1)), size, attrs,
                                data, memory_write_trap_store_ra(
                                    memory_region_get_ram_addr(mr) + offset));
}

static void spp_trap_lock(MemoryWriteTrapHandler *h)
{
    spp_lock();
}

static void spp_trap_unlock(MemoryWriteTrapHandler *h)
{
    spp_unlock();
}

/* The pause policy stops the vCPU at its violating store. */
static bool spp_trap_exact(MemoryWriteTrapHandler *h)
{
    return spp_get_policy() == SPP_POLICY_PAUSE;
}

/* A run of pages of one RAM region whose trap is to be set or cleared. */
typedef struct SppTrapRun {
    MemoryRegion *mr;
    hwaddr offset;
    uint64_t size;
    bool trap;
} SppTrapRun;

static void spp_trap_run_flush(SppTrapRun *run)
{
    if (run->size) {
        memory_region_set_write_trap(run->mr, &spp_trap.handler, run->offset,
                                     run->size, run->trap);
    }
    run->size = 0;
}

static void spp_trap_run_add(SppTrapRun *run, MemoryRegion *mr, hwaddr offset,
                             bool trap)
{
    if (run->size && (run->mr != mr || run->trap != trap ||
                      run->offset + run->size != offset)) {
        spp_trap_run_flush(run);
    }
    if (!run->size) {
        *run = (SppTrapRun) { .mr = mr, .offset = offset, .trap = trap };
    }
    run->size += SPP_PAGE_SIZE;
}

/*
 * Count a page of @mr listed in (@delta 1) or dropped from (-1) by_gfn.
 * The region's owner (its RAMBlock's) stays referenced while the region
 * is in rams; spp_trap_release_rams() lets those with no page go.
 */
static void spp_trap_count_page(MemoryRegion *mr, int delta)
{
    gpointer n;

    if (!g_hash_table_lookup_extended(spp_trap.rams, mr, NULL, &n)) {
        object_ref(mr->owner);
        n = GUINT_TO_POINTER(0);
    }
    n = GUINT_TO_POINTER(GPOINTER_TO_UINT(n) + delta);
    g_hash_table_insert(spp_trap.rams, mr, n);
    spp_trap.ram_unused |= !n;
}

static void spp_trap_forget(SppTrapPage *p, SppTrapRun *run)
{
    gpointer key = GSIZE_TO_POINTER(spp_trap_ram_page(p->mr, p->offset));
    guint refs = GPOINTER_TO_UINT(g_hash_table_lookup(spp_trap.ram_refs,
                                                      key)) - 1;
    bool release = !refs;

    /* Another gfn mapping the same RAM page keeps it. */
    spp_lock();
    if (release) {
        g_hash_table_remove(spp_trap.by_ram, key);
        g_hash_table_remove(spp_trap.ram_refs, key);
    } else {
        g_hash_table_insert(spp_trap.ram_refs, key, GUINT_TO_POINTER(refs));
        if (g_hash_table_lookup(spp_trap.by_ram, key) == p) {
            GHashTableIter it;
            SppTrapPage *q;

            /* The handler names the page by one of the others. */
            g_hash_table_iter_init(&it, spp_trap.by_gfn);
            while (g_hash_table_iter_next(&it, NULL, (gpointer *)&q)) {
                if (q != p && spp_trap_ram_page(q->mr, q->offset) ==
                              GPOINTER_TO_SIZE(key)) {
                    g_hash_table_insert(spp_trap.by_ram, key, q);
                    break;
                }
            }
        }
    }
    spp_unlock();
    if (release) {
        spp_trap_run_add(run, p->mr, p->offset, false);
    }
    spp_trap_count_page(p->mr, -1);
    g_hash_table_remove(spp_trap.by_gfn, &p->gfn);
}

/* Make page @gfn, which is @offset of RAM @mr, trapped iff protected. */
static void spp_trap_sync(uint64_t gfn, MemoryRegion *mr, hwaddr offset,
                          SppTrapRun *run)
{
    bool want = spp_get_vector(gfn) != SPP_WP_ALL;
    SppTrapPage *p = g_hash_table_lookup(spp_trap.by_gfn, &gfn);
    gpointer key;
    guint refs;

    if (p && (!want || p->mr != mr || p->offset != offset)) {
        spp_trap_forget(p, run);
        p = NULL;
    }
    if (!want || p) {
        return;
    }
    p = g_new(SppTrapPage, 1);
    *p = (SppTrapPage) { .gfn = gfn, .mr = mr, .offset = offset };
    g_hash_table_insert(spp_trap.by_gfn, &p->gfn, p);
    key = GSIZE_TO_POINTER(spp_trap_ram_page(mr, offset));
    refs = GPOINTER_TO_UINT(g_hash_table_lookup(spp_trap.ram_refs, key));
    spp_lock();
    if (!refs) {
        g_hash_table_insert(spp_trap.by_ram, key, p);
    }
    g_hash_table_insert(spp_trap.ram_refs, key, GUINT_TO_POINTER(refs + 1));
    spp_unlock();
    spp_trap_count_page(mr, 1);
    spp_trap_run_add(run, mr, offset, true);
}

/* Sync every page of one section of the range (SppSectionFn). */
static uint64_t spp_trap_sync_section(uint64_t gfn, uint64_t npages,
                                      MemoryRegionSection *s, void *opaque)
{
    SppTrapRun *run = opaque;
    SppTrapPage *p;
    uint64_t i;

    if (s->mr && npages && memory_region_is_ram(s->mr)) {
        for (i = 0; i < npages; i++) {
            spp_trap_sync(gfn + i, s->mr, s->offset_within_region +
                          (i << SPP_PAGE_SHIFT), run);
        }
        return npages;
    }
    /* Not RAM (any more): nothing to trap there. */
    p = g_hash_table_lookup(spp_trap.by_gfn, &gfn);
    if (p) {
        spp_trap_forget(p, run);
    }
    return 1;
}

/*
 * RAM that left the address space (an unplugged DIMM) loses its
 * protection: clear the vectors of its pages, then let it go.
 */
static void spp_trap_unplug_check(void *opaque)
{
    GHashTableIter it;
    MemoryRegion *mr;
    g_autoptr(GArray) gone = g_array_new(false, false, sizeof(SppRange));
    SppTrapPage *p;

    g_hash_table_iter_init(&it, spp_trap.rams);
    while (g_hash_table_iter_next(&it, (gpointer *)&mr, NULL)) {
        if (object_dynamic_cast(mr->owner, TYPE_MEMORY_BACKEND) &&
            !host_memory_backend_is_mapped(MEMORY_BACKEND(mr->owner))) {
            GHashTableIter pit;

            g_hash_table_iter_init(&pit, spp_trap.by_gfn);
            while (g_hash_table_iter_next(&pit, NULL, (gpointer *)&p)) {
                if (p->mr == mr) {
                    SppRange r = { .gfn = p->gfn, .npages = 1,
                                   .wp = SPP_WP_ALL };

                    trace_spp_unplugged(memory_region_name(mr), p->gfn, 1);
                    g_array_append_val(gone, r);
                }
            }
        }
    }
    if (gone->len) {
        spp_forget_ranges(&g_array_index(gone, SppRange, 0), gone->len);
    }
}

static void spp_trap_listener_commit(MemoryListener *listener)
{
    qemu_bh_schedule(spp_trap.unplug_bh);
}

/*
 * Release the RAM regions no trapped page refers to any more: a look at
 * each RAM region, not at each page (a 1-page clear with 10,000 pages
 * protected walked them all).
 */
static void spp_trap_release_rams(void)
{
    GHashTableIter it;
    MemoryRegion *mr;
    gpointer n;

    g_hash_table_iter_init(&it, spp_trap.rams);
    while (g_hash_table_iter_next(&it, (gpointer *)&mr, &n)) {
        if (!n) {
            g_hash_table_iter_remove(&it);
            object_unref(mr->owner);
        }
    }
}

static void spp_trap_init(void)
{
    if (spp_trap.by_gfn) {
        return;
    }
    assert(qemu_target_page_bits() == SPP_PAGE_SHIFT);
    spp_trap.by_gfn = g_hash_table_new_full(g_int64_hash, g_int64_equal,
                                            NULL, g_free);
    spp_trap.by_ram = g_hash_table_new(NULL, NULL);
    spp_trap.ram_refs = g_hash_table_new(NULL, NULL);
    spp_trap.rams = g_hash_table_new(NULL, NULL);
    spp_trap.lifted = g_array_new(false, false, sizeof(uint64_t));
    spp_trap.unplug_bh = qemu_bh_new(spp_trap_unplug_check, NULL);
    spp_trap.listener = (MemoryListener) {
        .name = "spp-trap",
        .commit = spp_trap_listener_commit,
        .priority = MEMORY_LISTENER_PRIORITY_MIN,
    };
    memory_listener_register(&spp_trap.listener, &address_space_memory);
    spp_trap.handler = (MemoryWriteTrapHandler) {
        .judge = spp_trap_write,
        .lock = spp_trap_lock,
        .unlock = spp_trap_unlock,
        .exact = spp_trap_exact,
    };
}

static bool spp_trap_update(const SppRange *r, size_t n, const uint32_t *old,
                            Error **errp)
{
    SppTrapRun run = { 0 };
    size_t i;

    if (!memory_write_trap_accel_ready()) {
        error_setg(errp, "the %s accelerator does not trap vCPU writes to "
                   "protected pages in this build", current_accel_name());
        return false;
    }
    spp_trap_init();
    memory_write_trap_begin();
    for (i = 0; i < n; i++) {
        spp_for_each_section(r[i].gfn, r[i].npages, spp_trap_sync_section,
                             &run);
    }
    spp_trap_run_flush(&run);
    if (spp_trap.ram_unused) {
        spp_trap.ram_unused = false;
        spp_trap_release_rams();
    }
    /* Last: it may let vCPUs run, and judge writes, meanwhile. */
    memory_write_trap_commit();
    return true;
}

static gint spp_trap_gfn_cmp(gconstpointer a, gconstpointer b)
{
    uint64_t x = **(uint64_t * const *)a, y = **(uint64_t * const *)b;

    return x < y ? -1 : x > y;
}

/* Runs of consecutive trapped pages. */
static uint64_t spp_trap_regions(void)
{
    g_autoptr(GPtrArray) gfns = g_ptr_array_new();
    GHashTableIter it;
    SppTrapPage *p;
    uint64_t runs = 0;
    guint i;

    if (!spp_trap.by_gfn) {
        return 0;
    }
    g_hash_table_iter_init(&it, spp_trap.by_gfn);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&p)) {
        if (memory_region_write_trapped(p->mr, p->offset)) {
            g_ptr_array_add(gfns, &p->gfn);
        }
    }
    g_ptr_array_sort(gfns, spp_trap_gfn_cmp);
    for (i = 0; i < gfns->len; i++) {
        uint64_t gfn = *(uint64_t *)g_ptr_array_index(gfns, i);

        if (!i || *(uint64_t *)g_ptr_array_index(gfns, i - 1) + 1 != gfn) {
            runs++;
        }
    }
    return runs;
}

static uint64_t spp_trap_trapped_unprotected(void)
{
    uint64_t trapped = memory_write_trap_count(), listed = 0;
    GHashTableIter it;
    SppTrapPage *p;

    /* Every listed page is protected; count what else is trapped. */
    if (spp_trap.by_gfn) {
        g_hash_table_iter_init(&it, spp_trap.by_gfn);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&p)) {
            listed += memory_region_write_trapped(p->mr, p->offset);
        }
    }
    return trapped > listed ? trapped - listed : 0;
}

static bool spp_trap_trapped(uint64_t gfn)
{
    SppTrapPage *p = spp_trap.by_gfn ?
        g_hash_table_lookup(spp_trap.by_gfn, &gfn) : NULL;

    return p && memory_region_write_trapped(p->mr, p->offset);
}

QEMU_BUILD_BUG_ON(SPP_STEP_MAX_PAGES > MEMORY_WRITE_TRAP_MAX_LIFTED);

static void spp_trap_lift(const uint64_t *gfns, size_t n)
{
    guint i;

    if (!spp_trap.by_gfn) {
        return;
    }
    memory_write_trap_begin();
    for (i = 0; i < spp_trap.lifted->len; i++) {
        uint64_t gfn = g_array_index(spp_trap.lifted, uint64_t, i);
        SppTrapPage *p = g_hash_table_lookup(spp_trap.by_gfn, &gfn);

        if (p) {
            memory_region_lift_write_trap(p->mr, &spp_trap.handler,
                                          p->offset, false);
        }
    }
    g_array_set_size(spp_trap.lifted, 0);
    for (i = 0; i < n; i++) {
        SppTrapPage *p = g_hash_table_lookup(spp_trap.by_gfn, &gfns[i]);

        if (p && memory_region_write_trapped(p->mr, p->offset)) {
            memory_region_lift_write_trap(p->mr, &spp_trap.handler,
                                          p->offset, true);
            g_array_append_val(spp_trap.lifted, gfns[i]);
        }
    }
    memory_write_trap_commit();
}

const SppBackendOps spp_trap_ops = {
    .kind = SPP_BACKEND_EMULATED,
    .update = spp_trap_update,
    .regions = spp_trap_regions,
    .trapped_unprotected = spp_trap_trapped_unprotected,
    .trapped = spp_trap_trapped,
    .lift = spp_trap_lift,
};

/* The default backend; KVM installs its own when it starts. */
static void spp_trap_register(void)
{
    spp_set_backend(&spp_trap_ops, "QEMU enforces sub-page protection "
                    "itself");
}

type_init(spp_trap_register)
