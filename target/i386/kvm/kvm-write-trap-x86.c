/*
 * Atomic read-modify-writes on write-trapped pages under x86 KVM
 *
 * A write-trapped page is a read-only memslot, so KVM's instruction
 * emulator runs every store to it.  For a locked instruction (LOCK ADD,
 * XADD, CMPXCHG, XCHG...) it cannot map the page for writing and
 * performs the exchange as a plain write: it reads the old value,
 * computes, retires the instruction (registers, flags and RIP), and
 * exits with the result as an MMIO write.  Another vCPU's update made
 * between the read and the write is lost.
 *
 * At that exit, find the instruction: it ends at RIP.  Decode the up to
 * 15 bytes before RIP at each possible start; a candidate must be a
 * locked read-modify-write exactly that long whose memory operand,
 * computed from the registers, translates to the exit's address, with
 * the exit's size, and whose result and flags agree with the data and
 * RFLAGS the vCPU shows.  If one operation is left (several starts may
 * decode to the same one, e.g. with a redundant prefix), redo it on
 * host memory with host atomics, against the value memory holds now,
 * and correct the registers and flags where they differ from what the
 * emulator computed.  Anything else is written as it came.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qemu/atomic.h"
#include "qemu/error-report.h"
#include "qemu/module.h"
#include "cpu.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/kvm-spp.h"
#include "system/kvm-write-trap.h"
#include "system/spp-backend.h"
#include "exec/address-spaces.h"
#include "exec/ram-write-trap.h"
#include "kvm-spp-insn.h"
#include "kvm-spp-x86.h"
#include "trace.h"

#define KVM_X86_INSN_MAX 15

typedef struct KvmX86Rmw {
    SppX86Rmw insn;
    uint64_t regs[16];          /* after the instruction, QEMU's order */
    uint64_t rflags;
    uint64_t data;              /* what the emulator stored */
    bool changed;               /* regs or rflags corrected */
} KvmX86Rmw;

static void kvm_x86_rmw_get_regs(const struct kvm_regs *k, uint64_t *r)
{
    r[R_EAX] = k->rax;
    r[R_ECX] = k->rcx;
    r[R_EDX] = k->rdx;
    r[R_EBX] = k->rbx;
    r[R_ESP] = k->rsp;
    r[R_EBP] = k->rbp;
    r[R_ESI] = k->rsi;
    r[R_EDI] = k->rdi;
    memcpy(&r[8], &k->r8, 8 * sizeof(uint64_t));
}

static void kvm_x86_rmw_put_regs(const uint64_t *r, struct kvm_regs *k)
{
    k->rax = r[R_EAX];
    k->rcx = r[R_ECX];
    k->rdx = r[R_EDX];
    k->rbx = r[R_EBX];
    k->rsp = r[R_ESP];
    k->rbp = r[R_EBP];
    k->rsi = r[R_ESI];
    k->rdi = r[R_EDI];
    memcpy(&k->r8, &r[8], 8 * sizeof(uint64_t));
}

static uint64_t kvm_x86_host_load(void *p, unsigned size)
{
    switch (size) {
    case 1:
        return qatomic_read((uint8_t *)p);
    case 2:
        return qatomic_read((uint16_t *)p);
    case 4:
        return qatomic_read((uint32_t *)p);
    default:
        return qatomic_read__nocheck((uint64_t *)p);
    }
}

/* Compare and exchange; returns the value found. */
static uint64_t kvm_x86_host_cmpxchg(void *p, unsigned size, uint64_t old,
                                     uint64_t new)
{
    switch (size) {
    case 1:
        return qatomic_cmpxchg((uint8_t *)p, (uint8_t)old, (uint8_t)new);
    case 2:
        return qatomic_cmpxchg((uint16_t *)p, (uint16_t)old, (uint16_t)new);
    case 4:
        return qatomic_cmpxchg((uint32_t *)p, (uint32_t)old, (uint32_t)new);
    default:
        return qatomic_cmpxchg__nocheck((uint64_t *)p, old, new);
    }
}

static uint64_t kvm_x86_host_xchg(void *p, unsigned size, uint64_t v)
{
    switch (size) {
    case 1:
        return qatomic_xchg((uint8_t *)p, (uint8_t)v);
    case 2:
        return qatomic_xchg((uint16_t *)p, (uint16_t)v);
    case 4:
        return qatomic_xchg((uint32_t *)p, (uint32_t)v);
    default:
        return qatomic_xchg__nocheck((uint64_t *)p, v);
    }
}

