/*
 * Sub-page write protection (SPP): where an x86 instruction may store
 *
 * Handles the legacy, 0F, 0F38 and 0F3A opcode maps, VEX and EVEX, 16-,
 * 32- and 64-bit addressing, segment overrides and RIP-relative
 * operands.  Gathers and scatters (vector indexes) and AMD's XOP are
 * reported as unknown.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/host-utils.h"
#include "kvm-spp-insn.h"

enum { REG_SP = 4, REG_BP = 5, REG_SI = 6, REG_DI = 7, REG_BX = 3 };
enum { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_NONE = -1 };

/* The instruction as far as it has been read. */
typedef struct SppX86Dec {
    const uint8_t *insn;
    size_t len;
    size_t pos;
    const SppX86Context *ctx;

    bool opsize;                /* 0x66 */
    bool adsize;                /* 0x67 */
    uint8_t rep;                /* 0xf2, 0xf3 or 0 */
    bool lock;                  /* 0xf0 */
    int seg;                    /* override, or SEG_NONE */
    bool rex, rex_w, rex_r, rex_x, rex_b;
    bool vex, evex;
    bool vex_l;                 /* VEX.L: 256-bit */
    uint8_t vex_pp;             /* VEX.pp: 0, 0x66, 0xf3, 0xf2 */
    unsigned map;               /* 0: one byte, 1: 0F, 2: 0F38, 3: 0F3A... */
    uint8_t op;
    uint8_t modrm;
} SppX86Dec;

static bool spp_x86_byte(SppX86Dec *d, uint8_t *b)
{
    if (d->pos >= d->len || d->pos >= 15) {
        return false;
    }
    *b = d->insn[d->pos++];
    return true;
}

static bool spp_x86_peek(const SppX86Dec *d, size_t ahead, uint8_t *b)
{
    if (d->pos + ahead >= d->len || d->pos + ahead >= 15) {
        return false;
    }
    *b = d->insn[d->pos + ahead];
    return true;
}

static bool spp_x86_onebyte_modrm(uint8_t op, bool mode64)
{
    if (op < 0x40) {
        return (op & 7) < 4;    /* the r/m forms of the ALU ops */
    }
    switch (op) {
    case 0x62:                  /* BOUND */
    case 0xc4:                  /* LES */
    case 0xc5:                  /* LDS */
        return !mode64;
    case 0x63:
    case 0x69:
    case 0x6b:
    case 0x80 ... 0x8f:
    case 0xc0:
    case 0xc1:
    case 0xc6:
    case 0xc7:
    case 0xd0 ... 0xd3:
    case 0xd8 ... 0xdf:
    case 0xf6:
    case 0xf7:
    case 0xfe:
    case 0xff:
        return true;
    }
    return false;
}

static bool spp_x86_0f_modrm(uint8_t op)
{
    switch (op) {
    case 0x04 ... 0x0c:
    case 0x0e:
    case 0x30 ... 0x37:
    case 0x77:
    case 0x80 ... 0x8f:
    case 0xa0 ... 0xa2:
    case 0xa8 ... 0xaa:
    case 0xc8 ... 0xcf:
        return false;
    }
    return true;
}

static unsigned spp_x86_imm_size(const SppX86Dec *d)
{
    unsigned reg = (d->modrm >> 3) & 7;
    unsigned z = (d->ctx->code_bits == 16) != d->opsize ? 2 : 4;

    switch (d->map) {
    case 0:
        switch (d->op) {
        case 0x80:
        case 0x82:
        case 0x83:
        case 0x6b:
        case 0xc0:
        case 0xc1:
        case 0xc6:
            return 1;
        case 0x69:
        case 0x81:
        case 0xc7:
            return z;
        case 0xf6:
            return reg < 2 ? 1 : 0;
        case 0xf7:
            return reg < 2 ? z : 0;
        }
        return 0;
    case 1:
        switch (d->op) {
        case 0x0f:              /* 3DNow!: the opcode byte follows */
        case 0x70 ... 0x73:
        case 0xa4:
        case 0xac:
        case 0xba:
        case 0xc2:
        case 0xc4 ... 0xc6:
            return 1;
        }
        return 0;
    case 3:
        return 1;
    }
    return 0;
}

