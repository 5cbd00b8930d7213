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
    { "rep stos %al,%es:(%rdi)", 64, "f3aa", SPP_X86_NO_MEMORY },
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
    { "mov %eax,0x1000 (no ModRM)", 32, "a300100000", SPP_X86_NO_MEMORY },

    /* 16-bit code: 16-bit addresses wrap */
    { "mov %ax,0x2(%bp,%di)", 16, "894302",
      SPP_X86_STORE, SS + ((RBP + (RDI & 0xffff) + 2) & 0xffff), 64 },
    { "mov %eax,0x10(%eax)", 16, "6766894010",
      SPP_X86_STORE, DS + (RAX & 0xffffffff) + 0x10, 64 },
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
    unsigned i, stores = 0;

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
    }
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
    return g_test_run();
}