static void kvm_x86_rmw_set_reg(KvmX86Rmw *r, unsigned reg, bool high8,
                                uint64_t v)
{
    if (spp_x86_rmw_reg(&r->insn, r->regs, reg, high8) != v) {
        spp_x86_rmw_set_reg(&r->insn, r->regs, reg, high8, v);
        r->changed = true;
    }
}

/* Redo the instruction atomically at @host (MemoryWriteTrapRmwFn). */
static void kvm_x86_rmw_do(void *host, void *opaque)
{
    KvmX86Rmw *r = opaque;
    SppX86Rmw *i = &r->insn;
    unsigned size = i->size;
    uint64_t mask = size == 8 ? UINT64_MAX : (1ULL << (size * 8)) - 1;
    uint64_t f = r->rflags, src, cur, found, res;

    switch (i->op) {
    case SPP_X86_RMW_CMPXCHG:
        if (!(r->rflags & SPP_X86_ZF)) {
            /*
             * It failed at its read, and writes back what it read: as a
             * failed compare at that moment it stores nothing.
             */
            return;
        }
        src = spp_x86_rmw_reg(i, r->regs, R_EAX, false);
        found = kvm_x86_host_cmpxchg(host, size, src, r->data);
        if (found != src) {
            spp_x86_rmw_apply(i, found, src, r->data, &f);
            kvm_x86_rmw_set_reg(r, R_EAX, false, found);
        }
        break;
    case SPP_X86_RMW_XCHG:
        found = kvm_x86_host_xchg(host, size, r->data);
        kvm_x86_rmw_set_reg(r, i->reg, i->reg_high8, found);
        break;
    default:
        if (i->op == SPP_X86_RMW_XADD) {
            /* The register holds the old value: the addend is the rest. */
            src = (r->data - spp_x86_rmw_reg(i, r->regs, i->reg,
                                             i->reg_high8)) & mask;
        } else if (i->has_reg) {
            src = spp_x86_rmw_reg(i, r->regs, i->reg, i->reg_high8);
        } else {
            src = i->imm;
        }
        cur = kvm_x86_host_load(host, size);
        for (;;) {
            f = r->rflags;
            res = spp_x86_rmw_apply(i, cur, src, 0, &f);
            found = kvm_x86_host_cmpxchg(host, size, cur, res);
            if (found == cur) {
                break;
            }
            cur = found;
        }
        if (i->op == SPP_X86_RMW_XADD) {
            kvm_x86_rmw_set_reg(r, i->reg, i->reg_high8, cur);
        }
    }
    if (f != r->rflags) {
        r->rflags = f;
        r->changed = true;
    }
}

static bool kvm_x86_translate(CPUState *cs, uint64_t linear, hwaddr *gpa)
{
    struct kvm_translation tr = { .linear_address = linear };

    if (kvm_vcpu_ioctl(cs, KVM_TRANSLATE, &tr) < 0 || !tr.valid) {
        return false;
    }
    *gpa = tr.physical_address;
    return true;
}

/* Read @n bytes at linear address @lin, all in one page; false if not. */
static bool kvm_x86_read_linear(CPUState *cs, uint64_t lin, uint8_t *buf,
                                unsigned n, MemTxAttrs attrs)
{
    hwaddr gpa;

    return kvm_x86_translate(cs, lin, &gpa) &&
           address_space_read(&address_space_memory, gpa, attrs, buf, n) ==
           MEMTX_OK;
}

/*
 * The bytes before linear address @end into @buf (KVM_X86_INSN_MAX of
 * them, the last at @end - 1); returns how many could be read.
 */
static unsigned kvm_x86_read_before(CPUState *cs, uint64_t end,
                                    uint8_t *buf, MemTxAttrs attrs)
{
    unsigned got = 0;

    while (got < KVM_X86_INSN_MAX) {
        uint64_t last = end - got - 1;
        unsigned n = MIN(KVM_X86_INSN_MAX - got,
                         (last & ~TARGET_PAGE_MASK) + 1);

        if (!kvm_x86_read_linear(cs, last - (n - 1),
                                 buf + KVM_X86_INSN_MAX - got - n, n, attrs)) {
            break;
        }
        got += n;
    }
    return got;
}

#define KVM_X86_SYNC (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)

