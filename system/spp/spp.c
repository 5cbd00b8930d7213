/*
 * Sub-page write protection (SPP): the accelerator-independent core
 *
 * The core owns the per-page write-permission vectors, validates
 * requests, applies the violation policy, counts violations and emits
 * SPP_VIOLATION events.  A backend (see SppBackendOps) makes the vectors
 * effective; the emulated backend in spp-trap.c works everywhere.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qemu/option.h"
#include "qemu/timer.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-spp.h"
#include "qapi/qapi-events-spp.h"
#include "exec/address-spaces.h"
#include "exec/memory.h"
#include "exec/ram-write-trap.h"
#include "hw/core/cpu.h"
#include "system/hostmem.h"
#include "system/cpus.h"
#include "system/runstate.h"
#include "system/system.h"
#include "system/qtest.h"
#include "system/tcg.h"
#include "migration/vmstate.h"
#include "system/spp-backend.h"
#include "trace.h"

/* Vectors are kept in chunks of 64 pages (256 KiB of guest memory). */
#define SPP_CHUNK_SHIFT 6
#define SPP_CHUNK_PAGES (1U << SPP_CHUNK_SHIFT)

#define SPP_DEFAULT_EVENT_RATE 100

typedef struct SppChunk {
    uint32_t vec[SPP_CHUNK_PAGES];
    unsigned nprot;
} SppChunk;

/* A sub-page the "unprotect" policy opened, for spp_opened_bh(). */
typedef struct SppOpened {
    uint64_t gfn;
    uint32_t old;                /* the vector before the first opening */
} SppOpened;

/*
 * Locking: the BQL serialises changes of the vectors (set-subpage,
 * migration, unplug) and of the backends.  Writes are judged from any
 * thread, without the BQL (a vCPU, an iothread's ring update), so the
 * judgement and everything it reads or changes (the vectors, the
 * counters, the event window) is also under @lock, which the write-trap
 * facility holds until the allowed bytes are stored: a write judged
 * before a change of vector lands before the change is made.  A change
 * takes the BQL, then @lock, and drops @lock before it calls the
 * backend, which may wait for vCPUs that are waiting for @lock.
 */
typedef struct SppState {
    QemuMutex lock;
    GTree *chunks;               /* chunk index -> SppChunk, sorted */
    uint64_t nprot;              /* pages whose vector is not SPP_WP_ALL */
    SppPolicy policy;
    uint32_t event_rate;         /* events per second, 0 = unlimited */
    const SppBackendOps *ops;
    const char *reason;

    uint64_t violations;
    uint64_t violations_cpu;
    uint64_t violations_device;
    uint64_t bytes_blocked;
    uint64_t events_sent;
    uint64_t events_suppressed;
    uint64_t pending_suppressed; /* since the last event sent */
    int64_t window_start;
    uint32_t window_events;

    /* Migration: the protected pages, flattened for the stream. */
    uint32_t mig_policy;
    uint32_t mig_n;
    uint64_t *mig_gfns;
    uint32_t *mig_vecs;

    /* Sub-pages the "unprotect" policy opened, for the backend. */
    GArray *opened;              /* of SppOpened */
} SppState;

static SppState spp = {
    .policy = SPP_POLICY_BLOCK,
    .event_rate = SPP_DEFAULT_EVENT_RATE,
};

static gint spp_key_cmp(gconstpointer a, gconstpointer b, gpointer unused)
{
    gsize x = GPOINTER_TO_SIZE(a);
    gsize y = GPOINTER_TO_SIZE(b);

    return x < y ? -1 : x > y;
}

void spp_set_backend(const SppBackendOps *ops, const char *reason)
{
    assert(!spp.nprot);
    spp.ops = ops;
    spp.reason = reason;
}

bool spp_backend_trapped(uint64_t gfn)
{
    return spp.ops->trapped && spp.ops->trapped(gfn);
}

void spp_backend_lift(const uint64_t *gfns, size_t n)
{
    if (spp.ops->lift) {
        spp.ops->lift(gfns, n);
    }
}

void spp_lock(void)
{
    qemu_mutex_lock(&spp.lock);
}

void spp_unlock(void)
{
    qemu_mutex_unlock(&spp.lock);
}

