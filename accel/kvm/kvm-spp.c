/*
 * Sub-page write protection (SPP): the KVM (hardware) backend
 *
 * Chooses between the kernel's SPP interface and QEMU's emulated backend
 * (-accel kvm,spp=auto|hardware|emulated) and, when the kernel's is in
 * use, keeps the kernel's vectors equal to the core's.
 *
 * No released kernel implements this interface and no SPP hardware was
 * available: this backend has only run against the simulation in
 * tests/unit/test-kvm-spp.c.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qom/object.h"
#include "hw/mem/memory-device.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/spp-backend.h"
#include "system/kvm-spp.h"
#include "system/kvm-write-trap.h"

/* A run of protected pages splits one memslot into (at most) three. */
#define KVM_SPP_SLOTS_PER_RUN 2

static SppKvmMode kvm_spp_mode = SPP_KVM_MODE_AUTO;
/* x-spp-zap-all: keep KVM_X86_QUIRK_SLOT_ZAP_ALL (for measurements) */
static bool kvm_spp_zap_all;
static bool kvm_spp_hw;
/* KVM_CAP_EXIT_ON_EMULATION_FAILURE: the kernel has it; it is on now. */
static bool kvm_spp_can_exit_on_emul;
static bool kvm_spp_exit_on_emul;
/*
 * The emulated backend (write traps, whose pages KVM makes read-only
 * memslots), with the capability switched on while it is needed and the
 * memslot limit checked before anything changes.
 */
static const SppBackendOps *kvm_spp_inner_ops;
static SppBackendOps kvm_spp_emul_ops;
static KvmSppEmulationFailureFn *kvm_spp_emul_fail_fn;

static int kvm_spp_get_mode(Object *obj, Error **errp)
{
    return kvm_spp_mode;
}

static void kvm_spp_set_mode(Object *obj, int value, Error **errp)
{
    kvm_spp_mode = value;
}

static bool kvm_spp_get_zap_all(Object *obj, Error **errp)
{
    return kvm_spp_zap_all;
}

static void kvm_spp_set_zap_all(Object *obj, bool value, Error **errp)
{
    kvm_spp_zap_all = value;
}

void kvm_spp_accel_class_init(ObjectClass *oc)
{
    object_class_property_add_enum(oc, "spp", "SppKvmMode",
                                   &SppKvmMode_lookup, kvm_spp_get_mode,
                                   kvm_spp_set_mode);
    object_class_property_set_description(oc, "spp",
        "Sub-page write protection: auto (the kernel's SPP when it truly "
        "has it, else QEMU's), hardware or emulated");
    object_class_property_add_bool(oc, "x-spp-zap-all", kvm_spp_get_zap_all,
                                   kvm_spp_set_zap_all);
    object_class_property_set_description(oc, "x-spp-zap-all",
        "Let a memslot deletion zap the whole VM's page tables, as Linux "
        "before 6.12 always does (default: off where the kernel allows)");
}

static int kvm_spp_k_check(void *opaque, int capability)
{
    return kvm_vm_check_extension(opaque, capability);
}

static int kvm_spp_k_enable(void *opaque, int capability)
{
    return kvm_vm_enable_cap((KVMState *)opaque, capability, 0);
}

static int kvm_spp_k_set(void *opaque, void *sp)
{
    return kvm_vm_ioctl(opaque, KVM_SUBPAGES_SET_ACCESS, sp);
}

static int kvm_spp_k_get(void *opaque, void *sp)
{
    return kvm_vm_ioctl(opaque, KVM_SUBPAGES_GET_ACCESS, sp);
}

static KvmSppKernel kvm_spp_kernel = {
    .check_extension = kvm_spp_k_check,
    .enable_cap = kvm_spp_k_enable,
    .set_access = kvm_spp_k_set,
    .get_access = kvm_spp_k_get,
};

static bool kvm_spp_hw_update(const SppRange *r, size_t n,
                              const uint32_t *old, Error **errp)
{
    return kvm_spp_set_ranges(&kvm_spp_kernel, r, n, old, errp);
}

static const SppBackendOps kvm_spp_hw_ops = {
    .kind = SPP_BACKEND_HARDWARE,
    .update = kvm_spp_hw_update,
};

bool kvm_spp_hw_active(void)
{
    return kvm_spp_hw;
}

bool kvm_spp_exit_on_emulation_failure(void)
{
    return kvm_spp_exit_on_emul;
}

void kvm_spp_set_emulation_failure_handler(KvmSppEmulationFailureFn *fn)
{
    kvm_spp_emul_fail_fn = fn;
}

bool kvm_spp_emulation_failure(CPUState *cs, struct kvm_run *run, int *ret)
{
    return kvm_spp_emul_fail_fn && kvm_spp_emul_fail_fn(cs, run, ret);
}

/*
 * Stores KVM cannot emulate on protected pages go to the step fallback;
 * without KVM_CAP_EXIT_ON_EMULATION_FAILURE, KVM would raise #UD for
 * those outside ring 0 instead of exiting.  It is on only while a page
 * is protected, so a VM that protects nothing runs as without SPP.
 */