/*
 * The vCPU's registers at this exit.  Where KVM_CAP_SYNC_REGS offers
 * them, ask KVM to leave them in kvm_run at every exit from the first
 * trapped write on, which saves two vCPU ioctls a trapped write.
 */
static bool kvm_x86_get_regs(CPUState *cs, struct kvm_run *run,
                             struct kvm_regs *regs, struct kvm_sregs *sregs)
{
    static int sync = -1;

    if (sync < 0) {
        sync = (kvm_vm_check_extension(kvm_state, KVM_CAP_SYNC_REGS) &
                KVM_X86_SYNC) == KVM_X86_SYNC;
    }
    if (sync && (run->kvm_valid_regs & KVM_X86_SYNC) == KVM_X86_SYNC) {
        *regs = run->s.regs.regs;
        *sregs = run->s.regs.sregs;
        return true;
    }
    if (kvm_vcpu_ioctl(cs, KVM_GET_REGS, regs) < 0 ||
        kvm_vcpu_ioctl(cs, KVM_GET_SREGS, sregs) < 0) {
        return false;
    }
    if (sync) {
        /*
         * KVM fills kvm_run from the next exit on: for this one, a later
         * call (the writer's registers, after the read-modify-write
         * check) must find what was read here.
         */
        run->s.regs.regs = *regs;
        run->s.regs.sregs = *sregs;
        run->kvm_valid_regs |= KVM_X86_SYNC;
    }
    return true;
}

/*
 * Whether the instruction at linear @rip is a string store: KVM exits
 * in the middle of a REP MOVS/STOS/INS with RIP still at it, so the
 * bytes before RIP are another instruction's.
 */
static bool kvm_x86_string_at(CPUState *cs, uint64_t rip, MemTxAttrs attrs)
{
    uint8_t b[8];
    unsigned n = MIN(sizeof(b), TARGET_PAGE_SIZE - (rip & ~TARGET_PAGE_MASK));
    unsigned i;

    if (!kvm_x86_read_linear(cs, rip, b, n, attrs)) {
        return true;            /* cannot tell: assume the worst */
    }
    for (i = 0; i < n; i++) {
        switch (b[i]) {
        case 0x26: case 0x2e: case 0x36: case 0x3e: case 0x64: case 0x65:
        case 0x66: case 0x67: case 0xf0: case 0xf2: case 0xf3:
        case 0x40 ... 0x4f:     /* REX (and INC/DEC, no store, elsewhere) */
            continue;
        case 0xa4: case 0xa5: case 0xaa: case 0xab: case 0x6c: case 0x6d:
            return true;
        default:
            return false;
        }
    }
    return true;                /* only prefixes in the page: be safe */
}

/*
 * The decoders' view of the vCPU (registers, segment bases, code size);
 * returns the linear address RIP points at.
 */
static uint64_t kvm_x86_context(const struct kvm_regs *kregs,
                                const struct kvm_sregs *sregs,
                                SppX86Context *ctx)
{
    kvm_x86_rmw_get_regs(kregs, ctx->regs);
    ctx->seg_base[R_ES] = sregs->es.base;
    ctx->seg_base[R_CS] = sregs->cs.base;
    ctx->seg_base[R_SS] = sregs->ss.base;
    ctx->seg_base[R_DS] = sregs->ds.base;
    ctx->seg_base[R_FS] = sregs->fs.base;
    ctx->seg_base[R_GS] = sregs->gs.base;
    if ((sregs->efer & MSR_EFER_LMA) && sregs->cs.l) {
        ctx->code_bits = 64;
        return kregs->rip;
    }
    ctx->code_bits = (sregs->cr0 & CR0_PE_MASK) && sregs->cs.db &&
                     !(kregs->rflags & VM_MASK) ? 32 : 16;
    return (sregs->cs.base + kregs->rip) & 0xffffffffULL;
}

static bool kvm_x86_same_rmw(const SppX86Rmw *a, const SppX86Rmw *b)
{
    return a->op == b->op && a->size == b->size &&
           a->has_reg == b->has_reg && a->reg == b->reg &&
           a->reg_high8 == b->reg_high8 && a->imm == b->imm;
}

/*
 * Who wrote, for SPP_VIOLATION.  KVM's emulator has moved RIP past the
 * storing instruction by the time QEMU sees the write, so its address is
 * given only where this file found the instruction itself.
 */
