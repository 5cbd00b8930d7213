/*
 * Write traps on RAM (see include/exec/ram-write-trap.h)
 *
 * Each RAMBlock with trapped pages has a bitmap, one bit per target
 * page, allocated on the first trap and freed (after an RCU grace
 * period) when its last trap is released or with the block.  The
 * memory core consults it where it decides that a write may go
 * straight to host memory: flatview_translate() and the region caches
 * hand trapped pages to the write-trap region below, and TCG's TLB fill
 * marks their store entries as I/O pointing at the same region.  The
 * region's offsets are ram_addr_t, so one region, at a fixed section
 * index in every dispatch map, serves all RAM.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "qemu/timer.h"
#include "exec/cputlb.h"
#include "exec/ram_addr.h"
#include "exec/ram-write-trap.h"
#include "hw/core/cpu.h"
#include "system/cpu-timers.h"
#include "system/qtest.h"
#include "system/runstate.h"
#include "system/tcg.h"
#include "trace.h"

static QLIST_HEAD(, MemoryWriteTrapListener) write_trap_listeners =
    QLIST_HEAD_INITIALIZER(write_trap_listeners);
static MemoryRegion write_trap_mr;
static uint64_t write_trap_pages;

/* Pages the accelerator lets its vCPUs write (memory_region_lift_write_trap) */
typedef struct WriteTrapLifted {
    RAMBlock *rb;
    uint64_t page;
} WriteTrapLifted;
static WriteTrapLifted write_trap_lifted[MEMORY_WRITE_TRAP_MAX_LIFTED];
static unsigned write_trap_nlifted;
static unsigned write_trap_depth;
static bool write_trap_flush_pending;
/* MemoryWriteTrapChange: what the listeners learn at the commit */
static GArray *write_trap_changes;

__thread MemoryWriteTrapStore memory_write_trap_cur_store;
__thread AddressSpace *memory_write_trap_cur_as;

uintptr_t memory_write_trap_store_ra(uint64_t ram_addr)
{
    MemoryWriteTrapStore *st = &memory_write_trap_cur_store;

    return st->mr == &write_trap_mr && ram_addr - st->offset < st->size ?
           st->ra : 0;
}

static MemTxResult write_trap_read(void *opaque, hwaddr addr, uint64_t *data,
                                   unsigned size, MemTxAttrs attrs)
{
    *data = ldn_le_p(qemu_map_ram_ptr(NULL, addr), size);
    return MEMTX_OK;
}

/*
 * Store all @size bytes of @data at @host as one access where the guest
 * made one: an aligned store of 2, 4 or 8 bytes is a single host store,
 * so another vCPU reading the location sees the old or the new value,
 * never a mix (a guest's aligned store is atomic on x86).
 */
static void write_trap_store_whole(uint8_t *host, uint64_t data,
                                   unsigned size)
{
    if (size > 1 && QEMU_IS_ALIGNED((uintptr_t)host, size)) {
        switch (size) {
        case 2:
            qatomic_set((uint16_t *)host, cpu_to_le16(data));
            return;
        case 4:
            qatomic_set((uint32_t *)host, cpu_to_le32(data));
            return;
        case 8:
            qatomic_set__nocheck((uint64_t *)host, cpu_to_le64(data));
            return;
        }
    }
    stn_le_p(host, size, data);
}

void memory_region_ram_write_masked(MemoryRegion *mr, hwaddr offset,
                                    uint64_t data, unsigned size,
                                    uint8_t mask)
{
    uint8_t *host = (uint8_t *)memory_region_get_ram_ptr(mr) + offset;
    uint8_t full = MAKE_64BIT_MASK(0, size), bytes[8];
    unsigned i, first, last;

    assert(size >= 1 && size <= sizeof(bytes));
    mask &= full;
    if (!mask) {
        /*
         * Nothing landed: the page is not dirty and its translated code
         * is still valid (a guest retrying a blocked write must not make
         * TCG retranslate it, nor migration send it again).
         */
        return;
    }
    if (mask == full) {
        write_trap_store_whole(host, data, size);
        first = 0;
        last = size - 1;
    } else {
        stn_le_p(bytes, size, data);
        first = ctz32(mask);
        last = 31 - clz32(mask);
        for (i = first; i <= last; i++) {
            if (mask & (1U << i)) {
                host[i] = bytes[i];
            }
        }
    }
    /* Migration dirty tracking and TCG's translated-code invalidation. */
    invalidate_and_set_dirty(mr, offset + first, last - first + 1);
}

