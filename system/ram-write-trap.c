/*
 * Write traps on RAM (see include/exec/ram-write-trap.h)
 *
 * Each RAMBlock with trapped pages has a bitmap, one bit per target
 * page, allocated on the first trap and freed with the block.  The
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
#include "exec/cputlb.h"
#include "exec/ram_addr.h"
#include "exec/ram-write-trap.h"
#include "hw/core/cpu.h"
#include "system/runstate.h"
#include "system/tcg.h"
#include "trace.h"

static MemoryWriteTrapFn *write_trap_fn;
static MemoryWriteTrapAccelFn *write_trap_accel_fn;
static MemoryRegion write_trap_mr;
static uint64_t write_trap_pages;
static unsigned write_trap_depth;
static bool write_trap_flush_pending;

static MemTxResult write_trap_read(void *opaque, hwaddr addr, uint64_t *data,
                                   unsigned size, MemTxAttrs attrs)
{
    *data = ldn_le_p(qemu_map_ram_ptr(NULL, addr), size);
    return MEMTX_OK;
}

void memory_region_ram_write_masked(MemoryRegion *mr, hwaddr offset,
                                    uint64_t data, unsigned size,
                                    uint8_t mask)
{
    uint8_t *host = (uint8_t *)memory_region_get_ram_ptr(mr) + offset;
    uint8_t bytes[8];
    unsigned i;

    assert(size <= sizeof(bytes));
    stn_le_p(bytes, size, data);
    for (i = 0; i < size; i++) {
        if (mask & (1U << i)) {
            host[i] = bytes[i];
        }
    }
    /* Migration dirty tracking and TCG's translated-code invalidation. */
    invalidate_and_set_dirty(mr, offset, size);
}

static void write_trap_store(hwaddr addr, uint64_t data, unsigned size,
                             MemTxAttrs attrs)
{
    ram_addr_t offset;
    RAMBlock *rb = qemu_ram_block_from_host(qemu_map_ram_ptr(NULL, addr),
                                            false, &offset);
    uint8_t mask;

    assert(rb);
    /*
     * A write cache of a block with traps, or a stale TLB entry, also
     * brings writes to pages that are not trapped (any more).
     */
    mask = memory_region_write_trapped(rb->mr, offset) ?
           write_trap_fn(rb->mr, offset, size, attrs) : 0xff;
    memory_region_ram_write_masked(rb->mr, offset, data, size, mask);
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

void memory_write_trap_set_handler(MemoryWriteTrapFn *fn)
{
    assert(!write_trap_pages);
    write_trap_fn = fn;
}

void memory_write_trap_set_accel_hook(MemoryWriteTrapAccelFn *fn)
{
    write_trap_accel_fn = fn;
}

uint64_t memory_region_write_trap_run(MemoryRegion *mr, hwaddr offset,
                                      uint64_t len, bool *trapped)
{
    RAMBlock *rb = mr->ram_block;
    unsigned long *map = rb ? qatomic_read(&rb->write_trap) : NULL;
    unsigned bits = qemu_target_page_bits();
    uint64_t page = offset >> bits, end = (offset + len) >> bits, next;

    *trapped = map && test_bit(page, map);
    if (!map) {
        return len;
    }
    next = *trapped ? find_next_zero_bit(map, end, page) :
                      find_next_bit(map, end, page);
    return MIN(len, (next - page) << bits);
}

uint64_t memory_write_trap_count(void)
{
    return write_trap_pages;
}

MemoryRegion *memory_write_trap_translate(MemoryRegion *mr, hwaddr *xlat,
                                          hwaddr *plen)
{
    RAMBlock *rb = mr->ram_block;
    unsigned long *map = rb ? qatomic_read(&rb->write_trap) : NULL;
    unsigned bits;
    uint64_t page, npages, next;

    if (likely(!map)) {
        return mr;
    }
    bits = qemu_target_page_bits();
    page = *xlat >> bits;
    npages = rb->max_length >> bits;
    if (test_bit(page, map)) {
        *plen = MIN(*plen, ((page + 1) << bits) - *xlat);
        *xlat += rb->offset;
        return &write_trap_mr;
    }
    next = find_next_bit(map, npages, page);
    if (next < npages) {
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
 * queued work before it runs guest code again.
 */
static void write_trap_flush_tlbs(void)
{
    bool wait = !current_cpu && runstate_is_running();
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

void memory_write_trap_begin(void)
{
    assert(bql_locked());
    write_trap_depth++;
}

void memory_write_trap_commit(void)
{
    assert(bql_locked() && write_trap_depth);
    if (--write_trap_depth || !write_trap_flush_pending) {
        return;
    }
    write_trap_flush_pending = false;
    write_trap_flush_tlbs();
}

void memory_region_set_write_trap(MemoryRegion *mr, hwaddr offset,
                                  uint64_t size, bool trap)
{
    RAMBlock *rb = mr->ram_block;
    unsigned bits = qemu_target_page_bits();
    uint64_t first, end, changed = 0, i;
    unsigned long *map;
    bool fresh = false;

    assert(bql_locked());
    assert(rb && memory_region_is_ram(mr) && size);
    assert(offset < rb->max_length && size <= rb->max_length - offset);
    assert(!trap || write_trap_fn);

    map = rb->write_trap;
    if (!map) {
        if (!trap) {
            return;
        }
        map = bitmap_new(rb->max_length >> bits);
        qatomic_set(&rb->write_trap, map);
        fresh = true;
    }
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
    if (trap) {
        write_trap_pages += changed;
    } else {
        write_trap_pages -= changed;
    }
    trace_memory_region_set_write_trap(memory_region_name(mr), offset, size,
                                       trap, changed);
    if (changed && write_trap_accel_fn) {
        write_trap_accel_fn(mr, offset, size);
    }
    if (fresh) {
        /*
         * Region caches made before this block had traps may hold a
         * direct pointer into it: have their owners make them again.
         */
        memory_region_transaction_force_update();
    }
    if (trap && changed) {
        memory_write_trap_begin();
        write_trap_flush_pending = true;
        memory_write_trap_commit();
    }
}
