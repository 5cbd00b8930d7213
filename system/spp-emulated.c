/*
 * Sub-page write protection (SPP): the emulated backend on overlays, for KVM
 *
 * QEMU enforces the vectors itself, in the memory core, so the same
 * protection applies to the vCPUs' stores and to DMA from every
 * emulated device.  Under KVM the vCPUs store to RAM natively, so the
 * protected pages must leave the RAM memslots: this backend lays
 * read-only overlays over them in the flat view, which KVM turns into
 * read-only memslots.  (Without KVM, spp-trap.c needs no overlays.)
 *
 * For each RAM region that holds protected pages there is one "shadow":
 * a ROM-device-style memory region in ROMD mode that shares the RAM
 * region's RAMBlock (no second RAMBlock, so ram_addr_t and host-pointer
 * lookups stay unique).  Aliases of the shadow ("overlays") are laid over
 * the protected pages at high priority.  Reads and instruction fetches go
 * straight to host RAM; writes reach spp_shadow_write(), which lets the
 * writable bytes land.  Under KVM the overlays become read-only memslots.
 *
 * The memory core's dispatch map holds only a few thousand sections, so
 * the number of overlays is bounded: runs of consecutive protected pages
 * become one overlay and, above SPP_MAX_OVERLAYS runs, the runs with the
 * smallest gaps between them are grouped.  Writes to unprotected pages
 * inside a group take the slow path but land unchanged.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-spp.h"
#include "exec/address-spaces.h"
#include "hw/core/cpu.h"
#include "exec/memory.h"
#include "system/hostmem.h"
#include "exec/ram-write-trap.h"
#include "system/spp-backend.h"
#include "trace.h"

/* Most overlays (so at most ~2x as many extra dispatch sections). */
#define SPP_MAX_OVERLAYS 512
/* Overlays sit above the RAM they cover. */
#define SPP_OVERLAY_PRIORITY 1000

typedef struct SppShadow {
    struct rcu_head rcu;    /* must be first: freed with call_rcu */
    MemoryRegion mr;        /* ROMD view over @ram's RAMBlock */
    MemoryRegion *ram;      /* the RAM region it shadows */
    Object *backend;        /* @ram's memory backend, referenced */
} SppShadow;

typedef struct SppOverlay {
    struct rcu_head rcu;    /* must be first: freed with call_rcu */
    MemoryRegion alias;     /* alias of shadow->mr, mapped at @gpa */
    SppShadow *shadow;
    hwaddr gpa;
    hwaddr offset;          /* in shadow->mr (= in the RAM region) */
    uint64_t size;
} SppOverlay;

/* RAM MemoryRegion -> SppShadow */
static GHashTable *spp_shadows;
/* Watches for RAM going away (memory hot-unplug). */
static MemoryListener spp_listener;
static QEMUBH *spp_unplug_bh;
static bool spp_in_update;
/* Overlays in use, sorted by gpa */
static GPtrArray *spp_overlays;
/* The same overlays sorted by (shadow, offset), for the write path */
static GPtrArray *spp_overlays_by_offset;

static const MemoryRegionOps spp_shadow_ops;

static MemoryRegion *spp_emulated_ram_of(MemoryRegion *mr)
{
    if (mr && mr->ops == &spp_shadow_ops) {
        return ((SppShadow *)mr->opaque)->ram;
    }
    return mr;
}

static SppOverlay *spp_overlay_by_offset(SppShadow *sh, hwaddr offset)
{
    guint lo = 0, hi = spp_overlays_by_offset->len;

    while (lo < hi) {
        guint mid = (lo + hi) / 2;
        SppOverlay *ov = g_ptr_array_index(spp_overlays_by_offset, mid);

        if (ov->shadow < sh ||
            (ov->shadow == sh && ov->offset + ov->size <= offset)) {
            lo = mid + 1;
        } else if (ov->shadow > sh || ov->offset > offset) {
            hi = mid;
        } else {
            return ov;
        }
    }
    return NULL;
}