static void write_trap_store(hwaddr addr, uint64_t data, unsigned size,
                             MemTxAttrs attrs)
{
    ram_addr_t offset;
    RAMBlock *rb;
    RAMWriteTrap *t;
    MemoryWriteTrapHandler *h;

    RCU_READ_LOCK_GUARD();
    rb = qemu_ram_block_from_host(qemu_map_ram_ptr(NULL, addr), false,
                                  &offset);
    assert(rb);
    t = qatomic_rcu_read(&rb->write_trap);
    if (!t) {
        /*
         * A stale TLB entry or write cache: the block's last trap went.
         * Not judged: a trap set meanwhile forced the caches to be made
         * again, and flushed the TLBs, before its set-subpage returned;
         * a write already past this point is one that was under way.
         */
        memory_region_ram_write_masked(rb->mr, offset, data, size, 0xff);
        return;
    }
    /*
     * A write cache of a block with traps, or a stale TLB entry, also
     * brings writes to pages that are not trapped (any more, or yet):
     * the handler judges those too, which keeps them ordered with its
     * changes.
     */
    h = t->handler;
    h->lock(h);
    memory_region_ram_write_masked(rb->mr, offset, data, size,
                                   h->judge(h, rb->mr, offset, size, attrs,
                                            data));
    h->unlock(h);
}

/*
 * Translation clips to the page, but a write cache's accesses are not
 * clipped: an 8-byte access may cross into the next page.
 */
static MemTxResult write_trap_write(void *opaque, hwaddr addr, uint64_t data,
                                    unsigned size, MemTxAttrs attrs)
{
    hwaddr page = qemu_target_page_size();
    unsigned first = MIN(size, page - (addr & (page - 1)));

    write_trap_store(addr, data, first, attrs);
    if (first < size) {
        write_trap_store(addr + first, data >> (first * 8), size - first,
                         attrs);
    }
    return MEMTX_OK;
}

/*
 * The region's accesses do not take the BQL (memory_region_is_write_trap()
 * in prepare_mmio_access()): an iothread's ring update that lands on a
 * trapped page must not wait for a main loop that may itself be waiting
 * for the iothread (stop, drain).  The handler is thread-safe instead.
 */
