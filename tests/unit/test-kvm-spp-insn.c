/*
 * Which memory an x86 instruction may store to (SPP step fallback)
 *
 * The encodings below were produced by GNU as; the comments give the
 * source line.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "target/i386/kvm/kvm-spp-insn.h"

#define XSAVE_SIZE 2696
#define RIP 0x5000ULL

typedef struct InsnCase {
    const char *text;
    unsigned bits;
    const char *hex;
    SppX86Decode result;
    uint64_t addr;
    uint64_t size;
} InsnCase;

#define RAX 0x100000001000ULL
#define RCX 0x3000ULL
#define RDX 0x4000ULL
#define RBX 0x2000ULL
#define RSP 0x100007000ULL
#define RBP 0x8000ULL
#define RSI 0x9000ULL
#define RDI 0x10000a000ULL
#define R8  0x80000ULL
#define R9  0x90000ULL
#define R12 0xc0000ULL
#define R13 0xd0000ULL
#define ES  0x100000ULL
#define SS  0x200000ULL
#define DS  0x300000ULL
#define FS  0x400000ULL

static const InsnCase cases[] = {
    /* 64-bit code */
    { "vmovdqu %ymm0,0x10(%rax)", 64, "c5fe7f4010",
      SPP_X86_STORE, RAX + 0x10, 64 },
    { "vmovdqu %ymm1,(%rax,%rbx,4)", 64, "c5fe7f0c98",
      SPP_X86_STORE, RAX + RBX * 4, 64 },
    { "xsave (%rdi)", 64, "0fae27", SPP_X86_STORE, RDI, XSAVE_SIZE },
    { "xsave64 0x40(%r12)", 64, "490fae642440",
      SPP_X86_STORE, R12 + 0x40, XSAVE_SIZE },
    { "fxsave -0x8(%rbp)", 64, "0fae45f8", SPP_X86_STORE, RBP - 8, 512 },
    { "movdir64b (%rsi),%rdi", 64, "660f38f83e", SPP_X86_STORE, RDI, 64 },
    { "movdir64b (%esi),%edi", 64, "67660f38f83e",
      SPP_X86_STORE, RDI & 0xffffffff, 64 },
    { "enqcmd (%rsi),%rdx", 64, "f20f38f816", SPP_X86_STORE, RDX, 64 },
    /* EVEX disp8 is scaled by N: 0x40 is encoded as 1 */
    { "vmovdqu64 %zmm0,0x40(%rcx)", 64, "62f1fe487f4101",
      SPP_X86_STORE, RCX + 1, 63 + 64 },
    { "vmovdqu64 %zmm3,-0x80(%rdx)", 64, "62f1fe487f5afe",
      SPP_X86_STORE, RDX - 128, 126 + 64 },
    { "movaps %xmm0,0x1234(%rip)", 64, "0f290534120000",
      SPP_X86_STORE, RIP + 7 + 0x1234, 64 },
    /* the immediate follows the displacement and moves the next rip */
    { "movl $0x11223344,0x100(%rip)", 64, "c7050001000044332211",
      SPP_X86_STORE, RIP + 10 + 0x100, 64 },
    { "vextracti128 $0x1,%ymm0,0x30(%rip)", 64, "c4e37d39053000000001",
      SPP_X86_STORE, RIP + 10 + 0x30, 64 },
    { "pextrw $0x2,%xmm0,0x10(%rip)", 64, "660f3a15051000000002",
      SPP_X86_STORE, RIP + 10 + 0x10, 64 },
    { "movntdq %xmm0,%fs:0x8(%rax)", 64, "64660fe74008",
      SPP_X86_STORE, FS + RAX + 8, 64 },
    { "maskmovdqu %xmm1,%xmm0", 64, "660ff7c1", SPP_X86_STORE, RDI, 16 },
    { "vmaskmovdqu %xmm1,%xmm0", 64, "c5f9f7c1", SPP_X86_STORE, RDI, 16 },
    { "vmovups %xmm0,0x0(%r13)", 64, "c4c178114500",
      SPP_X86_STORE, R13, 64 },
    { "addr32 mov %eax,0x10(%esp)", 64, "6789442410",
      SPP_X86_STORE, (RSP + 0x10) & 0xffffffff, 64 },
    { "movdqu %xmm0,(%rsp)", 64, "f30f7f0424", SPP_X86_STORE, RSP, 64 },
    { "vmovdqa %ymm2,-0x20(%rsp,%r9,8)", 64, "c4a17d7f54cce0",
      SPP_X86_STORE, RSP + R9 * 8 - 0x20, 64 },
    { "cmpxchg16b (%rdx)", 64, "480fc70a", SPP_X86_STORE, RDX, 64 },
    { "xsavec (%r8)", 64, "410fc720", SPP_X86_STORE, R8, XSAVE_SIZE },
    { "xsaves 0x100(%r8)", 64, "410fc7a800010000",
      SPP_X86_STORE, R8 + 0x100, XSAVE_SIZE },
    { "xsaveopt (%rax)", 64, "0fae30", SPP_X86_STORE, RAX, XSAVE_SIZE },
    { "clwb (%rax)", 64, "660fae30", SPP_X86_STORE, RAX, 64 },
    { "movdiri %eax,(%rbx)", 64, "0f38f903", SPP_X86_STORE, RBX, 64 },
    { "movnti %rax,0x7fffffff(%rbx)", 64, "480fc383ffffff7f",
      SPP_X86_STORE, RBX + 0x7fffffff, 64 },
    { "mov %rax,%rbx", 64, "4889c3", SPP_X86_NO_MEMORY },
    { "vzeroupper", 64, "c5f877", SPP_X86_NO_MEMORY },
    /* string stores: the element at ES:[rDI], in any mode */
    { "rep stos %al,%es:(%rdi)", 64, "f3aa", SPP_X86_STORE, RDI, 1 },
    { "rep stos %rax,%es:(%rdi)", 64, "f348ab", SPP_X86_STORE, RDI, 8 },
    { "movsl %fs:(%rsi),%es:(%rdi)", 64, "64a5", SPP_X86_STORE, RDI, 4 },
    { "rex.W insl (%dx),%es:(%rdi)", 64, "486d", SPP_X86_STORE, RDI, 4 },
    { "movabs %eax,0x1122334455667788", 64, "a38877665544332211",
      SPP_X86_STORE, 0x1122334455667788ULL, 4 },
    { "movabs %al,0x11223344 (addr32)", 64, "67a244332211",
      SPP_X86_STORE, 0x11223344, 1 },
    { "vpscatterdd %zmm0,(%rax,%zmm1,4){%k1}", 64, "62f27d49a00488",
      SPP_X86_UNKNOWN },
    { "vmovdqu, cut short", 64, "c5fe7f", SPP_X86_UNKNOWN },
    { "movaps to rip, displacement cut short", 64, "0f29053412",
      SPP_X86_UNKNOWN },

    /* 32-bit code: segment bases count, SS for EBP/ESP */
    { "mov %eax,0x8(%ebp)", 32, "894508", SPP_X86_STORE, SS + RBP + 8, 64 },
    { "vmovdqu %xmm0,(%eax)", 32, "c5fa7f00",
      SPP_X86_STORE, DS + (RAX & 0xffffffff), 64 },
    { "lds (%eax),%ecx (0xc5 with mod != 3 is not VEX here)", 32, "c508",
      SPP_X86_STORE, DS + (RAX & 0xffffffff), 64 },
    { "mov %ax,%es:(%bx,%si)", 32, "26676689 00",
      SPP_X86_STORE, ES + RBX + RSI, 64 },
    { "fnsave 0x4(%eax)", 32, "dd7004",
      SPP_X86_STORE, DS + (RAX & 0xffffffff) + 4, 108 },
    { "xsave (%esp)", 32, "0fae2424",
      SPP_X86_STORE, SS + (RSP & 0xffffffff), XSAVE_SIZE },
    { "mov %eax,0x1000 (moffs)", 32, "a300100000",
      SPP_X86_STORE, DS + 0x1000, 4 },
    { "mov %ax,%es:0x1000 (moffs)", 32, "2666a300100000",
      SPP_X86_STORE, ES + 0x1000, 2 },
    { "rep stos %eax,%es:(%edi)", 32, "f3ab",
      SPP_X86_STORE, ES + (RDI & 0xffffffff), 4 },
    { "fs movsb (the override is the source's)", 32, "64a4",
      SPP_X86_STORE, ES + (RDI & 0xffffffff), 1 },
    { "insw (%dx),%es:(%edi)", 32, "666d",
      SPP_X86_STORE, ES + (RDI & 0xffffffff), 2 },

    /* 16-bit code: 16-bit addresses wrap */
    { "mov %ax,0x2(%bp,%di)", 16, "894302",
      SPP_X86_STORE, SS + ((RBP + (RDI & 0xffff) + 2) & 0xffff), 64 },
    { "mov %eax,0x10(%eax)", 16, "6766894010",
      SPP_X86_STORE, DS + (RAX & 0xffffffff) + 0x10, 64 },
    { "stosw %ax,%es:(%di)", 16, "ab", SPP_X86_STORE, ES + (RDI & 0xffff), 2 },
    { "mov %ax,0x7000 (moffs)", 16, "a30070", SPP_X86_STORE, DS + 0x7000, 2 },
};

