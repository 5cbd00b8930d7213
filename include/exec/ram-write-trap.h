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

typedef struct MemoryWriteTrapHandler MemoryWriteTrapHandler;

/**
 * struct MemoryWriteTrapHandler: what judges the writes to trapped pages
 *
 * A user of write traps embeds this in its own state and passes it to
 * memory_region_set_write_trap(); the pages of one RAMBlock are trapped
 * by one handler at a time.
 *
 * Writes come from any thread (vCPUs, iothreads, the main loop), with or
 * without the BQL, so the handler must be thread-safe and must not take
 * the BQL.
 *
 * @judge: judge a write of @size bytes (1 to 8, within one target page)
 * at @offset of the RAM region @mr, made with @attrs, of the value @data
 * (little-endian, the low @size bytes; for a read-modify-write, what the
 * writer says it stored).  Returns a mask of the bytes that may land:
 * bit i for byte @offset + i.
 *
 * @lock: taken around each judgement and the store it allows.  A change
 * the handler makes under the same lock (what it lets through) is thus
 * ordered with every trapped write: none judged before the change lands
 * after it.
 *
 * @unlock: released after the store.
 *
 * @exact: optional; true while the handler may stop the vCPU at a
 * store it judges (a pause): TCG then ends its translation block at
 * every store to a trapped page, so that no later instruction of the
 * block runs first.
 *
 * The handler must stay valid for an RCU grace period after its pages'
 * last trap is released.
 */
struct MemoryWriteTrapHandler {
    uint8_t (*judge)(MemoryWriteTrapHandler *h, MemoryRegion *mr,
                     hwaddr offset, unsigned size, MemTxAttrs attrs,
                     uint64_t data);
    void (*lock)(MemoryWriteTrapHandler *h);
    void (*unlock)(MemoryWriteTrapHandler *h);
    bool (*exact)(MemoryWriteTrapHandler *h);
};

/**
 * memory_region_set_write_trap: trap or release pages of a RAM region
 *
 * Trap (@trap true) or release the target pages that hold
 * [@offset, @offset + @size) of the RAM region @mr, for @handler, which
 * judges the writes to them from then on.  The block's pages must not
 * be trapped by another handler.  Called with the BQL held.  Outside a
 * batch, when it returns, no vCPU writes to a newly trapped page
 * directly any more; except when called from a vCPU thread, where the
 * TCG TLB flushes are only queued: every vCPU may store directly until
 * it next leaves its translated code.
 *
 * @mr: a RAM region
 * @handler: the handler of the writes to the trapped pages
 * @offset: the first byte's offset in @mr
 * @size: the number of bytes (not 0)
 * @trap: trap (true) or release (false)
 */
void memory_region_set_write_trap(MemoryRegion *mr,
                                  MemoryWriteTrapHandler *handler,
                                  hwaddr offset, uint64_t size, bool trap);

/**
 * memory_write_trap_begin: start a batch of trap changes
 *
 * memory_region_set_write_trap() calls until the matching
 * memory_write_trap_commit() flush the vCPUs' TLBs once, in the
 * outermost commit, which gives its guarantee for all of them, and the
 * listeners learn of all their changes at once.  Batches nest.  With the
 * BQL held.
 */
void memory_write_trap_begin(void);

/**
 * memory_write_trap_commit: end a batch of trap changes
 *
 * The outermost commit tells the listeners and waits for the vCPUs with
 * the BQL dropped: the caller's state must be consistent by then.
 */
void memory_write_trap_commit(void);

/**
 * struct RAMWriteTrap: the trapped pages of a RAMBlock
 *
 * RAMBlock::write_trap, NULL when the block has none: read under RCU or
 * with the BQL held; changed with the BQL.
 *
 * @rcu: freed after a grace period once the last trap is released
 * @handler: judges the writes to the trapped pages
 * @count: the number of bits set in @map
 * @map: one bit per target page of the block
 */
typedef struct RAMWriteTrap {
    struct rcu_head rcu;
    MemoryWriteTrapHandler *handler;
    uint64_t count;
    unsigned long map[];
} RAMWriteTrap;

/**
 * memory_region_write_trapped: whether a page of a RAM region is trapped
 *
 * @mr: a RAM region
 * @offset: an offset in @mr; its target page is looked at
 */
static inline bool memory_region_write_trapped(MemoryRegion *mr,
                                               hwaddr offset)
{
    RAMWriteTrap *t = mr->ram_block ?
        qatomic_rcu_read(&mr->ram_block->write_trap) : NULL;

    return unlikely(t) && test_bit(offset >> qemu_target_page_bits(), t->map);
}

