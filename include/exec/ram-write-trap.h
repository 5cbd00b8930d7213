/*
 * Write traps on RAM
 *
 * A write trap takes pages of a RAM region off the direct write path:
 * a write to a trapped page is not done straight into host memory but
 * handed, as an I/O access of at most 8 bytes that never crosses a
 * page, to the handler, which says which bytes may land.  Reads and
 * instruction fetches stay direct, and the flat views do not change, so
 * setting and clearing a trap costs no memory transaction.
 *
 * Traps cover the writes QEMU performs or emulates: TCG vCPU stores and
 * every access through an address space (address_space_write/_map, the
 * ld/st helpers, MemoryRegionCache, IOMMU targets), that is, DMA from
 * emulated devices.  Debug accesses (gdbstub, monitor) are not trapped.
 * Under KVM, trapped pages become read-only memslots (the accelerator
 * hook below), so the vCPUs' own stores exit and come through an
 * address space too.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef EXEC_RAM_WRITE_TRAP_H
#define EXEC_RAM_WRITE_TRAP_H

#include "exec/memory.h"
#include "exec/ramblock.h"
#include "exec/target_page.h"
#include "qemu/bitops.h"
#include "qemu/rcu.h"

/*
 * The handler of trapped writes.  @judge judges a write of @size bytes
 * (1 to 8, within one target page) at @offset of the RAM region @mr,
 * made with @attrs, of the value @data (little-endian, the low @size
 * bytes; for a read-modify-write, what the writer says it stored), and
 * returns a mask of the bytes that may land: bit i for byte @offset + i.
 * Writes come from any thread (vCPUs, iothreads, the main loop), with
 * or without the BQL, so the handler must be
 * thread-safe and must not take the BQL.  @lock and @unlock bracket each
 * judgement and the store it allows: a change the handler makes under
 * the same lock (what it lets through) is thus ordered with every trapped
 * write, none judged before the change landing after it.
 */
typedef struct MemoryWriteTrapOps {
    uint8_t (*judge)(MemoryRegion *mr, hwaddr offset, unsigned size,
                     MemTxAttrs attrs, uint64_t data);
    void (*lock)(void);
    void (*unlock)(void);
} MemoryWriteTrapOps;

/* Install the handler (one per process; before any trap is set). */
void memory_write_trap_set_handler(const MemoryWriteTrapOps *ops);

/*
 * Trap (@trap true) or release the target pages that hold
 * [@offset, @offset + @size) of the RAM region @mr.  Called with the
 * BQL held.  Outside a batch, when it returns, no vCPU writes to a
 * newly trapped page directly any more; except when called from a vCPU
 * thread, where the TCG TLB flushes are only queued: every vCPU may
 * store directly until it next leaves its translated code.
 */
void memory_region_set_write_trap(MemoryRegion *mr, hwaddr offset,
                                  uint64_t size, bool trap);

/*
 * Batch trap changes: memory_region_set_write_trap() calls between
 * these flush the vCPUs' TLBs once, in the outermost commit, which
 * gives the guarantee above for all of them.  The commit waits for the
 * vCPUs with the BQL dropped: the caller's state must be consistent
 * by then.  Batches nest.
 */
void memory_write_trap_begin(void);
void memory_write_trap_commit(void);

/*
 * The trapped pages of a RAMBlock (RAMBlock::write_trap, NULL when it has
 * none): read under RCU or with the BQL held; changed with the BQL.
 */
typedef struct RAMWriteTrap {
    struct rcu_head rcu;
    uint64_t count;             /* bits set in @map */
    unsigned long map[];        /* one bit per target page */
} RAMWriteTrap;

/* Whether the target page holding @offset of RAM region @mr is trapped. */
static inline bool memory_region_write_trapped(MemoryRegion *mr,
                                               hwaddr offset)
{
    RAMWriteTrap *t = mr->ram_block ?
        qatomic_rcu_read(&mr->ram_block->write_trap) : NULL;

    return unlikely(t) && test_bit(offset >> qemu_target_page_bits(), t->map);
}

/*
 * Store the bytes of @data (@size of them, at most 8, little-endian)
 * that @mask selects (bit i: byte i) at @offset of the RAM region @mr,
 * with dirty tracking and TCG's translated-code invalidation, as a
 * direct write would have them.  For I/O regions that front RAM.
 */
void memory_region_ram_write_masked(MemoryRegion *mr, hwaddr offset,
                                    uint64_t data, unsigned size,
                                    uint8_t mask);

/*
 * Where the pages of a range alternate between trapped and not: the
 * length of the run of pages with the same state as the page holding
 * @offset of the RAM region @mr, at most @len (@offset and @len
 * page-aligned), and in *@trapped that state.
 */
uint64_t memory_region_write_trap_run(MemoryRegion *mr, hwaddr offset,
                                      uint64_t len, bool *trapped);

/* Pages of a RAM region whose state changed (page-aligned) */
typedef struct MemoryWriteTrapChange {
    MemoryRegion *mr;
    hwaddr offset;
    uint64_t size;
} MemoryWriteTrapChange;

/*
 * The accelerator's hook: called, with the BQL held, after the pages of
 * @n ranges changed state (or were lifted): outside a batch at each
 * change, within one once, at its outermost commit, with every range
 * changed in it, sorted by region and offset (ranges may touch or
 * overlap).  KVM uses it to re-split the memslots over them.
 */
typedef void MemoryWriteTrapAccelFn(const MemoryWriteTrapChange *c,
                                    size_t n);
void memory_write_trap_set_accel_hook(MemoryWriteTrapAccelFn *fn);