/* Largest store of an instruction with a ModRM memory operand. */
static uint64_t spp_x86_store_size(const SppX86Dec *d)
{
    unsigned reg = (d->modrm >> 3) & 7;

    if (d->map == 0 && (d->op == 0xd9 || d->op == 0xdd) && reg == 6) {
        return 108;             /* FNSTENV, FNSAVE */
    }
    if (d->map == 1 && !d->vex && !d->evex) {
        if (d->op == 0xae && reg == 0) {
            return 512;         /* FXSAVE */
        }
        if ((d->op == 0xae && (reg == 4 || (reg == 6 && !d->opsize))) ||
            (d->op == 0xc7 && (reg == 4 || reg == 5))) {
            /* XSAVE, XSAVEOPT, XSAVEC, XSAVES */
            return MAX(d->ctx->xsave_size, 512);
        }
    }
    return SPP_X86_MAX_STORE;
}

/*
 * Bytes of a vector register that a plain register-to-memory move
 * stores (the whole XMM or YMM register, or the low 8 bytes for MOVQ),
 * or 0 if the instruction is anything else.  No immediate follows these.
 */
static unsigned spp_x86_vec_store(const SppX86Dec *d)
{
    uint8_t pp = d->vex ? d->vex_pp : d->rep ? d->rep : d->opsize ? 0x66 : 0;
    unsigned width = d->vex_l ? 32 : 16;

    if (d->map != 1 || d->evex) {
        return 0;
    }
    switch (d->op) {
    case 0x11:      /* (V)MOVUPS, (V)MOVUPD; F3/F2 are MOVSS/MOVSD */
    case 0x29:      /* (V)MOVAPS, (V)MOVAPD */
    case 0x2b:      /* (V)MOVNTPS, (V)MOVNTPD */
        return pp == 0 || pp == 0x66 ? width : 0;
    case 0x7f:      /* (V)MOVDQA, (V)MOVDQU; without a prefix MMX MOVQ */
        return pp == 0x66 || pp == 0xf3 ? width : 0;
    case 0xe7:      /* (V)MOVNTDQ; without a prefix MMX MOVNTQ */
        return pp == 0x66 ? width : 0;
    case 0xd6:      /* (V)MOVQ xmm to m64 */
        return pp == 0x66 && !d->vex_l ? 8 : 0;
    default:
        return 0;
    }
}

static uint64_t spp_x86_reg(const SppX86Dec *d, unsigned r, unsigned bits)
{
    uint64_t v = d->ctx->regs[r];

    return bits == 64 ? v : v & ((1ULL << bits) - 1);
}

static unsigned spp_x86_addr_bits(const SppX86Dec *d)
{
    switch (d->ctx->code_bits) {
    case 64:
        return d->adsize ? 32 : 64;
    case 32:
        return d->adsize ? 16 : 32;
    default:
        return d->adsize ? 32 : 16;
    }
}

static uint64_t spp_x86_linear(const SppX86Dec *d, int seg, uint64_t ea)
{
    if (d->seg != SEG_NONE) {
        seg = d->seg;
    }
    if (d->ctx->code_bits == 64) {
        /* Only FS and GS have a base in 64-bit mode. */
        return (seg == SEG_FS || seg == SEG_GS) ? d->ctx->seg_base[seg] + ea
                                                : ea;
    }
    return (d->ctx->seg_base[seg] + ea) & 0xffffffffULL;
}

static bool spp_x86_disp(SppX86Dec *d, unsigned bytes, int64_t *disp)
{
    uint64_t v = 0;
    unsigned i;
    uint8_t b;

    for (i = 0; i < bytes; i++) {
        if (!spp_x86_byte(d, &b)) {
            return false;
        }
        v |= (uint64_t)b << (8 * i);
    }
    switch (bytes) {
    case 1:
        *disp = (int8_t)v;
        break;
    case 2:
        *disp = (int16_t)v;
        break;
    case 4:
        *disp = (int32_t)v;
        break;
    default:
        *disp = 0;
    }
    return true;
}

