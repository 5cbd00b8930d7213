/*
 * Sub-page write protection (SPP): the step fallback on x86 KVM
 *
 * With QEMU's emulated backend, protected pages are read-only memslots,
 * so KVM emulates every store to them; its emulator cannot run AVX,
 * XSAVE, MOVDIR64B and some SSE stores and reports an emulation
 * failure.  Find the pages the instruction stores to; a plain vector
 * register store within one page is done here, through the memory
 * core; for anything else stop the other vCPUs, lift the protection of
 * those pages, single-step the instruction in KVM and judge what it
 * changed (system/spp/spp-step.c).
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
#include "qemu/module.h"
#include "cpu.h"
#include "system/hw_accel.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/runstate.h"
#include "system/spp-backend.h"
#include "system/kvm-spp.h"
#include "kvm-spp-x86.h"
#include "qemu/accel.h"
#include "hw/core/cpu.h"
#include "exec/cpu-common.h"
#include "exec/address-spaces.h"
#include "kvm-spp-insn.h"
#include "trace.h"

/*
 * KVM_RUN calls a single step may take: interrupted runs (kicks) and
 * MMIO the stepped instruction does before its debug exit.  A step that
 * needs more is reported as failed rather than looping for ever.
 */
#define KVM_SPP_STEP_MAX_RUNS 1000

/* The linear pages the instruction at CS:RIP may store to. */
static SppX86Decode kvm_spp_x86_store(CPUState *cs, struct kvm_run *run,
                                      SppX86Store *store)
{
    CPUX86State *env = &X86_CPU(cs)->env;
    SppX86Context ctx = {
        .rip = env->eip,
        .code_bits = env->hflags & HF_CS64_MASK ? 64 :
                     env->hflags & HF_CS32_MASK ? 32 : 16,
        .xsave_size = MAX(xsave_area_size(env->xcr0, false),
                          xsave_area_size(env->xcr0 | env->xss, false)),
    };
    uint8_t insn[15];
    size_t len = 0;
    int i;

    for (i = 0; i < CPU_NB_REGS && i < ARRAY_SIZE(ctx.regs); i++) {
        ctx.regs[i] = env->regs[i];
    }
    for (i = 0; i < ARRAY_SIZE(ctx.seg_base); i++) {
        ctx.seg_base[i] = env->segs[i].base;
    }
    if ((run->emulation_failure.flags &
         KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) &&
        run->emulation_failure.ndata >= 3) {
        len = MIN(run->emulation_failure.insn_size, sizeof(insn));
        memcpy(insn, run->emulation_failure.insn_bytes, len);
    } else {
        vaddr pc = env->segs[R_CS].base + env->eip;

        if (ctx.code_bits != 64) {
            pc &= 0xffffffff;
        }
        /* The instruction may end before a page that is not mapped. */
        len = MIN(sizeof(insn), TARGET_PAGE_SIZE - (pc & ~TARGET_PAGE_MASK));
        if (cpu_memory_rw_debug(cs, pc, insn, len, false)) {
            return SPP_X86_UNKNOWN;
        }
        if (len < sizeof(insn) &&
            !cpu_memory_rw_debug(cs, pc + len, insn + len,
                                 sizeof(insn) - len, false)) {
            len = sizeof(insn);
        }
    }
    return spp_x86_insn_store(insn, len, &ctx, store);
}

/*
 * The trapped guest pages behind @store, and where its 8-byte pieces
 * start in each (modulo 8); 0 when none, -1 if too many.
 */
static int kvm_spp_x86_pages(CPUState *cs, const SppX86Store *store,
                             uint64_t *gfns, unsigned *phases)
{
    vaddr page = store->addr & TARGET_PAGE_MASK;
    vaddr last = (store->addr + store->size - 1) & TARGET_PAGE_MASK;
    int n = 0, i = 0;

    for (;; page += TARGET_PAGE_SIZE) {
        MemTxAttrs attrs;
        hwaddr gpa = cpu_get_phys_page_attrs_debug(cs, page, &attrs);

        if (++i > SPP_STEP_MAX_PAGES) {
            return -1;
        }
        if (gpa != -1 && spp_backend_trapped(gpa >> SPP_PAGE_SHIFT)) {
            /* in later pages the store starts at offset 0 */
            phases[n] = i == 1 ? store->addr % 8 : 0;
            gfns[n++] = gpa >> SPP_PAGE_SHIFT;
        }
        if (page == last) {
            return n;
        }
    }
}

