/*
 * The floor for a trapped guest store under KVM: a minimal VMM (KVM ioctls
 * only) whose real-mode guest stores in a loop to a read-only memslot, so
 * every store is a KVM_EXIT_MMIO round trip.  Prints ns per round trip.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "kvm-mini.h"

#define ROUNDS 200000

static void die(const char *what)
{
    fprintf(stderr, "kvm-floor: %s: %s\n", what, strerror(errno));
    exit(2);
}

int main(void)
{
    /* mov ax,0x1000; mov ds,ax; 1: movb [0],1; jmp 1b */
    static const uint8_t code[] = {
        0xb8, 0x00, 0x10, 0x8e, 0xd8, 0xc6, 0x06, 0x00, 0x00, 0x01,
        0xeb, 0xf9,
    };
    struct kvm_userspace_memory_region ram = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = 0x10000,
    };
    struct kvm_userspace_memory_region ro = {
        .slot = 1, .flags = KVM_MEM_READONLY,
        .guest_phys_addr = 0x10000, .memory_size = 0x1000,
    };
    const char *what;
    struct kvm_run *run;
    struct timespec t0, t1;
    int kvm, vm, vcpu, i;
    void *mem, *romem;

    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        die("/dev/kvm");
    }
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        die("KVM_CREATE_VM");
    }
    mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    romem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED || romem == MAP_FAILED) {
        die("mmap");
    }
    memcpy(mem, code, sizeof(code));
    ram.userspace_addr = (uintptr_t)mem;
    ro.userspace_addr = (uintptr_t)romem;
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &ram) < 0 ||
        ioctl(vm, KVM_SET_USER_MEMORY_REGION, &ro) < 0) {
        die("KVM_SET_USER_MEMORY_REGION");
    }
    what = kvm_mini_vcpu(kvm, vm, &vcpu, &run);
    if (what) {
        die(what);
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < ROUNDS; i++) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            die("KVM_RUN");
        }
        if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write ||
            run->mmio.phys_addr != 0x10000) {
            fprintf(stderr, "kvm-floor: unexpected exit %u\n",
                    run->exit_reason);
            return 2;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.1f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 +
                      (t1.tv_nsec - t0.tv_nsec)) / ROUNDS);
    return 0;
}