/* The linear address of the ModRM memory operand; @lo..@hi for EVEX. */
static SppX86Decode spp_x86_modrm_addr(SppX86Dec *d, uint64_t *lo,
                                       uint64_t *hi)
{
    unsigned mod = d->modrm >> 6, rm = d->modrm & 7;
    unsigned bits = spp_x86_addr_bits(d);
    uint64_t mask = bits == 64 ? UINT64_MAX : (1ULL << bits) - 1;
    uint64_t ea = 0;
    int64_t disp = 0;
    int seg = SEG_DS;
    bool riprel = false;

    if (bits == 16) {
        static const int8_t base16[8] = {
            REG_BX, REG_BX, REG_BP, REG_BP, -1, -1, REG_BP, REG_BX };
        static const int8_t index16[8] = {
            REG_SI, REG_DI, REG_SI, REG_DI, REG_SI, REG_DI, -1, -1 };

        if (mod == 0 && rm == 6) {
            if (!spp_x86_disp(d, 2, &disp)) {
                return SPP_X86_UNKNOWN;
            }
        } else {
            if (base16[rm] >= 0) {
                ea += spp_x86_reg(d, base16[rm], 16);
                seg = base16[rm] == REG_BP ? SEG_SS : SEG_DS;
            }
            if (index16[rm] >= 0) {
                ea += spp_x86_reg(d, index16[rm], 16);
            }
            if (mod && !spp_x86_disp(d, mod == 1 ? 1 : 2, &disp)) {
                return SPP_X86_UNKNOWN;
            }
        }
    } else {
        unsigned dispbytes = mod == 1 ? 1 : mod == 2 ? 4 : 0;

        if (rm == 4) {
            uint8_t sib;
            unsigned scale, index, base;

            if (!spp_x86_byte(d, &sib)) {
                return SPP_X86_UNKNOWN;
            }
            scale = sib >> 6;
            index = ((sib >> 3) & 7) | (d->rex_x << 3);
            base = (sib & 7) | (d->rex_b << 3);
            if (index != REG_SP) {
                ea += spp_x86_reg(d, index, bits) << scale;
            }
            if ((sib & 7) == REG_BP && mod == 0) {
                dispbytes = 4;
            } else {
                ea += spp_x86_reg(d, base, bits);
                if ((base & 7) == REG_SP || (base & 7) == REG_BP) {
                    seg = SEG_SS;
                }
            }
        } else if (rm == 5 && mod == 0) {
            dispbytes = 4;
            riprel = d->ctx->code_bits == 64;
        } else {
            unsigned base = rm | (d->rex_b << 3);

            ea += spp_x86_reg(d, base, bits);
            if (rm == REG_BP) {
                seg = SEG_SS;
            }
        }
        if (!spp_x86_disp(d, dispbytes, &disp)) {
            return SPP_X86_UNKNOWN;
        }
    }

    if (riprel) {
        size_t end = d->pos + spp_x86_imm_size(d);

        if (end > d->len || end > 15) {
            return SPP_X86_UNKNOWN;
        }
        ea = d->ctx->rip + end;
    }
    if (d->evex && mod == 1) {
        /* disp8 is scaled by the operand's size N, 1 <= N <= 64. */
        *lo = spp_x86_linear(d, seg, (ea + MIN(disp, disp * 64)) & mask);
        *hi = spp_x86_linear(d, seg, (ea + MAX(disp, disp * 64)) & mask);
        if (*hi < *lo) {
            return SPP_X86_UNKNOWN;     /* wraps: do not guess */
        }
        return SPP_X86_STORE;
    }
    *lo = *hi = spp_x86_linear(d, seg, (ea + disp) & mask);
    return SPP_X86_STORE;
}

/* A store to seg:[rDI] or ES:[reg], which the ModRM byte does not name. */
static SppX86Decode spp_x86_reg_dest(SppX86Dec *d, int seg, unsigned reg,
                                     uint64_t size, SppX86Store *store)
{
    unsigned bits = spp_x86_addr_bits(d);

    store->addr = spp_x86_linear(d, seg, spp_x86_reg(d, reg, bits));
    store->size = size;
    store->insn_len = d->pos;
    return SPP_X86_STORE;
}

/*
 * The operand size of an instruction whose byte form is the even opcode
 * (INS has no 64-bit form: REX.W leaves it at 4 bytes)
 */
static unsigned spp_x86_osize(const SppX86Dec *d)
{
    if (!(d->op & 1)) {
        return 1;
    }
    if (d->rex_w && d->op != 0x6d) {
        return 8;
    }
    return (d->ctx->code_bits == 16) != d->opsize ? 2 : 4;
}

/* MOV moffs, AL/rAX (0xa2, 0xa3): the address follows the opcode. */
static SppX86Decode spp_x86_moffs(SppX86Dec *d, SppX86Store *store)
{
    unsigned i, bytes = spp_x86_addr_bits(d) / 8;
    uint64_t ea = 0;
    uint8_t b;

    for (i = 0; i < bytes; i++) {
        if (!spp_x86_byte(d, &b)) {
            return SPP_X86_UNKNOWN;
        }
        ea |= (uint64_t)b << (8 * i);
    }
    store->addr = spp_x86_linear(d, SEG_DS, ea);
    store->size = spp_x86_osize(d);
    store->insn_len = d->pos;
    return SPP_X86_STORE;
}

/* The legacy prefix that VEX.pp stands for. */
static const uint8_t spp_x86_vex_pp[4] = { 0, 0x66, 0xf3, 0xf2 };