/*
 * A plain store of a vector register (@store->vec_bytes) within one
 * page: do it here, through the memory core, which judges it like any
 * trapped store (8-byte accesses from its first byte, as KVM's emulator
 * would have made them), and move past the instruction.  Much cheaper
 * than the step.  The processor has already checked the store against
 * the guest's page tables (KVM exits on the memslot, after them).  False
 * to leave it to the step: a store across pages (the second page may
 * fault), a guest or debugger single-stepping, enabled data breakpoints
 * (they must fire), a nested guest (its page tables are not ours to
 * walk here) and SMM (its own address space).
 */
static bool kvm_spp_x86_vec_store(CPUState *cs, const SppX86Store *store)
{
    CPUX86State *env = &X86_CPU(cs)->env;
    vaddr addr = store->addr;
    uint8_t buf[32];
    MemTxAttrs attrs;
    hwaddr gpa;
    unsigned i;

    if (!store->vec_bytes || store->vec_reg >= CPU_NB_REGS ||
        store->vec_bytes > sizeof(buf) || (env->eflags & TF_MASK) ||
        cs->singlestep_enabled ||
        (env->dr[7] & (DR7_LOCAL_BP_MASK | DR7_GLOBAL_BP_MASK)) ||
        (env->hflags & (HF_GUEST_MASK | HF_SMM_MASK)) ||
        ((addr ^ (addr + store->vec_bytes - 1)) & TARGET_PAGE_MASK)) {
        return false;
    }
    gpa = cpu_get_phys_page_attrs_debug(cs, addr & TARGET_PAGE_MASK, &attrs);
    if (gpa == -1) {
        return false;
    }
    for (i = 0; i < store->vec_bytes / 8; i++) {
        stq_le_p(buf + 8 * i, env->xmm_regs[store->vec_reg].ZMM_Q(i));
    }
    trace_kvm_spp_x86_vec_store(cs->cpu_index, env->eip, store->vec_reg,
                                gpa + (addr & ~TARGET_PAGE_MASK),
                                store->vec_bytes);
    address_space_write(&address_space_memory,
                        gpa + (addr & ~TARGET_PAGE_MASK),
                        cpu_get_mem_attrs(env), buf, store->vec_bytes);
    /* The instruction retires: past it, no interrupt shadow, no RF. */
    env->eip += store->insn_len;
    if (!(env->hflags & HF_CS64_MASK)) {
        env->eip &= env->hflags & HF_CS32_MASK ? 0xffffffff : 0xffff;
    }
    env->hflags &= ~HF_INHIBIT_IRQ_MASK;
    env->eflags &= ~RF_MASK;
    return true;
}

/*
 * Run one instruction of @cs in KVM while the caller holds the BQL and
 * the other vCPUs are stopped.  Completes the MMIO the instruction may
 * also do.  Returns the exit that ended the step, or -1.
 */
static int kvm_spp_x86_single_step(CPUState *cs, struct kvm_run *run)
{
    CPUX86State *env = &X86_CPU(cs)->env;
    int saved = cs->singlestep_enabled;
    int sstep = kvm_spp_sstep_flags();
    Error *err = NULL;
    int r, tries = 0, exit_reason = -1;
    bool kicked = false;

    if (!sstep) {
        error_report("sub-page protection: this KVM cannot single-step");
        return -1;
    }
    /* An interrupt handler run within the step is judged likewise. */
    cs->singlestep_enabled = sstep;
    r = kvm_update_guest_debug(cs, 0);
    if (!r && cs->vcpu_dirty) {
        r = kvm_arch_put_registers(cs, KVM_PUT_RUNTIME_STATE, &err);
        if (err) {
            error_report_err(err);
        }
        cs->vcpu_dirty = r != 0;
    }
    while (!r && tries++ < KVM_SPP_STEP_MAX_RUNS) {
        r = kvm_vcpu_ioctl(cs, KVM_RUN, 0);
        if (r == -EINTR || r == -EAGAIN) {
            /*
             * A kick (run_on_cpu() work, an exit request): finish the
             * step first, then honour it (below).
             */
            kicked = true;
            qatomic_set(&run->immediate_exit, 0);
            /* as kvm_eat_signals(): immediate_exit before exit_request */
            smp_wmb();
            r = 0;
            continue;
        }
        if (r < 0) {
            break;
        }
        if (run->exit_reason != KVM_EXIT_MMIO) {
            exit_reason = run->exit_reason;
            break;
        }
        address_space_rw(&address_space_memory, run->mmio.phys_addr,
                         cpu_get_mem_attrs(env), run->mmio.data,
                         run->mmio.len, run->mmio.is_write);
    }
    cs->singlestep_enabled = saved;
    kvm_update_guest_debug(cs, 0);
    if (kicked) {
        /*
         * The kick this loop took must still end kvm_cpu_exec(): work
         * queued by run_on_cpu() sets no exit request, and a guest that
         * does not exit again would leave its caller (the main loop,
         * with the monitor) waiting for ever.  The next KVM_RUN returns
         * at once.
         */
        qatomic_set(&run->immediate_exit, 1);
    }
    return exit_reason;
}