/* Without the lock: from TCG's store path (spp_trap_exact()), KVM's exits */
SppPolicy spp_get_policy(void)
{
    return qatomic_read(&spp.policy);
}

static SppChunk *spp_chunk(uint64_t gfn, bool create)
{
    gpointer key = GSIZE_TO_POINTER(gfn >> SPP_CHUNK_SHIFT);
    SppChunk *c;

    c = g_tree_lookup(spp.chunks, key);
    if (!c && create) {
        c = g_new(SppChunk, 1);
        memset(c->vec, 0xff, sizeof(c->vec));
        c->nprot = 0;
        g_tree_insert(spp.chunks, key, c);
    }
    return c;
}

uint64_t spp_protected_pages(void)
{
    return spp.nprot;
}

uint32_t spp_get_vector(uint64_t gfn)
{
    SppChunk *c;

    if (!spp.nprot) {
        return SPP_WP_ALL;
    }
    c = spp_chunk(gfn, false);
    return c ? c->vec[gfn & (SPP_CHUNK_PAGES - 1)] : SPP_WP_ALL;
}

/*
 * Walk every page in [gfn, gfn + npages) in chunk-sized steps, so large
 * ranges cost one hash lookup per chunk rather than per page.
 */
static void spp_store_range(uint64_t gfn, uint64_t npages, uint32_t wp)
{
    while (npages) {
        uint64_t idx = gfn & (SPP_CHUNK_PAGES - 1);
        uint64_t n = MIN(npages, SPP_CHUNK_PAGES - idx);
        SppChunk *c = spp_chunk(gfn, wp != SPP_WP_ALL);

        if (c) {
            uint64_t i;
            for (i = idx; i < idx + n; i++) {
                if (c->vec[i] == SPP_WP_ALL && wp != SPP_WP_ALL) {
                    c->nprot++;
                    spp.nprot++;
                } else if (c->vec[i] != SPP_WP_ALL && wp == SPP_WP_ALL) {
                    c->nprot--;
                    spp.nprot--;
                }
                c->vec[i] = wp;
            }
            if (!c->nprot) {
                g_tree_remove(spp.chunks,
                              GSIZE_TO_POINTER(gfn >> SPP_CHUNK_SHIFT));
            }
        }
        gfn += n;
        npages -= n;
    }
}

static gboolean spp_collect_runs(gpointer key, gpointer value, gpointer data)
{
    GArray *runs = data;
    SppChunk *c = value;
    uint64_t base = (uint64_t)GPOINTER_TO_SIZE(key) << SPP_CHUNK_SHIFT;
    unsigned i;

    for (i = 0; i < SPP_CHUNK_PAGES; i++) {
        SppRun *last = runs->len ?
            &g_array_index(runs, SppRun, runs->len - 1) : NULL;

        if (c->vec[i] == SPP_WP_ALL) {
            continue;
        }
        if (last && last->gfn + last->npages == base + i) {
            last->npages++;
        } else {
            SppRun r = { .gfn = base + i, .npages = 1 };
            g_array_append_val(runs, r);
        }
    }
    return false;
}

GArray *spp_protected_runs(void)
{
    GArray *runs = g_array_new(false, false, sizeof(SppRun));

    if (spp.nprot) {
        g_tree_foreach(spp.chunks, spp_collect_runs, runs);
    }
    return runs;
}

/* Pages that may be protected: guest RAM from a memory backend. */
static bool spp_section_is_guest_ram(MemoryRegionSection *s)
{
    MemoryRegion *mr = s->mr;

    return memory_region_is_ram(mr) && !memory_region_is_ram_device(mr) &&
           !memory_region_is_rom(mr) && !mr->readonly && !s->readonly &&
           mr->owner && object_dynamic_cast(mr->owner, TYPE_MEMORY_BACKEND);
}

bool spp_for_each_section(uint64_t gfn, uint64_t npages, SppSectionFn *fn,
                          void *opaque)
{
    /* Walk in pages: the byte address of the end may not fit in 64 bits. */
    while (npages) {
        hwaddr addr = gfn << SPP_PAGE_SHIFT;
        uint64_t len = MIN(npages, SPP_FIND_MAX_PAGES) << SPP_PAGE_SHIFT;
        MemoryRegionSection s = memory_region_find(get_system_memory(), addr,
                                                   len);
        MemoryRegion *found = s.mr;
        uint64_t pages = 0, done;

        if (s.mr && s.offset_within_address_space == addr) {
            pages = MIN(int128_get64(s.size) >> SPP_PAGE_SHIFT, npages);
        } else {
            s.mr = NULL;
        }
        done = fn(gfn, pages, &s, opaque);
        if (found) {
            memory_region_unref(found);
        }
        if (!done) {
            return false;
        }
        gfn += done;
        npages -= done;
    }
    return true;
}