static SppX86Decode spp_x86_vex(SppX86Dec *d)
{
    uint8_t b1, b2, b3;
    bool mode64 = d->ctx->code_bits == 64;
    uint8_t first = d->insn[d->pos];

    /* Outside 64-bit mode these are LES, LDS and BOUND unless mod = 3. */
    if (!spp_x86_peek(d, 1, &b1)) {
        return SPP_X86_UNKNOWN;
    }
    if (!mode64 && (b1 & 0xc0) != 0xc0) {
        return SPP_X86_NO_MEMORY;   /* not VEX: the caller decodes it */
    }
    d->pos++;
    d->pos++;
    if (d->rep || d->opsize) {
        return SPP_X86_UNKNOWN;     /* #UD */
    }
    if (first == 0xc5) {
        d->vex = true;
        d->rex_r = !(b1 & 0x80);
        d->map = 1;
        d->opsize = (b1 & 3) == 1;
        d->vex_l = b1 & 4;
        d->vex_pp = spp_x86_vex_pp[b1 & 3];
        return SPP_X86_STORE;
    }
    if (!spp_x86_byte(d, &b2)) {
        return SPP_X86_UNKNOWN;
    }
    d->rex_r = !(b1 & 0x80);
    d->rex_x = !(b1 & 0x40);
    d->rex_b = !(b1 & 0x20);
    if (first == 0xc4) {
        d->vex = true;
        d->map = b1 & 0x1f;
        d->opsize = (b2 & 3) == 1;
        d->vex_l = b2 & 4;
        d->vex_pp = spp_x86_vex_pp[b2 & 3];
        return d->map >= 1 && d->map <= 3 ? SPP_X86_STORE : SPP_X86_UNKNOWN;
    }
    /* EVEX: 62 P0 P1 P2 */
    if (!spp_x86_byte(d, &b3)) {
        return SPP_X86_UNKNOWN;
    }
    d->evex = true;
    d->map = b1 & 7;
    d->opsize = (b2 & 3) == 1;
    switch (d->map) {
    case 1 ... 3:
    case 5:
    case 6:
        return SPP_X86_STORE;
    }
    return SPP_X86_UNKNOWN;
}

/*
 * The legacy prefixes, then REX, which must come last (REX only in
 * 64-bit code); *@b is the first byte after them.  False if the bytes
 * end first.
 */
static bool spp_x86_prefixes(SppX86Dec *d, uint8_t *b)
{
    for (;;) {
        if (!spp_x86_byte(d, b)) {
            return false;
        }
        switch (*b) {
        case 0x66:
            d->opsize = true;
            continue;
        case 0x67:
            d->adsize = true;
            continue;
        case 0xf2:
        case 0xf3:
            d->rep = *b;
            continue;
        case 0xf0:
            d->lock = true;
            continue;
        case 0x26:
            d->seg = SEG_ES;
            continue;
        case 0x2e:
            d->seg = SEG_CS;
            continue;
        case 0x36:
            d->seg = SEG_SS;
            continue;
        case 0x3e:
            d->seg = SEG_DS;
            continue;
        case 0x64:
            d->seg = SEG_FS;
            continue;
        case 0x65:
            d->seg = SEG_GS;
            continue;
        }
        break;
    }
    if (d->ctx->code_bits == 64 && *b >= 0x40 && *b <= 0x4f) {
        d->rex = true;
        d->rex_w = *b & 8;
        d->rex_r = *b & 4;
        d->rex_x = *b & 2;
        d->rex_b = *b & 1;
        return spp_x86_byte(d, b);
    }
    return true;
}