/* What KVM does itself when it does not exit on an emulation failure. */
static bool kvm_spp_x86_queue_ud(CPUX86State *env)
{
    if (env->exception_nr != -1 || env->exception_pending ||
        env->exception_injected) {
        return false;
    }
    env->exception_nr = EXCP06_ILLOP;
    env->exception_injected = 1;
    env->has_error_code = 0;
    return true;
}

static bool kvm_spp_x86_emulation_failure(CPUState *cs, struct kvm_run *run,
                                          int *ret)
{
    CPUX86State *env = &X86_CPU(cs)->env;
    uint64_t gfns[SPP_STEP_MAX_PAGES];
    unsigned phases[SPP_STEP_MAX_PAGES];
    SppX86Store store = { 0 };
    SppX86Decode dec;
    SppStep *step;
    int n = 0, exit_reason;

    if (kvm_spp_hw_active()) {
        return false;
    }
    kvm_cpu_synchronize_state(cs);
    bql_lock();
    dec = kvm_spp_x86_store(cs, run, &store);
    if (dec == SPP_X86_STORE) {
        n = kvm_spp_x86_pages(cs, &store, gfns, phases);
    }
    bql_unlock();
    trace_kvm_spp_x86_emulation_failure(cs->cpu_index, env->eip, dec,
                                        store.addr, store.size, n);

    if (n < 0) {
        error_report("sub-page protection: the store at rip 0x%"
                     PRIx64 " spans more than %d pages",
                     (uint64_t)env->eip, SPP_STEP_MAX_PAGES);
    }
    if (n > 0) {
        bool done;

        kvm_x86_writer_at_rip(cs);
        done = kvm_spp_x86_vec_store(cs, &store);
        kvm_x86_writer_clear();
        if (done) {
            *ret = 0;
            return true;
        }
    }
    if (n <= 0) {
        /*
         * Not a store to trapped memory, or not one the fallback can
         * run.  With KVM_CAP_EXIT_ON_EMULATION_FAILURE on, do what KVM
         * would have done outside ring 0 of the L1 guest: raise #UD.
         */
        if (kvm_spp_exit_on_emulation_failure() &&
            ((env->hflags & HF_CPL_MASK) || (env->hflags & HF_GUEST_MASK)) &&
            kvm_spp_x86_queue_ud(env)) {
            *ret = 0;
            return true;
        }
        return false;
    }

    /* Nothing else may touch the pages while they are plain RAM. */
    cpu_exec_end(cs);
    start_exclusive();
    bql_lock();
    step = spp_step_begin(gfns, phases, n);
    exit_reason = KVM_EXIT_DEBUG;
    if (step) {
        /* Unless an interrupt handler may run first within the step */
        if (kvm_spp_sstep_flags() & SSTEP_NOIRQ) {
            kvm_x86_writer_at_rip(cs);
        }
        exit_reason = kvm_spp_x86_single_step(cs, run);
        spp_step_end(step, cpu_get_mem_attrs(env));
        kvm_x86_writer_clear();
    }
    bql_unlock();
    end_exclusive();
    cpu_exec_start(cs);

    switch (exit_reason) {
    case KVM_EXIT_DEBUG:
        *ret = 0;
        break;
    case KVM_EXIT_SHUTDOWN:
        qemu_system_reset_request(SHUTDOWN_CAUSE_GUEST_RESET);
        *ret = EXCP_INTERRUPT;
        break;
    default:
        error_report("sub-page protection: stepping the store at rip 0x%"
                     PRIx64 " ended with KVM exit %d", (uint64_t)env->eip,
                     exit_reason);
        *ret = -1;
    }
    return true;
}

static void kvm_spp_x86_register(void)
{
    kvm_spp_set_emulation_failure_handler(kvm_spp_x86_emulation_failure);
}

type_init(kvm_spp_x86_register)
