/*
 * Sub-page write protection (SPP): x86 KVM glue
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef TARGET_I386_KVM_SPP_X86_H
#define TARGET_I386_KVM_SPP_X86_H

struct kvm_run;

/*
 * KVM_EXIT_SPP, and the debug exit after a store the kernel's backend
 * let through: true when handled, with *ret for kvm_arch_handle_exit().
 */
bool kvm_spp_x86_handle_exit(CPUState *cs, struct kvm_run *run, int *ret);

/*
 * The guest-debug single-step flags for one instruction on this KVM,
 * 0 if it cannot.  Without KVM_GUESTDBG_BLOCKIRQ an interrupt may be
 * taken first: its handler then runs within the step.
 */
int kvm_spp_sstep_flags(void);

/*
 * For a store QEMU makes or single-steps itself for @cs (the vector
 * store, the step fallback), with its registers synchronized and RIP at
 * the storing instruction: a violation on this thread names that
 * instruction as the writer, until kvm_x86_writer_clear().
 */
void kvm_x86_writer_at_rip(CPUState *cs);
void kvm_x86_writer_clear(void);

#endif