static void kvm_spp_set_exit_on_emul(bool on)
{
    if (kvm_spp_can_exit_on_emul && on != kvm_spp_exit_on_emul &&
        !kvm_vm_enable_cap(kvm_state, KVM_CAP_EXIT_ON_EMULATION_FAILURE, 0,
                           on)) {
        kvm_spp_exit_on_emul = on;
    }
}

/* A KVM without read-only memslots cannot stop its vCPUs' stores. */
static bool kvm_spp_none_update(const SppRange *r, size_t n,
                                const uint32_t *old, Error **errp)
{
    error_setg(errp, "this KVM has no read-only memory slots "
               "(KVM_CAP_READONLY_MEM): QEMU cannot write-protect guest "
               "memory under it");
    return false;
}

static const SppBackendOps kvm_spp_none_ops = {
    .kind = SPP_BACKEND_EMULATED,
    .update = kvm_spp_none_update,
};

/*
 * Each run of pages that becomes protected, or unprotected inside a
 * protected run, may split one memslot in three; a step fallback lifts
 * up to SPP_STEP_MAX_PAGES pages, and must always find room.  Refuse,
 * before anything changes, a request that could take KVM past its
 * memslot limit.
 */
static bool kvm_spp_check_slots(const SppRange *r, size_t n,
                                const uint32_t *old, Error **errp)
{
    KVMState *s = kvm_state;
    uint64_t runs = 0, k = 0, i, need, free, reserved;
    size_t j;

    for (j = 0; j < n; j++) {
        for (i = 0; i < r[j].npages; k++, i++) {
            uint64_t gfn = r[j].gfn + i, end = gfn;
            bool prot = spp_get_vector(gfn) != SPP_WP_ALL;

            if ((old[k] != SPP_WP_ALL) == prot) {
                continue;
            }
            /* the run of pages that change the same way from here */
            while (i + 1 < r[j].npages &&
                   (old[k + 1] != SPP_WP_ALL) != prot &&
                   (spp_get_vector(end + 1) != SPP_WP_ALL) == prot) {
                i++;
                k++;
                end++;
            }
            /* released pages split a trapped run only inside one */
            runs += prot || (gfn && spp_get_vector(gfn - 1) != SPP_WP_ALL &&
                             spp_get_vector(end + 1) != SPP_WP_ALL);
        }
    }
    if (!runs) {
        return true;
    }
    /*
     * Count what is in use under the slots lock, and leave the slots
     * that memory devices (DIMMs, virtio-mem) were promised: a later
     * plug must find them, not fail in kvm_set_phys_mem().
     */
    free = kvm_get_free_memslots();
    reserved = memory_devices_get_reserved_memslots();
    need = KVM_SPP_SLOTS_PER_RUN * (runs + SPP_STEP_MAX_PAGES);
    if (need + reserved > free) {
        error_setg(errp, "this change may need %" PRIu64 " more KVM memory "
                   "slots (%" PRIu64 " runs of pages change protection, "
                   "and room for a step), but of the %d KVM allows "
                   "(KVM_CAP_NR_MEMSLOTS) %" PRIu64 " are free and %" PRIu64
                   " of those are reserved for memory devices",
                   need, runs, s->nr_slots_max, free, reserved);
        return false;
    }
    return true;
}

static bool kvm_spp_emul_update(const SppRange *r, size_t n,
                                const uint32_t *old, Error **errp)
{
    bool protecting = spp_protected_pages() > 0;

    if (!kvm_spp_check_slots(r, n, old, errp)) {
        return false;
    }

    /* On before the first page is trapped, off after the last is not. */
    if (protecting) {
        kvm_spp_set_exit_on_emul(true);
    }
    if (!kvm_spp_inner_ops->update(r, n, old, errp)) {
        return false;
    }
    if (!protecting) {
        kvm_spp_set_exit_on_emul(false);
    }
    return true;
}

int kvm_spp_init(KVMState *s)
{
    const char *reason;

    kvm_spp_kernel.opaque = s;
    kvm_spp_hw = kvm_spp_probe(&kvm_spp_kernel, kvm_spp_mode, &reason);
    if (kvm_spp_hw) {
        spp_set_backend(&kvm_spp_hw_ops, reason);
        return 0;
    }
    if (kvm_spp_mode == SPP_KVM_MODE_HARDWARE) {
        error_report("-accel kvm,spp=hardware: %s", reason);
        return -ENOTSUP;
    }
    kvm_spp_inner_ops = kvm_write_trap_init(s, kvm_spp_zap_all) ?
                        &spp_trap_ops : &kvm_spp_none_ops;
    kvm_spp_emul_ops = *kvm_spp_inner_ops;
    kvm_spp_emul_ops.update = kvm_spp_emul_update;
    kvm_spp_can_exit_on_emul =
        kvm_vm_check_extension(s, KVM_CAP_EXIT_ON_EMULATION_FAILURE) > 0;
    spp_set_backend(&kvm_spp_emul_ops,
                    g_strdup_printf("QEMU enforces sub-page protection "
                                    "itself: %s%s", reason,
                                    kvm_write_trap_zaps_slot_only() ?
                                    "; a memslot change zaps only its own "
                                    "pages (KVM_X86_QUIRK_SLOT_ZAP_ALL "
                                    "off)" : ""));
    return 0;
}
