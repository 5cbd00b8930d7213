/*
 * A reproducer without QEMU and without SPP: does this KVM keep a
 * guest's state while another thread changes memslots under it?
 *
 * A minimal VMM (KVM ioctls only) runs a real-mode guest on one vCPU
 * thread.  The guest stores a running count to a read-only memslot in
 * a loop, so every store is a KVM_EXIT_MMIO, and keeps four registers
 * at fixed values it never writes.  Meanwhile the main thread deletes
 * and re-adds an unrelated 4 KiB memslot, alternating read-only and
 * writable, as SPP's memslot backend does when a protection changes.
 * The vCPU thread checks every exit: an MMIO write of the next count to
 * the read-only page, and (every 256 exits) the fixed registers.
 *
 *   kvm-slot-stress [SECONDS]     default 20
 *
 * Prints the exits, the memslot changes and "kvm-slot-stress: ok", or
 * what went wrong first and exits with 1.  Used to tell a bug of the
 * nested-KVM lab (TCG's emulated SVM, the L1 kernel) from one of ours:
 * see docs/devel/spp.rst.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "kvm-mini.h"

#define RO_GPA      0x10000
#define CHURN_GPA   0x20000
#define BX_VALUE    0x1234
#define SI_VALUE    0x5678
#define DI_VALUE    0x9abc
#define BP_VALUE    0xdef0

static int vm, vcpu;
static struct kvm_run *run;
/* set by the main thread, and by the vCPU thread when a check fails */
static atomic_int stop;
static _Atomic(const char *) failure;
static unsigned long exits;

static void die(const char *what)
{
    fprintf(stderr, "kvm-slot-stress: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *vcpu_thread(void *arg)
{
    static char msg[256];
    uint8_t expect = 0;
    struct kvm_regs regs;

    while (!atomic_load(&stop)) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR) {
                continue;
            }
            snprintf(msg, sizeof(msg), "KVM_RUN: %s", strerror(errno));
            break;
        }
        if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write ||
            run->mmio.phys_addr != RO_GPA || run->mmio.len != 1) {
            snprintf(msg, sizeof(msg), "exit %lu: reason %u (want an MMIO "
                     "write of 1 byte to 0x%x)", exits, run->exit_reason,
                     RO_GPA);
            break;
        }
        if (run->mmio.data[0] != expect) {
            snprintf(msg, sizeof(msg), "exit %lu: the guest stored 0x%02x, "
                     "not its count 0x%02x", exits, run->mmio.data[0],
                     expect);
            break;
        }
        expect++;
        exits++;
        if (!(exits & 255)) {
            if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0) {
                die("KVM_GET_REGS");
            }
            if ((uint16_t)regs.rbx != BX_VALUE ||
                (uint16_t)regs.rsi != SI_VALUE ||
                (uint16_t)regs.rdi != DI_VALUE ||
                (uint16_t)regs.rbp != BP_VALUE) {
                snprintf(msg, sizeof(msg), "exit %lu: the guest's fixed "
                         "registers changed: bx %llx si %llx di %llx bp %llx",
                         exits, regs.rbx, regs.rsi, regs.rdi, regs.rbp);
                break;
            }
        }
    }
    if (!atomic_load(&stop)) {
        atomic_store(&failure, msg);
    }
    return NULL;
}

static void set_slot(int slot, uint64_t gpa, uint64_t size, void *host,
                     uint32_t flags)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .flags = flags, .guest_phys_addr = gpa,
        .memory_size = size, .userspace_addr = (uintptr_t)host,
    };

    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
        die("KVM_SET_USER_MEMORY_REGION");
    }
}

int main(int argc, char **argv)
{
    /*
     * mov ax,0x1000; mov ds,ax; mov bx,..; mov si,..; mov di,..;
     * mov bp,..; xor cx,cx; 1: mov [0],cl; inc cx; jmp 1b
     */
    static const uint8_t code[] = {
        0xb8, 0x00, 0x10, 0x8e, 0xd8,
        0xbb, BX_VALUE & 0xff, BX_VALUE >> 8,
        0xbe, SI_VALUE & 0xff, SI_VALUE >> 8,
        0xbf, DI_VALUE & 0xff, DI_VALUE >> 8,
        0xbd, BP_VALUE & 0xff, BP_VALUE >> 8,
        0x31, 0xc9,
        0x88, 0x0e, 0x00, 0x00,
        0x41,
        0xeb, 0xf9,
    };
    double seconds = argc > 1 ? atof(argv[1]) : 20, end;
    const char *what;
    unsigned long changes = 0;
    pthread_t thread;
    void *mem, *romem, *churn;
    int kvm;

    if (seconds <= 0) {
        fprintf(stderr, "kvm-slot-stress: SECONDS must be positive\n");
        return 2;
    }
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
    churn = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED || romem == MAP_FAILED || churn == MAP_FAILED) {
        die("mmap");
    }
    memcpy(mem, code, sizeof(code));
    set_slot(0, 0, 0x10000, mem, 0);
    set_slot(1, RO_GPA, 0x1000, romem, KVM_MEM_READONLY);
    set_slot(2, CHURN_GPA, 0x1000, churn, 0);
    what = kvm_mini_vcpu(kvm, vm, &vcpu, &run);
    if (what) {
        die(what);
    }
    if (pthread_create(&thread, NULL, vcpu_thread, NULL)) {
        fprintf(stderr, "kvm-slot-stress: cannot start the vCPU thread\n");
        return 2;
    }

    end = now() + seconds;
    while (!atomic_load(&failure) && now() < end) {
        /* delete, then re-add the other way: a re-slot */
        set_slot(2, CHURN_GPA, 0, churn, 0);
        set_slot(2, CHURN_GPA, 0x1000, churn,
                 changes & 1 ? 0 : KVM_MEM_READONLY);
        changes++;
        usleep(1000);
    }
    atomic_store(&stop, 1);
    /* a store exits soon: the vCPU thread sees stop then */
    pthread_join(thread, NULL);
    printf("kvm-slot-stress: %lu exits, %lu memslot changes in %.0f s\n",
           exits, changes, seconds);
    if (atomic_load(&failure)) {
        printf("kvm-slot-stress: FAILED: %s\n", atomic_load(&failure));
        return 1;
    }
    if (!exits) {
        printf("kvm-slot-stress: FAILED: the guest made no store\n");
        return 1;
    }
    printf("kvm-slot-stress: ok\n");
    return 0;
}