SppX86Decode spp_x86_insn_store(const uint8_t *insn, size_t len,
                                const SppX86Context *ctx,
                                SppX86Store *store)
{
    SppX86Dec d = {
        .insn = insn, .len = len, .ctx = ctx, .seg = SEG_NONE,
    };
    bool mode64 = ctx->code_bits == 64;
    uint64_t lo, hi;
    SppX86Decode r;
    uint8_t b;
    unsigned mod, reg;

    *store = (SppX86Store) { 0 };

    if (!spp_x86_prefixes(&d, &b)) {
        return SPP_X86_UNKNOWN;
    }
    if (b == 0xc4 || b == 0xc5 || b == 0x62) {
        d.pos--;
        r = spp_x86_vex(&d);
        if (r == SPP_X86_UNKNOWN) {
            return r;
        }
        if (r == SPP_X86_NO_MEMORY) {
            d.pos++;            /* the legacy one-byte opcode */
        }
    } else if (b == 0x8f && spp_x86_peek(&d, 0, &b) && (b & 0x1f) >= 8) {
        return SPP_X86_UNKNOWN;         /* AMD XOP */
    } else if (mode64 && b == 0xd5) {
        return SPP_X86_UNKNOWN;         /* REX2 */
    }

    if (d.vex || d.evex) {
        if (!spp_x86_byte(&d, &d.op)) {
            return SPP_X86_UNKNOWN;
        }
        if (d.map == 1 && d.op == 0x77) {
            return SPP_X86_NO_MEMORY;   /* VZEROUPPER, VZEROALL */
        }
    } else {
        d.op = d.insn[d.pos - 1];
        switch (d.op) {
        case 0x6c: case 0x6d: case 0xa4: case 0xa5: case 0xaa: case 0xab:
            /* INS, MOVS, STOS: one element to ES:[rDI] a round */
            d.seg = SEG_NONE;           /* overrides are for the source */
            store->string = true;
            return spp_x86_reg_dest(&d, SEG_ES, REG_DI, spp_x86_osize(&d),
                                    store);
        case 0xa2: case 0xa3:
            return spp_x86_moffs(&d, store);
        }
        if (d.op == 0x0f) {
            if (!spp_x86_byte(&d, &d.op)) {
                return SPP_X86_UNKNOWN;
            }
            d.map = 1;
            if (d.op == 0x38 || d.op == 0x3a) {
                d.map = d.op == 0x38 ? 2 : 3;
                if (!spp_x86_byte(&d, &d.op)) {
                    return SPP_X86_UNKNOWN;
                }
            } else if (!spp_x86_0f_modrm(d.op)) {
                return SPP_X86_NO_MEMORY;
            }
        } else if (!spp_x86_onebyte_modrm(d.op, mode64)) {
            return SPP_X86_NO_MEMORY;
        }
    }

    if (!spp_x86_byte(&d, &d.modrm)) {
        return SPP_X86_UNKNOWN;
    }
    mod = d.modrm >> 6;
    reg = ((d.modrm >> 3) & 7) | (d.rex_r << 3);

    /* Stores whose destination is not the ModRM operand. */
    if (d.map == 1 && d.op == 0xf7 && mod == 3 && !d.evex &&
        (d.vex || !d.rep)) {
        /* MASKMOVQ, (V)MASKMOVDQU */
        return spp_x86_reg_dest(&d, SEG_DS, REG_DI, 16, store);
    }
    if (d.map == 2 && d.op == 0xf8 && !d.vex && !d.evex) {
        /* MOVDIR64B, ENQCMD, ENQCMDS: 64 bytes to ES:[reg] */
        if (mod == 3 || (!d.opsize && !d.rep)) {
            return SPP_X86_UNKNOWN;
        }
        d.seg = SEG_NONE;
        return spp_x86_reg_dest(&d, SEG_ES, reg, 64, store);
    }
    if (mod == 3) {
        return SPP_X86_NO_MEMORY;
    }
    if ((d.vex || d.evex) && d.map == 2 &&
        ((d.op >= 0x90 && d.op <= 0x93) || (d.op >= 0xa0 && d.op <= 0xa3) ||
         d.op == 0xc6 || d.op == 0xc7)) {
        return SPP_X86_UNKNOWN;         /* vector index (VSIB) */
    }

    r = spp_x86_modrm_addr(&d, &lo, &hi);
    if (r != SPP_X86_STORE) {
        return r;
    }
    store->addr = lo;
    store->size = hi - lo + spp_x86_store_size(&d);
    store->vec_bytes = spp_x86_vec_store(&d);
    store->vec_reg = reg;
    store->insn_len = d.pos + spp_x86_imm_size(&d);
    return SPP_X86_STORE;
}

/* The ALU group's operations, in ModRM.reg order (7 is CMP). */
static const SppX86RmwOp spp_x86_alu[7] = {
    SPP_X86_RMW_ADD, SPP_X86_RMW_OR, SPP_X86_RMW_ADC, SPP_X86_RMW_SBB,
    SPP_X86_RMW_AND, SPP_X86_RMW_SUB, SPP_X86_RMW_XOR,
};