static uint64_t spp_check_section(uint64_t gfn, uint64_t npages,
                                  MemoryRegionSection *s, void *opaque)
{
    Error **errp = opaque;

    if (s->mr && npages && spp_section_is_guest_ram(s)) {
        return npages;
    }
    if (s->mr) {
        error_setg(errp, "page 0x%" PRIx64 " (gpa 0x%" HWADDR_PRIx
                   ") is not guest RAM: it belongs to '%s'",
                   gfn, gfn << SPP_PAGE_SHIFT, memory_region_name(s->mr));
    } else {
        error_setg(errp, "page 0x%" PRIx64 " (gpa 0x%" HWADDR_PRIx
                   ") is outside guest RAM", gfn, gfn << SPP_PAGE_SHIFT);
    }
    return 0;
}

static bool spp_check_range(uint64_t gfn, uint64_t npages, Error **errp)
{
    if (npages == 0) {
        error_setg(errp, "npages must be at least 1");
        return false;
    }
    if (gfn >= SPP_GFN_LIMIT || npages > SPP_GFN_LIMIT - gfn) {
        error_setg(errp, "gfn range 0x%" PRIx64 " + %" PRIu64
                   " pages overflows the guest-physical address space",
                   gfn, npages);
        return false;
    }
    return spp_for_each_section(gfn, npages, spp_check_section, errp);
}

/* Store and enforce the ranges, all or nothing.  Called with the BQL. */
static bool spp_apply_ranges(const SppRange *r, size_t n, Error **errp)
{
    g_autofree uint32_t *old = NULL;
    uint64_t total = 0, i, k;
    size_t j;

    for (j = 0; j < n; j++) {
        total += r[j].npages;
    }

    old = g_try_new(uint32_t, total);
    if (!old) {
        error_setg(errp, "too many pages in one request (%" PRIu64 ")",
                   total);
        return false;
    }
    spp_lock();
    for (j = 0, k = 0; j < n; j++) {
        for (i = 0; i < r[j].npages; i++) {
            old[k++] = spp_get_vector(r[j].gfn + i);
        }
        spp_store_range(r[j].gfn, r[j].npages, r[j].wp);
    }
    spp_unlock();
    if (!spp.ops->update(r, n, old, errp)) {
        /* Undo in reverse order, so overlapping ranges get their values. */
        spp_lock();
        for (j = n; j-- > 0;) {
            k -= r[j].npages;
            for (i = 0; i < r[j].npages; i++) {
                spp_store_range(r[j].gfn + i, 1, old[k + i]);
            }
        }
        spp_unlock();
        return false;
    }
    for (j = 0; j < n; j++) {
        trace_spp_set(r[j].gfn, r[j].npages, r[j].wp, spp.nprot);
    }
    spp_writers_update();
    return true;
}

static bool spp_check_ranges(const SppRange *r, size_t n, Error **errp)
{
    size_t j;

    for (j = 0; j < n; j++) {
        if (!spp_check_range(r[j].gfn, r[j].npages, errp)) {
            if (n > 1) {
                error_prepend(errp, "entry %zu: ", j);
            }
            return false;
        }
    }
    return true;
}

bool spp_set_ranges(const SppRange *r, size_t n, Error **errp)
{
    return spp_check_ranges(r, n, errp) && spp_apply_ranges(r, n, errp);
}

/*
 * A monitor request: the ranges are valid, no writer SPP cannot judge
 * could change what they protect (unless the user allows it), then
 * they are applied.
 */
static void spp_monitor_set(const SppRange *r, size_t n, Error **errp)
{
    if (spp_check_ranges(r, n, errp) && spp_writers_check(r, n, errp)) {
        spp_apply_ranges(r, n, errp);
    }
}

