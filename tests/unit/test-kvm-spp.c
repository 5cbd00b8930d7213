/*
 * The KVM SPP backend's logic against a SIMULATED kernel
 *
 * No released kernel implements the v12 KVM sub-page protection ABI,
 * so this test stands in for the kernel side with a simulation that
 * checks every argument as the v12 kernel did (flags 0, 1 <= npages <=
 * 512, the struct layout), keeps its own vectors, can fail on demand,
 * and synthesizes KVM_EXIT_SPP exits.  It is not a test of a kernel.
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

#define WP_ALL 0xffffffffU

/* The v12 layout: 16 bytes of header, then the vectors. */
QEMU_BUILD_BUG_ON(sizeof(struct kvm_subpage) != 16);
QEMU_BUILD_BUG_ON(offsetof(struct kvm_subpage, npages) != 8);
QEMU_BUILD_BUG_ON(offsetof(struct kvm_subpage, flags) != 12);
QEMU_BUILD_BUG_ON(offsetof(struct kvm_subpage, access_map) != 16);
QEMU_BUILD_BUG_ON(offsetof(struct kvm_run, hw) !=
                  offsetof(struct kvm_run, mmio));

typedef struct SimKernel {
    int ext182;             /* KVM_CHECK_EXTENSION(182) answer */
    int enable_ret;         /* KVM_ENABLE_CAP(182) result */
    int check_calls;
    int enable_calls;
    GHashTable *vec;        /* gfn -> vector, absent = WP_ALL */
    GArray *call_pages;     /* npages of each SET call */
    int fail_set_call;      /* fail the Nth SET call (1-based), 0 = never */
    int fail_errno;
    int set_calls;
} SimKernel;

static int sim_check(void *opaque, int cap)
{
    SimKernel *k = opaque;

    k->check_calls++;
    return cap == 182 ? k->ext182 : 0;
}

static int sim_enable(void *opaque, int cap)
{
    SimKernel *k = opaque;

    g_assert_cmpint(cap, ==, 182);
    k->enable_calls++;
    return k->enable_ret;
}

/* What v12's kvm_vm_ioctl_subpages_{get,set}_access checked. */
static int sim_check_args(struct kvm_subpage *sp)
{
    if (sp->flags != 0 || sp->npages == 0 ||
        sp->npages > KVM_SUBPAGE_MAX_PAGES) {
        return -EINVAL;
    }
    return 0;
}

static int sim_set(void *opaque, void *arg)
{
    SimKernel *k = opaque;
    struct kvm_subpage *sp = arg;
    uint32_t i;
    int ret = sim_check_args(sp);

    g_assert_cmpint(ret, ==, 0);        /* QEMU never sends bad arguments */
    k->set_calls++;
    if (k->set_calls == k->fail_set_call) {
        return -k->fail_errno;
    }
    g_array_append_val(k->call_pages, sp->npages);
    for (i = 0; i < sp->npages; i++) {
        g_hash_table_insert(k->vec, GSIZE_TO_POINTER(sp->gfn_base + i),
                            GUINT_TO_POINTER(sp->access_map[i]));
    }
    return sp->npages;                  /* v12 returned npages */
}

static int sim_get(void *opaque, void *arg)
{
    SimKernel *k = opaque;
    struct kvm_subpage *sp = arg;
    uint32_t i;
    int ret = sim_check_args(sp);

    g_assert_cmpint(ret, ==, 0);
    for (i = 0; i < sp->npages; i++) {
        gpointer v;

        sp->access_map[i] = g_hash_table_lookup_extended(
            k->vec, GSIZE_TO_POINTER(sp->gfn_base + i), NULL, &v) ?
            GPOINTER_TO_UINT(v) : WP_ALL;
    }
    return sp->npages;
}

static uint32_t sim_vector(SimKernel *k, uint64_t gfn)
{
    gpointer v;

    return g_hash_table_lookup_extended(k->vec, GSIZE_TO_POINTER(gfn), NULL,
                                        &v) ? GPOINTER_TO_UINT(v) : WP_ALL;
}

static SimKernel *sim_new(KvmSppKernel *kk, int ext182, int enable_ret)
{
    SimKernel *k = g_new0(SimKernel, 1);

    k->ext182 = ext182;
    k->enable_ret = enable_ret;
    k->vec = g_hash_table_new(NULL, NULL);
    k->call_pages = g_array_new(false, false, sizeof(uint32_t));
    *kk = (KvmSppKernel) {
        .check_extension = sim_check,
        .enable_cap = sim_enable,
        .set_access = sim_set,
        .get_access = sim_get,
        .opaque = k,
    };
    return k;
}