/**
 * memory_region_ram_write_masked: store some bytes of a write into RAM
 *
 * Store the bytes of @data (@size of them, at most 8, little-endian)
 * that @mask selects (bit i: byte i) at @offset of the RAM region @mr,
 * with dirty tracking and TCG's translated-code invalidation, as a
 * direct write would have them; an aligned write of 2, 4 or 8 bytes that
 * lands whole is one host store.  For I/O regions that front RAM.
 *
 * @mr: a RAM region
 * @offset: where in @mr
 * @data: the value written
 * @size: its size in bytes, 1 to 8
 * @mask: the bytes of @data to store
 */
void memory_region_ram_write_masked(MemoryRegion *mr, hwaddr offset,
                                    uint64_t data, unsigned size,
                                    uint8_t mask);

/**
 * memory_region_write_trap_run: the run of pages in the same state
 *
 * Where the pages of a range alternate between trapped and not (for an
 * accelerator that maps RAM in pieces): the length of the run of pages
 * with the same state as the page holding @offset of @mr, at most @len.
 * A page lifted for the vCPUs (memory_region_lift_write_trap()) counts as
 * not trapped, in a run of its own.
 *
 * @mr: a RAM region
 * @offset: page-aligned offset in @mr
 * @len: page-aligned length, not 0
 * @trapped: set to the state of the run
 */
uint64_t memory_region_write_trap_run(MemoryRegion *mr, hwaddr offset,
                                      uint64_t len, bool *trapped);

/**
 * struct MemoryWriteTrapChange: pages of a RAM region whose state changed
 *
 * @mr: the region
 * @offset: page-aligned offset in @mr
 * @size: page-aligned size
 */
typedef struct MemoryWriteTrapChange {
    MemoryRegion *mr;
    hwaddr offset;
    uint64_t size;
} MemoryWriteTrapChange;

typedef struct MemoryWriteTrapListener MemoryWriteTrapListener;

/**
 * struct MemoryWriteTrapListener: told when pages change state
 *
 * An accelerator whose vCPUs write RAM without QEMU (KVM) registers one
 * to take trapped pages off its vCPUs' direct path.
 *
 * @changed: called, with the BQL held, after the pages of @n ranges
 * @c changed state (or were lifted): outside a batch at each change,
 * within one once, at its outermost commit, with every range changed in
 * it, sorted by region and offset (ranges may touch or overlap).
 *
 * @vcpu_stores: the listener makes the vCPUs' stores to trapped pages
 * reach the handler, and honours memory_region_lift_write_trap().
 */
struct MemoryWriteTrapListener {
    void (*changed)(MemoryWriteTrapListener *l,
                    const MemoryWriteTrapChange *c, size_t n);
    bool vcpu_stores;
    QLIST_ENTRY(MemoryWriteTrapListener) next;
};

/**
 * memory_write_trap_listener_register: register a listener
 *
 * @l: the listener; with the BQL held
 */
void memory_write_trap_listener_register(MemoryWriteTrapListener *l);

/**
 * memory_write_trap_listener_unregister: unregister a listener
 *
 * @l: a registered listener; with the BQL held
 */
void memory_write_trap_listener_unregister(MemoryWriteTrapListener *l);

/**
 * memory_write_trap_accel_ready: whether vCPU stores reach the traps
 *
 * Whether vCPU stores to trapped pages reach their handler under the
 * accelerator in use: TCG's always do, and qtest has no vCPU that runs;
 * another accelerator's do once it has registered a listener with
 * @vcpu_stores.  A user should refuse traps it could not see a vCPU's
 * store go through.
 */
bool memory_write_trap_accel_ready(void);

/**
 * address_space_write_trapped: whether a write would reach a trap
 *
 * Whether a write of @size bytes at @addr of @as, made with @attrs,
 * would reach a trapped page (and lies within it).
 *
 * @as: the address space
 * @addr: the address
 * @size: the size of the write
 * @attrs: its attributes
 */
bool address_space_write_trapped(AddressSpace *as, hwaddr addr,
                                 unsigned size, MemTxAttrs attrs);

/*
 * For an accelerator that learns of a guest's atomic read-modify-write
 * only as a write of its result (KVM's emulator on a read-only memslot):
 * redo the operation atomically on the bytes at @host.
 */
typedef void MemoryWriteTrapRmwFn(void *host, void *opaque);

