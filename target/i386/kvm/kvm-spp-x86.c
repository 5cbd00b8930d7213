/*
 * Sub-page write protection (SPP): KVM_EXIT_SPP on x86
 *
 * With the kernel's SPP backend, a store to a protected sub-page exits
 * with KVM_EXIT_SPP.  Only handled while that backend is active: exit
 * reason 29 is KVM_EXIT_X86_RDMSR on every released kernel.  The
 * emulated backend's step fallback is in kvm-spp-step-x86.c.  Also
 * here: the paravirtual areas KVM writes in guest RAM, for the list of
 * writers SPP cannot judge (system/spp/spp-writers.c).
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
#include "hyperv-proto.h"
#include "standard-headers/asm-x86/kvm_para.h"

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
    spp_judge_write(gpa, 1, cpu_get_mem_attrs(&cpu->env), NULL, &allowed);
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

/*
 * The guest gives KVM the address of each paravirtual area by writing an
 * MSR, which KVM handles without exiting to QEMU: read them back.  A set
 * bit 0 enables each of them.
 */
static const struct {
    uint32_t msr;
    uint64_t addr_mask;
    uint64_t size;
    const char *feature;
    const char *what;
    const char *remedy;
} kvm_spp_pv_msrs[] = {
    { MSR_KVM_SYSTEM_TIME_NEW, ~1ULL, 32, "kvmclock",
      "KVM writes the guest's clock parameters there",
      "-cpu ...,kvmclock=off, or a guest that does not use kvmclock" },
    { MSR_KVM_SYSTEM_TIME, ~1ULL, 32, "kvmclock",
      "KVM writes the guest's clock parameters there",
      "-cpu ...,kvmclock=off, or a guest that does not use kvmclock" },
    { MSR_KVM_STEAL_TIME, ~0x3fULL, 64, "steal-time",
      "KVM writes the time the vCPU waited for the host there",
      "-cpu ...,kvm-steal-time=off" },
    { MSR_KVM_PV_EOI_EN, ~1ULL, 4, "pv-eoi",
      "KVM sets and clears the PV end-of-interrupt flag there",
      "-cpu ...,kvm-pv-eoi=off" },
    { MSR_KVM_ASYNC_PF_EN, ~0x3fULL, 64, "async-pf",
      "KVM writes asynchronous page fault reasons there",
      "-cpu ...,kvm-asyncpf=off" },
    { HV_X64_MSR_REFERENCE_TSC, ~0xfffULL, 4096, "hv-tsc-page",
      "KVM writes the Hyper-V reference TSC page",
      "-cpu ...,hv-time=off" },
    { HV_X64_MSR_APIC_ASSIST_PAGE, ~0xfffULL, 4096, "hv-vp-assist",
      "KVM writes the Hyper-V VP assist page",
      "-cpu ...,hv-vapic=off" },
    { HV_X64_MSR_SIMP, ~0xfffULL, 4096, "hv-synic",
      "KVM posts Hyper-V SynIC messages there",
      "-cpu ...,hv-synic=off" },
    { HV_X64_MSR_SIEFP, ~0xfffULL, 4096, "hv-synic",
      "KVM posts Hyper-V SynIC event flags there",
      "-cpu ...,hv-synic=off" },
};

static unsigned kvm_spp_x86_read_pv(CPUState *cs, SppPvArea *areas)
{
    struct {
        struct kvm_msrs info;
        struct kvm_msr_entry entry;
    } msr;
    unsigned i, n = 0;

    QEMU_BUILD_BUG_ON(ARRAY_SIZE(kvm_spp_pv_msrs) > SPP_PV_MAX_AREAS);
    for (i = 0; i < ARRAY_SIZE(kvm_spp_pv_msrs); i++) {
        memset(&msr, 0, sizeof(msr));
        msr.info.nmsrs = 1;
        msr.entry.index = kvm_spp_pv_msrs[i].msr;
        /* An MSR this vCPU does not have reads as 0 entries: skipped. */
        if (kvm_vcpu_ioctl(cs, KVM_GET_MSRS, &msr) != 1 ||
            !(msr.entry.data & 1)) {
            continue;
        }
        areas[n++] = (SppPvArea) {
            .feature = kvm_spp_pv_msrs[i].feature,
            .what = kvm_spp_pv_msrs[i].what,
            .remedy = kvm_spp_pv_msrs[i].remedy,
            .gpa = msr.entry.data & kvm_spp_pv_msrs[i].addr_mask,
            .size = kvm_spp_pv_msrs[i].size,
        };
    }
    return n;
}

static void kvm_spp_x86_register(void)
{
    spp_writers_set_pv_reader(kvm_spp_x86_read_pv);
}
type_init(kvm_spp_x86_register)
