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
     * nothing else, and is @insn_len bytes long.  @vec_bytes is 0 for
     * every other store.
     */
    unsigned vec_bytes;
    unsigned vec_reg;
    unsigned insn_len;
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

#endif