static size_t parse_hex(const char *hex, uint8_t *out)
{
    size_t n = 0;

    for (; *hex; hex++) {
        if (*hex == ' ') {
            continue;
        }
        g_assert(g_ascii_isxdigit(hex[0]) && g_ascii_isxdigit(hex[1]));
        out[n++] = g_ascii_xdigit_value(hex[0]) * 16 +
                   g_ascii_xdigit_value(hex[1]);
        hex++;
    }
    return n;
}

static void test_case(gconstpointer opaque)
{
    const InsnCase *c = opaque;
    SppX86Context ctx = {
        .regs = { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
                  R8, R9, 0xa0000, 0xb0000, R12, R13, 0xe0000, 0xf0000 },
        .seg_base = { ES, 0, SS, DS, FS, 0x500000 },
        .rip = RIP,
        .code_bits = c->bits,
        .xsave_size = XSAVE_SIZE,
    };
    SppX86Store st = { 0, 0 };
    uint8_t insn[16];
    size_t len = parse_hex(c->hex, insn);

    g_test_message("%d-bit: %s", c->bits, c->text);
    g_assert_cmpint(spp_x86_insn_store(insn, len, &ctx, &st), ==, c->result);
    if (c->result == SPP_X86_STORE) {
        g_assert_cmphex(st.addr, ==, c->addr);
        g_assert_cmpuint(st.size, ==, c->size);
    }
}

