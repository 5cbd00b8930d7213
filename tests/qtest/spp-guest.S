/*
 * Tiny x86 guest for the SPP qtests, loaded with -bios.
 *
 * It enters 32-bit protected mode (flat segments, no paging), enables
 * SSE, then serves commands that the test writes into a mailbox in
 * guest RAM:
 *
 *   SPP_MB_CMD   command (0: none); the guest clears it when done
 *   SPP_MB_ARG   argument
 *   SPP_MB_DONE  incremented after each command
 *
 * Commands:
 *   1  the store matrix over the pages at SPP_PAGE_P and SPP_PAGE_Q
 *   2  ARG byte stores of 0xab to SPP_PAGE_P (hammer)
 *   3  ARG dword stores of 0x01020304 to SPP_PAGE_P + 4
 *   4  demo: for i = 1 .. ARG, store i to SPP_PAGE_P + 0x10 and to
 *      SPP_PAGE_P + 0x810, then wait a little
 *   5  writer: store a counter to each dword of SPP_PAGE_P in turn, for
 *      as long as the command stays 5
 *   6  ARG dword stores to the address in SPP_MB_ADDR (benchmarks)
 *   7  paging: turn on 32-bit paging with the page directory at
 *      SPP_MB_ADDR (the test fills it), store to SPP_PAGED_STORE and load
 *      from SPP_PAGED_LOAD ARG times, turn paging off again
 *   9  wake the other vCPUs with INIT and SIPIs (see the SMP jobs in
 *      spp-guest-layout.h)
 *  10  run the SMP job in SPP_SMP_CMD on this vCPU
 *  11  wrmsr (see spp-guest-layout.h)
 *  12  one store of a kind a writer's address is asked of (ring 3, AVX,
 *      xsave, at the edge of an unmapped page), its address in
 *      SPP_MB_PC (see spp-guest-layout.h)
 *  13  walk memory (benchmarks), 14  self-modifying code (see
 *      spp-guest-layout.h)
 *   8  ARG stores to the address in SPP_MB_ADDR of the kind in
 *      SPP_MB_KIND: a dword (movl), 8 bytes from %xmm0 (movq), or an
 *      xsave of the x87 and SSE state (the address 64-byte aligned);
 *      for xsave without XSAVE the guest sets SPP_MB_KIND to
 *      SPP_KIND_NONE and stores nothing (benchmarks)
 *
 * Built with -DSPP_AUTORUN=ARG, the guest starts the demo command by
 * itself (scripts/spp/demo.sh uses that).
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "spp-guest-layout.h"

/* Linked at 0xffff0000: _start is the first byte of the image. */

#define AP_ENTRY_OFFSET 0xe000
#define AP_ENTRY_PHYS   (0xf0000 + AP_ENTRY_OFFSET)

/*
 * From real mode: load the flat GDT (addressed through CS, whose base is
 * that of \base), turn on protected mode and jump to \target.
 */
        .macro  enter_pm base, target
        lgdtl   %cs:(gdt_desc - \base)
        movl    %cr0, %eax
        orl     $1, %eax                /* PE */
        andl    $~0x4, %eax             /* EM off */
        orl     $0x2, %eax              /* MP */
        movl    %eax, %cr0
        ljmpl   $0x08, $\target
        .endm

/* In protected mode: flat data segments, SSE on. */
        .macro  flat_data_sse
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movl    %cr4, %eax
        orl     $0x600, %eax            /* OSFXSR | OSXMMEXCPT */
        movl    %eax, %cr4
        .endm

/* 32-bit paging with PSE, the page directory at SPP_MB_ADDR (the test's) */
        .macro  paging_on
        movl    SPP_MB_ADDR, %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        orl     $0x10, %eax             /* PSE */
        movl    %eax, %cr4
        movl    %cr0, %eax
        orl     $0x80000000, %eax       /* PG */
        movl    %eax, %cr0
        jmp     1f
1:
        .endm

        .macro  paging_off
        movl    %cr0, %eax
        andl    $0x7fffffff, %eax       /* PG */
        movl    %eax, %cr0
        .endm

        .code16
        .section .text
        .globl _start
_start:
        cli
        cld
        xorw    %ax, %ax
        movw    %ax, %ds
rm_store:
        movw    $SPP_RM_VALUE, SPP_RM_STORE
        enter_pm _start, pm_entry

        .code32