/**
 * address_space_write_trap_rmw: a trapped read-modify-write
 *
 * A write of @data (@size bytes, at most 8, within one page) at @addr of
 * @as that was a read-modify-write: judged by the handler as any write.
 * If every byte may land, call @fn to do it atomically instead of
 * storing @data; else store the bytes that may land.  From any thread,
 * without the BQL.
 *
 * Returns: true once the write is done; false (and nothing done) if it
 * does not reach a trapped page.
 *
 * @as: the address space
 * @addr: the address
 * @attrs: the write's attributes
 * @data: the value written
 * @size: its size
 * @fn: redoes the operation
 * @opaque: for @fn
 */
bool address_space_write_trap_rmw(AddressSpace *as, hwaddr addr,
                                  MemTxAttrs attrs, uint64_t data,
                                  unsigned size, MemoryWriteTrapRmwFn *fn,
                                  void *opaque);

#define MEMORY_WRITE_TRAP_MAX_LIFTED 8

/**
 * memory_region_lift_write_trap: let the vCPUs write a trapped page
 *
 * For running one instruction natively on trapped pages (a step over a
 * store the accelerator cannot emulate): let the accelerator's vCPUs
 * write the trapped target page holding @offset of @mr directly
 * (@lifted), or trap them again.  The page stays trapped for every
 * other writer (devices, iothreads), whose writes the handler still
 * judges.  At most MEMORY_WRITE_TRAP_MAX_LIFTED pages at a time; with
 * the BQL held.  Without a listener with @vcpu_stores (TCG, qtest) the
 * trap itself is released and set again.
 *
 * @mr: a RAM region
 * @handler: the handler of the page's trap
 * @offset: an offset in @mr; its target page is lifted
 * @lifted: lift (true) or trap again (false)
 */
void memory_region_lift_write_trap(MemoryRegion *mr,
                                   MemoryWriteTrapHandler *handler,
                                   hwaddr offset, bool lifted);

/**
 * memory_write_trap_count: the number of trapped pages, in all RAM
 */
uint64_t memory_write_trap_count(void);

/*
 * The rest is for the memory core and accelerators, not for users.
 */

/*
 * The section index of the write-trap region in every dispatch map
 * (after the unassigned section); offsets in that region are
 * ram_addr_t.  TCG's iotlb points at it for a trapped page's stores.
 */
#define MEMORY_WRITE_TRAP_SECTION 1

/**
 * memory_write_trap_region: the one I/O region writes to traps go to
 */
MemoryRegion *memory_write_trap_region(void);

/**
 * memory_region_is_write_trap: whether @mr is the write-trap region
 *
 * The memory core makes its accesses without the BQL (its handlers are
 * thread-safe).
 *
 * @mr: a region
 */
bool memory_region_is_write_trap(MemoryRegion *mr);

/**
 * memory_write_trap_translate: send a write to a trapped page to the trap
 *
 * For a write translated to @mr at *@xlat: when the page is trapped,
 * return the write-trap region, with *@xlat turned into a ram_addr_t
 * and *@plen clipped to the page; else return @mr, with *@plen clipped
 * to the next trapped page.  Called from an RCU critical section.
 *
 * @mr: where the write was translated to
 * @xlat: the offset in @mr
 * @plen: the length of the write
 */
MemoryRegion *memory_write_trap_translate(MemoryRegion *mr, hwaddr *xlat,
                                          hwaddr *plen);

/**
 * memory_region_write_trap_no_recompile: a TCG store to @mr needs no
 * recompile
 *
 * TCG makes an instruction that accesses an I/O region the last of its
 * translation block (cpu_io_recompile()), so that icount is exact when
 * the device reads the clock, a store that changes the code of the
 * block it is in takes effect before the next instruction, and a device
 * that stops the vCPU stops it right after the access.  A store to the
 * write-trap region needs none of it when icount is off (the handler
 * reads no guest clock then), the page holds no translated code, the
 * handler is not @exact, and the access cannot continue on the next
 * page (it starts at least 16 bytes before the page's end: a piece on
 * the next page that needs a recompile would make the instruction run
 * again, and its first piece be judged twice).  Recompiling for each
 * such store cost a longjmp, an unwind and a one-instruction block, on
 * every store to a writable sub-page of a trapped page.
 *
 * @mr: the region a TCG store access reaches
 * @offset: the offset of the access in @mr
 */
bool memory_region_write_trap_no_recompile(MemoryRegion *mr, hwaddr offset);

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
