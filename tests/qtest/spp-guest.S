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


        .code16
        .section .text
        .globl _start
_start:
        cli
        cld
        xorw    %ax, %ax
        movw    %ax, %ds
        lgdtl   %cs:(gdt_desc - _start)
        movl    %cr0, %eax
        orl     $1, %eax                /* PE */
        andl    $~0x4, %eax             /* EM off */
        orl     $0x2, %eax              /* MP */
        movl    %eax, %cr0
        ljmpl   $0x08, $pm_entry

        .code32
pm_entry:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movl    $SPP_STACK_TOP, %esp
        movl    %cr4, %eax
        orl     $0x600, %eax            /* OSFXSR | OSXMMEXCPT */
        movl    %eax, %cr4

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
        movl    SPP_MB_ARG, %ecx
2:
        movl    %ecx, SPP_PAGED_STORE
        movl    SPP_PAGED_LOAD, %eax
        decl    %ecx
        jnz     2b
        movl    %cr0, %eax
        andl    $0x7fffffff, %eax
        movl    %eax, %cr0
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