pm_entry:
        flat_data_sse
        movl    $SPP_STACK_TOP, %esp
        movl    $rm_store, SPP_MB_RM_PC

        movl    $SPP_MB_READY_MAGIC, SPP_MB_READY
#ifdef SPP_AUTORUN
        movl    $SPP_AUTORUN, SPP_MB_ARG
        movl    $SPP_CMD_DEMO, SPP_MB_CMD
#endif

wait_cmd:
        movl    SPP_MB_CMD, %eax
        testl   %eax, %eax
        jz      wait_cmd
        cmpl    $1, %eax
        je      cmd_matrix
        cmpl    $2, %eax
        je      cmd_hammer
        cmpl    $3, %eax
        je      cmd_dword_loop
        cmpl    $4, %eax
        je      cmd_demo
        cmpl    $5, %eax
        je      cmd_writer
        cmpl    $6, %eax
        je      cmd_store_loop
        cmpl    $7, %eax
        je      cmd_paging
        cmpl    $8, %eax
        je      cmd_kind_loop
        cmpl    $9, %eax
        je      cmd_smp_start
        cmpl    $10, %eax
        je      cmd_smp_job
        cmpl    $11, %eax
        je      cmd_wrmsr
        cmpl    $12, %eax
        je      cmd_writers
        cmpl    $13, %eax
        je      cmd_walk
        cmpl    $14, %eax
        je      cmd_smc
cmd_done:
        movl    $0, SPP_MB_CMD
        lock incl SPP_MB_DONE
        jmp     wait_cmd

/*
 * The store matrix.  For each sub-page i of page P, at P + 128 * i:
 *   +0   byte   0x11
 *   +2   word   0x2222
 *   +4   dword  0x33333333
 *   +8   qword  0x4444444444444444 (movq from an SSE register)
 *   +16  xchg   dword 0x55555555
 *   +20  lock cmpxchg dword 0 -> 0x66666666
 *   +32  16 bytes of 0x99 (movdqu from an SSE register)
 *   +64  rep movsb of 48 bytes from the ROM at 0xffff0000 + 128 * i
 *   +124 qword  0x7777777777777777 (straddles into sub-page i + 1, and
 *               into page Q for i = 31)
 * then rep stosb of 80 bytes of 0x88 at P + 4096 - 40 (across P and Q).
 *
 * With ARG bit 0 set, and where CPUID offers them, first: xsave of
 * x87/SSE(/AVX) state to SPP_XSAVE_SCRATCH (unprotected) and then to
 * P + 0x800, and a 32-byte AVX store of 0xaa at P + 0x3f0 (across
 * sub-pages 7 and 8).  SPP_MB_XFEAT reports the features used (the xsave
 * mask; 0 when none).
 * The test's model replays exactly this list.
 */
cmd_matrix:
        movl    $0, SPP_MB_XFEAT
        testl   $1, SPP_MB_ARG
        jz      8f
        movl    $1, %eax
        cpuid
        btl     $26, %ecx               /* XSAVE */
        jnc     8f
        movl    %ecx, %esi
        movl    %cr4, %eax
        orl     $0x40000, %eax          /* OSXSAVE */
        movl    %eax, %cr4
        movl    $3, %ebp                /* x87 | SSE */
        btl     $28, %esi               /* AVX */
        jnc     9f
        orl     $4, %ebp
9:
        movl    %ebp, %eax
        xorl    %edx, %edx
        xorl    %ecx, %ecx
        xsetbv
        movl    %ebp, %eax
        xorl    %edx, %edx
        xsave   SPP_XSAVE_SCRATCH
        xsave   SPP_PAGE_P + 0x800
        movl    %ebp, SPP_MB_XFEAT
        testl   $4, %ebp
        jz      8f
        movl    $0xaaaaaaaa, %eax
        movd    %eax, %xmm3
        pshufd  $0, %xmm3, %xmm3
        vinsertf128 $1, %xmm3, %ymm3, %ymm3
        vmovdqu %ymm3, SPP_PAGE_P + 0x3f0
8:
        movl    $SPP_PAGE_P, %edi
        movl    $32, %ecx
        movl    $0x44444444, %eax
        movd    %eax, %xmm0
        pshufd  $0, %xmm0, %xmm0
        movl    $0x77777777, %eax
        movd    %eax, %xmm1
        pshufd  $0, %xmm1, %xmm1
        movl    $0x99999999, %eax
        movd    %eax, %xmm2
        pshufd  $0, %xmm2, %xmm2
