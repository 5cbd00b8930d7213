/*
 * Write traps under KVM: trapped pages as read-only memslots
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSTEM_KVM_WRITE_TRAP_H
#define SYSTEM_KVM_WRITE_TRAP_H

#include "exec/memattrs.h"
#include "exec/ram-write-trap.h"

struct KVMState;
struct kvm_run;

/*
 * Make write-trapped pages read-only memslots (accel/kvm/kvm-write-trap.c);
 * false when this KVM has no read-only memslots.  Unless @zap_all, and
 * where the kernel lets it (x86, Linux 6.12 on), deleting a memslot
 * then drops only that slot's second-level page tables, not the whole
 * VM's (KVM_X86_QUIRK_SLOT_ZAP_ALL off): a protection change no longer
 * makes every vCPU fault its working set back in.
 */
bool kvm_write_trap_init(struct KVMState *s, bool zap_all);

/*
 * Called by kvm_region_commit() before it deletes and adds slots: where
 * a deleted and an added section map the same RAM at the same
 * addresses, keep the whole slots they share instead of deleting and
 * re-creating them (the transaction lists then hold only the rest).
 */
struct KVMMemoryListener;
void kvm_write_trap_keep_slots(struct KVMMemoryListener *kml);

/* Whether memslot deletions zap only their own slot (see above). */
bool kvm_write_trap_zaps_slot_only(void);

/*
 * A write exit (KVM_EXIT_MMIO) to a write-trapped page: KVM's emulator
 * ran the instruction, on a read-only memslot, and retired it.  When
 * the instruction was an atomic read-modify-write, which the emulator
 * performs as a read and a separate write, the target's handler redoes
 * it atomically (address_space_write_trap_rmw()), fixes the registers,
 * and returns true; false to let kvm_cpu_exec() write the data.
 */
typedef bool KvmWriteTrapRmwFn(CPUState *cs, struct kvm_run *run,
                               MemTxAttrs attrs);
void kvm_write_trap_set_rmw_handler(KvmWriteTrapRmwFn *fn);
bool kvm_write_trap_mmio(CPUState *cs, struct kvm_run *run, MemTxAttrs attrs);

#endif