bool spp_x86_insn_rmw(const uint8_t *insn, size_t len,
                      const SppX86Context *ctx, SppX86Rmw *rmw)
{
    SppX86Dec d = {
        .insn = insn, .len = len, .ctx = ctx, .seg = SEG_NONE,
    };
    bool lock, wide, has_reg = false;
    unsigned reg, bits, immbytes, prefix_len;
    int64_t imm = 0;
    uint64_t lo, hi;
    SppX86RmwOp op;
    uint8_t b;

    *rmw = (SppX86Rmw) { 0 };
    if (!spp_x86_prefixes(&d, &b)) {
        return false;
    }
    prefix_len = d.pos - 1;
    lock = d.lock;
    if (b == 0x0f) {
        d.map = 1;
        if (!spp_x86_byte(&d, &b)) {
            return false;
        }
    }
    d.op = b;
    if (!spp_x86_peek(&d, 0, &d.modrm)) {
        return false;
    }
    reg = (d.modrm >> 3) & 7;
    wide = b & 1;
    if (d.map == 0 && b < 0x38 && (b & 7) < 2) {
        op = spp_x86_alu[b >> 3];           /* op r/m, reg */
        has_reg = true;
    } else if (d.map == 0 && (b == 0x80 || b == 0x81 || b == 0x83) &&
               reg != 7) {
        op = spp_x86_alu[reg];              /* op r/m, imm */
        wide = b != 0x80;
    } else if (d.map == 0 && (b == 0x86 || b == 0x87)) {
        op = SPP_X86_RMW_XCHG;
        has_reg = true;
        lock = true;                        /* implicit */
    } else if (d.map == 0 && (b == 0xf6 || b == 0xf7) &&
               (reg == 2 || reg == 3)) {
        op = reg == 2 ? SPP_X86_RMW_NOT : SPP_X86_RMW_NEG;
    } else if (d.map == 0 && (b == 0xfe || b == 0xff) && reg < 2) {
        op = reg == 0 ? SPP_X86_RMW_INC : SPP_X86_RMW_DEC;
    } else if (d.map == 1 && (b == 0xb0 || b == 0xb1)) {
        op = SPP_X86_RMW_CMPXCHG;
        has_reg = true;
    } else if (d.map == 1 && (b == 0xc0 || b == 0xc1)) {
        op = SPP_X86_RMW_XADD;
        has_reg = true;
    } else if (d.map == 1 && b == 0xba && reg >= 5) {
        op = SPP_X86_RMW_BTS + (reg - 5);
        wide = true;
    } else if (d.map == 1 && (b == 0xab || b == 0xb3 || b == 0xbb)) {
        op = b == 0xab ? SPP_X86_RMW_BTS :
             b == 0xb3 ? SPP_X86_RMW_BTR : SPP_X86_RMW_BTC;
        wide = true;
        has_reg = true;
    } else {
        return false;
    }
    if (!lock) {
        return false;
    }
    d.pos++;                                /* the ModRM byte */
    if (d.modrm >> 6 == 3) {
        return false;                       /* a register: #UD with LOCK */
    }
    if (!wide) {
        bits = 8;
    } else if (d.rex_w) {
        bits = 64;
    } else {
        bits = (ctx->code_bits == 16) != d.opsize ? 16 : 32;
    }
    if (spp_x86_modrm_addr(&d, &lo, &hi) != SPP_X86_STORE) {
        return false;
    }
    immbytes = spp_x86_imm_size(&d);
    if (immbytes && !spp_x86_disp(&d, immbytes, &imm)) {
        return false;
    }
    if (d.pos != len) {
        return false;
    }
    rmw->op = op;
    rmw->addr = lo;
    rmw->size = bits / 8;
    rmw->has_reg = has_reg;
    if (has_reg) {
        rmw->reg = reg | (d.rex_r << 3);
        if (bits == 8 && !d.rex && reg >= 4) {
            rmw->reg = reg - 4;
            rmw->reg_high8 = true;
        }
    }
    if (has_reg && op >= SPP_X86_RMW_BTS) {
        /*
         * A register bit offset is signed and may reach past the operand:
         * its high bits move the address in units of the operand size.
         */
        int64_t off = ctx->regs[rmw->reg];

        off = bits == 64 ? off : bits == 32 ? (int32_t)off : (int16_t)off;
        rmw->addr = lo + (off >> ctz32(bits)) * (int64_t)(bits / 8);
        if (ctx->code_bits != 64) {
            rmw->addr &= 0xffffffffULL;
        }
    }
    rmw->imm = bits == 64 ? (uint64_t)imm :
               (uint64_t)imm & ((1ULL << bits) - 1);
    rmw->insn_len = len;
    rmw->prefix_len = prefix_len;
    return true;
}

static uint64_t spp_x86_szp(uint64_t res, unsigned bits)
{
    uint64_t f = 0;

    if (!res) {
        f |= SPP_X86_ZF;
    }
    if ((res >> (bits - 1)) & 1) {
        f |= SPP_X86_SF;
    }
    if (!(ctpop8(res & 0xff) & 1)) {
        f |= SPP_X86_PF;
    }
    return f;
}