/* Trailing bytes after the instruction change nothing. */
static void test_trailing_bytes(void)
{
    SppX86Context ctx = { .regs = { [7] = RDI }, .code_bits = 64 };
    const uint8_t a[] = { 0x0f, 0xae, 0x27 };
    const uint8_t b[] = { 0x0f, 0xae, 0x27, 0xc5, 0xfe, 0x7f, 0x40, 0x10,
                          0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90 };
    SppX86Store sa, sb;

    g_assert_cmpint(spp_x86_insn_store(a, sizeof(a), &ctx, &sa), ==,
                    SPP_X86_STORE);
    g_assert_cmpint(spp_x86_insn_store(b, sizeof(b), &ctx, &sb), ==,
                    SPP_X86_STORE);
    g_assert_cmphex(sa.addr, ==, sb.addr);
    /* an xsave size below the legacy area is raised to 512 */
    g_assert_cmpuint(sa.size, ==, 512);
}

/* Fifteen prefixes make an instruction too long: never read past 15. */
static void test_too_long(void)
{
    SppX86Context ctx = { .code_bits = 64 };
    uint8_t insn[20];
    SppX86Store st;

    memset(insn, 0x66, sizeof(insn));
    g_assert_cmpint(spp_x86_insn_store(insn, sizeof(insn), &ctx, &st), ==,
                    SPP_X86_UNKNOWN);
}

/*
 * Random bytes: the decoder never reads past the bytes it was given
 * (they end at a guard page), and a result it reached from a prefix
 * does not change when more bytes follow.
 */