void spp_forget_ranges(const SppRange *r, size_t n)
{
    Error *err = NULL;

    /* A backend may refuse (no memslot to spare): try again later. */
    if (!spp_apply_ranges(r, n, &err)) {
        warn_report_err_once(err);
    }
}

/* What target code tells of a vCPU writer (see SppCpuWriter). */
static SppWriterReadFn *spp_writer_readers[2];

void spp_add_writer_reader(SppWriterReadFn *fn)
{
    unsigned i;

    for (i = 0; i < ARRAY_SIZE(spp_writer_readers); i++) {
        if (!spp_writer_readers[i]) {
            spp_writer_readers[i] = fn;
            return;
        }
    }
    g_assert_not_reached();
}

static void spp_read_writer(CPUState *cpu, uintptr_t ra, SppCpuWriter *w)
{
    unsigned i;

    for (i = 0; i < ARRAY_SIZE(spp_writer_readers); i++) {
        if (spp_writer_readers[i] && spp_writer_readers[i](cpu, ra, w)) {
            return;
        }
    }
}

static void spp_send_event(hwaddr gpa, unsigned size, uint64_t blocked_gpa,
                           bool from_cpu, int cpu_index, SppPolicy action,
                           const uint64_t *data, uintptr_t ra)
{
    /* As monitor_qapi_event_init(): the virtual clock under qtest. */
    int64_t now = qemu_clock_get_ns(qtest_enabled() ? QEMU_CLOCK_VIRTUAL :
                                    QEMU_CLOCK_REALTIME);
    SppCpuWriter w = { 0 };
    g_autofree char *device = NULL;

    if (now - spp.window_start >= NANOSECONDS_PER_SECOND) {
        spp.window_start = now;
        spp.window_events = 0;
    }
    if (spp.event_rate && spp.window_events >= spp.event_rate) {
        spp.events_suppressed++;
        spp.pending_suppressed++;
        return;
    }
    spp.window_events++;
    spp.events_sent++;
    /* Only for an event sent: a violation's cost stays where it was. */
    if (from_cpu) {
        spp_read_writer(current_cpu, ra, &w);
    } else {
        device = spp_dma_writer();
    }
    qapi_event_send_spp_violation(gpa, blocked_gpa >> SPP_PAGE_SHIFT,
                                  spp_subpage_of(blocked_gpa),
                                  size,
                                  from_cpu ? SPP_SOURCE_CPU : SPP_SOURCE_DEVICE,
                                  from_cpu, cpu_index,
                                  w.has_pc, w.pc, w.has_ring, w.ring,
                                  w.has_pt_root, w.pt_root, device,
                                  data != NULL, data ? *data : 0,
                                  action, spp.pending_suppressed);
    spp.pending_suppressed = 0;
}

/*
 * The backends learn of the sub-pages the "unprotect" policy opened from
 * the main loop: a change of enforcement needs the BQL, and may fail (a
 * memslot more), which must not harm the guest.  The vector is already
 * open, so the judgement lets the writes through meanwhile.
 */
static void spp_opened_bh(void *opaque)
{
    g_autoptr(GArray) q = NULL;
    guint i;

    spp_lock();
    q = spp.opened;
    spp.opened = NULL;
    spp_unlock();
    for (i = 0; q && i < q->len; i++) {
        SppOpened *o = &g_array_index(q, SppOpened, i);
        SppRange r = { .gfn = o->gfn, .npages = 1 };
        Error *err = NULL;

        spp_lock();
        r.wp = spp_get_vector(o->gfn);
        spp_store_range(o->gfn, 1, r.wp);   /* drops an empty chunk */
        spp_unlock();
        if (!spp.ops->update(&r, 1, &o->old, &err)) {
            warn_report_err_once(err);
        }
    }
}

/*
 * Open sub-page @sub of protected page @gfn in place, with @lock held:
 * only a vector changes, never the shape of the chunk tree, which
 * readers holding only the BQL may walk.
 */
