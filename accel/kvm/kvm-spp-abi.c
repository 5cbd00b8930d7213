/*
 * Sub-page write protection (SPP): talking to the kernel's v12 SPP ABI
 *
 * Everything here goes through KvmSppKernel, so that it runs the same
 * against the kernel (accel/kvm/kvm-spp.c) and against the simulation
 * in tests/unit/test-kvm-spp.c.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qapi/error.h"
#include "system/kvm-spp.h"
#include "system/spp-backend.h"

bool kvm_spp_probe(const KvmSppKernel *k, SppKvmMode mode,
                   const char **reason)
{
    int ret;

    if (mode == SPP_KVM_MODE_EMULATED) {
        *reason = "spp=emulated was requested";
        return false;
    }
    ret = k->check_extension(k->opaque, KVM_SPP_CAP);
    if (ret != KVM_SPP_MAX_PAGES) {
        *reason = ret == 1 ?
            "this kernel has no SPP interface: its capability 182 is "
            "KVM_CAP_HALT_POLL, which was left untouched" :
            "this kernel has no SPP interface "
            "(KVM_CHECK_EXTENSION(182) does not answer 512)";
        return false;
    }
    ret = k->enable_cap(k->opaque, KVM_SPP_CAP);
    if (ret == -EPERM) {
        *reason = "the kernel refused to enable SPP (EPERM: it does not "
                  "support SPP together with nested virtualization)";
        return false;
    } else if (ret == -ENODEV) {
        *reason = "the kernel has the SPP interface but the processor "
                  "has no SPP (ENODEV)";
        return false;
    } else if (ret < 0) {
        *reason = "enabling the kernel's SPP interface failed";
        return false;
    }
    *reason = "the kernel's SPP interface (v12 ABI) is enabled";
    return true;
}

static struct kvm_subpage *kvm_spp_buf(void)
{
    return g_malloc0(sizeof(struct kvm_subpage) +
                     KVM_SPP_MAX_PAGES * sizeof(uint32_t));
}

static void kvm_spp_fill(struct kvm_subpage *sp, uint64_t gfn, uint32_t n)
{
    sp->gfn_base = gfn;
    sp->npages = n;
    sp->flags = 0;
}

bool kvm_spp_set_vectors(const KvmSppKernel *k, uint64_t gfn,
                         uint64_t npages, const uint32_t *vals, uint32_t wp,
                         const uint32_t *old, Error **errp)
{
    g_autofree struct kvm_subpage *sp = kvm_spp_buf();
    uint64_t done = 0, i;
    int ret;

    while (done < npages) {
        uint32_t n = MIN(npages - done, KVM_SPP_MAX_PAGES);

        kvm_spp_fill(sp, gfn + done, n);
        for (i = 0; i < n; i++) {
            sp->access_map[i] = vals ? vals[done + i] : wp;
        }
        ret = k->set_access(k->opaque, sp);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "KVM_SUBPAGES_SET_ACCESS of %u "
                             "pages from gfn 0x%" PRIx64 " failed", n,
                             gfn + done);
            break;
        }
        done += n;
    }
    if (done == npages) {
        return true;
    }

    /* Put back what was already set, so the kernel matches the core. */
    for (i = 0; i < done; i += KVM_SPP_MAX_PAGES) {
        uint32_t n = MIN(done - i, KVM_SPP_MAX_PAGES);

        kvm_spp_fill(sp, gfn + i, n);
        memcpy(sp->access_map, old + i, n * sizeof(uint32_t));
        if (k->set_access(k->opaque, sp) < 0) {
            error_append_hint(errp, "Restoring gfn 0x%" PRIx64 " also "
                              "failed: the kernel's vectors may differ\n",
                              gfn + i);
        }
    }
    return false;
}

bool kvm_spp_set_access(const KvmSppKernel *k, uint64_t gfn, uint64_t npages,
                        uint32_t wp, const uint32_t *old, Error **errp)
{
    return kvm_spp_set_vectors(k, gfn, npages, NULL, wp, old, errp);
}

bool kvm_spp_set_ranges(const KvmSppKernel *k, const SppRange *r, size_t n,
                        const uint32_t *old, Error **errp)
{
    uint64_t off = 0;
    size_t j;

    for (j = 0; j < n; j++) {
        if (!kvm_spp_set_access(k, r[j].gfn, r[j].npages, r[j].wp,
                                old + off, errp)) {
            /* Undo the ranges already applied, last first. */
            while (j-- > 0) {
                off -= r[j].npages;
                kvm_spp_set_vectors(k, r[j].gfn, r[j].npages, old + off, 0,
                                    old + off, NULL);
            }
            return false;
        }
        off += r[j].npages;
    }
    return true;
}

bool kvm_spp_get_access(const KvmSppKernel *k, uint64_t gfn, uint64_t npages,
                        uint32_t *out, Error **errp)
{
    g_autofree struct kvm_subpage *sp = kvm_spp_buf();
    uint64_t done = 0;
    int ret;

    while (done < npages) {
        uint32_t n = MIN(npages - done, KVM_SPP_MAX_PAGES);

        kvm_spp_fill(sp, gfn + done, n);
        ret = k->get_access(k->opaque, sp);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "KVM_SUBPAGES_GET_ACCESS of %u "
                             "pages from gfn 0x%" PRIx64 " failed", n,
                             gfn + done);
            return false;
        }
        memcpy(out + done, sp->access_map, n * sizeof(uint32_t));
        done += n;
    }
    return true;
}

uint64_t kvm_spp_exit_gpa(uint64_t addr, uint32_t (*vector_of)(uint64_t gfn))
{
    if (vector_of(addr >> SPP_PAGE_SHIFT) != SPP_WP_ALL) {
        return addr;
    }
    if (addr < SPP_GFN_LIMIT && vector_of(addr) != SPP_WP_ALL) {
        return addr << SPP_PAGE_SHIFT;
    }
    return KVM_SPP_BAD_ADDR;
}

void kvm_spp_exit_action(SppPolicy action, uint8_t insn_len,
                         KvmSppExitAction *act)
{
    memset(act, 0, sizeof(*act));
    switch (action) {
    case SPP_POLICY_BLOCK:
        act->skip = insn_len != 0;
        act->stop = insn_len == 0;
        break;
    case SPP_POLICY_PAUSE:
        act->skip = insn_len != 0;
        act->stop = true;
        break;
    case SPP_POLICY_UNPROTECT:
        act->retry = true;
        break;
    case SPP_POLICY_REPORT:
        act->single_step = true;
        break;
    default:
        g_assert_not_reached();
    }
}
