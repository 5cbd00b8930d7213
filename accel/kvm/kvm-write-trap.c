/*
 * Write traps on RAM under KVM: trapped pages as read-only memslots
 *
 * kvm_set_phys_mem() cuts a RAM section's slots where pages change
 * between trapped and not, and makes the trapped ones read-only, so a
 * vCPU's store to them exits (KVM_EXIT_MMIO) and reaches the write-trap
 * region through address_space_memory like a device's write.  When
 * traps change, the slots over the changed pages are made again: the
 * slots that hold them, and the slots right before and after them in
 * the same RAM, so that slots split for a trap merge again once it is
 * gone and their number follows the runs of trapped pages.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qemu/bitmap.h"
#include "qemu/error-report.h"
#include "qemu/lockable.h"
#include "qemu/rcu.h"
#include "exec/address-spaces.h"
#include "exec/ram-write-trap.h"
#include "system/accel-blocker.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/kvm-write-trap.h"
#include "trace.h"

/* A range of the flat view that maps RAM a change touched */
typedef struct KvmWriteTrapRange {
    hwaddr start, end;          /* guest-physical */
    MemoryRegion *mr;
    hwaddr offset;              /* of @start in @mr */
} KvmWriteTrapRange;

typedef struct KvmWriteTrapRanges {
    GPtrArray *mrs;             /* the regions changed */
    GArray *ranges;             /* KvmWriteTrapRange, by address */
} KvmWriteTrapRanges;

static bool kvm_write_trap_range_cb(Int128 start, Int128 len,
                                    const MemoryRegion *mr,
                                    hwaddr offset_in_region, void *opaque)
{
    KvmWriteTrapRanges *r = opaque;
    KvmWriteTrapRange fr = {
        .start = int128_get64(start),
        .end = int128_get64(start) + int128_get64(len),
        .mr = (MemoryRegion *)mr,
        .offset = offset_in_region,
    };

    if (g_ptr_array_find(r->mrs, mr, NULL)) {
        g_array_append_val(r->ranges, fr);
    }
    return false;
}

/* The ranges of @as's flat view that map the regions of @c (sorted) */
static GArray *kvm_write_trap_ranges(AddressSpace *as,
                                     const MemoryWriteTrapChange *c,
                                     size_t n)
{
    g_autoptr(GPtrArray) mrs = g_ptr_array_new();
    KvmWriteTrapRanges r = {
        .mrs = mrs,
        .ranges = g_array_new(false, false, sizeof(KvmWriteTrapRange)),
    };
    size_t i;

    for (i = 0; i < n; i++) {
        if (!i || c[i].mr != c[i - 1].mr) {
            g_ptr_array_add(mrs, c[i].mr);
        }
    }
    WITH_RCU_READ_LOCK_GUARD() {
        flatview_for_each_range(address_space_to_flatview(as),
                                kvm_write_trap_range_cb, &r);
    }
    return r.ranges;
}

static gint kvm_write_trap_slot_cmp(gconstpointer a, gconstpointer b)
{
    const KVMSlot *x = *(KVMSlot * const *)a, *y = *(KVMSlot * const *)b;

    return x->start_addr < y->start_addr ? -1 : x->start_addr > y->start_addr;
}

/* A part of a flat-view range whose slots are made again */
typedef struct KvmWriteTrapSpan {
    hwaddr start, end;
    const KvmWriteTrapRange *range;
} KvmWriteTrapSpan;