static void test_random(void)
{
    long psize = qemu_real_host_page_size();
    uint8_t *map = mmap(NULL, 2 * psize, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    SppX86Context ctx = {
        .regs = { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI },
        .seg_base = { ES, 0, SS, DS, FS, 0x500000 },
        .rip = RIP, .xsave_size = XSAVE_SIZE,
    };
    GRand *rand = g_rand_new_with_seed(0x5350);
    unsigned i, stores = 0, rmws = 0;
    SppX86Rmw rmw;

    g_assert(map != MAP_FAILED);
    g_assert(!mprotect(map + psize, psize, PROT_NONE));
    for (i = 0; i < 200000; i++) {
        uint8_t full[15];
        size_t len = g_rand_int_range(rand, 1, 16), k;
        uint8_t *insn = map + psize - len;
        SppX86Store a, b;
        SppX86Decode ra, rb;

        static const unsigned modes[] = { 16, 32, 64 };
        ctx.code_bits = modes[i % 3];
        for (k = 0; k < sizeof(full); k++) {
            full[k] = g_rand_int(rand);
        }
        memcpy(insn, full, len);
        ra = spp_x86_insn_store(insn, len, &ctx, &a);
        rb = spp_x86_insn_store(full, sizeof(full), &ctx, &b);
        if (ra == SPP_X86_STORE) {
            stores++;
            g_assert_cmpint(rb, ==, SPP_X86_STORE);
            g_assert_cmphex(a.addr, ==, b.addr);
            g_assert_cmpuint(a.size, ==, b.size);
            g_assert_cmpuint(a.size, >, 0);
        } else if (ra == SPP_X86_NO_MEMORY) {
            g_assert_cmpint(rb, ==, SPP_X86_NO_MEMORY);
        }
        /* A locked read-modify-write is exactly the bytes it was given. */
        if (spp_x86_insn_rmw(insn, len, &ctx, &rmw)) {
            rmws++;
            g_assert_cmpuint(rmw.insn_len, ==, len);
            g_assert_true(rmw.size == 1 || rmw.size == 2 || rmw.size == 4 ||
                          rmw.size == 8);
            g_assert_false(len < sizeof(full) &&
                           spp_x86_insn_rmw(full, sizeof(full), &ctx, &rmw));
        }
    }
    g_assert_cmpuint(rmws, >, 0);
    /* the stream does reach the memory forms */
    g_assert_cmpuint(stores, >, 10000);
    g_rand_free(rand);
    munmap(map, 2 * psize);
}

/* Plain stores of a vector register: what to store, and the length. */
typedef struct VecCase {
    const char *text;
    unsigned bits;
    const char *hex;
    unsigned vec_bytes;
    unsigned vec_reg;
} VecCase;

static const VecCase vec_cases[] = {
    { "movq %xmm0,0x8(%edi)", 32, "660fd64708", 8, 0 },
    { "movdqu %xmm2,0x20(%edi)", 32, "f30f7f5720", 16, 2 },
    { "movups %xmm1,(%eax)", 32, "0f1108", 16, 1 },
    { "movntdq %xmm5,(%ecx)", 32, "660fe729", 16, 5 },
    { "vmovdqu %ymm3,0x10(%rdi)", 64, "c5fe7f5f10", 32, 3 },
    { "movaps %xmm8,0x40(%rax)", 64, "440f294040", 16, 8 },
    { "vmovq %xmm4,(%rdx)", 64, "c5f9d622", 8, 4 },
    { "vmovups %xmm9,(%rsi)", 64, "c578110e", 16, 9 },
    /* not a plain store of a whole register */
    { "movss %xmm1,(%eax)", 32, "f30f1108", 0 },
    { "movq %mm1,(%eax) (MMX)", 32, "0f7f08", 0 },
    { "xsave (%rdi)", 64, "0fae27", 0 },
    { "mov %eax,0x8(%ebp)", 32, "894508", 0 },
};

static void test_vec_store(void)
{
    SppX86Context ctx = { .regs = { [7] = RDI } };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(vec_cases); i++) {
        const VecCase *c = &vec_cases[i];
        uint8_t insn[16];
        size_t len = parse_hex(c->hex, insn);
        SppX86Store st;

        /* what follows the instruction must not count */
        memset(insn + len, 0x90, sizeof(insn) - len);
        ctx.code_bits = c->bits;
        g_test_message("%d-bit: %s", c->bits, c->text);
        g_assert_cmpint(spp_x86_insn_store(insn, sizeof(insn), &ctx, &st),
                        ==, SPP_X86_STORE);
        g_assert_cmpuint(st.vec_bytes, ==, c->vec_bytes);
        if (c->vec_bytes) {
            g_assert_cmpuint(st.vec_reg, ==, c->vec_reg);
            g_assert_cmpuint(st.insn_len, ==, len);
            g_assert_cmpuint(st.size, >=, c->vec_bytes);
        }
    }
}