static void spp_open_subpage(uint64_t gfn, unsigned sub)
{
    SppChunk *c = spp_chunk(gfn, false);
    uint32_t *v, old;
    SppOpened o;
    guint i;

    if (!c) {
        return;
    }
    v = &c->vec[gfn & (SPP_CHUNK_PAGES - 1)];
    old = *v;
    if ((old >> sub) & 1) {
        return;
    }
    qatomic_set(v, old | (1U << sub));
    if (*v == SPP_WP_ALL) {
        c->nprot--;
        qatomic_set(&spp.nprot, spp.nprot - 1);
    }
    if (!spp.opened) {
        spp.opened = g_array_new(false, false, sizeof(SppOpened));
        aio_bh_schedule_oneshot(qemu_get_aio_context(), spp_opened_bh, NULL);
    }
    for (i = 0; i < spp.opened->len; i++) {
        if (g_array_index(spp.opened, SppOpened, i).gfn == gfn) {
            return;
        }
    }
    o = (SppOpened) { .gfn = gfn, .old = old };
    g_array_append_val(spp.opened, o);
}


/*
 * The TCG store access whose violation was counted last on this thread,
 * and where its last judged piece ended.
 */
static __thread uint64_t spp_counted_seq = UINT64_MAX;
static __thread hwaddr spp_counted_end;

/*
 * TCG splits one store access into naturally aligned pieces; KVM's
 * emulator sends it whole.  True when this write is a further piece of
 * the TCG access that already counted a violation: it counts nothing
 * and sends no event, so both accelerators count alike.
 */
static bool spp_same_access(bool from_cpu, hwaddr gpa, unsigned size)
{
    bool same = from_cpu && tcg_enabled() &&
                memory_write_trap_store_seq() == spp_counted_seq &&
                gpa == spp_counted_end;

    if (same) {
        spp_counted_end = gpa + size;
    }
    return same;
}

/*
 * The judgement itself: which of the @size bytes at @gpa the vectors let
 * through (@allowed), and the first one they do not (*@first_blocked).
 * Returns how many they do not.
 */
static unsigned spp_judge(hwaddr gpa, unsigned size, bool *allowed,
                          hwaddr *first_blocked)
{
    uint64_t gfn = UINT64_MAX;
    uint32_t vec = SPP_WP_ALL;
    unsigned i, nblocked = 0;

    assert(size >= 1 && size <= SPP_MAX_ACCESS);
    for (i = 0; i < size; i++) {
        hwaddr a = gpa + i;

        if (a >> SPP_PAGE_SHIFT != gfn) {
            gfn = a >> SPP_PAGE_SHIFT;
            vec = spp_get_vector(gfn);
        }
        allowed[i] = (vec >> spp_subpage_of(a)) & 1;
        if (!allowed[i] && !nblocked++) {
            *first_blocked = a;
        }
    }
    return nblocked;
}

/* The policy @action on a write the vectors blocked in part */
static void spp_apply_policy(SppPolicy action, hwaddr gpa, unsigned size,
                             unsigned nblocked, bool *allowed)
{
    unsigned i;

    switch (action) {
    case SPP_POLICY_BLOCK:
        spp.bytes_blocked += nblocked;
        break;
    case SPP_POLICY_PAUSE:
        spp.bytes_blocked += nblocked;
        if (runstate_is_running()) {
            qemu_system_vmstop_request_prepare();
            qemu_system_vmstop_request(RUN_STATE_PAUSED);
            /*
             * The writing vCPU stops now, as vm_stop() from a vCPU does:
             * it runs no further instruction (KVM would enter the guest
             * again, TCG the next block) before the main loop stops the
             * VM.
             */
            cpu_stop_current();
        } else if (current_cpu) {
            cpu_exit(current_cpu);
        }
        break;
    case SPP_POLICY_UNPROTECT:
        for (i = 0; i < size; i++) {
            hwaddr a = gpa + i;

            if (!allowed[i]) {
                spp_open_subpage(a >> SPP_PAGE_SHIFT, spp_subpage_of(a));
            }
            allowed[i] = true;
        }
        break;
    case SPP_POLICY_REPORT:
        for (i = 0; i < size; i++) {
            allowed[i] = true;
        }
        break;
    default:
        g_assert_not_reached();
    }
}

/*
 * What a violation does besides the policy: count it, once per access
 * (a further piece of a TCG access counts nothing), and send its event.
 * Returns whether it counted.
 */
