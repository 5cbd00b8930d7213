/*
 * The vCPU of the minimal VMMs in scripts/spp (kvm-floor.c,
 * kvm-slot-stress.c): KVM ioctls only, one vCPU in real mode at 0:0.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef SPP_KVM_MINI_H
#define SPP_KVM_MINI_H

#include <linux/kvm.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

/*
 * Create vCPU 0 of @vm (@kvm: /dev/kvm), map its kvm_run, and start it
 * in real mode at 0:0.  NULL, or the name of the call that failed
 * (errno says why).
 */
static const char *kvm_mini_vcpu(int kvm, int vm, int *vcpu,
                                 struct kvm_run **run)
{
    struct kvm_sregs sregs;
    struct kvm_regs regs = { .rip = 0, .rflags = 2 };
    int size;

    *vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (*vcpu < 0 || size <= 0) {
        return "KVM_CREATE_VCPU";
    }
    *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *vcpu, 0);
    if (*run == MAP_FAILED) {
        return "mmap kvm_run";
    }
    if (ioctl(*vcpu, KVM_GET_SREGS, &sregs) < 0) {
        return "KVM_GET_SREGS";
    }
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(*vcpu, KVM_SET_SREGS, &sregs) < 0 ||
        ioctl(*vcpu, KVM_SET_REGS, &regs) < 0) {
        return "KVM_SET_REGS";
    }
    return NULL;
}

#endif