/* Locked read-modify-writes: what spp_x86_insn_rmw() makes of them. */
typedef struct RmwCase {
    const char *text;
    unsigned bits;
    const char *hex;
    bool rmw;
    SppX86RmwOp op;
    uint64_t addr;
    unsigned size;
    int reg;                    /* -1: an immediate */
    bool high8;
    uint64_t imm;
} RmwCase;

static const RmwCase rmw_cases[] = {
    { "lock xadd %eax,(%rdi)", 64, "f00fc107",
      true, SPP_X86_RMW_XADD, RDI, 4, 0 },
    { "lock xadd %rcx,0x10(%rax)", 64, "f0480fc14810",
      true, SPP_X86_RMW_XADD, RAX + 0x10, 8, 1 },
    { "lock cmpxchg %edx,(%rdi)", 64, "f00fb117",
      true, SPP_X86_RMW_CMPXCHG, RDI, 4, 2 },
    { "lock cmpxchg %cl,(%rsi)", 64, "f00fb00e",
      true, SPP_X86_RMW_CMPXCHG, RSI, 1, 1 },
    { "xchg %eax,(%rdi) (locks without a prefix)", 64, "8707",
      true, SPP_X86_RMW_XCHG, RDI, 4, 0 },
    { "lock addl $0x1,(%rdi)", 64, "f0830701",
      true, SPP_X86_RMW_ADD, RDI, 4, -1, false, 1 },
    { "lock incl (%rdi)", 64, "f0ff07",
      true, SPP_X86_RMW_INC, RDI, 4, -1 },
    { "lock decq 0x8(%rbx)", 64, "f048ff4b08",
      true, SPP_X86_RMW_DEC, RBX + 8, 8, -1 },
    { "lock orb $0x10,(%rax)", 64, "f0800810",
      true, SPP_X86_RMW_OR, RAX, 1, -1, false, 0x10 },
    { "lock andl $0xfffffffe,(%rdi)", 64, "f08327fe",
      true, SPP_X86_RMW_AND, RDI, 4, -1, false, 0xfffffffe },
    { "lock btsl $0x3,(%rdi)", 64, "f00fba2f03",
      true, SPP_X86_RMW_BTS, RDI, 4, -1, false, 3 },
    { "lock xadd %ah,(%rdi)", 64, "f00fc027",
      true, SPP_X86_RMW_XADD, RDI, 1, 0, true },
    { "lock xadd %sil,(%rdi)", 64, "f0400fc037",
      true, SPP_X86_RMW_XADD, RDI, 1, 6 },
    { "lock add %eax,0x100(%rip)", 64, "f0010500010000",
      true, SPP_X86_RMW_ADD, RIP + 7 + 0x100, 4, 0 },
    { "lock negl (%rdi)", 64, "f0f71f",
      true, SPP_X86_RMW_NEG, RDI, 4, -1 },
    { "lock notl (%rdi)", 64, "f0f717",
      true, SPP_X86_RMW_NOT, RDI, 4, -1 },
    { "lock addw $0x1234,(%rdi)", 64, "66f081073412",
      true, SPP_X86_RMW_ADD, RDI, 2, -1, false, 0x1234 },
    { "lock subq $-2,(%r9)", 64, "f0498329fe",
      true, SPP_X86_RMW_SUB, R9, 8, -1, false, (uint64_t)-2 },
    /* a register bit offset moves the operand: %ecx = 0x3000 = 384 * 32 */
    { "lock bts %ecx,(%rdi)", 64, "f00fab0f",
      true, SPP_X86_RMW_BTS, RDI + 0x3000 / 8, 4, 1 },
    { "lock btr %rsi,0x8(%rax)", 64, "f0480fb37008",
      true, SPP_X86_RMW_BTR, RAX + 8 + 0x9000 / 8, 8, 6 },
    /* not locked read-modify-writes */
    { "add %eax,(%rdi) (no lock)", 64, "0107", false },
    { "lock cmpl $0x1,(%rdi) (no store)", 64, "f0833f01", false },
    { "mov %eax,(%rdi)", 64, "8907", false },
    { "lock add %eax,%ecx (#UD)", 64, "f001c1", false },
    { "lock xadd %eax,(%rdi) with a byte more", 64, "f00fc10790", false },
    { "lock xadd %eax,(%rdi) cut short", 64, "f00fc1", false },
    /* 32-bit code */
    { "lock xadd %eax,(%edi)", 32, "f00fc107",
      true, SPP_X86_RMW_XADD, (DS + RDI) & 0xffffffff, 4, 0 },
    { "lock addl $0x12345678,%fs:0x4(%ebx)", 32, "64f081430478563412",
      true, SPP_X86_RMW_ADD, FS + RBX + 4, 4, -1, false, 0x12345678 },
};

