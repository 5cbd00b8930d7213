/*
 * Sub-page write protection (SPP): who wrote, under TCG on x86
 *
 * For SPP_VIOLATION: the instruction that stored, from the host return
 * address of the store access (as an exception would find it), its
 * privilege level and its page-table root.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "cpu.h"
#include "exec/cpu-common.h"
#include "exec/translation-block.h"
#include "tcg/insn-start-words.h"
#include "system/tcg.h"
#include "system/spp-backend.h"

static bool spp_x86_tcg_writer(CPUState *cs, uintptr_t ra, SppCpuWriter *w)
{
    CPUX86State *env = &X86_CPU(cs)->env;
    uint64_t data[TARGET_INSN_START_WORDS];

    if (!tcg_enabled()) {
        return false;
    }
    /*
     * Without @ra, EIP may be that of the translation block's start.
     * The state is only read: the block goes on after the store, and in
     * a PC-relative block its later EIP updates are relative to EIP as
     * it is now.  The address is made as x86_restore_state_to_opc()
     * makes it.
     */
    if (ra && cpu_unwind_state_data(cs, ra, data)) {
        uint64_t pc = data[0];

        if (tcg_cflags_has(cs, CF_PCREL)) {
            pc |= (env->segs[R_CS].base + env->eip) & TARGET_PAGE_MASK;
        }
        w->has_pc = true;
        w->pc = env->hflags & HF_CS64_MASK ? pc : (uint32_t)pc;
    }
    w->has_ring = true;
    w->ring = env->hflags & HF_CPL_MASK;
    if (env->cr[0] & CR0_PG_MASK) {
        w->has_pt_root = true;
        w->pt_root = env->cr[3];
    }
    return true;
}

static void spp_x86_tcg_writer_register(void)
{
    spp_add_writer_reader(spp_x86_tcg_writer);
}
type_init(spp_x86_tcg_writer_register)