1:
        movb    $0x11, 0(%edi)
        movw    $0x2222, 2(%edi)
        movl    $0x33333333, 4(%edi)
        movq    %xmm0, 8(%edi)
        movl    $0x55555555, %eax
        xchgl   %eax, 16(%edi)
        xorl    %eax, %eax
        movl    $0x66666666, %edx
        lock cmpxchgl %edx, 20(%edi)
        movdqu  %xmm2, 32(%edi)
        pushl   %ecx
        pushl   %edi
        leal    (0xffff0000 - SPP_PAGE_P)(%edi), %esi
        addl    $64, %edi
        movl    $48, %ecx
        rep movsb
        popl    %edi
        popl    %ecx
        movq    %xmm1, 124(%edi)
        addl    $128, %edi
        decl    %ecx
        jnz     1b

        pushl   %ecx
        movl    $SPP_PAGE_P + 4096 - 40, %edi
        movl    $80, %ecx
        movb    $0x88, %al
        rep stosb
        popl    %ecx
        jmp     cmd_done

cmd_hammer:
        movl    SPP_MB_ARG, %ecx
        movl    $SPP_PAGE_P, %edi
2:
        movb    $0xab, (%edi)
        decl    %ecx
        jnz     2b
        jmp     cmd_done

cmd_dword_loop:
        movl    SPP_MB_ARG, %ecx
        movl    $SPP_PAGE_P + 4, %edi
        movl    $3f, SPP_MB_PC
3:
        movl    $0x01020304, (%edi)
        decl    %ecx
        jnz     3b
        jmp     cmd_done

cmd_demo:
        movl    $1, %ebx
4:
        movl    %ebx, SPP_PAGE_P + 0x10
        movl    %ebx, SPP_PAGE_P + 0x810
        movl    $4000000, %ecx
5:
        pause
        decl    %ecx
        jnz     5b
        incl    %ebx
        cmpl    SPP_MB_ARG, %ebx
        jbe     4b
        jmp     cmd_done

cmd_store_loop:
        movl    SPP_MB_ARG, %ecx
        movl    SPP_MB_ADDR, %edi
7:
        movl    %ecx, (%edi)
        decl    %ecx
        jnz     7b
        jmp     cmd_done

cmd_walk:
        xorl    %ebx, %ebx
        movl    %ebx, SPP_MB_PROGRESS
12:
        cmpl    SPP_MB_ARG, %ebx
        jae     cmd_done
        movl    SPP_MB_ADDR, %edi
        movl    SPP_MB_WALK_BYTES, %ecx
        shrl    $12, %ecx
        jnz     13f
        movl    $(SPP_WALK_BYTES / 4096), %ecx
13:
        movl    %ebx, (%edi)
        addl    $4096, %edi
        decl    %ecx
        jnz     13b
        incl    %ebx
        movl    %ebx, SPP_MB_PROGRESS
        jmp     12b

cmd_smc:
        movl    $smc_routine, %esi
        movl    $SPP_SMC_PAGE, %edi
        movl    $(smc_routine_end - smc_routine), %ecx
        cld
        rep movsb
        movl    $SPP_SMC_PAGE, %eax
        call    *%eax
        movl    %eax, SPP_MB_SMC_RESULT
        jmp     cmd_done

/* Copied to SPP_SMC_PAGE and run there: it rewrites its own next insn. */
smc_routine:
        movb    $SPP_SMC_NEW, SPP_SMC_PAGE + (smc_imm - smc_routine)
        movl    $SPP_SMC_OLD, %eax
smc_imm = . - 4
        ret
smc_routine_end:

cmd_kind_loop:
        movl    SPP_MB_ARG, %ecx
        movl    SPP_MB_ADDR, %edi
        cmpl    $SPP_KIND_MOVQ_XMM, SPP_MB_KIND
        je      10f
        cmpl    $SPP_KIND_XSAVE, SPP_MB_KIND
        je      11f
9:
        movl    %ecx, (%edi)
        decl    %ecx
        jnz     9b
        jmp     cmd_done
10:
        movd    %ecx, %xmm0
        movq    %xmm0, (%edi)
        decl    %ecx
        jnz     10b
        jmp     cmd_done
11:
        movl    $1, %eax
        pushl   %ecx
        cpuid
        btl     $26, %ecx               /* XSAVE */
        popl    %ecx
        jnc     13f
        movl    %cr4, %eax
        orl     $0x40000, %eax          /* OSXSAVE */
        movl    %eax, %cr4
        pushl   %ecx
        xorl    %ecx, %ecx
        xorl    %edx, %edx
        movl    $3, %eax                /* x87 | SSE */
        xsetbv
        popl    %ecx
