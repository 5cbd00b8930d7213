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
#include "exec/ram-write-trap.h"
#include "system/accel-blocker.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/kvm-spp.h"
#include "trace.h"

/* The slot of @kml ending where @mem starts, in guest and host memory. */
static KVMSlot *kvm_write_trap_left(KVMMemoryListener *kml, KVMSlot *mem)
{
    int i;

    for (i = 0; i < kml->nr_slots_allocated; i++) {
        KVMSlot *s = &kml->slots[i];

        if (s->memory_size && s->start_addr + s->memory_size ==
            mem->start_addr && (uint8_t *)s->ram + s->memory_size ==
            (uint8_t *)mem->ram) {
            return s;
        }
    }
    return NULL;
}

/* The slot of @kml starting where @mem ends, in guest and host memory. */
static KVMSlot *kvm_write_trap_right(KVMMemoryListener *kml, KVMSlot *mem)
{
    int i;

    for (i = 0; i < kml->nr_slots_allocated; i++) {
        KVMSlot *s = &kml->slots[i];

        if (s->memory_size && mem->start_addr + mem->memory_size ==
            s->start_addr && (uint8_t *)mem->ram + mem->memory_size ==
            (uint8_t *)s->ram) {
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
     * the gap would look like MMIO to KVM.
     */
    accel_ioctl_inhibit_begin();
    for (i = 0; i < s->nr_as; i++) {
        KVMMemoryListener *kml = s->as[i].ml;
        hwaddr from = 0;
        KVMSlot *mem;

        if (!kml) {
            continue;
        }
        qemu_mutex_lock(&kml_slots_lock);
        while ((mem = kvm_write_trap_find(kml, from, lo, hi))) {
            KVMSlot *l = kvm_write_trap_left(kml, mem);
            KVMSlot *r = kvm_write_trap_right(kml, mem);
            hwaddr start = mem->start_addr, end = start + mem->memory_size;
            uint8_t *ram = mem->ram;
            MemoryRegionSection section;

            /* Neighbours join only if they are slots of the same RAM. */
            if (l && (uint8_t *)l->ram >= base) {
                start = l->start_addr;
                ram = l->ram;
            }
            if (r && (uint8_t *)r->ram + r->memory_size <= mr_end) {
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
            from = end;
        }
        qemu_mutex_unlock(&kml_slots_lock);
    }
    accel_ioctl_inhibit_end();
}

bool kvm_write_trap_init(KVMState *s)
{
    if (!kvm_readonly_mem_allowed) {
        return false;
    }
    memory_write_trap_set_accel_hook(kvm_write_trap_changed);
    return true;
}