/*
 * Whether vCPU stores to trapped pages reach the handler under the
 * accelerator in use: TCG's always do, and qtest has no vCPU that runs;
 * another accelerator's do once it has installed its hook.  A user of
 * the facility should refuse traps it could not see a vCPU go through.
 */
bool memory_write_trap_accel_ready(void);

/*
 * Whether a write of @size bytes at @addr of @as, made with @attrs,
 * would reach a trapped page (and lies within it).
 */
bool address_space_write_trapped(AddressSpace *as, hwaddr addr,
                                 unsigned size, MemTxAttrs attrs);

/*
 * For an accelerator that learns of a guest's atomic read-modify-write
 * only as a write of its result (KVM's emulator on a read-only memslot):
 * @fn redoes the operation atomically on the @size bytes at @host.
 */
typedef void MemoryWriteTrapRmwFn(void *host, void *opaque);

/*
 * A write of @data (@size bytes, at most 8, within one page) at @addr of
 * @as that was a read-modify-write: judged by the handler as any write.
 * If every byte may land, call @fn to do it atomically instead of
 * storing @data; else store the bytes that may land.  Either way the
 * write is done, and true is returned; false (and nothing done) if it
 * does not reach a trapped page.  From any thread, without the BQL.
 */
bool address_space_write_trap_rmw(AddressSpace *as, hwaddr addr,
                                  MemTxAttrs attrs, uint64_t data,
                                  unsigned size, MemoryWriteTrapRmwFn *fn,
                                  void *opaque);

/*
 * For running one instruction natively on trapped pages (the SPP step
 * fallback): let the accelerator's vCPUs write the trapped target page
 * holding @offset of @mr directly (@lifted), or trap them again.  The
 * page stays trapped for every other writer (devices, iothreads), whose
 * writes the handler still judges.  At most MEMORY_WRITE_TRAP_MAX_LIFTED
 * pages at a time; with the BQL held.  Without an accelerator hook (TCG,
 * qtest) the trap itself is released and set again.
 */
#define MEMORY_WRITE_TRAP_MAX_LIFTED 8
void memory_region_lift_write_trap(MemoryRegion *mr, hwaddr offset,
                                   bool lifted);

/* Number of trapped pages, over all RAM regions. */
uint64_t memory_write_trap_count(void);

/*
 * For the memory core.  The section index of the write-trap region in
 * every dispatch map; offsets in that region are ram_addr_t.
 */
#define MEMORY_WRITE_TRAP_SECTION 1
MemoryRegion *memory_write_trap_region(void);

/*
 * Whether @mr is the write-trap region, whose accesses the memory core
 * makes without the BQL (its handler is thread-safe).
 */
bool memory_region_is_write_trap(MemoryRegion *mr);

/*
 * For a write translated to @mr at *@xlat: when the page is trapped,
 * return the write-trap region, with *@xlat turned into a ram_addr_t
 * and *@plen clipped to the page; else return @mr, with *@plen clipped
 * to the next trapped page.  Called from an RCU critical section.
 */
MemoryRegion *memory_write_trap_translate(MemoryRegion *mr, hwaddr *xlat,
                                          hwaddr *plen);

/*
 * TCG: where the store access being made now came from.  TCG marks each
 * store access of at most 8 bytes to an I/O region, before it splits it
 * into naturally aligned pieces (accel/tcg/cputlb.c), with the region,
 * the offset and size of the access in it, and @ra, the host address in
 * translated code (or a helper's GETPC()) that made it.  The handler of
 * trapped writes can then tell the pieces of one access from a new
 * access (memory_write_trap_store_seq()), and find the guest instruction
 * that stored (memory_write_trap_store_ra()).
 */
typedef struct MemoryWriteTrapStore {
    uint64_t seq;               /* one per access */
    MemoryRegion *mr;
    hwaddr offset;
    unsigned size;
    uintptr_t ra;
} MemoryWriteTrapStore;

extern __thread MemoryWriteTrapStore memory_write_trap_cur_store;

static inline void memory_write_trap_store_begin(MemoryRegion *mr,
                                                 hwaddr offset,
                                                 unsigned size, uintptr_t ra)
{
    memory_write_trap_cur_store.seq++;
    memory_write_trap_cur_store.mr = mr;
    memory_write_trap_cur_store.offset = offset;
    memory_write_trap_cur_store.size = size;
    memory_write_trap_cur_store.ra = ra;
}

/* The number of the current TCG store access on this thread. */
static inline uint64_t memory_write_trap_store_seq(void)
{
    return memory_write_trap_cur_store.seq;
}

/*
 * The @ra of the TCG store access on this thread that covers @ram_addr
 * of the write-trap region, or 0 when the write being judged is not
 * part of one (DMA, a page-table update, a helper's physical access).
 */
uintptr_t memory_write_trap_store_ra(uint64_t ram_addr);

/*
 * The address space of the address_space_write() being made on this
 * thread (the innermost one), or NULL.  A device that writes through its
 * own address space (a PCI device's DMA: pci_get_address_space()) can so
 * be named by the handler of trapped writes.  Writes through a
 * MemoryRegionCache or the ld/st helpers do not set it.
 */
extern __thread AddressSpace *memory_write_trap_cur_as;

/* Enter a write through @as; returns what memory_write_trap_cur_as was. */
static inline AddressSpace *memory_write_trap_enter_as(AddressSpace *as)
{
    AddressSpace *outer = memory_write_trap_cur_as;

    memory_write_trap_cur_as = as;
    return outer;
}

#endif
