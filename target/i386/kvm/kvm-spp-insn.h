/*
 * Sub-page write protection (SPP): where an x86 instruction may store
 *
 * KVM reports an instruction its emulator cannot run without saying
 * which address it was writing.  This decoder finds, from the
 * instruction bytes and the registers, the memory the instruction may
 * store to, so that only those pages need to be lifted for the step.
 * It over-approximates the size: it never needs to be exact, only to
 * cover every byte the instruction can write.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef KVM_SPP_INSN_H
#define KVM_SPP_INSN_H

/* Register numbers follow QEMU's R_EAX..R_R15 and R_ES..R_GS. */
typedef struct SppX86Context {
    uint64_t regs[16];
    uint64_t seg_base[6];
    uint64_t rip;               /* offset of the instruction within CS */
    unsigned code_bits;         /* 16, 32 or 64 */
    uint32_t xsave_size;        /* most bytes an XSAVE-family store writes */
} SppX86Context;

/* At most this many bytes are stored by anything but XSAVE/FXSAVE. */
#define SPP_X86_MAX_STORE 64

typedef struct SppX86Store {
    uint64_t addr;              /* linear address */
    uint64_t size;              /* bytes from @addr that may be written */
    /*
     * For a plain store of a vector register (MOVQ, MOVDQU, MOVUPS and
     * their aligned, non-temporal and VEX forms): it writes exactly the
     * low @vec_bytes bytes of XMM/YMM register @vec_reg to @addr and
     * nothing else.  @vec_bytes is 0 for every other store.
     */
    unsigned vec_bytes;
    unsigned vec_reg;
    unsigned insn_len;          /* the instruction's length in bytes */
    /*
     * A string store (INS, MOVS, STOS): @addr is the element ES:[rDI] the
     * next round writes, @size bytes; each round moves rDI by @size.
     */
    bool string;
} SppX86Store;

typedef enum SppX86Decode {
    SPP_X86_STORE,              /* *store is filled */
    SPP_X86_NO_MEMORY,          /* no memory operand this decoder handles */
    SPP_X86_UNKNOWN,            /* truncated, or addresses it cannot tell */
} SppX86Decode;

/*
 * Decode the instruction in @insn (@len bytes, at most 15 are used)
 * and fill @store with the linear range it may store to.
 */
SppX86Decode spp_x86_insn_store(const uint8_t *insn, size_t len,
                                const SppX86Context *ctx,
                                SppX86Store *store);

/*
 * Locked read-modify-writes.  KVM's emulator performs a locked
 * instruction on a read-only memslot as a read and a later, separate
 * write ("emulating exchange as write"), so another vCPU's update in
 * between is lost.  At the write exit the instruction has retired and
 * RIP is past it; these functions recognise it from the bytes that end
 * there and redo it atomically.
 */
typedef enum SppX86RmwOp {
    /* The order of the ALU group (ModRM.reg of 0x80..0x83). */
    SPP_X86_RMW_ADD,
    SPP_X86_RMW_OR,
    SPP_X86_RMW_ADC,
    SPP_X86_RMW_SBB,
    SPP_X86_RMW_AND,
    SPP_X86_RMW_SUB,
    SPP_X86_RMW_XOR,
    SPP_X86_RMW_INC,
    SPP_X86_RMW_DEC,
    SPP_X86_RMW_NOT,
    SPP_X86_RMW_NEG,
    SPP_X86_RMW_XADD,
    SPP_X86_RMW_XCHG,
    SPP_X86_RMW_CMPXCHG,
    SPP_X86_RMW_BTS,
    SPP_X86_RMW_BTR,
    SPP_X86_RMW_BTC,
} SppX86RmwOp;

