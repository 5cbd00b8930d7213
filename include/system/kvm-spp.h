/*
 * Sub-page write protection (SPP): the KVM (hardware) backend
 *
 * The kernel interface is the never-merged v12 (2020) KVM SPP ABI; see
 * system/kvm-spp-uapi.h.  The logic that talks to the kernel goes
 * through KvmSppKernel so it can be tested against a simulation.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSTEM_KVM_SPP_H
#define SYSTEM_KVM_SPP_H

#include "exec/memattrs.h"
#include "qapi/qapi-types-spp.h"
#include "system/kvm-spp-uapi.h"

/* v12 numbers (out of tree; they collide with upstream ones). */
#define KVM_SPP_CAP             KVM_CAP_X86_SPP
#define KVM_SPP_MAX_PAGES       KVM_SUBPAGE_MAX_PAGES
#define KVM_SPP_EXIT            KVM_EXIT_SPP

/* The kernel side, as seen by the backend's logic. */
typedef struct KvmSppKernel {
    /* KVM_CHECK_EXTENSION on the VM: the value, or -errno */
    int (*check_extension)(void *opaque, int cap);
    /* KVM_ENABLE_CAP on the VM: 0 or -errno */
    int (*enable_cap)(void *opaque, int cap);
    /* KVM_SUBPAGES_SET_ACCESS / GET_ACCESS: >= 0 or -errno */
    int (*set_access)(void *opaque, void *kvm_subpage);
    int (*get_access)(void *opaque, void *kvm_subpage);
    void *opaque;
} KvmSppKernel;

/*
 * Decide whether the kernel truly implements SPP.  Only a kernel whose
 * KVM_CHECK_EXTENSION(182) returns KVM_SPP_MAX_PAGES is asked to enable
 * it: on upstream kernels 182 is KVM_CAP_HALT_POLL (it answers 1), and
 * enabling it would change halt polling.  Returns true when the hardware
 * backend can be used; @reason says why or why not (static string).
 */
bool kvm_spp_probe(const KvmSppKernel *k, SppKvmMode mode,
                   const char **reason);

/*
 * Set the vectors of [gfn, gfn + npages) to @wp, in calls of at most
 * KVM_SPP_MAX_PAGES pages.  If a call fails, the pages already set are
 * put back to @old (one vector per page) so the kernel is left as it
 * was.
 */
bool kvm_spp_set_access(const KvmSppKernel *k, uint64_t gfn, uint64_t npages,
                        uint32_t wp, const uint32_t *old, Error **errp);

/* The same with one vector per page, from @vals. */
bool kvm_spp_set_vectors(const KvmSppKernel *k, uint64_t gfn,
                         uint64_t npages, const uint32_t *vals, uint32_t wp,
                         const uint32_t *old, Error **errp);

/*
 * Apply the core's ranges in order (@old: the vectors before, one per
 * page, range after range); on failure, undo the ranges already applied
 * so the kernel is left as it was.
 */
struct SppRange;
bool kvm_spp_set_ranges(const KvmSppKernel *k, const struct SppRange *r,
                        size_t n, const uint32_t *old, Error **errp);

/* Read the vectors of [gfn, gfn + npages) into @out. */
bool kvm_spp_get_access(const KvmSppKernel *k, uint64_t gfn, uint64_t npages,
                        uint32_t *out, Error **errp);

/* What to do with a KVM_EXIT_SPP. */
typedef struct KvmSppExitAction {
    bool skip;              /* drop the store: advance rip by insn_len */
    bool retry;             /* re-enter: the sub-page is now writable */
    bool single_step;       /* let it land: writable for one instruction */
    bool stop;              /* pause the VM */
} KvmSppExitAction;

#define KVM_SPP_BAD_ADDR UINT64_MAX

/*
 * The gpa a KVM_EXIT_SPP is about.  v12 reports @addr as a gpa on the
 * page-fault path but as a gfn on the emulator path: @addr is taken as a
 * gpa when its page is protected, else as a gfn when that page is (a
 * gfn gives no offset: the page's first byte is returned).  Returns
 * KVM_SPP_BAD_ADDR when neither names a protected page.
 */
uint64_t kvm_spp_exit_gpa(uint64_t addr, uint32_t (*vector_of)(uint64_t gfn));

/*
 * What the vCPU does after the core applied @action to the violation.
 * A store the kernel reported without an instruction length cannot be
 * skipped, so it stops the VM instead.
 */
void kvm_spp_exit_action(SppPolicy action, uint8_t insn_len,
                         KvmSppExitAction *act);

/* Glue (accel/kvm/kvm-spp.c) */
struct KVMState;
void kvm_spp_accel_class_init(ObjectClass *oc);
int kvm_spp_init(struct KVMState *s);
bool kvm_spp_hw_active(void);

struct kvm_run;

/*
 * KVM could not emulate an instruction (KVM_INTERNAL_ERROR_EMULATION).
 * When it stores to protected pages, the target's handler runs it with
 * the step fallback and returns true with *ret for kvm_cpu_exec().
 */
typedef bool KvmSppEmulationFailureFn(CPUState *cs, struct kvm_run *run,
                                      int *ret);
void kvm_spp_set_emulation_failure_handler(KvmSppEmulationFailureFn *fn);
bool kvm_spp_emulation_failure(CPUState *cs, struct kvm_run *run, int *ret);

/*
 * Whether KVM_CAP_EXIT_ON_EMULATION_FAILURE is on: with the emulated
 * backend, while a page is protected.
 */
bool kvm_spp_exit_on_emulation_failure(void);

#endif
