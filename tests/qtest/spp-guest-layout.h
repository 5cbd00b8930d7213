/*
 * Memory layout shared by the SPP test guest (spp-guest.S) and its tests.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SPP_GUEST_LAYOUT_H
#define SPP_GUEST_LAYOUT_H

/* The two pages the store matrix writes. */
#define SPP_PAGE_P          0x100000
#define SPP_PAGE_Q          0x101000

#define SPP_STACK_TOP       0x180000
/* The stack of AP n (from 0) ends at SPP_AP_STACK_TOP - 4 KiB * n. */
#define SPP_AP_STACK_TOP    0x170000

/* An unprotected, 64-byte aligned area for xsave. */
#define SPP_XSAVE_SCRATCH   0x300000

/* Mailbox between the test and the guest. */
#define SPP_MB_BASE         0x200000
#define SPP_MB_READY        (SPP_MB_BASE + 0)
#define SPP_MB_CMD          (SPP_MB_BASE + 4)
#define SPP_MB_ARG          (SPP_MB_BASE + 8)
#define SPP_MB_DONE         (SPP_MB_BASE + 12)
#define SPP_MB_ADDR         (SPP_MB_BASE + 16)
#define SPP_MB_XFEAT        (SPP_MB_BASE + 20)
#define SPP_MB_KIND         (SPP_MB_BASE + 24)
#define SPP_MB_READY_MAGIC  0x53505021

/*
 * SMP jobs: SPP_CMD_SMP_START wakes the other vCPUs (APs), which count
 * themselves in SPP_MB_APS and then wait for SPP_SMP_GEN to change; each
 * change runs the job SPP_SMP_CMD (SPP_JOB_*) with SPP_SMP_ARG and
 * SPP_SMP_ADDR once on every AP, which then increments SPP_SMP_DONE.
 * SPP_CMD_SMP_JOB runs the same job on the first vCPU.
 */
#define SPP_MB_APS          (SPP_MB_BASE + 28)
#define SPP_SMP_GEN         (SPP_MB_BASE + 32)
#define SPP_SMP_CMD         (SPP_MB_BASE + 36)
#define SPP_SMP_ARG         (SPP_MB_BASE + 40)
#define SPP_SMP_ADDR        (SPP_MB_BASE + 44)
#define SPP_SMP_DONE        (SPP_MB_BASE + 48)
#define SPP_SMP_TORN        (SPP_MB_BASE + 52)
/* The linear address of the store SPP_CMD_DWORD_LOOP makes */
#define SPP_MB_PC           (SPP_MB_BASE + 56)

/* The linear address of the store the boot code makes in real mode */
#define SPP_MB_RM_PC        (SPP_MB_BASE + 60)
/* Page faults the guest came back from, and CR2 of the last one */
#define SPP_MB_FAULTS       (SPP_MB_BASE + 64)
#define SPP_MB_CR2          (SPP_MB_BASE + 68)
/* SPP_CMD_WALK: the rounds the guest has walked so far */
#define SPP_MB_PROGRESS     (SPP_MB_BASE + 72)
/* SPP_CMD_SMC: what the rewritten instruction left in %eax */
#define SPP_MB_SMC_RESULT   (SPP_MB_BASE + 76)
/* SPP_CMD_WALK: bytes to walk (0: SPP_WALK_BYTES) */
#define SPP_MB_WALK_BYTES   (SPP_MB_BASE + 80)

/* At boot, in real mode, the guest stores SPP_RM_VALUE (2 bytes) here */
#define SPP_RM_STORE        0x7000
#define SPP_RM_VALUE        0x4d52

/*
 * SPP_CMD_WRITERS: a GDT with ring-3 segments and a TSS, and an IDT
 * (page faults, int $0x80 from ring 3), which the guest sets up in RAM.
 */
#define SPP_SYS_GDT         0x240000
#define SPP_SYS_TSS         0x240100
#define SPP_SYS_IDT         0x241000
#define SPP_USER_STACK      0x190000
/* The page after the edge store (SPP_WR_EDGE): the test leaves it unmapped */
#define SPP_EDGE_PAGE       0xffffc000

/* ARG increments of the dword at ADDR by lock xadd */
#define SPP_JOB_XADD        1
/* ARG increments of the dword at ADDR by a lock cmpxchg loop */
#define SPP_JOB_CMPXCHG     2
/* ARG increments of the dword at ADDR by lock add */
#define SPP_JOB_LOCK_ADD    3
/*
 * ARG rounds of: an aligned 8-byte store (movq) of all-zeros or all-ones
 * at ADDR, then an 8-byte load of it; a load that is neither value
 * (torn) increments SPP_SMP_TORN.
 */