static SppOverlay *spp_overlay_by_gpa(hwaddr gpa)
{
    guint lo = 0, hi = spp_overlays ? spp_overlays->len : 0;

    while (lo < hi) {
        guint mid = (lo + hi) / 2;
        SppOverlay *ov = g_ptr_array_index(spp_overlays, mid);

        if (ov->gpa + ov->size <= gpa) {
            lo = mid + 1;
        } else if (ov->gpa > gpa) {
            hi = mid;
        } else {
            return ov;
        }
    }
    return NULL;
}

static MemTxResult spp_shadow_read(void *opaque, hwaddr addr, uint64_t *data,
                                   unsigned size, MemTxAttrs attrs)
{
    SppShadow *sh = opaque;

    *data = ldn_le_p((uint8_t *)memory_region_get_ram_ptr(sh->ram) + addr,
                     size);
    return MEMTX_OK;
}

static MemTxResult spp_shadow_write(void *opaque, hwaddr addr, uint64_t data,
                                    unsigned size, MemTxAttrs attrs)
{
    SppShadow *sh = opaque;
    SppOverlay *ov = spp_overlay_by_offset(sh, addr);
    uint8_t mask = ov ? spp_judge_write_mask(ov->gpa + (addr - ov->offset),
                                             size, attrs) : 0xff;

    memory_region_ram_write_masked(sh->ram, addr, data, size, mask);
    return MEMTX_OK;
}

static const MemoryRegionOps spp_shadow_ops = {
    .read_with_attrs = spp_shadow_read,
    .write_with_attrs = spp_shadow_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 1,
        .max_access_size = 8,
        .unaligned = true,
    },
    .impl = {
        .min_access_size = 1,
        .max_access_size = 8,
        .unaligned = true,
    },
};

static SppShadow *spp_shadow_get(MemoryRegion *ram)
{
    SppShadow *sh;
    g_autofree char *name = NULL;

    if (!spp_shadows) {
        spp_shadows = g_hash_table_new(g_direct_hash, g_direct_equal);
    }
    sh = g_hash_table_lookup(spp_shadows, ram);
    if (sh) {
        return sh;
    }
    sh = g_new0(SppShadow, 1);
    sh->ram = ram;
    /*
     * Keep the backend, and so the RAMBlock, alive while overlays may
     * still point at it: an unplugged DIMM is dropped by
     * spp_unplug_check() after its memory left the address space.
     */
    sh->backend = ram->owner;
    object_ref(sh->backend);
    name = g_strdup_printf("spp-shadow-%s", memory_region_name(ram));
    memory_region_init_io(&sh->mr, NULL, &spp_shadow_ops, sh, name,
                          memory_region_size(ram));
    /*
     * A ROM device in ROMD mode whose host memory is the RAM region's own
     * RAMBlock: reads are direct, writes are dispatched to our ops.
     */
    sh->mr.rom_device = true;
    sh->mr.romd_mode = true;
    sh->mr.ram_block = ram->ram_block;
    g_hash_table_insert(spp_shadows, ram, sh);
    return sh;
}

typedef struct SppPiece {
    hwaddr gpa;
    uint64_t size;
    SppShadow *shadow;
    hwaddr offset;
} SppPiece;

static bool spp_piece_contiguous(const SppPiece *a, const SppPiece *b)
{
    return a->shadow == b->shadow && b->gpa - a->gpa == b->offset - a->offset;
}

/* A RAM range of the system memory's flat view. */
typedef struct SppRamRange {
    hwaddr start;
    uint64_t size;
    MemoryRegion *ram;
    hwaddr offset;
} SppRamRange;

static bool spp_collect_ram(Int128 start, Int128 len, const MemoryRegion *mr,
                            hwaddr offset_in_region, void *opaque)
{
    MemoryRegion *ram = spp_emulated_ram_of((MemoryRegion *)mr);
    GArray *ranges = opaque;

    if (memory_region_is_ram(ram)) {
        SppRamRange r = {
            .start = int128_get64(start),
            .size = int128_get64(len),
            .ram = ram,
            .offset = offset_in_region,
        };
        g_array_append_val(ranges, r);
    }
    return false;
}