static __thread bool kvm_x86_writer_pc_known;
static __thread uint64_t kvm_x86_writer_pc;

void kvm_x86_writer_at_rip(CPUState *cs)
{
    CPUX86State *env = &X86_CPU(cs)->env;

    kvm_x86_writer_pc = env->segs[R_CS].base + env->eip;
    if (!(env->hflags & HF_CS64_MASK)) {
        kvm_x86_writer_pc = (uint32_t)kvm_x86_writer_pc;
    }
    kvm_x86_writer_pc_known = true;
}

void kvm_x86_writer_clear(void)
{
    kvm_x86_writer_pc_known = false;
}

static bool kvm_x86_write_trap_rmw(CPUState *cs, struct kvm_run *run,
                                   MemTxAttrs attrs)
{
    unsigned len = run->mmio.len, avail, n, found = 0;
    uint32_t accepted = 0;      /* bit n: the n bytes before RIP are one */
    hwaddr gpa = run->mmio.phys_addr, got;
    uint8_t buf[KVM_X86_INSN_MAX];
    struct kvm_regs kregs;
    struct kvm_sregs sregs;
    SppX86Context ctx = { 0 };
    KvmX86Rmw r = { 0 };
    SppX86Rmw cand;
    uint64_t end;
    bool done;

    /* Host atomics need a naturally aligned operand; SMM has its own. */
    if ((len != 1 && len != 2 && len != 4 && len != 8) ||
        (gpa & (len - 1)) || attrs.secure) {
        return false;
    }
    if (!kvm_x86_get_regs(cs, run, &kregs, &sregs)) {
        return false;
    }
    if ((kregs.rflags & TF_MASK) || cs->singlestep_enabled) {
        /* KVM_SET_REGS would drop the #DB queued after the instruction. */
        return false;
    }
    kvm_x86_rmw_get_regs(&kregs, r.regs);
    end = kvm_x86_context(&kregs, &sregs, &ctx);
    avail = kvm_x86_read_before(cs, end, buf, attrs);

    memcpy(&r.data, run->mmio.data, sizeof(r.data));
    r.data = le64_to_cpu(r.data) & (len == 8 ? UINT64_MAX :
                                    (1ULL << (len * 8)) - 1);
    r.rflags = kregs.rflags;
    for (n = 1; n <= avail; n++) {
        ctx.rip = kregs.rip - n;
        if (!spp_x86_insn_rmw(buf + KVM_X86_INSN_MAX - n, n, &ctx, &cand) ||
            cand.size != len ||
            !kvm_x86_translate(cs, cand.addr, &got) || got != gpa ||
            !spp_x86_rmw_check(&cand, r.regs, r.rflags, r.data)) {
            continue;
        }
        if (found++ && !kvm_x86_same_rmw(&cand, &r.insn)) {
            return false;       /* instructions of different kinds end here */
        }
        accepted |= 1U << n;
        if (found == 1) {
            r.insn = cand;      /* the shortest */
        }
    }
    ctx.rip = kregs.rip - r.insn.insn_len;
    if (!found ||
        !spp_x86_rmw_unambiguous(&r.insn, buf + KVM_X86_INSN_MAX - avail,
                                 avail, accepted, &ctx,
                                 gpa & ~TARGET_PAGE_MASK) ||
        kvm_x86_string_at(cs, end, attrs)) {
        return false;
    }
    kvm_x86_writer_pc = sregs.cs.base + ctx.rip;
    if (ctx.code_bits != 64) {
        kvm_x86_writer_pc = (uint32_t)kvm_x86_writer_pc;
    }
    kvm_x86_writer_pc_known = true;
    done = address_space_write_trap_rmw(&address_space_memory, gpa, attrs,
                                        r.data, len, kvm_x86_rmw_do, &r);
    kvm_x86_writer_pc_known = false;
    if (!done) {
        return false;
    }
    trace_kvm_write_trap_x86_rmw(cs->cpu_index, kregs.rip - r.insn.insn_len,
                                 r.insn.op, gpa, len, r.changed);
    if (r.changed) {
        kvm_x86_rmw_put_regs(r.regs, &kregs);
        kregs.rflags = r.rflags;
        if (kvm_vcpu_ioctl(cs, KVM_SET_REGS, &kregs) < 0) {
            error_report_once("sub-page protection: cannot correct the "
                              "registers of vCPU %d after an atomic "
                              "operation at rip 0x%" PRIx64, cs->cpu_index,
                              (uint64_t)kregs.rip);
        }
    }
    return true;
}