12:
        movl    $3, %eax
        xorl    %edx, %edx
        xsave   (%edi)
        decl    %ecx
        jnz     12b
        jmp     cmd_done
13:
        movl    $SPP_KIND_NONE, SPP_MB_KIND
        jmp     cmd_done

cmd_paging:
        paging_on
        movl    SPP_MB_ARG, %ecx
2:
        movl    %ecx, SPP_PAGED_STORE
        movl    SPP_PAGED_LOAD, %eax
        decl    %ecx
        jnz     2b
        paging_off
        jmp     cmd_done

cmd_writer:
        xorl    %ebx, %ebx
6:
        movl    %ebx, %eax
        andl    $0x3ff, %eax
        movl    %ebx, SPP_PAGE_P(,%eax,4)
        incl    %ebx
        cmpl    $5, SPP_MB_CMD
        je      6b
        jmp     cmd_done

/* INIT, then two start-up IPIs, to all but self; the APs go to ap_entry. */
cmd_smp_start:
        movl    $0x000c4500, 0xfee00300
        movl    $100000, %ecx
1:
        pause
        decl    %ecx
        jnz     1b
        movl    $0x000c4600 | (AP_ENTRY_PHYS >> 12), 0xfee00300
        movl    $100000, %ecx
2:
        pause
        decl    %ecx
        jnz     2b
        movl    $0x000c4600 | (AP_ENTRY_PHYS >> 12), 0xfee00300
        jmp     cmd_done

cmd_smp_job:
        call    smp_job
        jmp     cmd_done

/* wrmsr of MSR ARG with ADDR (high half 0): a paravirtual area's address. */
cmd_wrmsr:
        movl    SPP_MB_ARG, %ecx
        movl    SPP_MB_ADDR, %eax
        xorl    %edx, %edx
        wrmsr
        jmp     cmd_done

/* The job in SPP_SMP_CMD; every vCPU runs it (clobbers all registers). */
smp_job:
        movl    SPP_SMP_ARG, %ecx
        movl    SPP_SMP_ADDR, %edi
        movl    SPP_SMP_CMD, %eax
        testl   %ecx, %ecx
        jz      9f
        cmpl    $SPP_JOB_XADD, %eax
        je      1f
        cmpl    $SPP_JOB_CMPXCHG, %eax
        je      2f
        cmpl    $SPP_JOB_LOCK_ADD, %eax
        je      4f
        cmpl    $SPP_JOB_TEAR, %eax
        je      5f
        cmpl    $SPP_JOB_XCHG_LOCK, %eax
        je      12f
        cmpl    $SPP_JOB_HAMMER, %eax
        je      14f
        cmpl    $SPP_JOB_WRITER, %eax
        je      15f
        cmpl    $SPP_JOB_MOVQ, %eax
        je      17f
        cmpl    $SPP_JOB_STORE_INC, %eax
        je      18f
9:
        ret
14:
        movb    $0xab, (%edi)
        decl    %ecx
        jnz     14b
        ret
15:
        xorl    %ebx, %ebx
16:
        movl    %ebx, %eax
        andl    $0x3ff, %eax
        movl    %ebx, (%edi,%eax,4)
        incl    %ebx
        cmpl    $SPP_JOB_WRITER, SPP_SMP_CMD
        je      16b
        ret
17:
        movd    %ecx, %xmm0
        pshufd  $0, %xmm0, %xmm0
        movq    %xmm0, (%edi)
        decl    %ecx
        jnz     17b
        ret
18:
        movl    %ecx, (%edi)
        lock incl 0x800(%edi)
        decl    %ecx
        jnz     18b
        ret
12:
        movl    $1, %eax
        xchgl   %eax, (%edi)
        testl   %eax, %eax
        jz      13f
        pause
        jmp     12b
13:
        addl    $1, 4(%edi)
        movl    $0, (%edi)
        decl    %ecx
        jnz     12b
        ret
1:
        movl    $1, %eax
        lock xaddl %eax, (%edi)
        decl    %ecx
        jnz     1b
        ret
2:
        movl    (%edi), %eax
3:
        leal    1(%eax), %edx
        lock cmpxchgl %edx, (%edi)
        jnz     3b
        decl    %ecx
        jnz     2b
        ret