/* The flags of @a + @b = @res (@sub: of @a - @b = @res). */
static uint64_t spp_x86_addsub_flags(uint64_t a, uint64_t b, uint64_t res,
                                     unsigned bits, bool sub)
{
    uint64_t f = spp_x86_szp(res, bits);
    uint64_t of = sub ? (a ^ b) & (a ^ res) : (a ^ res) & (b ^ res);

    if (sub ? a < b : res < a) {
        f |= SPP_X86_CF;
    }
    if ((of >> (bits - 1)) & 1) {
        f |= SPP_X86_OF;
    }
    if ((a ^ b ^ res) & 0x10) {
        f |= SPP_X86_AF;
    }
    return f;
}

uint64_t spp_x86_rmw_apply(const SppX86Rmw *rmw, uint64_t mem, uint64_t src,
                           uint64_t new, uint64_t *flags)
{
    unsigned bits = rmw->size * 8;
    uint64_t mask = bits == 64 ? UINT64_MAX : (1ULL << bits) - 1;
    uint64_t f = *flags, res, bit;
    bool cf = f & SPP_X86_CF;

    mem &= mask;
    src &= mask;
    switch (rmw->op) {
    case SPP_X86_RMW_ADD:
    case SPP_X86_RMW_XADD:
        res = (mem + src) & mask;
        f = spp_x86_addsub_flags(mem, src, res, bits, false);
        break;
    case SPP_X86_RMW_ADC:
        res = (mem + src + cf) & mask;
        f = spp_x86_addsub_flags(mem, src, res, bits, false);
        if (cf && res == mem) {
            f |= SPP_X86_CF;            /* src = all ones */
        }
        break;
    case SPP_X86_RMW_SUB:
        res = (mem - src) & mask;
        f = spp_x86_addsub_flags(mem, src, res, bits, true);
        break;
    case SPP_X86_RMW_SBB:
        res = (mem - src - cf) & mask;
        f = spp_x86_addsub_flags(mem, src, res, bits, true);
        if (cf && mem == src) {
            f |= SPP_X86_CF;            /* borrows: mem < src + 1 */
        }
        break;
    case SPP_X86_RMW_AND:
    case SPP_X86_RMW_OR:
    case SPP_X86_RMW_XOR:
        res = rmw->op == SPP_X86_RMW_AND ? mem & src :
              rmw->op == SPP_X86_RMW_OR ? mem | src : mem ^ src;
        /* CF and OF cleared; AF undefined: left as it was. */
        f = spp_x86_szp(res, bits) | (f & SPP_X86_AF);
        break;
    case SPP_X86_RMW_INC:
    case SPP_X86_RMW_DEC:
        res = (rmw->op == SPP_X86_RMW_INC ? mem + 1 : mem - 1) & mask;
        f = spp_x86_addsub_flags(mem, 1, res, bits,
                                 rmw->op == SPP_X86_RMW_DEC);
        f = (f & ~SPP_X86_CF) | (cf ? SPP_X86_CF : 0);
        break;
    case SPP_X86_RMW_NOT:
        return ~mem & mask;
    case SPP_X86_RMW_NEG:
        res = -mem & mask;
        f = spp_x86_addsub_flags(0, mem, res, bits, true);
        break;
    case SPP_X86_RMW_XCHG:
        return src;
    case SPP_X86_RMW_CMPXCHG:
        f = spp_x86_addsub_flags(src, mem, (src - mem) & mask, bits, true);
        res = src == mem ? new & mask : mem;
        break;
    case SPP_X86_RMW_BTS:
    case SPP_X86_RMW_BTR:
    case SPP_X86_RMW_BTC:
        bit = 1ULL << (src & (bits - 1));
        /* CF is the old bit; the other flags are left as they were. */
        *flags = (f & ~(uint64_t)SPP_X86_CF) | (mem & bit ? SPP_X86_CF : 0);
        return rmw->op == SPP_X86_RMW_BTS ? mem | bit :
               rmw->op == SPP_X86_RMW_BTR ? mem & ~bit : mem ^ bit;
    default:
        g_assert_not_reached();
    }
    *flags = (*flags & ~(uint64_t)SPP_X86_ARITH_FLAGS) | f;
    return res;
}

uint64_t spp_x86_rmw_reg(const SppX86Rmw *rmw, const uint64_t *regs,
                         unsigned reg, bool high8)
{
    unsigned bits = rmw->size * 8;
    uint64_t v = regs[reg];

    if (high8) {
        return (v >> 8) & 0xff;
    }
    return bits == 64 ? v : v & ((1ULL << bits) - 1);
}