static gint kvm_write_trap_span_cmp(gconstpointer a, gconstpointer b)
{
    const KvmWriteTrapSpan *x = a, *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

/* The index in sorted, disjoint @v of the first span that ends after @a */
static guint kvm_write_trap_span_at(GArray *v, hwaddr a)
{
    guint lo = 0, hi = v->len;

    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;

        if (g_array_index(v, KvmWriteTrapSpan, mid).end <= a) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static gint kvm_write_trap_addr_cmp(gconstpointer a, gconstpointer b)
{
    hwaddr x = *(const hwaddr *)a, y = *(const hwaddr *)b;

    return x < y ? -1 : x > y;
}

/* Whether sorted @v holds @a */
static bool kvm_write_trap_has_addr(GArray *v, hwaddr a)
{
    return g_array_binary_search(v, &a, kvm_write_trap_addr_cmp, NULL);
}

/*
 * The slots of @kml that re-slotting @wants looks at, by address: the
 * slots that overlap a wanted range and those right before and after
 * them.  A slot ends where its neighbour starts, so two passes over the
 * slots find them without sorting every slot: a small change costs the
 * same however many runs of trapped pages have slots (the sort of
 * 20,000 slots was most of a 1-page change with 10,000 runs).
 */
static GPtrArray *kvm_write_trap_slots(KVMMemoryListener *kml, GArray *wants)
{
    g_autoptr(GArray) in = g_array_copy(wants);
    g_autoptr(GArray) ext = NULL;
    g_autoptr(GArray) los = g_array_new(false, false, sizeof(hwaddr));
    g_autoptr(GArray) his = g_array_new(false, false, sizeof(hwaddr));
    GPtrArray *v = g_ptr_array_new();
    guint i, k, out;

    /* Merge where ranges overlap or touch, so each union is one piece. */
    g_array_sort(in, kvm_write_trap_span_cmp);
    for (i = 1, out = 0; i < in->len; i++) {
        KvmWriteTrapSpan *a = &g_array_index(in, KvmWriteTrapSpan, out);
        KvmWriteTrapSpan *b = &g_array_index(in, KvmWriteTrapSpan, i);

        if (b->start <= a->end) {
            a->end = MAX(a->end, b->end);
        } else {
            g_array_index(in, KvmWriteTrapSpan, ++out) = *b;
        }
    }
    if (!in->len) {
        return v;
    }
    g_array_set_size(in, out + 1);

    /* The slots that overlap a union, and each union's extent in slots */
    ext = g_array_sized_new(false, false, sizeof(KvmWriteTrapSpan), in->len);
    g_array_set_size(ext, in->len);
    for (k = 0; k < in->len; k++) {
        g_array_index(ext, KvmWriteTrapSpan, k).start = HWADDR_MAX;
        g_array_index(ext, KvmWriteTrapSpan, k).end = 0;
    }
    for (i = 0; i < kml->nr_slots_allocated; i++) {
        KVMSlot *mem = &kml->slots[i];
        hwaddr end = mem->start_addr + mem->memory_size;
        bool hit = false;

        if (!mem->memory_size) {
            continue;
        }
        for (k = kvm_write_trap_span_at(in, mem->start_addr);
             k < in->len && g_array_index(in, KvmWriteTrapSpan, k).start < end;
             k++) {
            KvmWriteTrapSpan *e = &g_array_index(ext, KvmWriteTrapSpan, k);

            e->start = MIN(e->start, mem->start_addr);
            e->end = MAX(e->end, end);
            hit = true;
        }
        if (hit) {
            g_ptr_array_add(v, mem);
        }
    }

    /* Their neighbours: the slots that end or start where a union's do */
    for (k = 0; k < ext->len; k++) {
        KvmWriteTrapSpan *e = &g_array_index(ext, KvmWriteTrapSpan, k);

        if (e->end) {
            g_array_append_val(los, e->start);
            g_array_append_val(his, e->end);
        }
    }
    g_array_sort(los, kvm_write_trap_addr_cmp);
    g_array_sort(his, kvm_write_trap_addr_cmp);
    for (i = 0; los->len && i < kml->nr_slots_allocated; i++) {
        KVMSlot *mem = &kml->slots[i];

        if (mem->memory_size &&
            (kvm_write_trap_has_addr(los, mem->start_addr + mem->memory_size) ||
             kvm_write_trap_has_addr(his, mem->start_addr))) {
            g_ptr_array_add(v, mem);
        }
    }

    /* By address, each once (a neighbour of one union may overlap another) */
    g_ptr_array_sort(v, kvm_write_trap_slot_cmp);
    for (i = 1, out = 0; i < v->len; i++) {
        if (g_ptr_array_index(v, i) != g_ptr_array_index(v, out)) {
            g_ptr_array_index(v, ++out) = g_ptr_array_index(v, i);
        }
    }
    if (v->len) {
        g_ptr_array_set_size(v, out + 1);
    }
    return v;
}

/* The index in @v of the first slot that ends after @addr */
static guint kvm_write_trap_slot_at(GPtrArray *v, hwaddr addr)
{
    guint lo = 0, hi = v->len;

    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        KVMSlot *m = g_ptr_array_index(v, mid);

        if (m->start_addr + m->memory_size <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Whether slot @b follows slot @a in guest and in host memory */
static bool kvm_write_trap_adjacent(const KVMSlot *a, const KVMSlot *b)
{
    return a->start_addr + a->memory_size == b->start_addr &&
           (uint8_t *)a->ram + a->memory_size == (uint8_t *)b->ram;
}

/*
 * Add to @spans the slots that hold guest-physical [@lo, @hi) of
 * @range, with the slots right before and after them in the same range
 * and RAM, so that slots split for a trap merge again once it is gone.
 * Neighbours join only within the range: every other slot lookup
 * expects a section's slots to start where the section starts.
 */
static void kvm_write_trap_span(GPtrArray *slots, const KvmWriteTrapRange *fr,
                                hwaddr lo, hwaddr hi, GArray *spans)
{
    uint8_t *base = memory_region_get_ram_ptr(fr->mr);
    uint8_t *mr_end = base + memory_region_size(fr->mr);
    guint i = kvm_write_trap_slot_at(slots, lo), last;
    KvmWriteTrapSpan sp;
    KVMSlot *first, *end;

    if (i >= slots->len ||
        ((KVMSlot *)g_ptr_array_index(slots, i))->start_addr >= hi) {
        return;                 /* no slot there (not mapped by KVM) */
    }
    for (last = i; last + 1 < slots->len &&
         ((KVMSlot *)g_ptr_array_index(slots, last + 1))->start_addr < hi;
         last++) {
        /* the last slot that starts before @hi */
    }
    first = g_ptr_array_index(slots, i);
    end = g_ptr_array_index(slots, last);
    if (i > 0) {
        KVMSlot *l = g_ptr_array_index(slots, i - 1);

        if (kvm_write_trap_adjacent(l, first) && (uint8_t *)l->ram >= base &&
            l->start_addr >= fr->start) {
            first = l;
        }
    }
    if (last + 1 < slots->len) {
        KVMSlot *r = g_ptr_array_index(slots, last + 1);

        if (kvm_write_trap_adjacent(end, r) &&
            (uint8_t *)r->ram + r->memory_size <= mr_end &&
            r->start_addr + r->memory_size <= fr->end) {
            end = r;
        }
    }
    sp = (KvmWriteTrapSpan) {
        .start = MAX(first->start_addr, fr->start),
        .end = MIN(end->start_addr + end->memory_size, fr->end),
        .range = fr,
    };
    g_array_append_val(spans, sp);
}

/*
 * The spans of @kml to make again for the changes @c: sorted, and
 * merged where they overlap or touch within one flat-view range, so
 * that each slot is deleted once however many changes it holds.
 */
static GArray *kvm_write_trap_spans(KVMMemoryListener *kml, GArray *ranges,
                                    const MemoryWriteTrapChange *c, size_t n)
{
    g_autoptr(GArray) wants = g_array_new(false, false,
                                          sizeof(KvmWriteTrapSpan));
    g_autoptr(GPtrArray) slots = NULL;
    GArray *spans = g_array_new(false, false, sizeof(KvmWriteTrapSpan));
    guint i, j, out;

    for (i = 0; i < ranges->len; i++) {
        const KvmWriteTrapRange *fr = &g_array_index(ranges,
                                                     KvmWriteTrapRange, i);
        hwaddr fr_size = fr->end - fr->start;

        for (j = 0; j < n; j++) {
            KvmWriteTrapSpan w = { .range = fr };

            if (c[j].mr != fr->mr || c[j].offset >= fr->offset + fr_size ||
                c[j].offset + c[j].size <= fr->offset) {
                continue;
            }
            w.start = MAX(c[j].offset, fr->offset) - fr->offset + fr->start;
            w.end = MIN(c[j].offset + c[j].size, fr->offset + fr_size) -
                    fr->offset + fr->start;
            g_array_append_val(wants, w);
        }
    }
    slots = kvm_write_trap_slots(kml, wants);
    for (i = 0; i < wants->len; i++) {
        KvmWriteTrapSpan *w = &g_array_index(wants, KvmWriteTrapSpan, i);

        kvm_write_trap_span(slots, w->range, w->start, w->end, spans);
    }
    g_array_sort(spans, kvm_write_trap_span_cmp);
    for (i = 1, out = 0; i < spans->len; i++) {
        KvmWriteTrapSpan *a = &g_array_index(spans, KvmWriteTrapSpan, out);
        KvmWriteTrapSpan *b = &g_array_index(spans, KvmWriteTrapSpan, i);

        if (b->range == a->range && b->start <= a->end) {
            a->end = MAX(a->end, b->end);
        } else {
            g_array_index(spans, KvmWriteTrapSpan, ++out) = *b;
        }
    }
    if (spans->len) {
        g_array_set_size(spans, out + 1);
    }
    return spans;
}

/* Whether @addr lies in one of the (sorted, disjoint) @spans */
static bool kvm_write_trap_in_spans(GArray *spans, hwaddr addr)
{
    guint i = kvm_write_trap_span_at(spans, addr);

    return i < spans->len &&
           g_array_index(spans, KvmWriteTrapSpan, i).start <= addr;
}

/*
 * A slot re-created while its pages are dirty-logged starts, with
 * KVM_DIRTY_LOG_INITIALLY_SET, with every page dirty: repeated
 * protection changes during migration would send the whole neighbouring
 * RAM again each round.  Deleting the old slot synced its dirty pages
 * into QEMU's bitmap, and no vCPU ran since, so clear the new slots'
 * logs (which also write-protects their pages for the logging).
 */
static void kvm_write_trap_clear_initial_log(KVMMemoryListener *kml,
                                             GArray *spans)
{
    KVMState *s = kvm_state;
    int i;

    if (!(s->manual_dirty_log_protect & KVM_DIRTY_LOG_INITIALLY_SET) ||
        s->kvm_dirty_ring_size) {
        return;
    }
    for (i = 0; i < kml->nr_slots_allocated; i++) {
        KVMSlot *mem = &kml->slots[i];
        g_autofree unsigned long *all = NULL;
        struct kvm_clear_dirty_log d;
        uint64_t npages;

        if (!mem->memory_size || !(mem->flags & KVM_MEM_LOG_DIRTY_PAGES) ||
            !kvm_write_trap_in_spans(spans, mem->start_addr)) {
            continue;
        }
        npages = mem->memory_size / qemu_real_host_page_size();
        all = bitmap_new(npages);
        bitmap_set(all, 0, npages);
        d = (struct kvm_clear_dirty_log) {
            .slot = mem->slot | (kml->as_id << 16),
            .num_pages = npages,
            .dirty_bitmap = all,
        };
        if (kvm_vm_ioctl(s, KVM_CLEAR_DIRTY_LOG, &d) < 0) {
            /* Only costs a resend of the slot's pages. */
            warn_report_once("sub-page protection: cannot clear the dirty "
                             "log of a re-created memory slot");
        }
    }
}

static void kvm_write_trap_changed(MemoryWriteTrapListener *l,
                                   const MemoryWriteTrapChange *c, size_t n)
{
    KVMState *s = kvm_state;
    int i;

    /*
     * A slot is deleted before its pieces are added: as in
     * kvm_region_commit(), no vCPU may run meanwhile, or a fetch from
     * the gap would look like MMIO to KVM.  The locks are taken in
     * kvm_region_commit()'s order, slots first: a thread that holds the
     * slots lock may be in a VM ioctl (the migration thread's
     * KVM_CLEAR_DIRTY_LOG), which waits while the ioctls are inhibited.
     */
    qemu_mutex_lock(&kml_slots_lock);
    accel_ioctl_inhibit_begin();
    for (i = 0; i < s->nr_as; i++) {
        KVMMemoryListener *kml = s->as[i].ml;
        g_autoptr(GArray) ranges = NULL;
        g_autoptr(GArray) spans = NULL;
        guint j;

        if (!kml) {
            continue;
        }
        ranges = kvm_write_trap_ranges(s->as[i].as, c, n);
        spans = kvm_write_trap_spans(kml, ranges, c, n);
        for (j = 0; j < spans->len; j++) {
            KvmWriteTrapSpan *sp = &g_array_index(spans, KvmWriteTrapSpan, j);
            MemoryRegionSection section = {
                .mr = sp->range->mr,
                .offset_within_region = sp->range->offset +
                                        (sp->start - sp->range->start),
                .offset_within_address_space = sp->start,
                .size = int128_make64(sp->end - sp->start),
            };

            trace_kvm_write_trap_reslot(kml->as_id, sp->start,
                                        sp->end - sp->start);
            kvm_set_phys_mem(kml, &section, false);
            kvm_set_phys_mem(kml, &section, true);
        }
        kvm_write_trap_clear_initial_log(kml, spans);
    }
    accel_ioctl_inhibit_end();
    qemu_mutex_unlock(&kml_slots_lock);
}

static MemoryWriteTrapListener kvm_write_trap_listener = {
    .changed = kvm_write_trap_changed,
    .vcpu_stores = true,
};

/*
 * Keeping the slots of re-bounded RAM.  A memory transaction that only
 * moves a bound of a RAM range (the firmware carving SMRAM or TSEG out
 * of low RAM, a hole opened in the middle) deletes the old range and
 * adds the new one, and kvm_region_commit() would delete and re-create
 * every slot of it: with write traps, thousands.  Where a deleted and
 * an added section map the same RAM at the same addresses, the whole
 * slots they share stay as they are; only the slots outside them are
 * deleted and added.
 */

static hwaddr kvm_write_trap_section_end(const MemoryRegionSection *s)
{
    return s->offset_within_address_space + int128_get64(s->size);
}

/* Whether @a maps what @d maps, at the same addresses */
static bool kvm_write_trap_same_map(const MemoryRegionSection *d,
                                    const MemoryRegionSection *a)
{
    hwaddr page = qemu_real_host_page_size();

    return d->mr == a->mr && memory_region_is_ram(d->mr) &&
           !memory_region_has_guest_memfd(d->mr) &&
           d->readonly == a->readonly &&
           d->offset_within_region - d->offset_within_address_space ==
           a->offset_within_region - a->offset_within_address_space &&
           QEMU_IS_ALIGNED(d->offset_within_address_space, page) &&
           QEMU_IS_ALIGNED(int128_get64(d->size), page) &&
           QEMU_IS_ALIGNED(a->offset_within_address_space, page) &&
           QEMU_IS_ALIGNED(int128_get64(a->size), page);
}

/* The slot of @kml that holds @addr of @d's RAM, or NULL */
static KVMSlot *kvm_write_trap_slot_of(KVMMemoryListener *kml,
                                       const MemoryRegionSection *d,
                                       hwaddr addr)
{
    int i;

    for (i = 0; i < kml->nr_slots_allocated; i++) {
        KVMSlot *mem = &kml->slots[i];
        hwaddr off = mem->start_addr - d->offset_within_address_space +
                     d->offset_within_region;

        if (mem->memory_size && addr >= mem->start_addr &&
            addr - mem->start_addr < mem->memory_size) {
            /* a slot of another mapping: keep nothing */
            return mem->ram == memory_region_get_ram_ptr(d->mr) + off ?
                   mem : NULL;
        }
    }
    return NULL;
}

/*
 * Whether @mem, a slot at @off in @mr, is what kvm_set_phys_mem() would
 * make there now: the same dirty logging, and read-only exactly where
 * the region is or its pages are write-trapped.
 */
static bool kvm_write_trap_slot_fits(const KVMSlot *mem, MemoryRegion *mr,
                                     hwaddr off)
{
    bool log = memory_region_get_dirty_log_mask(mr) != 0;
    bool ro = mr->readonly || memory_region_is_romd(mr);
    bool trapped = false;

    if (!!(mem->flags & KVM_MEM_LOG_DIRTY_PAGES) != log ||
        mem->ram != memory_region_get_ram_ptr(mr) + off) {
        return false;
    }
    if (ro) {
        return mem->flags & KVM_MEM_READONLY;
    }
    return memory_region_write_trap_run(mr, off, mem->memory_size,
                                        &trapped) == mem->memory_size &&
           trapped == !!(mem->flags & KVM_MEM_READONLY);
}

/* Whether every slot of @kml in [@k0, @k1), in @d's RAM, fits (above) */
static bool kvm_write_trap_slots_fit(KVMMemoryListener *kml,
                                     const MemoryRegionSection *d,
                                     hwaddr k0, hwaddr k1)
{
    int i;

    for (i = 0; i < kml->nr_slots_allocated; i++) {
        KVMSlot *mem = &kml->slots[i];

        if (mem->memory_size && mem->start_addr >= k0 &&
            mem->start_addr < k1 &&
            !kvm_write_trap_slot_fits(mem, d->mr, mem->start_addr -
                                      d->offset_within_address_space +
                                      d->offset_within_region)) {
            return false;
        }
    }
    return true;
}

/* @u shrunk to [@start, @end); false if that is empty */
static bool kvm_write_trap_cut(MemoryRegionSection *u,
                               const MemoryRegionSection *from,
                               hwaddr start, hwaddr end)
{
    if (start >= end) {
        return false;
    }
    *u = *from;
    u->offset_within_region += start - from->offset_within_address_space;
    u->offset_within_address_space = start;
    u->size = int128_make64(end - start);
    return true;
}

/*
 * Replace @u, in @kml's list of sections to delete (@del) or to add, by
 * its pieces outside [@k0, @k1) (none, one or two, in address order);
 * the number of pieces.
 */
static int kvm_write_trap_split(KVMMemoryUpdate *u, hwaddr k0, hwaddr k1,
                                bool del, KVMMemoryListener *kml)
{
    MemoryRegionSection whole = u->section;
    KVMMemoryUpdate *hi = g_new0(KVMMemoryUpdate, 1);
    bool has_lo = kvm_write_trap_cut(&u->section, &whole,
                                     whole.offset_within_address_space, k0);
    bool has_hi = kvm_write_trap_cut(&hi->section, &whole, k1,
                                     kvm_write_trap_section_end(&whole));

    if (has_hi) {
        if (del) {
            QSIMPLEQ_INSERT_AFTER(&kml->transaction_del, u, hi, next);
        } else {
            QSIMPLEQ_INSERT_AFTER(&kml->transaction_add, u, hi, next);
        }
    } else {
        g_free(hi);
    }
    if (!has_lo) {
        if (del) {
            QSIMPLEQ_REMOVE(&kml->transaction_del, u, KVMMemoryUpdate, next);
        } else {
            QSIMPLEQ_REMOVE(&kml->transaction_add, u, KVMMemoryUpdate, next);
        }
        g_free(u);
    }
    return has_lo + has_hi;
}

/* Keep the whole slots @d and @a share; false if there are none. */
static bool kvm_write_trap_keep(KVMMemoryListener *kml, KVMMemoryUpdate *d,
                                KVMMemoryUpdate *a)
{
    MemoryRegion *mr = d->section.mr;
    hwaddr lo = MAX(d->section.offset_within_address_space,
                    a->section.offset_within_address_space);
    hwaddr hi = MIN(kvm_write_trap_section_end(&d->section),
                    kvm_write_trap_section_end(&a->section));
    KVMSlot *first, *last;
    hwaddr k0, k1;
    int pieces;

    if (lo >= hi || !kvm_write_trap_same_map(&d->section, &a->section)) {
        return false;
    }
    first = kvm_write_trap_slot_of(kml, &d->section, lo);
    last = kvm_write_trap_slot_of(kml, &d->section, hi - 1);
    if (!first || !last) {
        return false;
    }
    /* the whole slots in [lo, hi) */
    k0 = first->start_addr == lo ? lo :
         first->start_addr + first->memory_size;
    k1 = last->start_addr + last->memory_size == hi ? hi : last->start_addr;
    if (k0 >= k1 || !kvm_write_trap_slots_fit(kml, &d->section, k0, k1)) {
        return false;
    }
    trace_kvm_write_trap_keep_slots(kml->as_id, k0, k1 - k0);
    /*
     * kvm_region_commit() drops a reference to the region for each
     * update it deletes and takes one for each it adds: make up for
     * the pieces.
     */
    pieces = kvm_write_trap_split(d, k0, k1, true, kml);
    pieces -= kvm_write_trap_split(a, k0, k1, false, kml);
    for (; pieces > 0; pieces--) {
        memory_region_ref(mr);
    }
    for (; pieces < 0; pieces++) {
        memory_region_unref(mr);
    }
    return true;
}

void kvm_write_trap_keep_slots(KVMMemoryListener *kml)
{
    KVMMemoryUpdate *d, *a;
    bool kept;

    /* Without traps, sections and slots match one to one: nothing to do */
    if (!memory_write_trap_count()) {
        return;
    }
    QEMU_LOCK_GUARD(&kml_slots_lock);
    do {
        kept = false;
        QSIMPLEQ_FOREACH(d, &kml->transaction_del, next) {
            QSIMPLEQ_FOREACH(a, &kml->transaction_add, next) {
                kept = kvm_write_trap_keep(kml, d, a);
                if (kept) {
                    break;
                }
            }
            if (kept) {
                break;      /* the lists changed: from the start */
            }
        }
    } while (kept);
}

static KvmWriteTrapRmwFn *kvm_write_trap_rmw_fn;

void kvm_write_trap_set_rmw_handler(KvmWriteTrapRmwFn *fn)
{
    kvm_write_trap_rmw_fn = fn;
}

bool kvm_write_trap_mmio(CPUState *cs, struct kvm_run *run, MemTxAttrs attrs)
{
    if (!kvm_write_trap_rmw_fn || !run->mmio.is_write ||
        !address_space_write_trapped(&address_space_memory,
                                     run->mmio.phys_addr, run->mmio.len,
                                     attrs)) {
        return false;
    }
    return kvm_write_trap_rmw_fn(cs, run, attrs);
}

static bool kvm_write_trap_slot_only;

bool kvm_write_trap_zaps_slot_only(void)
{
    return kvm_write_trap_slot_only;
}

/*
 * On x86 before Linux 6.12, deleting any memslot zaps every
 * second-level page table of the VM, and each change of write traps
 * deletes slots.  From 6.12 the quirk can be turned off.  Linux keeps
 * it on by default because zapping only the deleted slot once went
 * wrong with an assigned GPU (its 2019 revert, never explained);
 * -accel kvm,x-spp-zap-all=on keeps it.
 */
static void kvm_write_trap_zap_slot_only(KVMState *s)
{
#ifdef KVM_X86_QUIRK_SLOT_ZAP_ALL
    int quirks = kvm_vm_check_extension(s, KVM_CAP_DISABLE_QUIRKS2);

    if (quirks > 0 && (quirks & KVM_X86_QUIRK_SLOT_ZAP_ALL)) {
        if (kvm_vm_enable_cap(s, KVM_CAP_DISABLE_QUIRKS2, 0,
                              KVM_X86_QUIRK_SLOT_ZAP_ALL) < 0) {
            warn_report("KVM offers KVM_X86_QUIRK_SLOT_ZAP_ALL but does "
                        "not turn it off: memslot changes zap all pages");
            return;
        }
        kvm_write_trap_slot_only = true;
    }
#endif
}

bool kvm_write_trap_init(KVMState *s, bool zap_all)
{
    if (!kvm_readonly_mem_allowed) {
        return false;
    }
    if (!zap_all) {
        kvm_write_trap_zap_slot_only(s);
    }
    memory_write_trap_listener_register(&kvm_write_trap_listener);
    return true;
}