static void test_rmw_case(gconstpointer opaque)
{
    const RmwCase *c = opaque;
    SppX86Context ctx = {
        .regs = { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
                  R8, R9, 0, 0, R12, R13 },
        .seg_base = { ES, 0, SS, DS, FS, 0 },
        .rip = RIP,
        .code_bits = c->bits,
    };
    SppX86Rmw rmw;
    uint8_t insn[16];
    size_t len = parse_hex(c->hex, insn);

    g_test_message("%d-bit: %s", c->bits, c->text);
    g_assert_cmpint(spp_x86_insn_rmw(insn, len, &ctx, &rmw), ==, c->rmw);
    if (!c->rmw) {
        return;
    }
    g_assert_cmpint(rmw.op, ==, c->op);
    g_assert_cmphex(rmw.addr, ==, c->addr);
    g_assert_cmpuint(rmw.size, ==, c->size);
    g_assert_cmpuint(rmw.insn_len, ==, len);
    g_assert_cmpint(rmw.has_reg, ==, c->reg >= 0);
    if (c->reg >= 0) {
        g_assert_cmpuint(rmw.reg, ==, c->reg);
        g_assert_cmpint(rmw.reg_high8, ==, c->high8);
    } else {
        g_assert_cmphex(rmw.imm, ==, c->imm);
    }
}

#define F_CF SPP_X86_CF
#define F_PF SPP_X86_PF
#define F_AF SPP_X86_AF
#define F_ZF SPP_X86_ZF
#define F_SF SPP_X86_SF
#define F_OF SPP_X86_OF

static uint64_t apply(SppX86RmwOp op, unsigned size, uint64_t mem,
                      uint64_t src, uint64_t new, uint64_t *flags)
{
    SppX86Rmw rmw = { .op = op, .size = size };

    return spp_x86_rmw_apply(&rmw, mem, src, new, flags);
}