4:
        lock addl $1, (%edi)
        decl    %ecx
        jnz     4b
        ret
5:
        pcmpeqd %xmm0, %xmm0            /* all ones */
        pxor    %xmm1, %xmm1            /* all zeros */
6:
        testl   $1, %ecx
        jz      7f
        movq    %xmm0, (%edi)
        jmp     8f
7:
        movq    %xmm1, (%edi)
8:
        movq    (%edi), %xmm2
        movd    %xmm2, %eax
        psrlq   $32, %xmm2
        movd    %xmm2, %edx
        cmpl    %eax, %edx
        jne     10f
        incl    %eax                    /* 0 or all ones: 1 or 0 */
        cmpl    $1, %eax
        jbe     11f
10:
        lock incl SPP_SMP_TORN
11:
        decl    %ecx
        jnz     6b
        ret

/* An AP in protected mode: count itself, then serve SMP jobs. */
ap_pm:
        flat_data_sse
        movl    $1, %eax
        lock xaddl %eax, SPP_MB_APS
        shll    $12, %eax
        movl    $SPP_AP_STACK_TOP, %esp
        subl    %eax, %esp
        movl    SPP_SMP_GEN, %ebp
ap_wait:
        pause
        movl    SPP_SMP_GEN, %eax
        cmpl    %eax, %ebp
        je      ap_wait
        movl    %eax, %ebp
        pushl   %ebp
        call    smp_job
        popl    %ebp
        lock incl SPP_SMP_DONE
        jmp     ap_wait

/* One store whose writer the test checks: see SPP_CMD_WRITERS. */
cmd_writers:
        movl    SPP_MB_ARG, %ecx
        movl    SPP_MB_KIND, %eax
        cmpl    $SPP_WR_AVX, %eax
        je      wr_avx
        cmpl    $SPP_WR_XSAVE, %eax
        je      wr_xsave
        cmpl    $SPP_WR_REP, %eax
        je      wr_rep
        cmpl    $SPP_WR_MOFFS, %eax
        je      wr_moffs
        call    sys_tables
        paging_on
        movl    SPP_MB_ARG, %ecx
        cmpl    $SPP_WR_EDGE, SPP_MB_KIND
        je      wr_edge
        pushl   $0x23                   /* to ring 3: SS, ESP, CS, EIP */
        pushl   $SPP_USER_STACK
        pushl   $0x1b
        pushl   $wr_user
        lret
wr_user:
        movw    $0x23, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movl    $wr_user_store, SPP_MB_PC
wr_user_store:
        movl    %ecx, SPP_PAGE_P + 8
        int     $0x80                   /* back to ring 0: sys_return */
wr_edge:
        movl    $SPP_PAGE_P + 0x10, %edi
        movl    $wr_edge_store, SPP_MB_PC
        jmp     wr_edge_store
wr_avx:
        movl    $1, %eax
        cpuid
        andl    $0x14000000, %ecx       /* XSAVE | AVX */
        cmpl    $0x14000000, %ecx
        jne     wr_none
        movl    $7, %ebp                /* x87 | SSE | AVX */
        call    xsave_on
        movzbl  SPP_MB_ARG, %eax
        imull   $0x01010101, %eax
        movd    %eax, %xmm0
        pshufd  $0, %xmm0, %xmm0
        vinsertf128 $1, %xmm0, %ymm0, %ymm0
        movl    $wr_avx_store, SPP_MB_PC
wr_avx_store:
        vmovdqu %ymm0, SPP_PAGE_P + 0x40
        jmp     cmd_done
wr_xsave:
        movl    $1, %eax
        cpuid
        btl     $26, %ecx               /* XSAVE */
        jnc     wr_none
        movl    $3, %ebp                /* x87 | SSE */
        call    xsave_on
        movl    $3, %eax
        xorl    %edx, %edx
        movl    $wr_xsave_store, SPP_MB_PC
wr_xsave_store:
        xsave   SPP_PAGE_P + 0x400
        jmp     cmd_done
wr_rep:
        movl    %ecx, %eax
        movl    $4, %ecx
        movl    $SPP_PAGE_P + 0x20, %edi
        movl    $wr_rep_store, SPP_MB_PC
wr_rep_store:
        rep stosl
        jmp     cmd_done
wr_moffs:
        movl    %ecx, %eax
        movl    $wr_moffs_store, SPP_MB_PC