static void sim_free(SimKernel *k)
{
    g_hash_table_destroy(k->vec);
    g_array_free(k->call_pages, true);
    g_free(k);
}

static void test_probe_upstream_kernel(void)
{
    KvmSppKernel kk;
    SimKernel *k = sim_new(&kk, 1, 0);   /* 182 = KVM_CAP_HALT_POLL */
    const char *reason;

    g_assert_false(kvm_spp_probe(&kk, SPP_KVM_MODE_AUTO, &reason));
    g_assert_cmpint(k->check_calls, ==, 1);
    g_assert_cmpint(k->enable_calls, ==, 0);     /* halt polling untouched */
    g_assert(strstr(reason, "KVM_CAP_HALT_POLL"));

    g_assert_false(kvm_spp_probe(&kk, SPP_KVM_MODE_HARDWARE, &reason));
    g_assert_cmpint(k->enable_calls, ==, 0);

    k->ext182 = 0;
    g_assert_false(kvm_spp_probe(&kk, SPP_KVM_MODE_AUTO, &reason));
    g_assert_cmpint(k->enable_calls, ==, 0);
    g_assert(strstr(reason, "512"));
    sim_free(k);
}

static void test_probe_spp_kernel(void)
{
    KvmSppKernel kk;
    SimKernel *k = sim_new(&kk, KVM_SUBPAGE_MAX_PAGES, 0);
    const char *reason;

    g_assert_true(kvm_spp_probe(&kk, SPP_KVM_MODE_AUTO, &reason));
    g_assert_cmpint(k->enable_calls, ==, 1);
    g_assert(strstr(reason, "enabled"));

    k->enable_ret = -ENODEV;
    g_assert_false(kvm_spp_probe(&kk, SPP_KVM_MODE_HARDWARE, &reason));
    g_assert(strstr(reason, "ENODEV"));
    k->enable_ret = -EPERM;
    g_assert_false(kvm_spp_probe(&kk, SPP_KVM_MODE_AUTO, &reason));
    g_assert(strstr(reason, "nested"));

    /* spp=emulated asks the kernel nothing */
    k->check_calls = k->enable_calls = 0;
    g_assert_false(kvm_spp_probe(&kk, SPP_KVM_MODE_EMULATED, &reason));
    g_assert_cmpint(k->check_calls, ==, 0);
    g_assert_cmpint(k->enable_calls, ==, 0);
    sim_free(k);
}

static void test_chunking(void)
{
    KvmSppKernel kk;
    SimKernel *k = sim_new(&kk, KVM_SUBPAGE_MAX_PAGES, 0);
    const uint64_t n = 1300, gfn = 0x4000;
    g_autofree uint32_t *old = g_new(uint32_t, n);
    g_autofree uint32_t *out = g_new(uint32_t, n);
    uint64_t i;

    for (i = 0; i < n; i++) {
        old[i] = WP_ALL;
    }
    g_assert_true(kvm_spp_set_access(&kk, gfn, n, 0x0f0f0f0f, old,
                                     &error_abort));
    g_assert_cmpint(k->call_pages->len, ==, 3);
    g_assert_cmpint(g_array_index(k->call_pages, uint32_t, 0), ==, 512);
    g_assert_cmpint(g_array_index(k->call_pages, uint32_t, 1), ==, 512);
    g_assert_cmpint(g_array_index(k->call_pages, uint32_t, 2), ==, 276);
    g_assert_cmphex(sim_vector(k, gfn - 1), ==, WP_ALL);
    g_assert_cmphex(sim_vector(k, gfn + n), ==, WP_ALL);

    g_assert_true(kvm_spp_get_access(&kk, gfn, n, out, &error_abort));
    for (i = 0; i < n; i++) {
        g_assert_cmphex(out[i], ==, 0x0f0f0f0f);
        g_assert_cmphex(sim_vector(k, gfn + i), ==, 0x0f0f0f0f);
    }
    sim_free(k);
}

static void test_rollback(void)
{
    KvmSppKernel kk;
    SimKernel *k = sim_new(&kk, KVM_SUBPAGE_MAX_PAGES, 0);
    const uint64_t n = 1500, gfn = 0x8000;
    g_autofree uint32_t *old = g_new(uint32_t, n);
    Error *err = NULL;
    uint64_t i;

    /* a state with different vectors everywhere */
    for (i = 0; i < n; i++) {
        old[i] = 0x1000 + i;
    }
    g_assert_true(kvm_spp_set_vectors(&kk, gfn, n, old, 0, old,
                                      &error_abort));

    /* the third call of the next request fails */
    k->set_calls = 0;
    k->fail_set_call = 3;
    k->fail_errno = ENOMEM;
    g_assert_false(kvm_spp_set_access(&kk, gfn, n, 0, old, &err));
    g_assert(err);
    g_assert(strstr(error_get_pretty(err), "KVM_SUBPAGES_SET_ACCESS"));
    error_free(err);
    for (i = 0; i < n; i++) {
        g_assert_cmphex(sim_vector(k, gfn + i), ==, 0x1000 + i);
    }
    sim_free(k);
}