static bool spp_count_violation(hwaddr gpa, unsigned size, bool from_cpu)
{
    if (spp_same_access(from_cpu, gpa, size)) {
        return false;
    }
    spp.violations++;
    if (from_cpu) {
        spp.violations_cpu++;
    } else {
        spp.violations_device++;
    }
    if (from_cpu && tcg_enabled()) {
        spp_counted_seq = memory_write_trap_store_seq();
        spp_counted_end = gpa + size;
    }
    return true;
}

static bool spp_judge_write_locked(hwaddr gpa, unsigned size,
                                   MemTxAttrs attrs, const uint64_t *data,
                                   uintptr_t ra, bool *allowed)
{
    bool from_cpu = current_cpu && !attrs.unspecified;
    int cpu_index = from_cpu ? current_cpu->cpu_index : -1;
    SppPolicy action = spp.policy;
    hwaddr first_blocked = 0;
    unsigned nblocked;
    bool counted;

    nblocked = spp_judge(gpa, size, allowed, &first_blocked);
    if (!nblocked) {
        return false;
    }
    counted = spp_count_violation(gpa, size, from_cpu);
    spp_apply_policy(action, gpa, size, nblocked, allowed);
    trace_spp_violation(gpa, size, first_blocked, cpu_index,
                        SppPolicy_str(action));
    if (counted) {
        uint64_t value = data ? *data & MAKE_64BIT_MASK(0, size * 8) : 0;

        spp_send_event(gpa, size, first_blocked, from_cpu, cpu_index,
                       action, data ? &value : NULL, ra);
    }
    return true;
}

uint8_t spp_judge_write_mask(hwaddr gpa, unsigned size, MemTxAttrs attrs,
                             uint64_t data, uintptr_t ra)
{
    bool allowed[SPP_MAX_ACCESS];
    uint8_t mask = 0;
    unsigned i;

    if (!spp_judge_write_locked(gpa, size, attrs, &data, ra, allowed)) {
        return 0xff;
    }
    for (i = 0; i < size; i++) {
        mask |= allowed[i] << i;
    }
    return mask;
}

bool spp_judge_write(hwaddr gpa, unsigned size, MemTxAttrs attrs,
                     const uint64_t *data, bool *allowed)
{
    bool violated;

    spp_lock();
    violated = spp_judge_write_locked(gpa, size, attrs, data, 0, allowed);
    spp_unlock();
    return violated;
}

/* QMP */

void qmp_set_subpage(uint64_t base_gfn, uint64_t npages, uint32_t wp_map,
                     Error **errp)
{
    SppRange r = { .gfn = base_gfn, .npages = npages, .wp = wp_map };

    spp_monitor_set(&r, 1, errp);
}

void qmp_set_subpages(uint64List *gfns, uint32_t wp_map, Error **errp)
{
    g_autofree SppRange *r = NULL;
    uint64List *l;
    size_t n = 0;

    for (l = gfns; l; l = l->next) {
        n++;
    }
    if (!n) {
        error_setg(errp, "gfns must not be empty");
        return;
    }
    r = g_new(SppRange, n);
    for (l = gfns, n = 0; l; l = l->next, n++) {
        r[n].gfn = l->value;
        r[n].npages = 1;
        r[n].wp = wp_map;
    }
    spp_monitor_set(r, n, errp);
}

void qmp_get_subpage(uint64_t base_gfn, uint64_t npages, const char *filename,
                     Error **errp)
{
    g_autofree uint32_t *buf = NULL;
    g_autoptr(GError) gerr = NULL;
    uint64_t i;

    if (!spp_check_range(base_gfn, npages, errp)) {
        return;
    }
    buf = g_new(uint32_t, npages);
    for (i = 0; i < npages; i++) {
        buf[i] = cpu_to_le32(spp_get_vector(base_gfn + i));
    }
    if (!g_file_set_contents(filename, (const char *)buf,
                             npages * sizeof(uint32_t), &gerr)) {
        error_setg(errp, "cannot write '%s': %s", filename, gerr->message);
    }
}

SubpageInfoList *qmp_query_subpage(uint64_t base_gfn, uint64_t npages,
                                   Error **errp)
{
    SubpageInfoList *head = NULL, **tail = &head;
    uint64_t i;

    if (npages > SPP_QUERY_MAX_PAGES) {
        error_setg(errp, "npages %" PRIu64 " is above the limit of %d pages "
                   "per query-subpage (use get-subpage for more)",
                   npages, SPP_QUERY_MAX_PAGES);
        return NULL;
    }
    if (!spp_check_range(base_gfn, npages, errp)) {
        return NULL;
    }
    for (i = 0; i < npages; i++) {
        SubpageInfo *info = g_new0(SubpageInfo, 1);

        info->gfn = base_gfn + i;
        info->wp_map = spp_get_vector(base_gfn + i);
        QAPI_LIST_APPEND(tail, info);
    }
    return head;
}