/*
 * Where the store @st, decoded with the registers as they are at the
 * exit, wrote: for a string store, KVM has already moved rDI past the
 * element it wrote (by the time it exits for the write, in every round).
 */
static uint64_t kvm_x86_stored_at(const SppX86Store *st,
                                  const struct kvm_regs *kregs,
                                  const SppX86Context *ctx)
{
    uint64_t addr = st->addr;

    if (st->string) {
        addr += (kregs->rflags & DF_MASK) ? st->size : -st->size;
        if (ctx->code_bits != 64) {
            addr = (uint32_t)addr;
        }
    }
    return addr;
}

/*
 * At a write exit, the store that ended at RIP: the only start in the
 * bytes before RIP that decodes to one instruction ending at RIP and
 * storing, with the registers as they are now, at the exit's address.
 * False when none or more than one does.  A string store that KVM
 * interrupted has RIP still at it: that one is read forward.
 */
static bool kvm_x86_store_pc(CPUState *cs, const struct kvm_regs *kregs,
                             const struct kvm_sregs *sregs, uint64_t *pc)
{
    struct kvm_run *run = cs->kvm_run;
    MemTxAttrs attrs = MEMTXATTRS_UNSPECIFIED;
    uint8_t buf[KVM_X86_INSN_MAX];
    SppX86Context ctx = { 0 };
    SppX86Store st;
    unsigned avail, n, found = 0;
    uint64_t end, start = 0;
    hwaddr got;

    if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write) {
        return false;
    }
    end = kvm_x86_context(kregs, sregs, &ctx);
    if (kvm_x86_string_at(cs, end, attrs)) {
        /*
         * KVM leaves RIP at a REP string store until its last round:
         * the writer is there if it stores at the exit's address now.
         */
        n = MIN(KVM_X86_INSN_MAX, TARGET_PAGE_SIZE - (end & ~TARGET_PAGE_MASK));
        ctx.rip = kregs->rip;
        if (!kvm_x86_read_linear(cs, end, buf, n, attrs) ||
            spp_x86_insn_store(buf, n, &ctx, &st) != SPP_X86_STORE ||
            !kvm_x86_translate(cs, kvm_x86_stored_at(&st, kregs, &ctx),
                               &got) ||
            got != run->mmio.phys_addr) {
            return false;
        }
        *pc = end;
        return true;
    }
    avail = kvm_x86_read_before(cs, end, buf, attrs);
    for (n = 1; n <= avail; n++) {
        ctx.rip = kregs->rip - n;
        if (spp_x86_insn_store(buf + KVM_X86_INSN_MAX - n, n, &ctx, &st) !=
            SPP_X86_STORE || st.insn_len != n || st.size < run->mmio.len ||
            !kvm_x86_translate(cs, kvm_x86_stored_at(&st, kregs, &ctx),
                               &got) ||
            got != run->mmio.phys_addr) {
            continue;
        }
        if (found++) {
            return false;       /* two readings end here: say nothing */
        }
        start = end - n;
    }
    *pc = start;
    return found == 1;
}

static bool kvm_x86_writer(CPUState *cs, uintptr_t ra, SppCpuWriter *w)
{
    struct kvm_regs kregs;
    struct kvm_sregs sregs;

    if (!kvm_enabled() || !kvm_x86_get_regs(cs, cs->kvm_run, &kregs,
                                             &sregs)) {
        return false;
    }
    w->has_pc = kvm_x86_writer_pc_known;
    w->pc = kvm_x86_writer_pc;
    if (!w->has_pc) {
        w->has_pc = kvm_x86_store_pc(cs, &kregs, &sregs, &w->pc);
    }
    w->has_ring = true;
    w->ring = !(sregs.cr0 & CR0_PE_MASK) ? 0 :
              (kregs.rflags & VM_MASK) ? 3 : sregs.ss.dpl;
    if (sregs.cr0 & CR0_PG_MASK) {
        w->has_pt_root = true;
        w->pt_root = sregs.cr3;
    }
    return true;
}

static void kvm_write_trap_x86_register(void)
{
    kvm_write_trap_set_rmw_handler(kvm_x86_write_trap_rmw);
    spp_add_writer_reader(kvm_x86_writer);
}

type_init(kvm_write_trap_x86_register)