/* A request of several ranges fails in its third: all of it is undone. */
static void test_ranges_rollback(void)
{
    KvmSppKernel kk;
    SimKernel *k = sim_new(&kk, KVM_SUBPAGE_MAX_PAGES, 0);
    const SppRange r[] = {
        { .gfn = 0x100, .npages = 600, .wp = 0x1 },
        { .gfn = 0x2000, .npages = 1, .wp = 0x2 },
        { .gfn = 0x3000, .npages = 1000, .wp = 0x3 },
    };
    g_autofree uint32_t *old = g_new(uint32_t, 1601);
    Error *err = NULL;
    uint64_t i;

    for (i = 0; i < 1601; i++) {
        old[i] = WP_ALL;
    }
    /* calls: 512 + 88 (range 0), 1 (range 1), 512 (range 2) fails */
    k->fail_set_call = 4;
    k->fail_errno = EIO;
    g_assert_false(kvm_spp_set_ranges(&kk, r, ARRAY_SIZE(r), old, &err));
    g_assert(err);
    error_free(err);
    for (i = 0; i < 600; i++) {
        g_assert_cmphex(sim_vector(k, 0x100 + i), ==, WP_ALL);
    }
    g_assert_cmphex(sim_vector(k, 0x2000), ==, WP_ALL);
    for (i = 0; i < 1000; i++) {
        g_assert_cmphex(sim_vector(k, 0x3000 + i), ==, WP_ALL);
    }

    /* and without a failure, every range lands */
    k->fail_set_call = 0;
    g_assert_true(kvm_spp_set_ranges(&kk, r, ARRAY_SIZE(r), old,
                                     &error_abort));
    g_assert_cmphex(sim_vector(k, 0x100 + 599), ==, 0x1);
    g_assert_cmphex(sim_vector(k, 0x2000), ==, 0x2);
    g_assert_cmphex(sim_vector(k, 0x3000 + 999), ==, 0x3);
    sim_free(k);
}

static uint32_t exit_vectors(uint64_t gfn)
{
    return gfn == 0x100 ? 0xfffffffe : WP_ALL;
}

static void test_exit_addr_forms(void)
{
    /* page-fault path: a gpa */
    g_assert_cmphex(kvm_spp_exit_gpa(0x100010, exit_vectors), ==, 0x100010);
    /* emulator path: a gfn */
    g_assert_cmphex(kvm_spp_exit_gpa(0x100, exit_vectors), ==, 0x100000);
    /* neither names a protected page */
    g_assert_cmphex(kvm_spp_exit_gpa(0x200010, exit_vectors), ==,
                    KVM_SPP_BAD_ADDR);
    g_assert_cmphex(kvm_spp_exit_gpa(UINT64_MAX, exit_vectors), ==,
                    KVM_SPP_BAD_ADDR);
}

static void test_exit_policies(void)
{
    KvmSppExitAction a;

    kvm_spp_exit_action(SPP_POLICY_BLOCK, 3, &a);
    g_assert(a.skip && !a.retry && !a.single_step && !a.stop);
    kvm_spp_exit_action(SPP_POLICY_BLOCK, 0, &a);
    g_assert(!a.skip && a.stop);
    kvm_spp_exit_action(SPP_POLICY_PAUSE, 2, &a);
    g_assert(a.skip && a.stop && !a.retry);
    kvm_spp_exit_action(SPP_POLICY_UNPROTECT, 4, &a);
    g_assert(a.retry && !a.skip && !a.stop && !a.single_step);
    kvm_spp_exit_action(SPP_POLICY_REPORT, 4, &a);
    g_assert(a.single_step && !a.skip && !a.stop && !a.retry);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/kvm-spp/sim/probe-upstream-kernel",
                    test_probe_upstream_kernel);
    g_test_add_func("/kvm-spp/sim/probe-spp-kernel", test_probe_spp_kernel);
    g_test_add_func("/kvm-spp/sim/chunking", test_chunking);
    g_test_add_func("/kvm-spp/sim/rollback", test_rollback);
    g_test_add_func("/kvm-spp/sim/ranges-rollback", test_ranges_rollback);
    g_test_add_func("/kvm-spp/sim/exit-addr-forms", test_exit_addr_forms);
    g_test_add_func("/kvm-spp/sim/exit-policies", test_exit_policies);
    return g_test_run();
}