void spp_x86_rmw_set_reg(const SppX86Rmw *rmw, uint64_t *regs, unsigned reg,
                         bool high8, uint64_t v)
{
    switch (rmw->size) {
    case 1:
        if (high8) {
            regs[reg] = (regs[reg] & ~0xff00ULL) | ((v & 0xff) << 8);
        } else {
            regs[reg] = (regs[reg] & ~0xffULL) | (v & 0xff);
        }
        break;
    case 2:
        regs[reg] = (regs[reg] & ~0xffffULL) | (v & 0xffff);
        break;
    case 4:
        regs[reg] = (uint32_t)v;        /* zero-extends, as in 64-bit mode */
        break;
    default:
        regs[reg] = v;
    }
}

/* The source operand: the register's value or the immediate. */
static uint64_t spp_x86_rmw_src(const SppX86Rmw *rmw, const uint64_t *regs)
{
    return rmw->has_reg ? spp_x86_rmw_reg(rmw, regs, rmw->reg,
                                          rmw->reg_high8) : rmw->imm;
}

bool spp_x86_rmw_check(const SppX86Rmw *rmw, const uint64_t *regs,
                       uint64_t rflags, uint64_t data)
{
    unsigned bits = rmw->size * 8;
    uint64_t mask = bits == 64 ? UINT64_MAX : (1ULL << bits) - 1;
    uint64_t src = spp_x86_rmw_src(rmw, regs) & mask;
    uint64_t f = rflags, old, bit;
    bool exact = true;

    data &= mask;
    switch (rmw->op) {
    case SPP_X86_RMW_ADD:
        old = data - src;
        break;
    case SPP_X86_RMW_SUB:
        old = data + src;
        break;
    case SPP_X86_RMW_INC:
        old = data - 1;
        break;
    case SPP_X86_RMW_DEC:
        old = data + 1;
        break;
    case SPP_X86_RMW_NEG:
        old = -data;
        break;
    case SPP_X86_RMW_XADD:
        /* The register now holds the old value, the store its sum. */
        old = src;
        src = data - old;
        break;
    case SPP_X86_RMW_AND:
    case SPP_X86_RMW_OR:
    case SPP_X86_RMW_XOR:
        /* The old value is unknown, but the result fixes ZF, SF, PF. */
        if ((rmw->op == SPP_X86_RMW_AND && (data & ~src)) ||
            (rmw->op == SPP_X86_RMW_OR && (data & src) != src)) {
            return false;
        }
        old = data;
        exact = false;
        break;
    case SPP_X86_RMW_NOT:
    case SPP_X86_RMW_XCHG:
        return true;                /* no flags to tell */
    case SPP_X86_RMW_CMPXCHG:
        if (rflags & SPP_X86_ZF) {
            /* It stored the source; RAX held the old value: equal. */
            return data == src &&
                   (rflags & SPP_X86_ARITH_FLAGS) ==
                   (SPP_X86_ZF | SPP_X86_PF);
        }
        /* It stored back the old value, which RAX now holds. */
        return data == spp_x86_rmw_reg(rmw, regs, 0, false);
    case SPP_X86_RMW_BTS:
    case SPP_X86_RMW_BTR:
    case SPP_X86_RMW_BTC:
        bit = 1ULL << (src & (bits - 1));
        return rmw->op == SPP_X86_RMW_BTS ? (data & bit) != 0 :
               rmw->op == SPP_X86_RMW_BTR ? !(data & bit) :
               !(data & bit) == !!(rflags & SPP_X86_CF);
    default:
        return false;               /* ADC, SBB: the carry in is lost */
    }
    if (!exact) {
        uint64_t want = rflags & (SPP_X86_ZF | SPP_X86_SF | SPP_X86_PF |
                                  SPP_X86_CF | SPP_X86_OF);

        return spp_x86_szp(data, bits) == want;
    }
    if (spp_x86_rmw_apply(rmw, old, src, 0, &f) != data) {
        return false;
    }
    return (f & SPP_X86_ARITH_FLAGS) == (rflags & SPP_X86_ARITH_FLAGS);
}

bool spp_x86_rmw_unambiguous(const SppX86Rmw *rmw, const uint8_t *insn,
                             size_t avail, uint32_t accepted,
                             const SppX86Context *ctx, unsigned offset)
{
    unsigned core = rmw->insn_len - rmw->prefix_len;
    SppX86Context c = *ctx;
    SppX86Store st;
    size_t n;

    for (n = 1; n <= avail && n <= 31; n++) {
        if ((accepted & (1U << n)) || (n >= core && n < rmw->insn_len)) {
            continue;
        }
        c.rip = ctx->rip + rmw->insn_len - n;
        if (spp_x86_insn_store(insn + avail - n, n, &c, &st) ==
                SPP_X86_STORE && st.insn_len == n &&
            ((offset - st.addr) & 0xfff) < st.size) {
            return false;
        }
    }
    return true;
}