/* Results and flags as the processor computes them. */
static void test_rmw_apply(void)
{
    uint64_t f;

    f = 0x202;                                  /* IF and bit 1 stay */
    g_assert_cmphex(apply(SPP_X86_RMW_ADD, 1, 0x7f, 1, 0, &f), ==, 0x80);
    g_assert_cmphex(f, ==, 0x202 | F_OF | F_SF | F_AF);
    f = 0;
    g_assert_cmphex(apply(SPP_X86_RMW_SUB, 4, 0, 1, 0, &f), ==, 0xffffffff);
    g_assert_cmphex(f, ==, F_CF | F_SF | F_AF | F_PF);
    f = 0;
    g_assert_cmphex(apply(SPP_X86_RMW_ADD, 8, UINT64_MAX, 1, 0, &f), ==, 0);
    g_assert_cmphex(f, ==, F_CF | F_ZF | F_AF | F_PF);
    /* INC and DEC keep CF */
    f = F_CF;
    g_assert_cmphex(apply(SPP_X86_RMW_INC, 2, 0xffff, 0, 0, &f), ==, 0);
    g_assert_cmphex(f, ==, F_CF | F_ZF | F_AF | F_PF);
    f = 0;
    g_assert_cmphex(apply(SPP_X86_RMW_DEC, 1, 0x80, 0, 0, &f), ==, 0x7f);
    g_assert_cmphex(f, ==, F_OF | F_AF);
    /* logic: CF and OF cleared */
    f = F_CF | F_OF;
    g_assert_cmphex(apply(SPP_X86_RMW_AND, 4, 0xf0, 0x3c, 0, &f), ==, 0x30);
    g_assert_cmphex(f, ==, F_PF);
    f = 0;
    g_assert_cmphex(apply(SPP_X86_RMW_NEG, 4, 1, 0, 0, &f), ==, 0xffffffff);
    g_assert_cmphex(f, ==, F_CF | F_SF | F_AF | F_PF);
    f = F_ZF;
    g_assert_cmphex(apply(SPP_X86_RMW_NOT, 1, 0x0f, 0, 0, &f), ==, 0xf0);
    g_assert_cmphex(f, ==, F_ZF);
    /* XADD stores the sum; CMPXCHG stores @new only when equal */
    f = 0;
    g_assert_cmphex(apply(SPP_X86_RMW_XADD, 4, 41, 1, 0, &f), ==, 42);
    f = 0;
    g_assert_cmphex(apply(SPP_X86_RMW_CMPXCHG, 4, 5, 5, 9, &f), ==, 9);
    g_assert_cmphex(f, ==, F_ZF | F_PF);
    f = 0;
    g_assert_cmphex(apply(SPP_X86_RMW_CMPXCHG, 4, 6, 5, 9, &f), ==, 6);
    g_assert_cmphex(f & (F_ZF | F_CF), ==, F_CF);
    /* BT*: CF is the old bit, the rest stays */
    f = F_ZF;
    g_assert_cmphex(apply(SPP_X86_RMW_BTS, 4, 0, 35, 0, &f), ==, 8);
    g_assert_cmphex(f, ==, F_ZF);
    f = 0;
    g_assert_cmphex(apply(SPP_X86_RMW_BTR, 4, 8, 3, 0, &f), ==, 0);
    g_assert_cmphex(f, ==, F_CF);
    f = 0;
    g_assert_cmphex(apply(SPP_X86_RMW_ADC, 1, 0xff, 0xff, 0, &f), ==, 0xfe);
    g_assert_cmphex(f & F_CF, ==, F_CF);
    f = F_CF;
    g_assert_cmphex(apply(SPP_X86_RMW_SBB, 1, 5, 5, 0, &f), ==, 0xff);
    g_assert_cmphex(f & F_CF, ==, F_CF);
}

/*
 * The state after an instruction that KVM's emulator ran agrees with
 * it; the same state after another instruction does not.
 */
static void test_rmw_check(void)
{
    SppX86Rmw xadd = { .op = SPP_X86_RMW_XADD, .size = 4, .has_reg = true };
    SppX86Rmw add1 = { .op = SPP_X86_RMW_ADD, .size = 4, .imm = 1 };
    SppX86Rmw cmpxchg = { .op = SPP_X86_RMW_CMPXCHG, .size = 4,
                          .has_reg = true, .reg = 2 };
    uint64_t regs[16] = { 0 }, f;

    /* lock xadd %eax,(m): m was 41, %eax was 1 */
    regs[0] = 41;
    f = 0x202;
    apply(SPP_X86_RMW_ADD, 4, 41, 1, 0, &f);
    g_assert_true(spp_x86_rmw_check(&xadd, regs, f, 42));
    g_assert_false(spp_x86_rmw_check(&xadd, regs, f | F_ZF, 42));
    /* lock addl $1,(m): m was 41 */
    g_assert_true(spp_x86_rmw_check(&add1, regs, f, 42));
    g_assert_false(spp_x86_rmw_check(&add1, regs, f, 43));
    /* a plain mov of 42 after a flags-clearing instruction */
    g_assert_false(spp_x86_rmw_check(&add1, regs, 0x202 | F_ZF | F_PF, 42));
    /* lock cmpxchg %edx,(m): equal (stores %edx), and not (stores m) */
    regs[0] = 7;
    regs[2] = 9;
    g_assert_true(spp_x86_rmw_check(&cmpxchg, regs, F_ZF | F_PF, 9));
    g_assert_false(spp_x86_rmw_check(&cmpxchg, regs, F_ZF | F_PF, 8));
    g_assert_true(spp_x86_rmw_check(&cmpxchg, regs, F_CF, 7));
    g_assert_false(spp_x86_rmw_check(&cmpxchg, regs, F_CF, 9));
}

/*
 * The bytes before RIP may hold another store ending there, of which
 * the locked instruction's bytes are the tail: then it is not known
 * which ran.  Prefixes the instruction may or may not have are fine.
 */