static SppRamRange *spp_ram_range_find(GArray *ranges, hwaddr addr)
{
    guint lo = 0, hi = ranges->len;

    while (lo < hi) {
        guint mid = (lo + hi) / 2;
        SppRamRange *r = &g_array_index(ranges, SppRamRange, mid);

        if (r->start + r->size <= addr) {
            lo = mid + 1;
        } else if (r->start > addr) {
            hi = mid;
        } else {
            return r;
        }
    }
    return NULL;
}

/* Map the protected runs to (shadow, offset) pieces, sorted by gpa. */
static GArray *spp_pieces(void)
{
    g_autoptr(GArray) runs = spp_protected_runs();
    g_autoptr(GArray) ram = g_array_new(false, false, sizeof(SppRamRange));
    GArray *pieces = g_array_new(false, false, sizeof(SppPiece));
    guint r;

    WITH_RCU_READ_LOCK_GUARD() {
        flatview_for_each_range(address_space_to_flatview(
                                    &address_space_memory),
                                spp_collect_ram, ram);
    }

    for (r = 0; r < runs->len; r++) {
        SppRun *run = &g_array_index(runs, SppRun, r);
        hwaddr addr = run->gfn << SPP_PAGE_SHIFT;
        hwaddr end = (run->gfn + run->npages) << SPP_PAGE_SHIFT;

        while (addr < end) {
            SppRamRange *rr = spp_ram_range_find(ram, addr);
            SppPiece p;

            if (!rr) {
                /* No longer RAM (unplugged): nothing left to enforce. */
                addr += SPP_PAGE_SIZE;
                continue;
            }
            p.gpa = addr;
            p.size = MIN(end, rr->start + rr->size) - addr;
            p.shadow = spp_shadow_get(rr->ram);
            p.offset = rr->offset + (addr - rr->start);

            if (pieces->len) {
                SppPiece *last = &g_array_index(pieces, SppPiece,
                                                pieces->len - 1);
                if (last->gpa + last->size == p.gpa &&
                    spp_piece_contiguous(last, &p)) {
                    last->size += p.size;
                    addr += p.size;
                    continue;
                }
            }
            g_array_append_val(pieces, p);
            addr += p.size;
        }
    }
    return pieces;
}

typedef struct SppGap {
    guint index;            /* gap between pieces index and index + 1 */
    uint64_t size;
} SppGap;