SppInfo *qmp_query_spp(Error **errp)
{
    SppInfo *info = g_new0(SppInfo, 1);

    info->backend = spp.ops->kind;
    info->backend_reason = g_strdup(spp.reason);
    info->policy = spp.policy;
    info->event_rate = spp.event_rate;
    info->protected_pages = spp.nprot;
    info->regions = spp.ops->regions ? spp.ops->regions() : 0;
    info->trapped_unprotected_pages = spp.ops->trapped_unprotected ?
                                      spp.ops->trapped_unprotected() : 0;
    spp_lock();
    info->violations = spp.violations;
    info->violations_cpu = spp.violations_cpu;
    info->violations_device = spp.violations_device;
    info->bytes_blocked = spp.bytes_blocked;
    info->events_sent = spp.events_sent;
    info->events_suppressed = spp.events_suppressed;
    spp_unlock();
    info->unenforced = spp_get_unenforced();
    info->writers = spp_writers_list();
    return info;
}

void qmp_set_spp_policy(SppPolicy policy, bool has_event_rate,
                        uint32_t event_rate, bool has_unenforced,
                        SppUnenforced unenforced, Error **errp)
{
    spp_lock();
    qatomic_set(&spp.policy, policy);
    if (has_event_rate) {
        spp.event_rate = event_rate;
    }
    spp_unlock();
    if (has_unenforced) {
        spp_set_unenforced(unenforced);
    }
    trace_spp_policy(SppPolicy_str(policy), spp.event_rate);
}

/*
 * Command line:
 * -spp policy=block|unprotect|report|pause,event-rate=N,unenforced=refuse|allow
 */

static QemuOptsList qemu_spp_opts = {
    .name = "spp",
    .implied_opt_name = "policy",
    .head = QTAILQ_HEAD_INITIALIZER(qemu_spp_opts.head),
    .desc = {
        {
            .name = "policy",
            .type = QEMU_OPT_STRING,
            .help = "what a blocked write does: block, unprotect, "
                    "report or pause",
        }, {
            .name = "event-rate",
            .type = QEMU_OPT_NUMBER,
            .help = "most SPP_VIOLATION events per second (0: no limit)",
        }, {
            .name = "unenforced",
            .type = QEMU_OPT_STRING,
            .help = "refuse (default) or allow a protection that a writer "
                    "SPP cannot judge (vhost, VFIO, KVM PV area) could "
                    "bypass",
        },
        { /* end of list */ }
    },
};

void spp_parse_cmdline(const char *optarg)
{
    QemuOpts *opts = qemu_opts_parse_noisily(&qemu_spp_opts, optarg, true);
    const char *policy;

    if (!opts) {
        exit(1);
    }
    policy = qemu_opt_get(opts, "policy");
    if (policy) {
        int p = qapi_enum_parse(&SppPolicy_lookup, policy, -1, NULL);

        if (p < 0) {
            error_report("-spp: invalid policy '%s' (expected block, "
                         "unprotect, report or pause)", policy);
            exit(1);
        }
        spp.policy = p;
    }
    if (qemu_opt_get(opts, "event-rate")) {
        uint64_t rate = qemu_opt_get_number(opts, "event-rate", 0);

        if (rate > UINT32_MAX) {
            error_report("-spp: event-rate must be at most %u", UINT32_MAX);
            exit(1);
        }
        spp.event_rate = rate;
    }
    policy = qemu_opt_get(opts, "unenforced");
    if (policy) {
        int u = qapi_enum_parse(&SppUnenforced_lookup, policy, -1, NULL);

        if (u < 0) {
            error_report("-spp: invalid unenforced '%s' (expected refuse "
                         "or allow)", policy);
            exit(1);
        }
        spp_set_unenforced(u);
    }
    qemu_opts_del(opts);
}