static const MemoryRegionOps write_trap_ops = {
    .read_with_attrs = write_trap_read,
    .write_with_attrs = write_trap_write,
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

MemoryRegion *memory_write_trap_region(void)
{
    if (!write_trap_mr.ops) {
        /* Like io_mem_unassigned: no name, so not a QOM child. */
        memory_region_init_io(&write_trap_mr, NULL, &write_trap_ops, NULL,
                              NULL, UINT64_MAX);
    }
    return &write_trap_mr;
}

bool address_space_write_trapped(AddressSpace *as, hwaddr addr,
                                 unsigned size, MemTxAttrs attrs)
{
    hwaddr xlat, l = size;
    MemoryRegion *mr;

    if (!qatomic_read(&write_trap_pages)) {
        return false;
    }
    RCU_READ_LOCK_GUARD();
    mr = address_space_translate(as, addr, &xlat, &l, true, attrs);
    return mr == &write_trap_mr && l >= size;
}

bool address_space_write_trap_rmw(AddressSpace *as, hwaddr addr,
                                  MemTxAttrs attrs, uint64_t data,
                                  unsigned size, MemoryWriteTrapRmwFn *fn,
                                  void *opaque)
{
    uint8_t mask, full = MAKE_64BIT_MASK(0, size);
    hwaddr xlat, l = size;
    ram_addr_t offset;
    MemoryRegion *mr;
    RAMBlock *rb;
    RAMWriteTrap *t;
    MemoryWriteTrapHandler *h;
    void *host;

    assert(size >= 1 && size <= 8);
    RCU_READ_LOCK_GUARD();
    mr = address_space_translate(as, addr, &xlat, &l, true, attrs);
    if (mr != &write_trap_mr || l < size) {
        return false;
    }
    host = qemu_map_ram_ptr(NULL, xlat);
    rb = qemu_ram_block_from_host(host, false, &offset);
    t = rb ? qatomic_rcu_read(&rb->write_trap) : NULL;
    if (!t || !test_bit(offset >> qemu_target_page_bits(), t->map)) {
        return false;
    }
    h = t->handler;
    h->lock(h);
    mask = h->judge(h, rb->mr, offset, size, attrs, data) & full;
    if (mask != full) {
        /* Blocked in part: no atomicity to keep, only what may land. */
        memory_region_ram_write_masked(rb->mr, offset, data, size, mask);
    } else {
        fn(host, opaque);
        invalidate_and_set_dirty(rb->mr, offset, size);
    }
    h->unlock(h);
    return true;
}

bool memory_region_is_write_trap(MemoryRegion *mr)
{
    return mr == &write_trap_mr;
}

bool memory_region_write_trap_no_recompile(MemoryRegion *mr, hwaddr offset)
{
    RAMBlock *rb;
    RAMWriteTrap *t;
    ram_addr_t in_block;
    MemoryWriteTrapHandler *h;

    /* Offsets in the write-trap region are ram_addr_t. */
    if (mr != &write_trap_mr || icount_enabled() ||
        (offset & ~qemu_target_page_mask()) > qemu_target_page_size() - 16 ||
        !cpu_physical_memory_get_dirty_flag(offset, DIRTY_MEMORY_CODE)) {
        return false;
    }
    RCU_READ_LOCK_GUARD();
    rb = qemu_ram_block_from_host(qemu_map_ram_ptr(NULL, offset), false,
                                  &in_block);
    t = rb ? qatomic_rcu_read(&rb->write_trap) : NULL;
    h = t ? t->handler : NULL;
    return !h || !h->exact || !h->exact(h);
}

void memory_write_trap_listener_register(MemoryWriteTrapListener *l)
{
    assert(bql_locked());
    QLIST_INSERT_HEAD(&write_trap_listeners, l, next);
}

void memory_write_trap_listener_unregister(MemoryWriteTrapListener *l)
{
    assert(bql_locked());
    QLIST_REMOVE(l, next);
}

/* Whether a listener keeps the vCPUs' stores off trapped pages. */
static bool write_trap_vcpu_listener(void)
{
    MemoryWriteTrapListener *l;

    QLIST_FOREACH(l, &write_trap_listeners, next) {
        if (l->vcpu_stores) {
            return true;
        }
    }
    return false;
}

bool memory_write_trap_accel_ready(void)
{
    return tcg_enabled() || qtest_enabled() || write_trap_vcpu_listener();
}

static void write_trap_tell_listeners(const MemoryWriteTrapChange *c,
                                      size_t n)
{
    MemoryWriteTrapListener *l;

    QLIST_FOREACH(l, &write_trap_listeners, next) {
        l->changed(l, c, n);
    }
}

uint64_t memory_region_write_trap_run(MemoryRegion *mr, hwaddr offset,
                                      uint64_t len, bool *trapped)
{
    RAMBlock *rb = mr->ram_block;
    RAMWriteTrap *t = rb ? qatomic_read(&rb->write_trap) : NULL;
    unsigned long *map = t ? t->map : NULL;
    unsigned bits = qemu_target_page_bits();
    uint64_t page = offset >> bits, end = (offset + len) >> bits, next;

    unsigned i;

    *trapped = map && test_bit(page, map);
    if (!map) {
        return len;
    }
    next = *trapped ? find_next_zero_bit(map, end, page) :
                      find_next_bit(map, end, page);
    /* A lifted page is a run of its own, not trapped for the vCPUs. */
    for (i = 0; *trapped && i < write_trap_nlifted; i++) {
        WriteTrapLifted *l = &write_trap_lifted[i];

        if (l->rb == rb && l->page == page) {
            *trapped = false;
            next = page + 1;
            break;
        }
        if (l->rb == rb && l->page > page && l->page < next) {
            next = l->page;
        }
    }
    return MIN(len, (next - page) << bits);
}

/* Tell the listeners of a change now, or at the batch's commit. */
static void write_trap_tell(MemoryRegion *mr, hwaddr offset, uint64_t size,
                            bool now)
{
    MemoryWriteTrapChange c = { .mr = mr, .offset = offset, .size = size };

    if (QLIST_EMPTY(&write_trap_listeners)) {
        return;
    }
    if (now || !write_trap_depth) {
        write_trap_tell_listeners(&c, 1);
        return;
    }
    if (!write_trap_changes) {
        write_trap_changes = g_array_new(false, false, sizeof(c));
    }
    memory_region_ref(mr);
    g_array_append_val(write_trap_changes, c);
}

static gint write_trap_change_cmp(gconstpointer a, gconstpointer b)
{
    const MemoryWriteTrapChange *x = a, *y = b;

    if (x->mr != y->mr) {
        return (uintptr_t)x->mr < (uintptr_t)y->mr ? -1 : 1;
    }
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The changes of a batch, to each listener in one call */
static void write_trap_tell_batch(void)
{
    GArray *c = write_trap_changes;
    guint i;

    if (!c || !c->len) {
        return;
    }
    write_trap_changes = NULL;
    g_array_sort(c, write_trap_change_cmp);
    write_trap_tell_listeners(&g_array_index(c, MemoryWriteTrapChange, 0),
                              c->len);
    for (i = 0; i < c->len; i++) {
        memory_region_unref(g_array_index(c, MemoryWriteTrapChange, i).mr);
    }
    g_array_free(c, true);
}

void memory_region_lift_write_trap(MemoryRegion *mr,
                                   MemoryWriteTrapHandler *handler,
                                   hwaddr offset, bool lifted)
{
    RAMBlock *rb = mr->ram_block;
    uint64_t page = offset >> qemu_target_page_bits();
    unsigned i;

    assert(bql_locked());
    assert(!lifted || memory_region_write_trapped(mr, offset));
    assert(!rb->write_trap || rb->write_trap->handler == handler);
    if (!write_trap_vcpu_listener()) {
        /* No accelerator to tell: the trap itself goes (x-spp-step). */
        memory_region_set_write_trap(mr, handler,
                                     offset & qemu_target_page_mask(),
                                     qemu_target_page_size(), !lifted);
        return;
    }
    for (i = 0; i < write_trap_nlifted; i++) {
        WriteTrapLifted *l = &write_trap_lifted[i];

        if (l->rb == rb && l->page == page) {
            break;
        }
    }
    if (lifted == (i < write_trap_nlifted)) {
        return;
    }
    if (lifted) {
        assert(write_trap_nlifted < MEMORY_WRITE_TRAP_MAX_LIFTED);
        write_trap_lifted[write_trap_nlifted++] = (WriteTrapLifted) {
            .rb = rb, .page = page,
        };
    } else {
        write_trap_lifted[i] = write_trap_lifted[--write_trap_nlifted];
    }
    write_trap_tell(mr, offset & qemu_target_page_mask(),
                    qemu_target_page_size(), true);
}

uint64_t memory_write_trap_count(void)
{
    return write_trap_pages;
}

MemoryRegion *memory_write_trap_translate(MemoryRegion *mr, hwaddr *xlat,
                                          hwaddr *plen)
{
    RAMBlock *rb = mr->ram_block;
    RAMWriteTrap *t = rb ? qatomic_rcu_read(&rb->write_trap) : NULL;
    unsigned bits;
    uint64_t page, end, next;

    if (likely(!t) || !*plen) {
        return mr;
    }
    bits = qemu_target_page_bits();
    page = *xlat >> bits;
    if (test_bit(page, t->map)) {
        *plen = MIN(*plen, ((page + 1) << bits) - *xlat);
        *xlat += rb->offset;
        return &write_trap_mr;
    }
    /* Look no further than the access: its cost must not be the block's. */
    end = MIN(rb->max_length - 1, *xlat + *plen - 1) >> bits;
    next = find_next_bit(t->map, end + 1, page);
    if (next <= end) {
        *plen = MIN(*plen, (next << bits) - *xlat);
    }
    return mr;
}

static void write_trap_flush_work(CPUState *cpu, run_on_cpu_data data)
{
    tlb_flush(cpu);
}

/*
 * Drop the TLB entries through which a vCPU could still store to a
 * newly trapped page directly.  A vCPU flushes its own TLB, so this
 * runs on each vCPU and waits for it.  The work is only queued from a
 * vCPU thread, which cannot wait for the others while it holds the BQL
 * on their behalf, and while the VM is stopped, as a vCPU does its
 * queued work before it runs guest code again; and without @may_wait,
 * for entries that are merely stale (released pages).
 */
static void write_trap_flush_tlbs(bool may_wait)
{
    bool wait = may_wait && !current_cpu && runstate_is_running();
    CPUState *cpu;

    if (!tcg_enabled()) {
        return;
    }
    CPU_FOREACH(cpu) {
        if (!cpu->created || !cpu->halt_cond) {
            continue;
        }
        if (!wait) {
            async_run_on_cpu(cpu, write_trap_flush_work, RUN_ON_CPU_NULL);
        } else {
            run_on_cpu(cpu, write_trap_flush_work, RUN_ON_CPU_NULL);
        }
    }
}

/*
 * Stale store entries of released pages still take the I/O path (and
 * let every byte through): drop them, but once for all the releases of
 * a short while.  A flush costs each vCPU its whole TLB, so a flush per
 * release made a guest that walks its memory lose more than half its
 * speed while the host cleared protections elsewhere, one a millisecond.
 */
#define WRITE_TRAP_RELEASE_FLUSH_MS 50

static void write_trap_release_flush(void *opaque)
{
    write_trap_flush_tlbs(false);
}

static void write_trap_flush_released(void)
{
    static QEMUTimer *timer;

    if (!tcg_enabled()) {
        return;
    }
    if (!timer) {
        timer = timer_new_ms(QEMU_CLOCK_REALTIME, write_trap_release_flush,
                             NULL);
    }
    if (!timer_pending(timer)) {
        timer_mod(timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                         WRITE_TRAP_RELEASE_FLUSH_MS);
    }
}

void memory_write_trap_begin(void)
{
    assert(bql_locked());
    write_trap_depth++;
}

void memory_write_trap_commit(void)
{
    assert(bql_locked() && write_trap_depth);
    if (--write_trap_depth) {
        return;
    }
    write_trap_tell_batch();
    if (!write_trap_flush_pending) {
        return;
    }
    write_trap_flush_pending = false;
    write_trap_flush_tlbs(true);
}

void memory_region_set_write_trap(MemoryRegion *mr,
                                  MemoryWriteTrapHandler *handler,
                                  hwaddr offset, uint64_t size, bool trap)
{
    RAMBlock *rb = mr->ram_block;
    unsigned bits = qemu_target_page_bits();
    uint64_t first, end, changed = 0, i;
    RAMWriteTrap *t;
    unsigned long *map;
    bool fresh = false;

    assert(bql_locked());
    assert(rb && memory_region_is_ram(mr) && size);
    assert(offset < rb->max_length && size <= rb->max_length - offset);
    assert(handler);

    t = rb->write_trap;
    if (!t) {
        if (!trap) {
            return;
        }
        t = g_malloc0(sizeof(*t) + BITS_TO_LONGS(rb->max_length >> bits) *
                      sizeof(unsigned long));
        t->handler = handler;
        qatomic_rcu_set(&rb->write_trap, t);
        fresh = true;
    }
    /* One handler per block at a time. */
    assert(t->handler == handler);
    map = t->map;
    first = offset >> bits;
    end = (offset + size - 1) >> bits;
    for (i = first; i <= end; i++) {
        if (test_bit(i, map) != trap) {
            changed++;
            if (trap) {
                set_bit_atomic(i, map);
            } else {
                clear_bit_atomic(i, map);
            }
        }
    }
    for (i = 0; !trap && i < write_trap_nlifted; i++) {
        if (write_trap_lifted[i].rb == rb &&
            write_trap_lifted[i].page >= first &&
            write_trap_lifted[i].page <= end) {
            /* Released: nothing left to lift. */
            write_trap_lifted[i--] = write_trap_lifted[--write_trap_nlifted];
        }
    }
    if (trap) {
        write_trap_pages += changed;
        t->count += changed;
    } else {
        write_trap_pages -= changed;
        t->count -= changed;
    }
    trace_memory_region_set_write_trap(memory_region_name(mr), offset, size,
                                       trap, changed);
    if (changed) {
        write_trap_tell(mr, offset & qemu_target_page_mask(),
                        ROUND_UP(offset + size, qemu_target_page_size()) -
                        (offset & qemu_target_page_mask()), false);
    }
    if (!t->count) {
        /*
         * The block's last trap is gone: back on the direct path.  A
         * reader still in a critical section sees the old bitmap, with
         * no bit set, which lets every write through.
         */
        qatomic_rcu_set(&rb->write_trap, NULL);
        g_free_rcu(t, rcu);
    }
    if (fresh || !rb->write_trap) {
        /*
         * Region caches made before this block had traps may hold a
         * direct pointer into it, and those made while it had some send
         * every write through the trap region: have their owners make
         * them again.
         */
        memory_region_transaction_force_update();
    }
    if (trap && changed) {
        memory_write_trap_begin();
        write_trap_flush_pending = true;
        memory_write_trap_commit();
    } else if (changed) {
        write_trap_flush_released();
    }
}