wr_moffs_store:
        movl    %eax, SPP_PAGE_P + 0x30
        jmp     cmd_done
wr_none:
        movl    $SPP_KIND_NONE, SPP_MB_KIND
        jmp     cmd_done

/* CR4.OSXSAVE on, XCR0 = %ebp */
xsave_on:
        movl    %cr4, %eax
        orl     $0x40000, %eax          /* OSXSAVE */
        movl    %eax, %cr4
        movl    %ebp, %eax
        xorl    %edx, %edx
        xorl    %ecx, %ecx
        xsetbv
        ret

/*
 * The GDT with ring-3 segments and a TSS (its ring-0 stack), and the IDT
 * (a page fault, and int $0x80 from ring 3, both end the command)
 */
sys_tables:
        movl    $gdt_sys, %esi
        movl    $SPP_SYS_GDT, %edi
        movl    $(gdt_sys_end - gdt_sys) / 4, %ecx
        rep movsl
        xorl    %eax, %eax
        movl    $SPP_SYS_TSS, %edi
        movl    $26, %ecx               /* 104 bytes */
        rep stosl
        movl    $SPP_STACK_TOP, SPP_SYS_TSS + 4         /* ESP0 */
        movl    $0x10, SPP_SYS_TSS + 8                  /* SS0 */
        movl    $SPP_SYS_IDT, %edi
        movl    $512, %ecx              /* 256 gates */
        rep stosl
        movl    $page_fault, %eax
        movl    $SPP_SYS_IDT + 14 * 8, %edi
        movl    $0x8e00, %edx           /* interrupt gate, DPL 0 */
        call    set_gate
        movl    $sys_return, %eax
        movl    $SPP_SYS_IDT + 0x80 * 8, %edi
        movl    $0xee00, %edx           /* interrupt gate, DPL 3 */
        call    set_gate
        lgdtl   gdt_sys_desc
        lidtl   idt_sys_desc
        movw    $0x28, %ax
        ltr     %ax
        ret

/* The gate at %edi to the handler at %eax, of type %edx */
set_gate:
        movw    %ax, (%edi)
        movw    $0x08, 2(%edi)
        andl    $0xffff0000, %eax
        orl     %edx, %eax
        movl    %eax, 4(%edi)
        ret

page_fault:
        movl    %cr2, %eax
        movl    %eax, SPP_MB_CR2
        lock incl SPP_MB_FAULTS
        /* fall through */
sys_return:
        paging_off
        flat_data_sse
        movl    $SPP_STACK_TOP, %esp
        jmp     cmd_done

        .p2align 3
gdt_sys:
        .quad   0
        .quad   0x00cf9b000000ffff      /* 0x08: code, flat, 32-bit */
        .quad   0x00cf93000000ffff      /* 0x10: data, flat */
        .quad   0x00cffb000000ffff      /* 0x18: ring-3 code */
        .quad   0x00cff3000000ffff      /* 0x20: ring-3 data */
        .word   0x67                    /* 0x28: the TSS */
        .word   SPP_SYS_TSS & 0xffff
        .byte   (SPP_SYS_TSS >> 16) & 0xff
        .byte   0x89
        .byte   0
        .byte   SPP_SYS_TSS >> 24
gdt_sys_end:
gdt_sys_desc:
        .word   gdt_sys_end - gdt_sys - 1
        .long   SPP_SYS_GDT
idt_sys_desc:
        .word   256 * 8 - 1
        .long   SPP_SYS_IDT

/* The last two bytes before SPP_EDGE_PAGE */
        .org    SPP_EDGE_PAGE - 0xffff0000 - 2
wr_edge_store:
        movl    %ecx, (%edi)
        /* the next instruction is on SPP_EDGE_PAGE */

/*
 * The APs start here in real mode, at AP_ENTRY_PHYS: this 4 KiB page of
 * the image as the chipset shows it below 1 MiB (the image ends at
 * 0xfffff).
 */
        .org    AP_ENTRY_OFFSET
        .code16
ap_entry:
        cli
        cld
        enter_pm ap_entry, ap_pm
        .code32

        .p2align 3
gdt:
        .quad   0
        .quad   0x00cf9b000000ffff      /* 0x08: code, flat, 32-bit */
        .quad   0x00cf93000000ffff      /* 0x10: data, flat */
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .long   gdt

        /* Reset vector at 0xfffffff0. */
        .org    0xfff0
        .code16
        jmp     _start
        .org    0x10000