#define SPP_JOB_TEAR        4
/*
 * ARG times: take the spinlock at ADDR with xchg, increment the dword
 * at ADDR + 4 with a plain (unlocked) add, release the lock with a mov
 */
#define SPP_JOB_XCHG_LOCK   5
/* ARG byte stores of 0xab to ADDR */
#define SPP_JOB_HAMMER      6
/*
 * Dword stores of a running count over the 4 KiB at ADDR, one dword
 * after the other, until SPP_SMP_CMD is no longer SPP_JOB_WRITER (ARG
 * must not be 0)
 */
#define SPP_JOB_WRITER      7
/*
 * ARG rounds, counting ARG down to 1: a movq from an SSE register of
 * the count, in both halves, to ADDR
 */
#define SPP_JOB_MOVQ        8
/*
 * ARG rounds, counting ARG down to 1: a dword store of the count to
 * ADDR, then lock incl of the dword at ADDR + 0x800
 */
#define SPP_JOB_STORE_INC   9

#define SPP_CMD_MATRIX      1
#define SPP_CMD_HAMMER      2
#define SPP_CMD_DWORD_LOOP  3
#define SPP_CMD_DEMO        4
#define SPP_CMD_WRITER      5
#define SPP_CMD_STORE_LOOP  6
#define SPP_CMD_PAGING      7
#define SPP_CMD_KIND_LOOP   8
#define SPP_CMD_SMP_START   9
#define SPP_CMD_SMP_JOB     10
/* wrmsr: MSR ARG gets the value ADDR (the high half 0) */
#define SPP_CMD_WRMSR       11

/*
 * One store whose linear address the guest puts in SPP_MB_PC, of the
 * kind in SPP_MB_KIND (SPP_WR_*); with paging for the kinds that say so
 * (page directory at ADDR, which must map what they use for ring 3)
 */
#define SPP_CMD_WRITERS     12
/*
 * Walk memory: store a dword to each 4 KiB page of [ADDR, ADDR + n),
 * n = SPP_MB_WALK_BYTES or, when that is 0, SPP_WALK_BYTES, round after
 * round, and put the number of rounds done in SPP_MB_PROGRESS after
 * each, until ARG rounds are done; the test may lower ARG (to 0) to
 * stop the walk after its current round.
 */
#define SPP_CMD_WALK        13
#define SPP_WALK_BYTES      0x2000000
/*
 * Self-modifying code: copy a routine to SPP_SMC_PAGE and call it; its
 * first instruction stores SPP_SMC_NEW into the immediate of the
 * "movl $SPP_SMC_OLD, %eax" that follows it in the same translation
 * block; the routine returns and the guest puts %eax in
 * SPP_MB_SMC_RESULT (SPP_SMC_NEW: the rewritten instruction ran).  The
 * routine lies in the page's first sub-page.
 */
#define SPP_CMD_SMC         14
#define SPP_SMC_PAGE        0x310000
#define SPP_SMC_OLD         0x11
#define SPP_SMC_NEW         0x42
/* from ring 3, with paging: the dword ARG to SPP_PAGE_P + 8 */
#define SPP_WR_USER         0
/* vmovdqu of 32 bytes, each ARG & 0xff, to SPP_PAGE_P + 0x40 */
#define SPP_WR_AVX          1
/* xsave of the x87 and SSE state to SPP_PAGE_P + 0x400 */
#define SPP_WR_XSAVE        2
/*
 * with paging: the dword ARG to SPP_PAGE_P + 0x10 by the last instruction
 * before SPP_EDGE_PAGE; the guest then faults on that page and comes back
 */
#define SPP_WR_EDGE         3
/* rep stosl: the dword ARG to SPP_PAGE_P + 0x20 .. 0x2f */
#define SPP_WR_REP          4
/* mov %eax, moffs: the dword ARG to SPP_PAGE_P + 0x30 */
#define SPP_WR_MOFFS        5

/* SPP_MB_KIND for SPP_CMD_KIND_LOOP (KIND_NONE: the guest cannot) */
#define SPP_KIND_MOVL       0
#define SPP_KIND_MOVQ_XMM   1
#define SPP_KIND_XSAVE      2
#define SPP_KIND_NONE       0xffffffff

/* Paging test: where the test puts its page tables, what the guest uses */
#define SPP_PAGE_DIR        0x210000
#define SPP_PAGE_TABLE      0x211000
/* ... and for the top 4 MiB (SPP_CMD_WRITERS, SPP_WR_EDGE) */
#define SPP_PAGE_TABLE_TOP  0x212000
#define SPP_PAGED_STORE     0x220000
#define SPP_PAGED_LOAD      0x230000

#endif