static void test_rmw_unambiguous(void)
{
    SppX86Context ctx = { .regs = { [3] = RBX, [7] = RDI }, .code_bits = 64 };
    /* mov $0x03870000,(%rbx) ends in 87 03, xchg %eax,(%rbx) */
    const uint8_t movxchg[] = { 0x90, 0xc7, 0x03, 0x00, 0x00, 0x87, 0x03 };
    /* movl $0x13f7f000,(%rbx) ends in f0 f7 13, lock notl (%rbx) */
    const uint8_t movnot[] = { 0x90, 0xc7, 0x03, 0x00, 0xf0, 0xf7, 0x13 };
    /* add %al,(%rax); lock xadd %eax,(%rdi), with a REX */
    const uint8_t xadd[] = { 0x00, 0x00, 0xf0, 0x48, 0x0f, 0xc1, 0x07 };
    SppX86Rmw rmw;

    ctx.rip = RIP;
    g_assert_true(spp_x86_insn_rmw(movxchg + 5, 2, &ctx, &rmw));
    g_assert_false(spp_x86_rmw_unambiguous(&rmw, movxchg, sizeof(movxchg),
                                           1U << 2, &ctx, RBX & 0xfff));
    g_assert_true(spp_x86_insn_rmw(movnot + 4, 3, &ctx, &rmw));
    g_assert_false(spp_x86_rmw_unambiguous(&rmw, movnot, sizeof(movnot),
                                           1U << 3, &ctx, RBX & 0xfff));
    g_assert_true(spp_x86_insn_rmw(xadd + 2, 5, &ctx, &rmw));
    g_assert_cmpuint(rmw.prefix_len, ==, 2);
    g_assert_true(spp_x86_rmw_unambiguous(&rmw, xadd, sizeof(xadd),
                                          1U << 5, &ctx, RDI & 0xfff));
    /* the store decoder gives whole lengths, immediates included */
    {
        SppX86Store st;

        g_assert_cmpint(spp_x86_insn_store(movxchg + 1, 6, &ctx, &st), ==,
                        SPP_X86_STORE);
        g_assert_cmpuint(st.insn_len, ==, 6);
    }
}

/* Register updates at each operand size. */
static void test_rmw_regs(void)
{
    SppX86Rmw b = { .size = 1 }, d = { .size = 4 }, w = { .size = 2 };
    uint64_t regs[16] = { 0x1122334455667788ULL };

    g_assert_cmphex(spp_x86_rmw_reg(&b, regs, 0, true), ==, 0x77);
    spp_x86_rmw_set_reg(&b, regs, 0, true, 0xab);
    g_assert_cmphex(regs[0], ==, 0x112233445566ab88ULL);
    spp_x86_rmw_set_reg(&w, regs, 0, false, 0xcdef);
    g_assert_cmphex(regs[0], ==, 0x112233445566cdefULL);
    spp_x86_rmw_set_reg(&d, regs, 0, false, 0x12345678);
    g_assert_cmphex(regs[0], ==, 0x12345678);
}

int main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);
    for (i = 0; i < ARRAY_SIZE(cases); i++) {
        g_autofree char *path = g_strdup_printf("/kvm-spp-insn/%zu", i);

        g_test_add_data_func(path, &cases[i], test_case);
    }
    g_test_add_func("/kvm-spp-insn/trailing-bytes", test_trailing_bytes);
    g_test_add_func("/kvm-spp-insn/vec-store", test_vec_store);
    g_test_add_func("/kvm-spp-insn/too-long", test_too_long);
    g_test_add_func("/kvm-spp-insn/random", test_random);
    for (i = 0; i < ARRAY_SIZE(rmw_cases); i++) {
        g_autofree char *path = g_strdup_printf("/kvm-spp-insn/rmw/%zu", i);

        g_test_add_data_func(path, &rmw_cases[i], test_rmw_case);
    }
    g_test_add_func("/kvm-spp-insn/rmw-apply", test_rmw_apply);
    g_test_add_func("/kvm-spp-insn/rmw-check", test_rmw_check);
    g_test_add_func("/kvm-spp-insn/rmw-regs", test_rmw_regs);
    g_test_add_func("/kvm-spp-insn/rmw-unambiguous", test_rmw_unambiguous);
    return g_test_run();
}