/*
 * Migration and snapshots: the vectors and the policy travel in an "spp"
 * section, sent only while a page is protected so that a QEMU without
 * SPP can still receive a VM that uses none.  The counters stay behind.
 */

static gboolean spp_flatten(gpointer key, gpointer value, gpointer data)
{
    uint64_t base = (uint64_t)GPOINTER_TO_SIZE(key) << SPP_CHUNK_SHIFT;
    SppChunk *c = value;
    unsigned i;

    for (i = 0; i < SPP_CHUNK_PAGES; i++) {
        if (c->vec[i] != SPP_WP_ALL) {
            spp.mig_gfns[spp.mig_n] = base + i;
            spp.mig_vecs[spp.mig_n] = c->vec[i];
            spp.mig_n++;
        }
    }
    return false;
}

static bool spp_vmstate_needed(void *opaque)
{
    return spp.nprot != 0;
}

static int spp_pre_save(void *opaque)
{
    g_free(spp.mig_gfns);
    g_free(spp.mig_vecs);
    spp.mig_gfns = g_new(uint64_t, spp.nprot);
    spp.mig_vecs = g_new(uint32_t, spp.nprot);
    spp.mig_n = 0;
    spp.mig_policy = spp.policy;
    spp_lock();
    g_tree_foreach(spp.chunks, spp_flatten, NULL);
    assert(spp.mig_n == spp.nprot);
    spp_unlock();
    return 0;
}

static int spp_post_save(void *opaque)
{
    g_clear_pointer(&spp.mig_gfns, g_free);
    g_clear_pointer(&spp.mig_vecs, g_free);
    spp.mig_n = 0;
    return 0;
}

static int spp_post_load(void *opaque, int version_id)
{
    g_autoptr(GArray) runs = spp_protected_runs();
    g_autofree SppRange *r = NULL;
    Error *err = NULL;
    size_t n = 0;
    guint i;

    if (spp.mig_policy >= SPP_POLICY__MAX) {
        error_report("spp: invalid policy %u in the migration stream",
                     spp.mig_policy);
        return -EINVAL;
    }
    spp_lock();
    qatomic_set(&spp.policy, spp.mig_policy);
    spp_unlock();

    /* Replace whatever was protected (loadvm) by the incoming state. */
    r = g_new(SppRange, runs->len + spp.mig_n);
    for (i = 0; i < runs->len; i++) {
        SppRun *run = &g_array_index(runs, SppRun, i);
        r[n++] = (SppRange) { run->gfn, run->npages, SPP_WP_ALL };
    }
    for (i = 0; i < spp.mig_n; i++) {
        r[n++] = (SppRange) { spp.mig_gfns[i], 1, spp.mig_vecs[i] };
    }
    spp_post_save(NULL);
    if (n && !spp_set_ranges(r, n, &err)) {
        error_report_err(err);
        return -EINVAL;
    }
    return 0;
}

static const VMStateDescription vmstate_spp = {
    .name = "spp",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = spp_vmstate_needed,
    .pre_save = spp_pre_save,
    .post_save = spp_post_save,
    .post_load = spp_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(mig_policy, SppState),
        VMSTATE_UINT32(event_rate, SppState),
        VMSTATE_UINT32(mig_n, SppState),
        VMSTATE_VARRAY_UINT32_ALLOC(mig_gfns, SppState, mig_n, 0,
                                    vmstate_info_uint64, uint64_t),
        VMSTATE_VARRAY_UINT32_ALLOC(mig_vecs, SppState, mig_n, 0,
                                    vmstate_info_uint32, uint32_t),
        VMSTATE_END_OF_LIST()
    },
};

/*
 * Like migration/global_state.c, this is machine-wide state with no
 * device to own it: registered once the machine exists.
 */
static void spp_machine_done(Notifier *n, void *unused)
{
    vmstate_register(NULL, 0, &vmstate_spp, &spp);
}

static Notifier spp_machine_done_notifier = {
    .notify = spp_machine_done,
};

/* The state exists from start-up; a backend installs itself then too. */
static void spp_register(void)
{
    qemu_mutex_init(&spp.lock);
    spp.chunks = g_tree_new_full(spp_key_cmp, NULL, NULL, g_free);
    qemu_add_machine_init_done_notifier(&spp_machine_done_notifier);
}
type_init(spp_register)