typedef struct SppX86Rmw {
    SppX86RmwOp op;
    uint64_t addr;              /* linear address of the memory operand */
    unsigned size;              /* operand size in bytes: 1, 2, 4 or 8 */
    bool has_reg;               /* the source is register @reg... */
    unsigned reg;               /* (QEMU's numbering, R_EAX..R_R15) */
    bool reg_high8;             /* ...its bits 8..15 (AH, CH, DH, BH) */
    uint64_t imm;               /* else this immediate, sign-extended */
    unsigned insn_len;
    unsigned prefix_len;        /* prefix bytes, LOCK and REX among them */
} SppX86Rmw;

/*
 * Whether the @len bytes at @insn are exactly one locked read-modify-
 * write of guest memory (with a LOCK prefix, or XCHG with memory, which
 * locks without one): ADD, OR, ADC, SBB, AND, SUB, XOR, INC, DEC, NOT,
 * NEG, XADD, XCHG, CMPXCHG, BTS, BTR, BTC.  The address is computed from
 * @ctx (@ctx->rip: where the instruction starts); for BT* with a
 * register bit offset, it is that of the operand holding the bit.
 */
bool spp_x86_insn_rmw(const uint8_t *insn, size_t len,
                      const SppX86Context *ctx, SppX86Rmw *rmw);

/* The arithmetic flags in RFLAGS: CF, PF, AF, ZF, SF, OF. */
#define SPP_X86_CF 0x001
#define SPP_X86_PF 0x004
#define SPP_X86_AF 0x010
#define SPP_X86_ZF 0x040
#define SPP_X86_SF 0x080
#define SPP_X86_OF 0x800
#define SPP_X86_ARITH_FLAGS 0x8d5

/*
 * @rmw applied to the memory operand @mem with source operand @src (the
 * register's value, or the immediate; for CMPXCHG the accumulator's):
 * returns the value to store, and updates the arithmetic flags in
 * *@flags as the instruction does (it leaves those the instruction
 * leaves, and those it leaves undefined).  For CMPXCHG, the source
 * register's value is @new and the result is @mem when the comparison
 * fails; for the others @new is unused.
 */
uint64_t spp_x86_rmw_apply(const SppX86Rmw *rmw, uint64_t mem, uint64_t src,
                           uint64_t new, uint64_t *flags);

/*
 * Register @reg of @regs (16 of them, QEMU's numbering) at the operand
 * size of @rmw (@high8: AH, CH, DH or BH), and its update, as the
 * instruction writes it (a 32-bit value clears the upper half).
 */
uint64_t spp_x86_rmw_reg(const SppX86Rmw *rmw, const uint64_t *regs,
                         unsigned reg, bool high8);
void spp_x86_rmw_set_reg(const SppX86Rmw *rmw, uint64_t *regs, unsigned reg,
                         bool high8, uint64_t v);

/*
 * Whether @rmw is consistent with what the vCPU shows after it: the
 * registers @regs and flags @rflags after the instruction, and the
 * value @data it stored.  The store and the flags tell the operation's
 * result, so another instruction whose bytes happen to end the same way
 * is very unlikely to pass.  False for ADC and SBB, whose carry in is
 * lost.
 */
bool spp_x86_rmw_check(const SppX86Rmw *rmw, const uint64_t *regs,
                       uint64_t rflags, uint64_t data);

/*
 * Whether nothing but @rmw can have been the instruction.  @insn holds
 * the @avail bytes that end where it ends (at RIP); bit n of @accepted
 * is set for each start n bytes back that decodes to @rmw itself (with
 * more prefixes).  @ctx is the vCPU's, with @ctx->rip where @rmw starts;
 * @offset is the written address's offset in its page.  Starts that
 * only drop some of @rmw's prefixes are @rmw without them; any other
 * start that decodes to a store of exactly the bytes up to RIP that may
 * reach @offset (say, a MOV whose immediate ends in the bytes of an
 * XCHG) may be what ran instead.
 */
bool spp_x86_rmw_unambiguous(const SppX86Rmw *rmw, const uint8_t *insn,
                             size_t avail, uint32_t accepted,
                             const SppX86Context *ctx, unsigned offset);

#endif