static gint spp_gap_cmp(gconstpointer a, gconstpointer b)
{
    const SppGap *x = a, *y = b;

    if (x->size != y->size) {
        return x->size < y->size ? -1 : 1;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * Merge the pieces separated by the smallest gaps until at most
 * SPP_MAX_OVERLAYS remain.  Only pieces of the same shadow with the same
 * gpa-to-offset mapping can be merged.
 */
static void spp_group_pieces(GArray *pieces)
{
    g_autoptr(GArray) gaps = NULL;
    g_autofree bool *merge = NULL;
    guint i, out, excess;

    if (pieces->len <= SPP_MAX_OVERLAYS) {
        return;
    }
    gaps = g_array_new(false, false, sizeof(SppGap));
    for (i = 0; i + 1 < pieces->len; i++) {
        SppPiece *a = &g_array_index(pieces, SppPiece, i);
        SppPiece *b = &g_array_index(pieces, SppPiece, i + 1);

        if (spp_piece_contiguous(a, b)) {
            SppGap g = { .index = i, .size = b->gpa - (a->gpa + a->size) };
            g_array_append_val(gaps, g);
        }
    }
    g_array_sort(gaps, spp_gap_cmp);
    excess = pieces->len - SPP_MAX_OVERLAYS;
    merge = g_new0(bool, pieces->len);
    for (i = 0; i < gaps->len && i < excess; i++) {
        merge[g_array_index(gaps, SppGap, i).index] = true;
    }

    out = 0;
    for (i = 0; i < pieces->len; i++) {
        SppPiece *p = &g_array_index(pieces, SppPiece, i);

        if (i && merge[i - 1]) {
            SppPiece *last = &g_array_index(pieces, SppPiece, out - 1);
            last->size = p->gpa + p->size - last->gpa;
        } else {
            g_array_index(pieces, SppPiece, out++) = *p;
        }
    }
    g_array_set_size(pieces, out);
}

/* Pages spp_emulated_lift() left as plain RAM, sorted. */
static GArray *spp_lifted;
/* The pieces before the lift, or NULL once protection changed since. */
static GArray *spp_unlifted;

/* Cut the lifted pages out of @pieces. */
static void spp_carve_lifted(GArray *pieces)
{
    g_autoptr(GArray) in = NULL;
    guint i, l = 0;

    if (!spp_lifted || !spp_lifted->len) {
        return;
    }
    in = g_array_copy(pieces);
    g_array_set_size(pieces, 0);
    for (i = 0; i < in->len; i++) {
        SppPiece p = g_array_index(in, SppPiece, i);
        hwaddr end = p.gpa + p.size;

        while (l < spp_lifted->len &&
               (g_array_index(spp_lifted, uint64_t, l) << SPP_PAGE_SHIFT) <
               end) {
            hwaddr lifted = g_array_index(spp_lifted, uint64_t, l)
                            << SPP_PAGE_SHIFT;

            if (lifted >= p.gpa) {
                if (lifted > p.gpa) {
                    SppPiece head = p;

                    head.size = lifted - p.gpa;
                    g_array_append_val(pieces, head);
                }
                p.offset += lifted + SPP_PAGE_SIZE - p.gpa;
                p.gpa = lifted + SPP_PAGE_SIZE;
            }
            l++;
        }
        if (p.gpa < end) {
            p.size = end - p.gpa;
            g_array_append_val(pieces, p);
        }
    }
}

static void spp_overlay_free(SppOverlay *ov)
{
    object_unparent(OBJECT(&ov->alias));
    g_free(ov);
}

static gint spp_overlay_offset_cmp(gconstpointer a, gconstpointer b)
{
    const SppOverlay *x = *(SppOverlay * const *)a;
    const SppOverlay *y = *(SppOverlay * const *)b;

    if (x->shadow != y->shadow) {
        return x->shadow < y->shadow ? -1 : 1;
    }
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Make the overlays match @pieces in one memory transaction. */
static void spp_apply_pieces(GArray *pieces)
{
    GPtrArray *next = g_ptr_array_new();
    g_autoptr(GPtrArray) dead = g_ptr_array_new();
    g_autoptr(GPtrArray) fresh = g_ptr_array_new();
    guint i = 0, j = 0;

    /* Both lists are sorted by gpa and non-overlapping. */
    while (i < spp_overlays->len || j < pieces->len) {
        SppOverlay *ov = i < spp_overlays->len ?
            g_ptr_array_index(spp_overlays, i) : NULL;
        SppPiece *p = j < pieces->len ?
            &g_array_index(pieces, SppPiece, j) : NULL;

        if (ov && p && ov->gpa == p->gpa && ov->size == p->size &&
            ov->shadow == p->shadow && ov->offset == p->offset) {
            g_ptr_array_add(next, ov);
            i++;
            j++;
        } else if (ov && (!p || ov->gpa <= p->gpa)) {
            g_ptr_array_add(dead, ov);
            i++;
        } else {
            SppOverlay *n = g_new0(SppOverlay, 1);

            n->shadow = p->shadow;
            n->gpa = p->gpa;
            n->offset = p->offset;
            n->size = p->size;
            g_ptr_array_add(next, n);
            g_ptr_array_add(fresh, n);
            j++;
        }
    }

    trace_spp_overlays(pieces->len, next->len, fresh->len, dead->len);
    if (!dead->len && !fresh->len) {
        g_ptr_array_free(next, true);
        return;
    }

    /*
     * Publish the new overlays to the write path first: the barrier below
     * drops the BQL, and vCPUs then run spp_shadow_write() against them.
     */
    g_ptr_array_free(spp_overlays, true);
    spp_overlays = next;
    g_ptr_array_set_size(spp_overlays_by_offset, 0);
    for (i = 0; i < next->len; i++) {
        g_ptr_array_add(spp_overlays_by_offset, g_ptr_array_index(next, i));
    }
    g_ptr_array_sort(spp_overlays_by_offset, spp_overlay_offset_cmp);

    memory_region_transaction_begin();
    for (i = 0; i < dead->len; i++) {
        SppOverlay *ov = g_ptr_array_index(dead, i);
        memory_region_del_subregion(get_system_memory(), &ov->alias);
    }
    for (i = 0; i < fresh->len; i++) {
        SppOverlay *ov = g_ptr_array_index(fresh, i);

        memory_region_init_alias(&ov->alias, NULL, "spp-overlay",
                                 &ov->shadow->mr, ov->offset, ov->size);
        memory_region_add_subregion_overlap(get_system_memory(), ov->gpa,
                                            &ov->alias,
                                            SPP_OVERLAY_PRIORITY);
    }
    spp_in_update = true;
    memory_region_transaction_commit();
    spp_in_update = false;
    /* Flat views still in use may point into the old aliases. */
    for (i = 0; i < dead->len; i++) {
        SppOverlay *ov = g_ptr_array_index(dead, i);
        call_rcu(ov, spp_overlay_free, rcu);
    }
}

static void spp_shadow_free(SppShadow *sh)
{
    object_unparent(OBJECT(&sh->mr));
    object_unref(sh->backend);
    g_free(sh);
}

/*
 * Memory of an unplugged DIMM loses its protection: clear the vectors of
 * the pages its shadow covers, drop the overlays, then the shadow.
 */
static void spp_unplug_check(void *opaque)
{
    GHashTableIter it;
    SppShadow *sh;
    g_autoptr(GPtrArray) gone = g_ptr_array_new();
    guint i, j;

    if (!spp_shadows) {
        return;
    }
    g_hash_table_iter_init(&it, spp_shadows);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&sh)) {
        if (!host_memory_backend_is_mapped(MEMORY_BACKEND(sh->backend))) {
            g_ptr_array_add(gone, sh);
        }
    }
    for (i = 0; i < gone->len; i++) {
        g_autoptr(GArray) ranges = g_array_new(false, false,
                                               sizeof(SppRange));

        sh = g_ptr_array_index(gone, i);
        for (j = 0; spp_overlays && j < spp_overlays->len; j++) {
            SppOverlay *ov = g_ptr_array_index(spp_overlays, j);
            SppRange r = {
                .gfn = ov->gpa >> SPP_PAGE_SHIFT,
                .npages = ov->size >> SPP_PAGE_SHIFT,
                .wp = SPP_WP_ALL,
            };

            if (ov->shadow == sh) {
                g_array_append_val(ranges, r);
            }
        }
        for (j = 0; j < ranges->len; j++) {
            SppRange *r = &g_array_index(ranges, SppRange, j);

            trace_spp_unplugged(memory_region_name(sh->ram), r->gfn,
                                r->npages);
        }
        if (ranges->len) {
            spp_forget_ranges(&g_array_index(ranges, SppRange, 0),
                              ranges->len);
        }
        g_hash_table_remove(spp_shadows, sh->ram);
        call_rcu(sh, spp_shadow_free, rcu);
    }
}

static void spp_listener_commit(MemoryListener *listener)
{
    if (!spp_in_update) {
        qemu_bh_schedule(spp_unplug_bh);
    }
}

/* True when every page of the range is protected and already covered. */
static bool spp_range_covered(uint64_t gfn, uint64_t npages)
{
    uint64_t i = 0;

    while (i < npages) {
        hwaddr gpa = (gfn + i) << SPP_PAGE_SHIFT;
        SppOverlay *ov = spp_overlay_by_gpa(gpa);

        if (!ov) {
            return false;
        }
        for (; i < npages && ((gfn + i) << SPP_PAGE_SHIFT) <
                             ov->gpa + ov->size; i++) {
            if (spp_get_vector(gfn + i) == SPP_WP_ALL) {
                return false;
            }
        }
    }
    return true;
}

static void spp_recompute(void)
{
    g_autoptr(GArray) pieces = spp_pieces();

    /* What a lift would put back is out of date now. */
    if (spp_unlifted) {
        g_array_unref(spp_unlifted);
        spp_unlifted = NULL;
    }

    spp_group_pieces(pieces);
    spp_carve_lifted(pieces);
    spp_apply_pieces(pieces);
}

static gint spp_gfn_cmp(gconstpointer a, gconstpointer b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static bool spp_emulated_update(const SppRange *r, size_t n,
                                const uint32_t *old, Error **errp)
{
    if (!spp_overlays) {
        spp_overlays = g_ptr_array_new();
        spp_overlays_by_offset = g_ptr_array_new();
        spp_unplug_bh = qemu_bh_new(spp_unplug_check, NULL);
        spp_listener = (MemoryListener) {
            .name = "spp",
            .commit = spp_listener_commit,
            .priority = MEMORY_LISTENER_PRIORITY_MIN,
        };
        memory_listener_register(&spp_listener, &address_space_memory);
    }
    if (n == 1 && spp_range_covered(r->gfn, r->npages)) {
        /* Only vectors changed: the write path reads them directly. */
        return true;
    }
    spp_recompute();
    return true;
}

static bool spp_emulated_trapped(uint64_t gfn)
{
    return spp_overlay_by_gpa(gfn << SPP_PAGE_SHIFT);
}

/* The overlays as pieces. */
static GArray *spp_overlay_pieces(void)
{
    GArray *pieces = g_array_new(false, false, sizeof(SppPiece));
    guint i;

    for (i = 0; i < spp_overlays->len; i++) {
        SppOverlay *ov = g_ptr_array_index(spp_overlays, i);
        SppPiece p = {
            .gpa = ov->gpa, .size = ov->size,
            .shadow = ov->shadow, .offset = ov->offset,
        };

        g_array_append_val(pieces, p);
    }
    return pieces;
}

/*
 * A step lifts a page or two and puts them back: work from the current
 * overlays, not from every protected run, and keep what to put back.
 */
static void spp_emulated_lift(const uint64_t *gfns, size_t n)
{
    g_autoptr(GArray) pieces = NULL;

    if (!spp_lifted) {
        spp_lifted = g_array_new(false, false, sizeof(uint64_t));
    }
    g_array_set_size(spp_lifted, 0);
    g_array_append_vals(spp_lifted, gfns, n);
    g_array_sort(spp_lifted, spp_gfn_cmp);
    if (!spp_overlays) {
        return;
    }
    if (!n) {
        if (spp_unlifted) {
            spp_apply_pieces(spp_unlifted);
            g_array_unref(spp_unlifted);
            spp_unlifted = NULL;
        } else {
            spp_recompute();
        }
        return;
    }
    if (!spp_unlifted) {
        spp_unlifted = spp_overlay_pieces();
    }
    pieces = g_array_copy(spp_unlifted);
    spp_carve_lifted(pieces);
    spp_apply_pieces(pieces);
}

static uint64_t spp_emulated_regions(void)
{
    return spp_overlays ? spp_overlays->len : 0;
}

/*
 * Unprotected pages the overlays trap anyway (the gaps inside a group):
 * the pages of the overlays less the protected pages in them.  Both
 * lists are sorted by address.
 */
static uint64_t spp_emulated_trapped_unprotected(void)
{
    g_autoptr(GArray) runs = spp_protected_runs();
    uint64_t trapped = 0;
    guint i, j = 0;

    for (i = 0; spp_overlays && i < spp_overlays->len; i++) {
        SppOverlay *ov = g_ptr_array_index(spp_overlays, i);
        uint64_t first = ov->gpa >> SPP_PAGE_SHIFT;
        uint64_t end = first + (ov->size >> SPP_PAGE_SHIFT);

        trapped += end - first;
        while (j < runs->len &&
               g_array_index(runs, SppRun, j).gfn +
               g_array_index(runs, SppRun, j).npages <= first) {
            j++;
        }
        for (guint k = j; k < runs->len; k++) {
            SppRun *r = &g_array_index(runs, SppRun, k);

            if (r->gfn >= end) {
                break;
            }
            trapped -= MIN(end, r->gfn + r->npages) - MAX(first, r->gfn);
        }
    }
    return trapped;
}

const SppBackendOps spp_emulated_ops = {
    .kind = SPP_BACKEND_EMULATED,
    .update = spp_emulated_update,
    .regions = spp_emulated_regions,
    .trapped_unprotected = spp_emulated_trapped_unprotected,
    .trapped = spp_emulated_trapped,
    .lift = spp_emulated_lift,
    .ram_of = spp_emulated_ram_of,
};
