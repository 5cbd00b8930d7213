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
#include "qemu/rcu.h"
#include "exec/address-spaces.h"
#include "exec/ram-write-trap.h"
#include "system/accel-blocker.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/kvm-spp.h"
#include "trace.h"

/*
 * The slot of @kml that ends where @mem starts (@after false) or starts
 * where @mem ends (@after true), in guest and in host memory.
 */
static KVMSlot *kvm_write_trap_next_to(KVMMemoryListener *kml, KVMSlot *mem,
                                       bool after)
{
    KVMSlot *a, *b;
    int i;

    for (i = 0; i < kml->nr_slots_allocated; i++) {
        KVMSlot *s = &kml->slots[i];

        a = after ? mem : s;
        b = after ? s : mem;
        if (s->memory_size && a->start_addr + a->memory_size ==
            b->start_addr && (uint8_t *)a->ram + a->memory_size ==
            (uint8_t *)b->ram) {
            return s;
        }
    }
    return NULL;
}

/*
 * The first slot of @kml, from guest address @from on, that maps host
 * memory in [@lo, @hi).
 */
static KVMSlot *kvm_write_trap_find(KVMMemoryListener *kml, hwaddr from,
                                    uint8_t *lo, uint8_t *hi)
{
    KVMSlot *best = NULL;
    int i;

    for (i = 0; i < kml->nr_slots_allocated; i++) {
        KVMSlot *s = &kml->slots[i];
        uint8_t *ram = s->ram;

        if (s->memory_size && s->start_addr >= from && ram < hi &&
            ram + s->memory_size > lo &&
            (!best || s->start_addr < best->start_addr)) {
            best = s;
        }
    }
    return best;
}

typedef struct KvmWriteTrapRange {
    hwaddr addr;
    hwaddr start, end;
} KvmWriteTrapRange;

static bool kvm_write_trap_range_cb(Int128 start, Int128 len,
                                    const MemoryRegion *mr,
                                    hwaddr offset_in_region, void *opaque)
{
    KvmWriteTrapRange *r = opaque;
    hwaddr s = int128_get64(start);

    if (r->addr >= s && r->addr - s < int128_get64(len)) {
        r->start = s;
        r->end = s + int128_get64(len);
        return true;
    }
    return false;
}

/*
 * The bounds of the range of @as's flat view that holds @addr: one
 * section as the KVM listener got it.
 */
static void kvm_write_trap_section(AddressSpace *as, hwaddr addr,
                                   hwaddr *start, hwaddr *end)
{
    KvmWriteTrapRange r = { .addr = addr, .start = addr, .end = addr };

    WITH_RCU_READ_LOCK_GUARD() {
        flatview_for_each_range(address_space_to_flatview(as),
                                kvm_write_trap_range_cb, &r);
    }
    *start = r.start;
    *end = r.end;
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
                                             hwaddr start, hwaddr end)
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
            mem->start_addr < start || mem->start_addr >= end) {
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

static void kvm_write_trap_changed(MemoryRegion *mr, hwaddr offset,
                                   uint64_t size)
{
    uint8_t *base = memory_region_get_ram_ptr(mr);
    uint8_t *lo = base + offset, *hi = lo + size;
    uint8_t *mr_end = base + memory_region_size(mr);
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
        hwaddr from = 0;
        KVMSlot *mem;

        if (!kml) {
            continue;
        }
        while ((mem = kvm_write_trap_find(kml, from, lo, hi))) {
            KVMSlot *l = kvm_write_trap_next_to(kml, mem, false);
            KVMSlot *r = kvm_write_trap_next_to(kml, mem, true);
            hwaddr start = mem->start_addr, end = start + mem->memory_size;
            uint8_t *ram = mem->ram;
            MemoryRegionSection section;
            hwaddr sec_start, sec_end;

            /*
             * Neighbours join only if they are slots of the same section
             * of the flat view: every other slot lookup expects a
             * section's slots to start where the section starts.
             */
            kvm_write_trap_section(s->as[i].as, start, &sec_start, &sec_end);
            if (l && (uint8_t *)l->ram >= base && l->start_addr >= sec_start) {
                start = l->start_addr;
                ram = l->ram;
            }
            if (r && (uint8_t *)r->ram + r->memory_size <= mr_end &&
                r->start_addr + r->memory_size <= sec_end) {
                end = r->start_addr + r->memory_size;
            }
            section = (MemoryRegionSection) {
                .mr = mr,
                .offset_within_region = ram - base,
                .offset_within_address_space = start,
                .size = int128_make64(end - start),
            };
            trace_kvm_write_trap_reslot(kml->as_id, start, end - start);
            kvm_set_phys_mem(kml, &section, false);
            kvm_set_phys_mem(kml, &section, true);
            kvm_write_trap_clear_initial_log(kml, start, end);
            from = end;
        }
    }
    accel_ioctl_inhibit_end();
    qemu_mutex_unlock(&kml_slots_lock);
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

bool kvm_write_trap_init(KVMState *s)
{
    if (!kvm_readonly_mem_allowed) {
        return false;
    }
    memory_write_trap_set_accel_hook(kvm_write_trap_changed);
    return true;
}
