/*
 * Sub-page write protection (SPP): KVM_EXIT_SPP on x86
 *
 * With the kernel's SPP backend, a store to a protected sub-page exits
 * with KVM_EXIT_SPP.  Only handled while that backend is active: exit
 * reason 29 is KVM_EXIT_X86_RDMSR on every released kernel.  The
 * emulated backend's step fallback is in kvm-spp-step-x86.c.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "cpu.h"
#include "system/hw_accel.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/runstate.h"
#include "system/spp-backend.h"
#include "system/kvm-spp.h"
#include "qemu/accel.h"
#include "hw/core/cpu.h"
#include "kvm-spp-x86.h"

/* A sub-page made writable for one instruction (policy "report"). */
typedef struct KvmSppStep {
    bool active;
    uint64_t gfn;
    uint32_t wp;            /* the vector to restore */
} KvmSppStep;

/* Each KVM vCPU runs in its own thread. */
static __thread KvmSppStep kvm_spp_step;

/*
 * Single-step flags for this KVM, 0 if it cannot.  Without
 * KVM_GUESTDBG_BLOCKIRQ an interrupt may be taken first: its handler
 * then runs within the step.
 */
int kvm_spp_sstep_flags(void)
{
    int sstep = accel_supported_gdbstub_sstep_flags();

    return sstep & SSTEP_ENABLE ? SSTEP_ENABLE | (sstep & SSTEP_NOIRQ) : 0;
}

static void kvm_spp_set_one(uint64_t gfn, uint32_t wp)
{
    SppRange r = { .gfn = gfn, .npages = 1, .wp = wp };
    Error *err = NULL;

    if (!spp_set_ranges(&r, 1, &err)) {
        error_report_err(err);
    }
}

bool kvm_spp_x86_handle_exit(CPUState *cs, struct kvm_run *run, int *ret)
{
    X86CPU *cpu = X86_CPU(cs);
    KvmSppStep *step;
    KvmSppExitAction act;
    SppPolicy policy;
    bool allowed;
    uint64_t gpa;

    if (!kvm_spp_hw_active()) {
        return false;
    }
    step = &kvm_spp_step;
    if (run->exit_reason == KVM_EXIT_DEBUG && step->active) {
        /* The store that "report" let through has run: protect again. */
        bql_lock();
        kvm_spp_set_one(step->gfn, step->wp);
        bql_unlock();
        step->active = false;
        cs->singlestep_enabled = 0;
        kvm_update_guest_debug(cs, 0);
        *ret = 0;
        return true;
    }
    if (run->exit_reason != KVM_EXIT_SPP) {
        return false;
    }

    bql_lock();
    gpa = kvm_spp_exit_gpa(kvm_spp_exit_info(run)->addr, spp_get_vector);
    if (gpa == KVM_SPP_BAD_ADDR) {
        bql_unlock();
        error_report("KVM_EXIT_SPP for 0x%" PRIx64 ", which is not a page "
                     "QEMU protected", (uint64_t)kvm_spp_exit_info(run)->addr);
        *ret = -1;
        return true;
    }
    policy = spp_get_policy();
    step->wp = spp_get_vector(gpa >> SPP_PAGE_SHIFT);
    spp_judge_write(gpa, 1, cpu_get_mem_attrs(&cpu->env), &allowed);
    kvm_spp_exit_action(policy, kvm_spp_exit_info(run)->insn_len, &act);
    if (act.skip) {
        cpu_synchronize_state(cs);
        cpu->env.eip += kvm_spp_exit_info(run)->insn_len;
    }
    if (act.stop && policy != SPP_POLICY_PAUSE) {
        error_report("KVM_EXIT_SPP at 0x%" PRIx64 " without an instruction "
                     "length: the store cannot be skipped, pausing", gpa);
        qemu_system_vmstop_request_prepare();
        qemu_system_vmstop_request(RUN_STATE_PAUSED);
    }
    if (act.single_step) {
        step->gfn = gpa >> SPP_PAGE_SHIFT;
        step->active = true;
        kvm_spp_set_one(step->gfn, step->wp | (1U << spp_subpage_of(gpa)));
        cs->singlestep_enabled = kvm_spp_sstep_flags();
        kvm_update_guest_debug(cs, 0);
    }
    bql_unlock();
    *ret = 0;
    return true;
}
