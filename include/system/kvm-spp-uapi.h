/*
 * The KVM sub-page protection (SPP) kernel ABI, v12 (May 2020)
 *
 * Intel's SPP patches for KVM were never merged, so no kernel tree has
 * this ABI and scripts/update-linux-headers.sh cannot import it; it is
 * carried here, next to linux-headers/linux/kvm.h rather than inside
 * it.  Two of its numbers collide with upstream ones: the exit reason
 * (upstream's KVM_EXIT_X86_RDMSR) is only read as SPP while SPP is
 * enabled, and the capability (upstream's KVM_CAP_HALT_POLL) is only
 * believed when KVM_CHECK_EXTENSION answers KVM_SUBPAGE_MAX_PAGES.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SYSTEM_KVM_SPP_UAPI_H
#define SYSTEM_KVM_SPP_UAPI_H

#include <linux/kvm.h>

#define KVM_EXIT_SPP            29
#define KVM_CAP_X86_SPP         182
#define KVM_SUBPAGE_MAX_PAGES   512

/*
 * One 32-bit vector per 4 KiB page, bit i for bytes [128*i, 128*i+127],
 * 1 = writable.  flags must be 0 and npages at most
 * KVM_SUBPAGE_MAX_PAGES.  (0x49 with a struct argument is upstream's
 * KVM_SET_USER_MEMORY_REGION2; these encode a __u64 and do not collide.)
 */
struct kvm_subpage {
    __u64 gfn_base;
    __u32 npages;
    __u32 flags;
    __u32 access_map[];
};

#define KVM_SUBPAGES_GET_ACCESS _IOR(KVMIO, 0x49, __u64)
#define KVM_SUBPAGES_SET_ACCESS _IOW(KVMIO, 0x4a, __u64)

/*
 * The payload of KVM_EXIT_SPP, in kvm_run's exit union: @addr is a gpa
 * on the page-fault path but a gfn on the emulator path.
 */
struct kvm_spp_exit {
    __u64 addr;
    __u8 insn_len;
};

static inline const struct kvm_spp_exit *
kvm_spp_exit_info(const struct kvm_run *run)
{
    /* Every member of the exit union starts where hw does. */
    return (const struct kvm_spp_exit *)&run->hw;
}

#endif
