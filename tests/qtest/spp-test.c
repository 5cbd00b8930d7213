/*
 * QTest for sub-page write protection (SPP)
 *
 * Monitor paths (QMP and HMP, errors, policies, rate limiting) are
 * driven with the qtest accelerator; writes made through the qtest
 * protocol reach guest memory like device DMA does.  Enforcement for
 * vCPU stores runs a tiny guest (spp-guest.S, built by the test build)
 * under TCG and, where /dev/kvm can be used, under KVM.  Device DMA is
 * checked with the edu PCI device.
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/utsname.h>
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "libqtest.h"
#include "libqos/malloc-pc.h"
#include "libqos/pci-pc.h"
#include "libqos/virtio-pci.h"
#include "libqos/virtio.h"
#include "standard-headers/linux/virtio_pci.h"
#include "qobject/qdict.h"
#include "qobject/qjson.h"
#include "qobject/qlist.h"
#include "qobject/qnum.h"
#include "spp-guest-layout.h"
#include "spp-guest.h"
#include <net/if.h>
#include <sys/ioctl.h>
#ifdef CONFIG_LINUX
#include <linux/if_packet.h>
#endif

#define GFN_P       (SPP_PAGE_P >> 12)
#define GFN_Q       (SPP_PAGE_Q >> 12)
#define WP_ALL      0xffffffffU
#define GUEST_TIMEOUT_US (20 * G_USEC_PER_SEC)

static char *guest_bin;

static uint64_t get_u(const QDict *d, const char *key)
{
    QNum *n = qobject_to(QNum, qdict_get(d, key));

    g_assert(n);
    return qnum_get_uint(n);
}

static QTestState *start_qtest(const char *extra)
{
    return qtest_initf("-machine q35 -m 64 %s", extra ? extra : "");
}

static QDict *query_spp(QTestState *qts)
{
    return qtest_qmp_assert_success_ref(qts, "{'execute': 'query-spp'}");
}

static uint64_t spp_counter(QTestState *qts, const char *name)
{
    QDict *info = query_spp(qts);
    uint64_t v = get_u(info, name);

    qobject_unref(info);
    return v;
}

static void set_subpage(QTestState *qts, uint64_t gfn, uint64_t npages,
                        uint32_t wp)
{
    qtest_qmp_assert_success(qts, "{'execute': 'set-subpage', 'arguments': "
                             "{'base_gfn': %" PRIu64 ", 'npages': %" PRIu64
                             ", 'wp_map': %u}}", gfn, npages, wp);
}

static uint32_t get_vector(QTestState *qts, uint64_t gfn)
{
    QDict *rsp = qtest_qmp(qts, "{'execute': 'query-subpage', 'arguments': "
                           "{'base-gfn': %" PRIu64 ", 'npages': 1}}", gfn);
    QList *list = qdict_get_qlist(rsp, "return");
    QDict *entry;
    uint32_t wp;

    g_assert(list);
    g_assert_cmpint(qlist_size(list), ==, 1);
    entry = qobject_to(QDict, qlist_peek(list));
    g_assert_cmpuint(get_u(entry, "gfn"), ==, gfn);
    wp = get_u(entry, "wp-map");
    qobject_unref(rsp);
    return wp;
}

/* Expect a GenericError whose description contains @what. */
static void expect_error(QTestState *qts, const char *what, QDict *rsp)
{
    QDict *err = qdict_get_qdict(rsp, "error");

    g_assert(err);
    g_assert_cmpstr(qdict_get_str(err, "class"), ==, "GenericError");
    if (!strstr(qdict_get_str(err, "desc"), what)) {
        g_error("error '%s' does not mention '%s'",
                qdict_get_str(err, "desc"), what);
    }
    qobject_unref(rsp);
}

/*
 * Pop every queued SPP_VIOLATION event (after a round trip).  Other
 * queued events are dropped, so wait for those with wait_status().
 */
static GPtrArray *take_events(QTestState *qts)
{
    GPtrArray *events = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qobject_unref_impl);
    QDict *ev;

    qobject_unref(query_spp(qts));
    while ((ev = qtest_qmp_event_ref(qts, "SPP_VIOLATION"))) {
        g_ptr_array_add(events, ev);
    }
    return events;
}

static void wait_status(QTestState *qts, const char *status)
{
    gint64 deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;

    for (;;) {
        QDict *rsp = qtest_qmp_assert_success_ref(qts,
                                                  "{'execute': 'query-status'}");
        bool match = !strcmp(qdict_get_str(rsp, "status"), status);

        qobject_unref(rsp);
        if (match) {
            return;
        }
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(1000);
    }
}

static QDict *event_data(GPtrArray *events, guint i)
{
    return qdict_get_qdict(g_ptr_array_index(events, i), "data");
}

/* At least one violation event was sent, each for a device write there. */
/* Print an event for the log */
static void log_event(const char *what, QDict *d)
{
    g_autoptr(GString) json = qobject_to_json(QOBJECT(d));

    g_test_message("%s: %s", what, json->str);
}

/*
 * Each event is a device write to sub-page @subpage, by the device at
 * QOM path @device; NULL: a write the memory core cannot attribute (the
 * event must not name a device then).
 */
static void expect_device_events(QTestState *qts, unsigned subpage,
                                 const char *device)
{
    GPtrArray *events = take_events(qts);
    guint i;

    g_assert_cmpuint(events->len, >=, 1);
    for (i = 0; i < events->len; i++) {
        QDict *d = event_data(events, i);

        g_assert_cmpstr(qdict_get_str(d, "source"), ==, "device");
        g_assert_cmpuint(get_u(d, "subpage"), ==, subpage);
        g_assert_cmpstr(qdict_get_try_str(d, "writer-device"), ==, device);
        g_assert(!qdict_haskey(d, "writer-pc"));
        g_assert(!qdict_haskey(d, "cpu-index"));
    }
    g_ptr_array_free(events, true);
}

static void test_qmp_basic(void)
{
    QTestState *qts = start_qtest(NULL);
    g_autofree char *path = g_build_filename(g_get_tmp_dir(),
                                             "spp-test-vec-XXXXXX", NULL);
    g_autofree char *contents = NULL;
    gsize len;
    QDict *info;
    int fd;

    info = query_spp(qts);
    g_assert_cmpstr(qdict_get_str(info, "backend"), ==, "emulated");
    g_assert_cmpstr(qdict_get_str(info, "policy"), ==, "block");
    g_assert_cmpuint(get_u(info, "protected-pages"), ==, 0);
    g_assert_cmpuint(get_u(info, "regions"), ==, 0);
    qobject_unref(info);

    set_subpage(qts, GFN_P, 2, 0xffff0000);
    g_assert_cmphex(get_vector(qts, GFN_P), ==, 0xffff0000);
    g_assert_cmphex(get_vector(qts, GFN_Q), ==, 0xffff0000);
    g_assert_cmphex(get_vector(qts, GFN_Q + 1), ==, WP_ALL);
    g_assert_cmpuint(spp_counter(qts, "protected-pages"), ==, 2);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 1);

    /* get-subpage writes little-endian u32 vectors */
    fd = g_mkstemp(path);
    g_assert(fd >= 0);
    close(fd);
    qtest_qmp_assert_success(qts, "{'execute': 'get-subpage', 'arguments': "
                             "{'base_gfn': %d, 'npages': 3, 'filename': %s}}",
                             GFN_P, path);
    g_assert(g_file_get_contents(path, &contents, &len, NULL));
    g_assert_cmpuint(len, ==, 12);
    g_assert_cmphex((uint32_t)ldl_le_p(contents), ==, 0xffff0000);
    g_assert_cmphex((uint32_t)ldl_le_p(contents + 4), ==, 0xffff0000);
    g_assert_cmphex((uint32_t)ldl_le_p(contents + 8), ==, WP_ALL);
    unlink(path);

    /* set-subpages: many pages, one vector, all or nothing */
    qtest_qmp_assert_success(qts, "{'execute': 'set-subpages', 'arguments': "
                             "{'gfns': [512, 768, 1024], 'wp-map': 7}}");
    g_assert_cmphex(get_vector(qts, 512), ==, 7);
    g_assert_cmphex(get_vector(qts, 768), ==, 7);
    g_assert_cmphex(get_vector(qts, 1024), ==, 7);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 4);
    /* four runs of trapped pages, and no unprotected page trapped */
    g_assert_cmpuint(spp_counter(qts, "trapped-unprotected-pages"), ==, 0);
    expect_error(qts, "entry 1: page 0x10000",
                 qtest_qmp(qts, "{'execute': 'set-subpages', 'arguments': "
                           "{'gfns': [512, 65536], 'wp-map': 0}}"));
    g_assert_cmphex(get_vector(qts, 512), ==, 7);
    expect_error(qts, "gfns must not be empty",
                 qtest_qmp(qts, "{'execute': 'set-subpages', 'arguments': "
                           "{'gfns': [], 'wp-map': 0}}"));
    qtest_qmp_assert_success(qts, "{'execute': 'set-subpages', 'arguments': "
                             "{'gfns': [512, 768, 1024], "
                             "'wp-map': 4294967295}}");
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 1);

    /* A far-away page is a second run; clearing returns to nothing. */
    set_subpage(qts, 0x2000, 1, 0);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 2);
    set_subpage(qts, GFN_P, 2, WP_ALL);
    set_subpage(qts, 0x2000, 1, WP_ALL);
    g_assert_cmpuint(spp_counter(qts, "protected-pages"), ==, 0);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 0);

    qtest_quit(qts);
}

static void test_qmp_errors(void)
{
    QTestState *qts = start_qtest(NULL);

    set_subpage(qts, GFN_P, 1, 0x0000ffff);

    expect_error(qts, "npages must be at least 1",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': 256, 'npages': 0, 'wp_map': 0}}"));
    expect_error(qts, "overflows",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': 18446744073709551615, 'npages': 2,"
                           " 'wp_map': 0}}"));
    expect_error(qts, "overflows",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': 1, 'npages': 18446744073709551615,"
                           " 'wp_map': 0}}"));
    /* the very last page of the address space */
    expect_error(qts, "outside guest RAM",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': 4503599627370495, 'npages': 1, "
                           "'wp_map': 0}}"));
    /* beyond the 64 MiB of RAM */
    expect_error(qts, "outside guest RAM",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': 65536, 'npages': 1, 'wp_map': 0}}"));
    /* the BIOS ROM */
    expect_error(qts, "pc.bios",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': 1048575, 'npages': 1, "
                           "'wp_map': 0}}"));
    /* MMIO: the I/O APIC at 0xfec00000 */
    expect_error(qts, "is not guest RAM",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': 1043456, 'npages': 1, "
                           "'wp_map': 0}}"));
    /* A range that starts in RAM and runs past its end: nothing changes */
    expect_error(qts, "outside guest RAM",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': 16380, 'npages': 8, 'wp_map': 0}}"));
    g_assert_cmphex(get_vector(qts, 16380), ==, WP_ALL);
    g_assert_cmphex(get_vector(qts, 16383), ==, WP_ALL);
    g_assert_cmphex(get_vector(qts, GFN_P), ==, 0x0000ffff);
    g_assert_cmpuint(spp_counter(qts, "protected-pages"), ==, 1);

    /* wp_map is 32 bits */
    expect_error(qts, "wp_map",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': 256, 'npages': 1, "
                           "'wp_map': 4294967296}}"));
    expect_error(qts, "cannot write",
                 qtest_qmp(qts, "{'execute': 'get-subpage', 'arguments': "
                           "{'base_gfn': 256, 'npages': 1, 'filename': "
                           "'/nonexistent-dir/spp'}}"));
    expect_error(qts, "outside guest RAM",
                 qtest_qmp(qts, "{'execute': 'get-subpage', 'arguments': "
                           "{'base_gfn': 65536, 'npages': 1, 'filename': "
                           "'/dev/null'}}"));
    expect_error(qts, "above the limit",
                 qtest_qmp(qts, "{'execute': 'query-subpage', 'arguments': "
                           "{'base-gfn': 0, 'npages': 65537}}"));
    expect_error(qts, "npages must be at least 1",
                 qtest_qmp(qts, "{'execute': 'query-subpage', 'arguments': "
                           "{'base-gfn': 0, 'npages': 0}}"));
    expect_error(qts, "Parameter 'policy'",
                 qtest_qmp(qts, "{'execute': 'set-spp-policy', 'arguments': "
                           "{'policy': 'explode'}}"));

    /* QEMU still runs and kept its state */
    g_assert_cmphex(get_vector(qts, GFN_P), ==, 0x0000ffff);
    qtest_quit(qts);
}

static void test_hmp(void)
{
    QTestState *qts = start_qtest(NULL);
    g_autofree char *path = g_build_filename(g_get_tmp_dir(),
                                             "spp-test-hmp-XXXXXX", NULL);
    g_autofree char *contents = NULL;
    char *out;
    gsize len;
    int fd;

    out = qtest_hmp(qts, "set-subpage 0x100 2 0xffff0000");
    g_assert_cmpstr(out, ==, "");
    g_free(out);
    g_assert_cmphex(get_vector(qts, GFN_Q), ==, 0xffff0000);

    out = qtest_hmp(qts, "info subpage 0x100 3");
    g_assert(strstr(out, "0x0000000000000100 0xffff0000 "
                    "----------------wwwwwwwwwwwwwwww"));
    g_assert(strstr(out, "0x0000000000000102 0xffffffff "
                    "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww"));
    g_free(out);

    out = qtest_hmp(qts, "info spp");
    g_assert(strstr(out, "backend: emulated"));
    g_assert(strstr(out, "policy: block"));
    g_assert(strstr(out, "protected pages: 2"));
    g_free(out);

    fd = g_mkstemp(path);
    g_assert(fd >= 0);
    close(fd);
    /* as for pmemsave, a path starting with / must be quoted */
    out = qtest_hmp(qts, "get-subpage 0x100 1 \"%s\"", path);
    g_assert_cmpstr(out, ==, "");
    g_free(out);
    g_assert(g_file_get_contents(path, &contents, &len, NULL));
    g_assert_cmpuint(len, ==, 4);
    g_assert_cmphex((uint32_t)ldl_le_p(contents), ==, 0xffff0000);
    unlink(path);

    out = qtest_hmp(qts, "spp-policy report 7");
    g_assert_cmpstr(out, ==, "");
    g_free(out);
    out = qtest_hmp(qts, "info spp");
    g_assert(strstr(out, "policy: report"));
    g_assert(strstr(out, "event rate limit: 7 per second"));
    g_free(out);

    /* errors are reported and change nothing */
    out = qtest_hmp(qts, "set-subpage 0x100 0 0");
    g_assert(strstr(out, "npages must be at least 1"));
    g_free(out);
    out = qtest_hmp(qts, "set-subpage 0x100 1 0x100000000");
    g_assert(strstr(out, "wp_map"));
    g_free(out);
    out = qtest_hmp(qts, "spp-policy explode");
    g_assert(strstr(out, "explode"));
    g_free(out);
    g_assert_cmphex(get_vector(qts, GFN_P), ==, 0xffff0000);

    out = qtest_hmp(qts, "help set-subpage");
    g_assert(strstr(out, "base_gfn npages wp_map"));
    g_free(out);
    qtest_quit(qts);
}

/* One write from a "device" (the qtest protocol) into sub-page 0 of P. */
static void check_policy(QTestState *qts, const char *policy,
                         bool lands, uint32_t wp_after)
{
    GPtrArray *events;
    QDict *data;

    qtest_writeb(qts, SPP_PAGE_P, 0);
    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': %s}}", policy);
    qtest_writel(qts, SPP_PAGE_P + 126, 0x11223344);

    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + 126), ==,
                    lands ? 0x44 : 0);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + 127), ==,
                    lands ? 0x33 : 0);
    /* bytes in the writable sub-page 1 always land */
    g_assert_cmphex(qtest_readw(qts, SPP_PAGE_P + 128), ==, 0x1122);
    g_assert_cmphex(get_vector(qts, GFN_P), ==, wp_after);

    events = take_events(qts);
    g_assert_cmpuint(events->len, ==, 1);
    data = event_data(events, 0);
    g_assert_cmpuint(get_u(data, "gpa"), ==, SPP_PAGE_P + 126);
    g_assert_cmpuint(get_u(data, "gfn"), ==, GFN_P);
    g_assert_cmpuint(get_u(data, "subpage"), ==, 0);
    g_assert_cmpuint(get_u(data, "size"), ==, 4);
    g_assert_cmpstr(qdict_get_str(data, "source"), ==, "device");
    g_assert(!qdict_haskey(data, "cpu-index"));
    g_assert_cmpstr(qdict_get_str(data, "action"), ==, policy);
    g_assert_cmpuint(get_u(data, "suppressed"), ==, 0);
    g_ptr_array_free(events, true);
    set_subpage(qts, GFN_P, 1, WP_ALL);
    qtest_writel(qts, SPP_PAGE_P + 124, 0);
    qtest_writel(qts, SPP_PAGE_P + 128, 0);
}

static void test_policies(void)
{
    QTestState *qts = start_qtest("-spp policy=report");
    QDict *rsp;

    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 0);
    rsp = query_spp(qts);
    g_assert_cmpstr(qdict_get_str(rsp, "policy"), ==, "report");
    qobject_unref(rsp);

    check_policy(qts, "block", false, 0xfffffffe);
    check_policy(qts, "report", true, 0xfffffffe);
    check_policy(qts, "unprotect", true, WP_ALL);

    /* An allowed write is not a violation. */
    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    qtest_writeb(qts, SPP_PAGE_P + 128, 0x5a);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + 128), ==, 0x5a);
    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 3);
    g_assert_cmpuint(spp_counter(qts, "violations-device"), ==, 3);
    g_assert_cmpuint(spp_counter(qts, "violations-cpu"), ==, 0);
    g_assert_cmpuint(spp_counter(qts, "bytes-blocked"), ==, 2);
    set_subpage(qts, GFN_P, 1, WP_ALL);

    /* pause: dropped and the VM stops; cont resumes */
    check_policy(qts, "pause", false, 0xfffffffe);
    wait_status(qts, "paused");
    qtest_qmp_assert_success(qts, "{'execute': 'cont'}");
    wait_status(qts, "running");
    qtest_quit(qts);
}

/* The step fallback through x-spp-step: "begin GFN..." or "end". */
static unsigned step_cmd(QTestState *qts, const char *args)
{
    g_auto(GStrv) words = g_strsplit(args, " ", 0);
    QList *gfns = qlist_new();
    QDict *rsp;
    unsigned v;
    int i;

    if (!strcmp(words[0], "end")) {
        qobject_unref(gfns);
        rsp = qtest_qmp_assert_success_ref(qts, "{'execute': 'x-spp-step', "
                                           "'arguments': {'action': 'end'}}");
    } else {
        g_assert_cmpstr(words[0], ==, "begin");
        for (i = 1; words[i]; i++) {
            uint64_t gfn;

            g_assert_cmpint(qemu_strtou64(words[i], NULL, 0, &gfn), ==, 0);
            qlist_append_int(gfns, gfn);
        }
        rsp = qtest_qmp_assert_success_ref(qts, "{'execute': 'x-spp-step', "
                                           "'arguments': {'action': 'begin', "
                                           "'gfns': %p}}", gfns);
    }
    v = qdict_get_int(rsp, "count");
    qobject_unref(rsp);
    return v;
}

/*
 * The step fallback without a vCPU: what KVM does for an AVX or XSAVE
 * store is replaced by qtest writes between "begin" and "end".
 */
static void test_step(void)
{
    QTestState *qts = start_qtest(NULL);
    g_autofree char *lift = g_strdup_printf("begin %d %d 0x%x", GFN_P,
                                            GFN_P, GFN_Q);
    uint8_t before[64], store[64], got[64];
    GPtrArray *events;
    unsigned i;

    for (i = 0; i < 64; i++) {
        before[i] = i;
        store[i] = 0x80 | i;
    }
    /* sub-pages 0-15 writable, 16-31 protected */
    qtest_memwrite(qts, SPP_PAGE_P + 2016, before, 64);
    set_subpage(qts, GFN_P, 1, 0x0000ffff);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 1);

    /* Only protected pages are lifted, each once. */
    g_assert_cmpuint(step_cmd(qts, lift), ==, 1);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 0);
    g_assert_cmphex(get_vector(qts, GFN_P), ==, 0x0000ffff);

    /*
     * A 64-byte store across sub-pages 15 and 16, as MOVDIR64B would
     * make: while lifted, every byte lands.  Rewriting a protected byte
     * with the value it has cannot be seen.
     */
    qtest_memwrite(qts, SPP_PAGE_P + 2016, store, 64);
    qtest_memread(qts, SPP_PAGE_P + 2016, got, 64);
    g_assert(!memcmp(got, store, 64));
    qtest_writeb(qts, SPP_PAGE_P + 3000, qtest_readb(qts, SPP_PAGE_P + 3000));

    /* Four changed words in sub-page 16: four violations, 32 bytes back. */
    g_assert_cmpuint(step_cmd(qts, "end"), ==, 4);
    qtest_memread(qts, SPP_PAGE_P + 2016, got, 64);
    g_assert(!memcmp(got, store, 32));
    g_assert(!memcmp(got + 32, before + 32, 32));
    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 4);
    g_assert_cmpuint(spp_counter(qts, "violations-device"), ==, 4);
    g_assert_cmpuint(spp_counter(qts, "bytes-blocked"), ==, 32);
    events = take_events(qts);
    g_assert_cmpuint(events->len, ==, 4);
    for (i = 0; i < 4; i++) {
        QDict *data = event_data(events, i);

        g_assert_cmpuint(get_u(data, "gpa"), ==, SPP_PAGE_P + 2048 + 8 * i);
        g_assert_cmpuint(get_u(data, "size"), ==, 8);
        g_assert_cmpuint(get_u(data, "subpage"), ==, 16);
        g_assert_cmpstr(qdict_get_str(data, "action"), ==, "block");
    }
    g_ptr_array_free(events, true);

    /* Protection is back. */
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 1);
    qtest_writeb(qts, SPP_PAGE_P + 2048, 0xee);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + 2048), ==, 32);

    /* report keeps the store; unprotect keeps it and opens the sub-page */
    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'report'}}");
    step_cmd(qts, lift);
    qtest_writel(qts, SPP_PAGE_P + 2052, 0xdeadbeef);
    g_assert_cmpuint(step_cmd(qts, "end"), ==, 1);
    g_assert_cmphex(qtest_readl(qts, SPP_PAGE_P + 2052), ==, 0xdeadbeef);
    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'unprotect'}}");
    step_cmd(qts, lift);
    /* two words of sub-page 31: the first opens it, the second is fine */
    qtest_writeb(qts, SPP_PAGE_P + 4080, 0x76);
    qtest_writeb(qts, SPP_PAGE_P + 4095, 0x77);
    g_assert_cmpuint(step_cmd(qts, "end"), ==, 1);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + 4080), ==, 0x76);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + 4095), ==, 0x77);
    g_assert_cmphex(get_vector(qts, GFN_P), ==, 0x8000ffff);
    /* 4 + 1 + 1 from steps, 1 from the write blocked in between */
    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 7);
    g_ptr_array_free(take_events(qts), true);
    /* a step whose policy changed protection restores the new traps */
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 1);
    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'block'}}");
    qtest_writeb(qts, SPP_PAGE_P + 3900, 0x66);
    qtest_writeb(qts, SPP_PAGE_P + 4095, 0x66);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + 3900), ==, 0);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + 4095), ==, 0x66);

    /* Unprotected pages: nothing to lift. */
    g_assert_cmpuint(step_cmd(qts, "begin 0x300"), ==, 0);
    qtest_quit(qts);
}

/*
 * Scattered protection does not trap its neighbours: 100,000 single
 * pages two pages apart are 100,000 trapped runs, and every page
 * between them stays plain RAM.  Lifting one for a step leaves the
 * others protected.
 */
#define SCATTER_BASE    0x1000
#define SCATTER_PAGES   100000

static void test_scattered(void)
{
    QTestState *qts = start_qtest("-m 1G");
    QList *gfns = qlist_new();
    const uint64_t mid = SCATTER_BASE + 2 * (SCATTER_PAGES / 2);
    const uint64_t last = SCATTER_BASE + 2 * (SCATTER_PAGES - 1);
    g_autofree char *lift = g_strdup_printf("begin %" PRIu64, mid);
    g_autofree char *lift_gap = g_strdup_printf("begin %" PRIu64, mid + 1);
    unsigned i;

    for (i = 0; i < SCATTER_PAGES; i++) {
        qlist_append_int(gfns, SCATTER_BASE + 2 * i);
    }
    qtest_qmp_assert_success(qts, "{'execute': 'set-subpages', 'arguments': "
                             "{'gfns': %p, 'wp-map': 0}}", gfns);
    g_assert_cmpuint(spp_counter(qts, "protected-pages"), ==, SCATTER_PAGES);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, SCATTER_PAGES);
    g_assert_cmpuint(spp_counter(qts, "trapped-unprotected-pages"), ==, 0);

    /* protected pages block, the pages between them take the write */
    qtest_writeb(qts, SCATTER_BASE << 12, 0x11);
    qtest_writeb(qts, (SCATTER_BASE + 1) << 12, 0x12);
    qtest_writeb(qts, last << 12, 0x13);
    qtest_writeb(qts, (last + 1) << 12, 0x14);
    g_assert_cmphex(qtest_readb(qts, SCATTER_BASE << 12), ==, 0);
    g_assert_cmphex(qtest_readb(qts, (SCATTER_BASE + 1) << 12), ==, 0x12);
    g_assert_cmphex(qtest_readb(qts, last << 12), ==, 0);
    g_assert_cmphex(qtest_readb(qts, (last + 1) << 12), ==, 0x14);
    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 2);

    /* the step lifts exactly the page it is given */
    g_assert_cmpuint(step_cmd(qts, lift), ==, 1);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, SCATTER_PAGES - 1);
    qtest_writeb(qts, mid << 12, 0x21);
    qtest_writeb(qts, (mid - 2) << 12, 0x22);
    qtest_writeb(qts, (mid + 2) << 12, 0x23);
    g_assert_cmphex(qtest_readb(qts, mid << 12), ==, 0x21);
    g_assert_cmphex(qtest_readb(qts, (mid - 2) << 12), ==, 0);
    g_assert_cmphex(qtest_readb(qts, (mid + 2) << 12), ==, 0);
    g_assert_cmpuint(step_cmd(qts, "end"), ==, 1);
    g_assert_cmphex(qtest_readb(qts, mid << 12), ==, 0);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, SCATTER_PAGES);
    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 5);

    /* a page between protected ones is not trapped: nothing to step */
    g_assert_cmpuint(step_cmd(qts, lift_gap), ==, 0);

    /* clearing them all leaves nothing trapped */
    gfns = qlist_new();
    for (i = 0; i < SCATTER_PAGES; i++) {
        qlist_append_int(gfns, SCATTER_BASE + 2 * i);
    }
    qtest_qmp_assert_success(qts, "{'execute': 'set-subpages', 'arguments': "
                             "{'gfns': %p, 'wp-map': 4294967295}}", gfns);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 0);
    g_assert_cmpuint(spp_counter(qts, "trapped-unprotected-pages"), ==, 0);
    qtest_writeb(qts, SCATTER_BASE << 12, 0x31);
    g_assert_cmphex(qtest_readb(qts, SCATTER_BASE << 12), ==, 0x31);
    g_ptr_array_free(take_events(qts), true);
    qtest_quit(qts);
}

static void wait_job(QTestState *qts, const char *id)
{
    gint64 deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;

    for (;;) {
        QDict *rsp = qtest_qmp(qts, "{'execute': 'query-jobs'}");
        QList *jobs = qdict_get_qlist(rsp, "return");
        bool done = false;
        QListEntry *e;

        g_assert(jobs);
        QLIST_FOREACH_ENTRY(jobs, e) {
            QDict *job = qobject_to(QDict, qlist_entry_obj(e));

            if (!strcmp(qdict_get_str(job, "id"), id)) {
                g_assert_false(qdict_haskey(job, "error"));
                done = !strcmp(qdict_get_str(job, "status"), "concluded");
            }
        }
        qobject_unref(rsp);
        if (done) {
            qtest_qmp_assert_success(qts, "{'execute': 'job-dismiss', "
                                     "'arguments': {'id': %s}}", id);
            return;
        }
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(10 * 1000);
    }
}

/* snapshot-save / snapshot-load (savevm / loadvm) carry the vectors. */
static void test_snapshot(void)
{
    g_autofree char *img = g_build_filename(g_get_tmp_dir(),
                                            "spp-test-snap-XXXXXX", NULL);
    QTestState *qts = start_qtest(NULL);
    int fd = g_mkstemp(img);

    g_assert(fd >= 0);
    close(fd);
    qtest_qmp_assert_success(qts, "{'execute': 'blockdev-add', 'arguments': "
                             "{'driver': 'file', 'filename': %s, "
                             "'node-name': 'f0'}}", img);
    qtest_qmp_assert_success(qts, "{'execute': 'blockdev-create', "
                             "'arguments': {'job-id': 'c0', 'options': "
                             "{'driver': 'qcow2', 'file': 'f0', "
                             "'size': 67108864}}}");
    wait_job(qts, "c0");
    qtest_qmp_assert_success(qts, "{'execute': 'blockdev-add', 'arguments': "
                             "{'driver': 'qcow2', 'file': 'f0', "
                             "'node-name': 'q0'}}");

    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'report'}}");
    qtest_qmp_assert_success(qts, "{'execute': 'snapshot-save', "
                             "'arguments': {'job-id': 's0', 'tag': 't1', "
                             "'vmstate': 'q0', 'devices': ['q0']}}");
    wait_job(qts, "s0");

    set_subpage(qts, GFN_P, 1, WP_ALL);
    set_subpage(qts, GFN_Q, 1, 0);
    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'block'}}");
    qtest_qmp_assert_success(qts, "{'execute': 'snapshot-load', "
                             "'arguments': {'job-id': 'l0', 'tag': 't1', "
                             "'vmstate': 'q0', 'devices': ['q0']}}");
    wait_job(qts, "l0");

    /* exactly the state of the snapshot */
    g_assert_cmphex(get_vector(qts, GFN_P), ==, 0xfffffffe);
    g_assert_cmphex(get_vector(qts, GFN_Q), ==, WP_ALL);
    g_assert_cmpuint(spp_counter(qts, "protected-pages"), ==, 1);
    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'block'}}");
    qtest_writeb(qts, SPP_PAGE_P, 0x42);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P), ==, 0);
    qtest_quit(qts);
    unlink(img);
}

/* A DIMM's pages can be protected; unplugging it drops them cleanly. */
static void test_dimm_unplug(void)
{
    QTestState *qts = start_qtest("-m 64,slots=2,maxmem=1G "
                                  "-object memory-backend-ram,id=m1,"
                                  "size=128M "
                                  "-device pc-dimm,id=d1,memdev=m1");
    QDict *rsp = qtest_qmp(qts, "{'execute': 'query-memory-devices'}");
    QList *devs = qdict_get_qlist(rsp, "return");
    QDict *dimm;
    uint64_t addr, gfn;
    gint64 deadline;

    g_assert_cmpint(qlist_size(devs), ==, 1);
    dimm = qdict_get_qdict(qobject_to(QDict, qlist_peek(devs)), "data");
    addr = get_u(dimm, "addr");
    qobject_unref(rsp);
    gfn = addr >> 12;

    set_subpage(qts, gfn + 1, 2, 0xfffffffe);
    qtest_writeb(qts, addr + 0x1000, 0x42);
    qtest_writeb(qts, addr + 0x1080, 0x42);
    g_assert_cmphex(qtest_readb(qts, addr + 0x1000), ==, 0);
    g_assert_cmphex(qtest_readb(qts, addr + 0x1080), ==, 0x42);
    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    g_assert_cmpuint(spp_counter(qts, "protected-pages"), ==, 3);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 2);

    /* what the guest's ACPI code does to eject DIMM slot 0 */
    qtest_outl(qts, 0x0a00, 0);
    qtest_outl(qts, 0x0a14, 8);
    deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;
    while (spp_counter(qts, "protected-pages") != 1) {
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(1000);
    }
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 1);
    rsp = qtest_qmp(qts, "{'execute': 'query-memory-devices'}");
    g_assert_cmpint(qlist_size(qdict_get_qlist(rsp, "return")), ==, 0);
    qobject_unref(rsp);
    expect_error(qts, "outside guest RAM",
                 qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                           "{'base_gfn': %" PRIu64 ", 'npages': 1, "
                           "'wp_map': 0}}", gfn + 1));
    /* the backend can go, and the rest still works */
    qtest_qmp_assert_success(qts, "{'execute': 'object-del', "
                             "'arguments': {'id': 'm1'}}");
    g_assert_cmphex(get_vector(qts, GFN_P), ==, 0xfffffffe);
    qtest_writeb(qts, SPP_PAGE_P, 0x42);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P), ==, 0);
    qtest_quit(qts);
}

/* Protection is the host's: it survives a system reset. */
static void test_reset(void)
{
    QTestState *qts = start_qtest(NULL);

    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    qtest_qmp_assert_success(qts, "{'execute': 'system_reset'}");
    qtest_qmp_eventwait(qts, "RESET");
    g_assert_cmphex(get_vector(qts, GFN_P), ==, 0xfffffffe);
    qtest_writeb(qts, SPP_PAGE_P, 0x77);
    qtest_writeb(qts, SPP_PAGE_P + 128, 0x77);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P), ==, 0);
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + 128), ==, 0x77);
    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 1);
    qtest_quit(qts);
}

/*
 * Under qtest the one-second window runs on the virtual clock, as the
 * monitor's own event throttling does: it moves only when told to.
 */
static void test_rate_limit(void)
{
    QTestState *qts = start_qtest("-spp event-rate=5");
    GPtrArray *events;
    uint64_t sent, suppressed;
    int i;

    set_subpage(qts, GFN_P, 1, 0);
    for (i = 0; i < 50; i++) {
        qtest_writeb(qts, SPP_PAGE_P + i, 0xee);
    }
    events = take_events(qts);
    sent = spp_counter(qts, "events-sent");
    suppressed = spp_counter(qts, "events-suppressed");

    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 50);
    g_assert_cmpuint(spp_counter(qts, "bytes-blocked"), ==, 50);
    g_assert_cmpuint(sent, ==, 5);
    g_assert_cmpuint(suppressed, ==, 45);
    g_assert_cmpuint(events->len, ==, sent);
    g_ptr_array_free(events, true);
    for (i = 0; i < 50; i++) {
        g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P + i), ==, 0);
    }

    /* Still in the one-second window (ns): suppressed. */
    qtest_clock_step(qts, 999999999);
    qtest_writeb(qts, SPP_PAGE_P, 0xee);
    events = take_events(qts);
    g_assert_cmpuint(events->len, ==, 0);
    g_ptr_array_free(events, true);
    suppressed++;

    /* After the window, the next event reports what was suppressed. */
    qtest_clock_step(qts, 1);
    qtest_writeb(qts, SPP_PAGE_P, 0xee);
    events = take_events(qts);
    g_assert_cmpuint(events->len, ==, 1);
    g_assert_cmpuint(get_u(event_data(events, 0), "suppressed"), ==,
                     suppressed);
    g_ptr_array_free(events, true);
    qtest_quit(qts);
}

/* edu registers */
#define EDU_FACT        0x08
#define EDU_DMA_SRC     0x80
#define EDU_DMA_DST     0x88
#define EDU_DMA_CNT     0x90
#define EDU_DMA_CMD     0x98
#define EDU_DMA_BUF     0x40000
#define EDU_CMD_START   1
#define EDU_CMD_TO_RAM  2

static void edu_dma(QTestState *qts, QPCIDevice *dev, QPCIBar bar,
                    uint64_t src, uint64_t dst, uint64_t cnt, bool to_ram)
{
    qpci_io_writeq(dev, bar, EDU_DMA_SRC, src);
    qpci_io_writeq(dev, bar, EDU_DMA_DST, dst);
    qpci_io_writeq(dev, bar, EDU_DMA_CNT, cnt);
    qpci_io_writeq(dev, bar, EDU_DMA_CMD,
                   EDU_CMD_START | (to_ram ? EDU_CMD_TO_RAM : 0));
    qtest_clock_step(qts, 200 * 1000 * 1000);
    g_assert_cmphex(qpci_io_readq(dev, bar, EDU_DMA_CMD) & EDU_CMD_START, ==,
                    0);
}

static void test_dma_edu(void)
{
    QTestState *qts = start_qtest("-device edu,addr=04.0,id=edu0");
    QPCIBus *bus = qpci_new_pc(qts, NULL);
    QPCIDevice *dev = qpci_device_find(bus, QPCI_DEVFN(4, 0));
    const uint64_t src = 0x300000, other = 0x301000;
    uint8_t pattern[256], buf[256];
    GPtrArray *events;
    QDict *data;
    QPCIBar bar;
    int i;

    g_assert(dev);
    qpci_device_enable(dev);
    bar = qpci_iomap(dev, 0, NULL);

    for (i = 0; i < sizeof(pattern); i++) {
        pattern[i] = i + 1;
    }
    qtest_memwrite(qts, src, pattern, sizeof(pattern));
    /* RAM -> edu buffer, then the buffer -> a protected page */
    edu_dma(qts, dev, bar, src, EDU_DMA_BUF, sizeof(pattern), false);
    set_subpage(qts, GFN_P, 1, 0xfffffffd);        /* sub-page 1 protected */
    edu_dma(qts, dev, bar, EDU_DMA_BUF, SPP_PAGE_P + 64, sizeof(pattern),
            true);

    qtest_memread(qts, SPP_PAGE_P + 64, buf, sizeof(buf));
    for (i = 0; i < sizeof(buf); i++) {
        uint64_t off = 64 + i;
        bool writable = off < 128 || off >= 256;

        g_assert_cmphex(buf[i], ==, writable ? pattern[i] : 0);
    }
    events = take_events(qts);
    g_assert_cmpuint(events->len, >=, 1);
    for (i = 0; i < events->len; i++) {
        data = event_data(events, i);
        if (i == 0) {
            log_event("edu", data);
        }
        g_assert_cmpstr(qdict_get_str(data, "source"), ==, "device");
        g_assert_cmpstr(qdict_get_try_str(data, "writer-device"), ==,
                        "/machine/peripheral/edu0");
        g_assert_cmpuint(get_u(data, "gfn"), ==, GFN_P);
        g_assert_cmpuint(get_u(data, "subpage"), ==, 1);
        g_assert_cmpstr(qdict_get_str(data, "action"), ==, "block");
    }
    g_assert_cmpuint(spp_counter(qts, "bytes-blocked"), ==, 128);
    g_assert_cmpuint(spp_counter(qts, "violations-device"), ==, events->len);
    g_ptr_array_free(events, true);

    /* The device keeps working: DMA elsewhere, and its registers. */
    edu_dma(qts, dev, bar, EDU_DMA_BUF, other, sizeof(pattern), true);
    qtest_memread(qts, other, buf, sizeof(buf));
    g_assert(memcmp(buf, pattern, sizeof(buf)) == 0);
    qpci_io_writel(dev, bar, EDU_FACT, 5);
    qtest_clock_step(qts, 1000 * 1000);
    for (i = 0; i < 1000 && qpci_io_readl(dev, bar, EDU_FACT) != 120; i++) {
        g_usleep(1000);
    }
    g_assert_cmpuint(qpci_io_readl(dev, bar, EDU_FACT), ==, 120);

    g_free(dev);
    qpci_free_pc(bus);
    qtest_quit(qts);
}

/* A legacy virtio-pci device at 00.<slot>.0, its queue 0 set up. */
typedef struct VirtioDev {
    QPCIBus *bus;
    QGuestAllocator alloc;
    QVirtioPCIDevice *dev;
    QVirtQueue *vq;
} VirtioDev;

/* Find the device, negotiate no feature, set up queue 0, driver ready. */
static void virtio_dev_start(VirtioDev *v, QTestState *qts, int slot)
{
    v->bus = qpci_new_pc(qts, NULL);
    pc_alloc_init(&v->alloc, qts, 0);
    v->dev = virtio_pci_new(v->bus, &(QPCIAddress) {
                                .devfn = QPCI_DEVFN(slot, 0) });
    g_assert(v->dev);
    qvirtio_pci_device_enable(v->dev);
    qvirtio_start_device(&v->dev->vdev);
    qvirtio_set_features(&v->dev->vdev, 0);
    v->vq = qvirtqueue_setup(&v->dev->vdev, &v->alloc, 0);
    qvirtio_set_driver_ok(&v->dev->vdev);
}

static void virtio_dev_stop(VirtioDev *v)
{
    qvirtqueue_cleanup(v->dev->vdev.bus, v->vq, &v->alloc);
    qos_object_destroy((QOSGraphObject *)v->dev);
    alloc_destroy(&v->alloc);
    qpci_free_pc(v->bus);
}

#define RNG_BUF 0x400000

/* virtio-rng fills a buffer on a protected page: 256 random bytes */
static uint32_t rng_request(QTestState *qts, QVirtioPCIDevice *dev,
                            QVirtQueue *vq, uint64_t addr)
{
    uint32_t head, len = 0;

    head = qvirtqueue_add(qts, vq, addr, 256, true, false);
    qvirtqueue_kick(qts, &dev->vdev, vq, head);
    qvirtio_wait_used_elem(qts, &dev->vdev, vq, head, &len,
                           GUEST_TIMEOUT_US);
    return len;
}

static bool all_zero(const uint8_t *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (buf[i]) {
            return false;
        }
    }
    return true;
}

/*
 * A device that writes through address_space_map()/unmap() (virtio maps
 * its in-buffers): the protected bytes are kept, the rest land, and the
 * device keeps working.
 */
static void test_dma_map_virtio_rng(void)
{
    QTestState *qts = start_qtest("-device virtio-rng-pci,addr=05.0,"
                                  "disable-modern=on");
    VirtioDev v;
    uint8_t buf[256];

    virtio_dev_start(&v, qts, 5);

    /* away from the rings, which the allocator puts from 1 MiB up */
    set_subpage(qts, RNG_BUF >> 12, 1, 0xfffffffd);  /* sub-page 1 */
    g_assert_cmpuint(rng_request(qts, v.dev, v.vq, RNG_BUF + 64), ==, 256);
    qtest_memread(qts, RNG_BUF + 64, buf, sizeof(buf));
    g_assert(all_zero(buf + 64, 128));              /* bytes 128..255 */
    g_assert_false(all_zero(buf, 64));              /* bytes 64..127 */
    g_assert_false(all_zero(buf + 192, 64));        /* bytes 256..319 */
    /* without a vIOMMU, virtio writes through the system address space */
    expect_device_events(qts, 1, NULL);
    g_assert_cmpuint(spp_counter(qts, "bytes-blocked"), ==, 128);

    /* the device goes on working, elsewhere */
    g_assert_cmpuint(rng_request(qts, v.dev, v.vq, 0x301000), ==, 256);
    qtest_memread(qts, 0x301000, buf, sizeof(buf));
    g_assert_false(all_zero(buf, sizeof(buf)));

    virtio_dev_stop(&v);
    qtest_quit(qts);
}

/* VT-d (intel-iommu on q35), as a guest driver programs it */
#define VTD_BASE            0xfed90000ULL
#define VTD_GCMD            0x18
#define VTD_GSTS            0x1c
#define VTD_RTADDR          0x20
#define VTD_TE              (1U << 31)
#define VTD_SRTP            (1U << 30)
#define VTD_TABLES          0x3000000      /* root, context, 2 levels */
#define VTD_USED_PAGE       0x3200000      /* a 2 MiB boundary */

/*
 * DMA remapping for bus 0, device @devfn: guest-physical = IO virtual
 * for the first 64 MiB, in 2 MiB pages (3-level second-level tables).
 */
static void vtd_identity_map(QTestState *qts, unsigned devfn)
{
    uint64_t root = VTD_TABLES, ctx = root + 0x1000, l3 = ctx + 0x1000;
    uint64_t l2 = l3 + 0x1000;
    gint64 deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;
    int i;

    qtest_writeq(qts, root, ctx | 1);                      /* present */
    qtest_writeq(qts, ctx + devfn * 16, l3 | 1);           /* present */
    qtest_writeq(qts, ctx + devfn * 16 + 8, 1 | (1 << 8)); /* 39 bit, DID 1 */
    qtest_writeq(qts, l3, l2 | 3);                         /* read, write */
    for (i = 0; i < 32; i++) {
        qtest_writeq(qts, l2 + 8 * i, ((uint64_t)i << 21) | (1 << 7) | 3);
    }
    qtest_writeq(qts, VTD_BASE + VTD_RTADDR, root);
    qtest_writel(qts, VTD_BASE + VTD_GCMD, VTD_SRTP);
    while (!(qtest_readl(qts, VTD_BASE + VTD_GSTS) & VTD_SRTP)) {
        g_assert(g_get_monotonic_time() < deadline);
    }
    qtest_writel(qts, VTD_BASE + VTD_GCMD, VTD_TE);
    while (!(qtest_readl(qts, VTD_BASE + VTD_GSTS) & VTD_TE)) {
        g_assert(g_get_monotonic_time() < deadline);
    }
}

/*
 * Behind a vIOMMU, virtio-rng (iommu_platform=on) writes its used ring
 * through a region cache on the IOMMU.  A used element that starts on
 * an unprotected page and runs into a protected one: its tail is judged
 * like any write, blocked and counted.
 */
static void test_dma_viommu_virtio_rng(void)
{
    QTestState *qts = start_qtest("-device intel-iommu,intremap=off,"
                                  "aw-bits=39 -device virtio-rng-pci,"
                                  "addr=05.0,disable-legacy=on,"
                                  "iommu_platform=on,id=rng0");
    QPCIBus *bus = qpci_new_pc(qts, NULL);
    const uint64_t used = VTD_USED_PAGE - 8;   /* element 0 straddles */
    QGuestAllocator alloc;
    QVirtioPCIDevice *dev;
    QVirtQueue *vq;
    uint64_t features;
    gint64 deadline;
    uint32_t head;
    uint8_t buf[256];

    pc_alloc_init(&alloc, qts, 0);
    dev = virtio_pci_new(bus, &(QPCIAddress) { .devfn = QPCI_DEVFN(5, 0) });
    g_assert(dev);
    qvirtio_pci_device_enable(dev);
    vtd_identity_map(qts, QPCI_DEVFN(5, 0));
    qvirtio_start_device(&dev->vdev);
    features = qvirtio_get_features(&dev->vdev);
    g_assert(features & (1ULL << 33));          /* VIRTIO_F_ACCESS_PLATFORM */
    qvirtio_set_features(&dev->vdev, features & ((1ULL << 32) |
                                                 (1ULL << 33)));
    vq = qvirtqueue_setup(&dev->vdev, &alloc, 0);

    /* Move the used ring to end 4 bytes into the protected page. */
    vq->used = used;
    qtest_writel(qts, used, 0);                  /* flags, idx */
    dev->vdev.bus->set_queue_address(&dev->vdev, vq);
    qpci_io_writew(dev->pdev, dev->bar, dev->common_cfg_offset +
                   offsetof(struct virtio_pci_common_cfg, queue_enable), 1);
    qvirtio_set_driver_ok(&dev->vdev);

    set_subpage(qts, VTD_USED_PAGE >> 12, 1, 0xfffffffe);   /* sub-page 0 */
    head = qvirtqueue_add(qts, vq, RNG_BUF, sizeof(buf), true, false);
    qvirtqueue_kick(qts, &dev->vdev, vq, head);
    deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;
    while (qtest_readw(qts, used + 2) != 1) {
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(1000);
    }
    /* the element's id landed; its length, on the protected page, not */
    g_assert_cmpuint(qtest_readl(qts, used + 4), ==, head);
    g_assert_cmpuint(qtest_readl(qts, VTD_USED_PAGE), ==, 0);
    g_assert_cmpuint(spp_counter(qts, "violations-device"), ==, 1);
    g_assert_cmpuint(spp_counter(qts, "bytes-blocked"), ==, 4);
    qtest_memread(qts, RNG_BUF, buf, sizeof(buf));
    g_assert_false(all_zero(buf, sizeof(buf)));
    /* the used ring is written through a region cache: no device named */
    expect_device_events(qts, 0, NULL);

    /*
     * Behind the vIOMMU the device writes its buffers through its own
     * address space: the event names it.
     */
    set_subpage(qts, VTD_USED_PAGE >> 12, 1, WP_ALL);
    set_subpage(qts, (RNG_BUF >> 12) + 2, 1, 0xfffffffd);  /* sub-page 1 */
    head = qvirtqueue_add(qts, vq, RNG_BUF + 0x2040, sizeof(buf), true,
                          false);
    qvirtqueue_kick(qts, &dev->vdev, vq, head);
    deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;
    while (qtest_readw(qts, used + 2) != 2) {
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(1000);
    }
    qtest_memread(qts, RNG_BUF + 0x2040, buf, sizeof(buf));
    g_assert(all_zero(buf + 64, 128));              /* bytes 128..255 */
    g_assert_false(all_zero(buf, 64));              /* bytes 64..127 */
    expect_device_events(qts, 1, "/machine/peripheral/rng0");

    qos_object_destroy((QOSGraphObject *)dev);
    alloc_destroy(&alloc);
    qpci_free_pc(bus);
    qtest_quit(qts);
}

/* The guest: start it, wait for it to be ready. */
/*
 * The CPU model of KVM guests: chosen by kvm_probe(), because some KVMs
 * refuse what "max" sets (a software KVM rejects MSR 0x10a, the
 * arch-capabilities).  TCG guests use "max".
 */
static const char *kvm_cpu = "max";

static const char *guest_cpu(const char *accel)
{
    return strcmp(accel, "kvm") ? "max" : kvm_cpu;
}

static QTestState *start_guest(const char *accel, const char *extra)
{
    QTestState *qts = qtest_initf("-machine q35 -m 64 -cpu %s -accel %s "
                                  "-bios %s %s", guest_cpu(accel), accel,
                                  guest_bin, extra ? extra : "");
    gint64 deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;

    while (qtest_readl(qts, SPP_MB_READY) != SPP_MB_READY_MAGIC) {
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(1000);
    }
    return qts;
}

static void guest_run_at(QTestState *qts, uint32_t cmd, uint32_t arg,
                         uint32_t addr)
{
    uint32_t done = qtest_readl(qts, SPP_MB_DONE);
    gint64 deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;

    qtest_writel(qts, SPP_MB_ADDR, addr);
    qtest_writel(qts, SPP_MB_ARG, arg);
    qtest_writel(qts, SPP_MB_CMD, cmd);
    while (qtest_readl(qts, SPP_MB_DONE) == done) {
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(1000);
    }
}

static void guest_run(QTestState *qts, uint32_t cmd, uint32_t arg)
{
    guest_run_at(qts, cmd, arg, 0);
}

/* The model of the store matrix in spp-guest.S over pages P and Q. */
typedef struct Model {
    uint8_t mem[8192];
    uint32_t wp[2];
    uint64_t blocked;
    uint64_t blocked_maybe;     /* bytes xsave may or may not write */
    uint64_t count;             /* violations */
    uint64_t count_maybe;       /* at most this many more, from xsave */
    bool maybe;                 /* the stores now replayed are such */
    GHashTable *first_blocked;   /* (gfn << 5 | subpage) of each store */
} Model;

static bool model_protected(Model *m, unsigned off)
{
    return !((m->wp[off / 4096] >> ((off % 4096) / 128)) & 1);
}

/*
 * One access of @size <= 8 bytes: a violation for each page it touches
 * with a protected byte.  The same under TCG, which splits the access
 * further into aligned pieces but counts them once, and under KVM,
 * whose emulator sends it whole.
 */
static void model_count(Model *m, unsigned off, unsigned size)
{
    unsigned end = off + size;

    while (off < end) {
        unsigned piece = MIN(end, (off / 4096 + 1) * 4096) - off;
        bool hit = false;
        unsigned i;

        for (i = off; i < off + piece; i++) {
            hit |= model_protected(m, i);
        }
        if (hit) {
            if (m->maybe) {
                m->count_maybe++;
            } else {
                m->count++;
            }
        }
        off += piece;
    }
}

/* A store of @size bytes made as accesses of at most @unit bytes. */
static void model_store_bytes(Model *m, unsigned off, const uint8_t *buf,
                              unsigned size, unsigned unit)
{
    bool seen = false;
    unsigned i;

    for (i = 0; i < size; i += unit) {
        model_count(m, off + i, MIN(unit, size - i));
    }

    for (i = 0; i < size; i++) {
        unsigned o = off + i;
        unsigned sub = (o % 4096) / 128;

        if ((m->wp[o / 4096] >> sub) & 1) {
            m->mem[o] = buf[i];
        } else {
            if (m->maybe) {
                m->blocked_maybe++;
                continue;
            }
            m->blocked++;
            if (!seen) {
                seen = true;
                g_hash_table_add(m->first_blocked, GUINT_TO_POINTER(
                    ((GFN_P + o / 4096) << 5) | sub));
            }
        }
    }
}

static void model_store(Model *m, unsigned off, uint64_t val, unsigned size)
{
    uint8_t buf[8];

    stq_le_p(buf, val);
    model_store_bytes(m, off, buf, size, size);
}

static void model_matrix(Model *m, const uint8_t *rom)
{
    uint8_t x99[16];
    unsigned i;

    memset(x99, 0x99, sizeof(x99));
    for (i = 0; i < 32; i++) {
        unsigned b = 128 * i;

        model_store(m, b + 0, 0x11, 1);
        model_store(m, b + 2, 0x2222, 2);
        model_store(m, b + 4, 0x33333333, 4);
        model_store(m, b + 8, 0x4444444444444444ULL, 8);
        model_store(m, b + 16, 0x55555555, 4);
        model_store(m, b + 20, 0x66666666, 4);
        model_store_bytes(m, b + 32, x99, 16, 8);
        model_store_bytes(m, b + 64, rom + b, 48, 1);
        model_store(m, b + 124, 0x7777777777777777ULL, 8);
    }
    for (i = 0; i < 80; i++) {
        model_store(m, 4096 - 40 + i, 0x88, 1);
    }
}

#define MATRIX_WP_P 0x33333333
#define MATRIX_WP_Q 0xfffffffd

/*
 * Run the store matrix on pages protected as above; check everything.
 * Under KVM the xsave and AVX stores (where the host CPU has them) go
 * through the step fallback: KVM's instruction emulator cannot perform
 * them on a trapped page.
 */
static void check_matrix(QTestState *qts, const char *accel, bool extended)
{
    Model m = { .wp = { MATRIX_WP_P, MATRIX_WP_Q } };
    uint8_t mem[8192], rom[4096], xsave[832], avx[32];
    bool tcg = !strcmp(accel, "tcg");
    uint64_t violations;
    uint32_t xfeat;
    GPtrArray *events;
    GHashTable *seen = g_hash_table_new(NULL, NULL);
    GHashTableIter it;
    gpointer key;
    unsigned i;

    m.first_blocked = g_hash_table_new(NULL, NULL);
    guest_run(qts, SPP_CMD_MATRIX, extended);
    xfeat = qtest_readl(qts, SPP_MB_XFEAT);
    if (!extended) {
        g_assert_cmphex(xfeat, ==, 0);
    } else if (tcg) {
        /* TCG's -cpu max has XSAVE and AVX */
        g_assert_cmphex(xfeat, ==, 7);
    } else if (xfeat != 7) {
        g_test_message("%s: this CPU lacks XSAVE or AVX (0x%x)", accel, xfeat);
    }
    if (xfeat) {
        /* the same state saved to an unprotected area first */
        qtest_memread(qts, SPP_XSAVE_SCRATCH, xsave, sizeof(xsave));
        /* the legacy area's MXCSR is always saved: the xsave did run */
        g_assert_cmphex(ldl_le_p(xsave + 24), ==, 0x1f80);
        /*
         * xsave need not write the parts of the area whose state is in
         * its initial configuration, so its blocked bytes are a bound.
         */
        m.maybe = true;
        model_store_bytes(&m, 0x800, xsave,
                          xfeat & 4 ? sizeof(xsave) : 576, 1);
        m.maybe = false;
    }
    if (xfeat & 4) {
        memset(avx, 0xaa, sizeof(avx));
        model_store_bytes(&m, 0x3f0, avx, sizeof(avx), 8);
    }
    qtest_memread(qts, 0xffff0000, rom, sizeof(rom));
    model_matrix(&m, rom);

    qtest_memread(qts, SPP_PAGE_P, mem, sizeof(mem));
    for (i = 0; i < sizeof(mem); i++) {
        if (mem[i] != m.mem[i]) {
            g_error("%s: byte at P+0x%x is 0x%02x, model says 0x%02x",
                    accel, i, mem[i], m.mem[i]);
        }
    }

    events = take_events(qts);
    g_assert_cmpuint(events->len, >, 0);
    for (i = 0; i < events->len; i++) {
        QDict *d = event_data(events, i);
        uint64_t gfn = get_u(d, "gfn");
        unsigned sub = get_u(d, "subpage");

        g_assert_cmpstr(qdict_get_str(d, "source"), ==, "cpu");
        g_assert_cmpint(qdict_get_int(d, "cpu-index"), ==, 0);
        g_assert_cmpstr(qdict_get_str(d, "action"), ==, "block");
        g_assert(gfn == GFN_P || gfn == GFN_Q);
        /* every reported sub-page is a protected one */
        g_assert_false((m.wp[gfn - GFN_P] >> sub) & 1);
        g_hash_table_add(seen, GUINT_TO_POINTER((gfn << 5) | sub));
    }
    /* every store that hit a protected sub-page was reported */
    g_hash_table_iter_init(&it, m.first_blocked);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        g_assert(g_hash_table_contains(seen, key));
    }
    violations = spp_counter(qts, "violations-cpu");
    g_assert_cmpuint(violations, ==, events->len);
    /*
     * The same count under TCG and KVM, exact without xsave, whose
     * stores the model can only bound.
     */
    g_assert_cmpuint(violations, >=, m.count);
    g_assert_cmpuint(violations, <=, m.count + m.count_maybe);
    g_assert_cmpuint(spp_counter(qts, "bytes-blocked"), >=, m.blocked);
    g_assert_cmpuint(spp_counter(qts, "bytes-blocked"), <=,
                     m.blocked + m.blocked_maybe);

    g_ptr_array_free(events, true);
    g_hash_table_destroy(seen);
    g_hash_table_destroy(m.first_blocked);
}

/* Boot the guest, protect P and Q, run and check the matrix. */
static QTestState *run_matrix(const char *accel, bool extended)
{
    QTestState *qts = start_guest(accel, "-spp event-rate=0");

    set_subpage(qts, GFN_P, 1, MATRIX_WP_P);
    set_subpage(qts, GFN_Q, 1, MATRIX_WP_Q);
    check_matrix(qts, accel, extended);
    return qts;
}

static void test_guest_matrix(const void *opaque)
{
    qtest_quit(run_matrix(opaque, true));
}

/* The plain matrix (no xsave): the violation count is exact. */
static void test_guest_matrix_count(const void *opaque)
{
    qtest_quit(run_matrix(opaque, false));
}

/*
 * The same guest stores under TCG and under KVM: the same memory, the
 * same counters (each run is also checked against the model).
 */
static void test_guest_differential(void)
{
    static const char *const accels[] = { "tcg", "kvm" };
    uint8_t mem[2][8192];
    uint64_t violations[2], blocked[2];
    int i;

    for (i = 0; i < 2; i++) {
        QTestState *qts = run_matrix(accels[i], false);

        qtest_memread(qts, SPP_PAGE_P, mem[i], sizeof(mem[i]));
        violations[i] = spp_counter(qts, "violations");
        blocked[i] = spp_counter(qts, "bytes-blocked");
        qtest_quit(qts);
    }
    g_assert(!memcmp(mem[0], mem[1], sizeof(mem[0])));
    g_assert_cmpuint(violations[0], ==, violations[1]);
    g_assert_cmpuint(blocked[0], ==, blocked[1]);
}

static void migrate_to_file(QTestState *qts, const char *uri)
{
    gint64 deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;

    qtest_qmp_assert_success(qts, "{'execute': 'migrate', 'arguments': "
                             "{'uri': %s}}", uri);
    for (;;) {
        QDict *rsp = qtest_qmp_assert_success_ref(qts,
                                             "{'execute': 'query-migrate'}");
        const char *status = qdict_get_try_str(rsp, "status");
        bool done = status && !strcmp(status, "completed");

        g_assert(!status || strcmp(status, "failed"));
        qobject_unref(rsp);
        if (done) {
            return;
        }
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(10 * 1000);
    }
}

/* The vectors and the policy travel with migration. */
static void test_guest_migrate(const void *opaque)
{
    const char *accel = opaque;
    g_autofree char *file = g_build_filename(g_get_tmp_dir(),
                                             "spp-test-mig-XXXXXX", NULL);
    g_autofree char *uri = NULL;
    QTestState *src, *dst;
    QDict *rsp;
    int fd;

    fd = g_mkstemp(file);
    g_assert(fd >= 0);
    close(fd);
    uri = g_strdup_printf("file:%s", file);

    src = start_guest(accel, "-spp policy=report,event-rate=0");
    set_subpage(src, GFN_P, 1, MATRIX_WP_P);
    set_subpage(src, GFN_Q, 1, MATRIX_WP_Q);
    qtest_qmp_assert_success(src, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'block'}}");
    migrate_to_file(src, uri);
    qtest_quit(src);

    /* The destination starts with the default policy; the stream wins. */
    dst = qtest_initf("-machine q35 -m 64 -cpu %s -accel %s -bios %s "
                      "-spp event-rate=0 -incoming file:%s",
                      guest_cpu(accel), accel, guest_bin, file);
    wait_status(dst, "running");
    rsp = query_spp(dst);
    g_assert_cmpstr(qdict_get_str(rsp, "policy"), ==, "block");
    g_assert_cmpuint(get_u(rsp, "protected-pages"), ==, 2);
    qobject_unref(rsp);
    g_assert_cmphex(get_vector(dst, GFN_P), ==, MATRIX_WP_P);
    g_assert_cmphex(get_vector(dst, GFN_Q), ==, MATRIX_WP_Q);
    check_matrix(dst, accel, true);
    qtest_quit(dst);
    unlink(file);
}

/* Does a migration stream hold an "spp" section? */
static bool stream_has_spp(QTestState *qts, bool protect)
{
    g_autofree char *file = g_build_filename(g_get_tmp_dir(),
                                             "spp-test-mig-XXXXXX", NULL);
    g_autofree char *uri = NULL;
    g_autofree char *data = NULL;
    gsize len;
    int fd;

    fd = g_mkstemp(file);
    g_assert(fd >= 0);
    close(fd);
    uri = g_strdup_printf("file:%s", file);
    set_subpage(qts, GFN_P, 1, 0);
    if (!protect) {
        set_subpage(qts, GFN_P, 1, WP_ALL);
    }
    migrate_to_file(qts, uri);
    g_assert(g_file_get_contents(file, &data, &len, NULL));
    unlink(file);
    /* section names are stored as a length byte and the name */
    return memmem(data, len, "\003spp", 4) != NULL;
}

/* Nothing protected: no "spp" section, so plain QEMU can load it. */
static void test_migrate_no_section(void)
{
    QTestState *qts = start_qtest(NULL);

    g_assert_false(stream_has_spp(qts, false));
    qtest_quit(qts);
    qts = start_qtest(NULL);
    g_assert_true(stream_has_spp(qts, true));
    qtest_quit(qts);
}

/* A guest hammering a protected sub-page: exact counters, few events. */
static void test_guest_hammer(const void *opaque)
{
    const char *accel = opaque;
    QTestState *qts = start_guest(accel, "-spp event-rate=10");
    const uint32_t n = 20000;
    GPtrArray *events;
    gint64 t0 = g_get_monotonic_time();
    uint64_t sent;

    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    guest_run(qts, SPP_CMD_HAMMER, n);
    events = take_events(qts);
    sent = spp_counter(qts, "events-sent");

    g_assert_cmpuint(spp_counter(qts, "violations-cpu"), ==, n);
    g_assert_cmpuint(sent + spp_counter(qts, "events-suppressed"), ==, n);
    g_assert_cmpuint(events->len, ==, sent);
    g_assert_cmpuint(sent, <=,
                     10 * ((g_get_monotonic_time() - t0) / G_USEC_PER_SEC + 2));
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P), ==, 0);
    g_ptr_array_free(events, true);
    qtest_quit(qts);
}

/*
 * Protection changes while the guest writes page P: once set-subpage
 * returned, no protected byte changes; writable bytes keep changing; no
 * deadlock.  @rounds protect-and-lift rounds.
 */
static void toggle_while_writing(QTestState *qts, int rounds)
{
    uint8_t a[4096], b[4096];
    gint64 deadline;
    int round, i;

    for (round = 0; round < rounds; round++) {
        uint32_t wp = round % 2 ? 0 : 0x0000ffff;
        bool moved = false;

        set_subpage(qts, GFN_P, 1, wp);
        qtest_memread(qts, SPP_PAGE_P, a, sizeof(a));
        /* watch until a writable byte moved (or 3 ms if there is none) */
        deadline = g_get_monotonic_time() + (wp ? GUEST_TIMEOUT_US : 3000);
        do {
            g_usleep(1000);
            qtest_memread(qts, SPP_PAGE_P, b, sizeof(b));
            for (i = 0; i < sizeof(a); i++) {
                if (!((wp >> (i / 128)) & 1) && a[i] != b[i]) {
                    g_error("round %d: protected byte P+0x%x changed after "
                            "set-subpage returned", round, i);
                }
                moved |= a[i] != b[i];
            }
        } while (!moved && g_get_monotonic_time() < deadline);
        g_assert(moved || !wp);

        /* lifted: the guest's writes land again */
        set_subpage(qts, GFN_P, 1, WP_ALL);
        qtest_memread(qts, SPP_PAGE_P, a, sizeof(a));
        deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;
        do {
            g_assert(g_get_monotonic_time() < deadline);
            g_usleep(1000);
            qtest_memread(qts, SPP_PAGE_P, b, sizeof(b));
        } while (!memcmp(a, b, sizeof(a)));
    }
}

/* Protection changes while a vCPU writes (see toggle_while_writing()). */
static void test_guest_concurrent(const void *opaque)
{
    const char *accel = opaque;
    QTestState *qts = start_guest(accel, "-smp 2 -spp event-rate=10");

    qtest_writel(qts, SPP_MB_CMD, SPP_CMD_WRITER);
    toggle_while_writing(qts, 40);
    guest_run(qts, SPP_CMD_MATRIX + 100, 0);   /* any other command stops */
    g_assert_cmpuint(spp_counter(qts, "violations-cpu"), >, 0);
    qtest_quit(qts);
}

/*
 * A page table on a protected page: the MMU's accessed/dirty updates are
 * blocked, and the guest goes on (it must not hang).  TCG's page walker
 * judges them like any store, so they are counted and reported.  Under
 * KVM the walker is the CPU's: on the nested KVM of the lab (kvm_amd on
 * TCG's emulated SVM) it skips the update on a read-only memslot without
 * an exit, so nothing is counted; whatever is counted must be reported.
 */
static void test_guest_page_table(const void *opaque)
{
    const char *accel = opaque;
    QTestState *qts = start_guest(accel, "-spp event-rate=0");
    uint32_t *pt = g_new(uint32_t, 1024);
    uint32_t *after = g_new(uint32_t, 1024);
    GPtrArray *events;
    uint64_t n;
    int i;

    /* identity map: 4 KiB pages below 4 MiB, 4 MiB pages above */
    for (i = 0; i < 1024; i++) {
        qtest_writel(qts, SPP_PAGE_DIR + 4 * i,
                     i ? (i << 22) | 0x83 : SPP_PAGE_TABLE | 0x3);
        pt[i] = cpu_to_le32((i << 12) | 0x3);
    }
    qtest_memwrite(qts, SPP_PAGE_TABLE, pt, 4096);
    set_subpage(qts, SPP_PAGE_TABLE >> 12, 1, 0);

    guest_run_at(qts, SPP_CMD_PAGING, 1000, SPP_PAGE_DIR);

    /* the guest did its work, through the page table */
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGED_STORE), ==, 1);
    /* and the protected page table did not change: no A/D bits */
    qtest_memread(qts, SPP_PAGE_TABLE, after, 4096);
    g_assert(memcmp(pt, after, 4096) == 0);
    n = spp_counter(qts, "violations-cpu");
    if (!strcmp(accel, "tcg")) {
        g_assert_cmpuint(n, >, 0);
    } else {
        g_test_message("%s: %" PRIu64 " blocked A/D updates counted", accel,
                       n);
    }
    events = take_events(qts);
    g_assert_cmpuint(events->len, ==, n);
    for (i = 0; i < events->len; i++) {
        QDict *d = event_data(events, i);

        g_assert_cmpuint(get_u(d, "gfn"), ==, SPP_PAGE_TABLE >> 12);
        /* The page walker wrote: no instruction of the guest's */
        g_assert(!qdict_haskey(d, "writer-pc"));
        g_assert_cmpuint(get_u(d, "writer-ring"), ==, 0);
        g_assert_cmphex(get_u(d, "writer-pt-root"), ==, SPP_PAGE_DIR);
    }
    g_ptr_array_free(events, true);
    g_free(pt);
    g_free(after);
    qtest_quit(qts);
}

/*
 * Who wrote: a store at a known instruction gives an event with that
 * instruction's address (under KVM, found from the bytes that end at
 * RIP, which KVM's emulator has moved past it), ring 0, no page-table
 * root (paging is off) and the value stored.
 */
static void test_guest_writer(const void *opaque)
{
    const char *accel = opaque;
    QTestState *qts = start_guest(accel, NULL);
    GPtrArray *events;
    QDict *d;

    set_subpage(qts, SPP_PAGE_P >> 12, 1, 0xfffffffe);
    guest_run(qts, SPP_CMD_DWORD_LOOP, 1);
    events = take_events(qts);
    g_assert_cmpuint(events->len, ==, 1);
    d = event_data(events, 0);
    {
        g_autoptr(GString) json = qobject_to_json(QOBJECT(d));

        g_test_message("%s: %s", accel, json->str);
    }
    g_assert_cmpuint(get_u(d, "gpa"), ==, SPP_PAGE_P + 4);
    g_assert_cmpuint(get_u(d, "size"), ==, 4);
    g_assert_cmphex(get_u(d, "value"), ==, 0x01020304);
    g_assert_cmpuint(get_u(d, "writer-ring"), ==, 0);
    g_assert(!qdict_haskey(d, "writer-pt-root"));
    g_assert_cmphex(get_u(d, "writer-pc"), ==, qtest_readl(qts, SPP_MB_PC));
    g_ptr_array_free(events, true);
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGE_P + 4), ==, 0);
    qtest_quit(qts);
}

/*
 * Page tables for SPP_CMD_WRITERS: identity, 4 KiB pages below 4 MiB and
 * in the top 4 MiB, 4 MiB pages between, all user-accessible; with @edge
 * SPP_EDGE_PAGE is left unmapped.
 */
static void writers_page_tables(QTestState *qts, bool edge)
{
    uint32_t *pt = g_new(uint32_t, 1024);
    int i;

    for (i = 0; i < 1024; i++) {
        uint32_t pde = (i << 22) | 0x87;

        if (i == 0) {
            pde = SPP_PAGE_TABLE | 0x7;
        } else if (i == 1023) {
            pde = SPP_PAGE_TABLE_TOP | 0x7;
        }
        qtest_writel(qts, SPP_PAGE_DIR + 4 * i, pde);
        pt[i] = cpu_to_le32((i << 12) | 0x7);
    }
    qtest_memwrite(qts, SPP_PAGE_TABLE, pt, 4096);
    for (i = 0; i < 1024; i++) {
        uint32_t va = 0xffc00000 + (i << 12);

        pt[i] = cpu_to_le32(edge && va == SPP_EDGE_PAGE ? 0 : va | 0x7);
    }
    qtest_memwrite(qts, SPP_PAGE_TABLE_TOP, pt, 4096);
    g_free(pt);
}

/*
 * Each event of a store of one instruction: a vCPU's, at @gfn, written
 * at ring @ring with page-table root @pt_root (0: paging off), by the
 * instruction whose address the guest put in SPP_MB_PC (@pc_sure:
 * it must be given; else it may be left out, never wrong).  Returns the
 * number of events.
 */
static unsigned expect_writer_events(QTestState *qts, const char *what,
                                     uint64_t gfn, unsigned ring,
                                     uint32_t pt_root, bool pc_sure)
{
    GPtrArray *events = take_events(qts);
    uint32_t pc = qtest_readl(qts, SPP_MB_PC);
    unsigned i, n = events->len;

    g_assert_cmpuint(n, >=, 1);
    for (i = 0; i < n; i++) {
        QDict *d = event_data(events, i);

        if (i == 0) {
            log_event(what, d);
        }
        g_assert_cmpstr(qdict_get_str(d, "source"), ==, "cpu");
        g_assert_cmpuint(get_u(d, "gfn"), ==, gfn);
        g_assert_cmpuint(get_u(d, "writer-ring"), ==, ring);
        if (pt_root) {
            g_assert_cmphex(get_u(d, "writer-pt-root"), ==, pt_root);
        } else {
            g_assert(!qdict_haskey(d, "writer-pt-root"));
        }
        if (pc_sure || qdict_haskey(d, "writer-pc")) {
            g_assert_cmphex(get_u(d, "writer-pc"), ==, pc);
        }
        g_assert(!qdict_haskey(d, "writer-device"));
    }
    g_ptr_array_free(events, true);
    return n;
}

/*
 * Who wrote, for the stores that take other paths: from ring 3 with its
 * own address space; a string store (under KVM, RIP stays at it until
 * its last round) and a store with the address in the instruction; a
 * 32-byte vector store and an xsave (under KVM,
 * which its emulator cannot do: QEMU's own vector store and the step
 * fallback); and a store whose next instruction is on an unmapped page
 * (under KVM QEMU cannot read at RIP then: the address may be left out,
 * but not be wrong, and the guest goes on).
 */
static void test_guest_writer_kinds(const void *opaque)
{
    const char *accel = opaque;
    bool tcg = !strcmp(accel, "tcg");
    QTestState *qts = start_guest(accel, "-spp event-rate=0");
    uint8_t avx[32];
    unsigned n;

    /* ring 3, paging on */
    writers_page_tables(qts, false);
    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    qtest_writel(qts, SPP_MB_KIND, SPP_WR_USER);
    guest_run_at(qts, SPP_CMD_WRITERS, 0x0a0b0c0d, SPP_PAGE_DIR);
    g_assert_cmpuint(qtest_readl(qts, SPP_MB_FAULTS), ==, 0);
    n = expect_writer_events(qts, "ring 3", GFN_P, 3, SPP_PAGE_DIR, true);
    g_assert_cmpuint(n, ==, 1);
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGE_P + 8), ==, 0);

    /* a 32-byte AVX store: four 8-byte accesses, one instruction */
    qtest_writel(qts, SPP_MB_KIND, SPP_WR_AVX);
    guest_run(qts, SPP_CMD_WRITERS, 0x5a);
    if (qtest_readl(qts, SPP_MB_KIND) == SPP_KIND_NONE) {
        g_test_message("%s: the guest CPU has no AVX: not checked", accel);
    } else {
        n = expect_writer_events(qts, "avx", GFN_P, 0, 0, true);
        g_assert_cmpuint(n, ==, 4);
        qtest_memread(qts, SPP_PAGE_P + 0x40, avx, sizeof(avx));
        g_assert(all_zero(avx, sizeof(avx)));
    }

    /* rep stosl: four rounds, one instruction */
    qtest_writel(qts, SPP_MB_KIND, SPP_WR_REP);
    guest_run(qts, SPP_CMD_WRITERS, 0x12345678);
    n = expect_writer_events(qts, "rep stosl", GFN_P, 0, 0, true);
    g_assert_cmpuint(n, ==, 4);

    /* mov %eax to an address in the instruction (no ModRM byte) */
    qtest_writel(qts, SPP_MB_KIND, SPP_WR_MOFFS);
    guest_run(qts, SPP_CMD_WRITERS, 0x87654321);
    n = expect_writer_events(qts, "moffs", GFN_P, 0, 0, true);
    g_assert_cmpuint(n, ==, 1);

    /* xsave over protected sub-pages 8 to 11 */
    set_subpage(qts, GFN_P, 1, ~0xf00U);
    qtest_writel(qts, SPP_MB_KIND, SPP_WR_XSAVE);
    guest_run(qts, SPP_CMD_WRITERS, 0);
    if (qtest_readl(qts, SPP_MB_KIND) == SPP_KIND_NONE) {
        g_test_message("%s: the guest CPU has no XSAVE: not checked", accel);
    } else {
        expect_writer_events(qts, "xsave", GFN_P, 0, 0, true);
    }

    /* the next instruction on an unmapped page */
    writers_page_tables(qts, true);
    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    qtest_writel(qts, SPP_MB_KIND, SPP_WR_EDGE);
    guest_run_at(qts, SPP_CMD_WRITERS, 0x0e0e0e0e, SPP_PAGE_DIR);
    g_assert_cmpuint(qtest_readl(qts, SPP_MB_FAULTS), ==, 1);
    g_assert_cmphex(qtest_readl(qts, SPP_MB_CR2), ==, SPP_EDGE_PAGE);
    n = expect_writer_events(qts, "edge", GFN_P, 0, SPP_PAGE_DIR, tcg);
    g_assert_cmpuint(n, ==, 1);
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGE_P + 0x10), ==, 0);

    /* and the guest still serves commands */
    guest_run(qts, SPP_CMD_DWORD_LOOP, 1);
    qtest_quit(qts);
}

/*
 * A store made in real mode, by the boot code: ring 0, no page tables,
 * and the instruction's linear address (CS base + IP) where it is given.
 */
static void test_guest_writer_real_mode(const void *opaque)
{
    const char *accel = opaque;
    QTestState *qts = qtest_initf("-machine q35 -m 64 -cpu %s -accel %s "
                                  "-bios %s -S", guest_cpu(accel), accel,
                                  guest_bin);
    gint64 deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;
    GPtrArray *events;
    QDict *d;

    set_subpage(qts, SPP_RM_STORE >> 12, 1, 0xfffffffe);
    qtest_qmp_assert_success(qts, "{'execute': 'cont'}");
    while (qtest_readl(qts, SPP_MB_READY) != SPP_MB_READY_MAGIC) {
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(1000);
    }
    events = take_events(qts);
    g_assert_cmpuint(events->len, ==, 1);
    d = event_data(events, 0);
    log_event("real mode", d);
    g_assert_cmpuint(get_u(d, "gpa"), ==, SPP_RM_STORE);
    g_assert_cmpuint(get_u(d, "size"), ==, 2);
    g_assert_cmphex(get_u(d, "value"), ==, SPP_RM_VALUE);
    g_assert_cmpuint(get_u(d, "writer-ring"), ==, 0);
    g_assert(!qdict_haskey(d, "writer-pt-root"));
    if (!strcmp(accel, "tcg") || qdict_haskey(d, "writer-pc")) {
        g_assert_cmphex(get_u(d, "writer-pc"), ==,
                        qtest_readl(qts, SPP_MB_RM_PC));
    }
    g_ptr_array_free(events, true);
    g_assert_cmpuint(qtest_readw(qts, SPP_RM_STORE), ==, 0);
    qtest_quit(qts);
}

/*
 * Self-modifying code on a protected page: a store, allowed by its
 * sub-page, rewrites the next instruction of its own translation block,
 * and the rewritten instruction is what runs (TCG ends the block at a
 * store to a write-trapped page that holds translated code).
 */
static void test_guest_smc(const void *opaque)
{
    const char *accel = opaque;
    QTestState *qts = start_guest(accel, NULL);
    int i;

    /* Sub-page 0, which holds the routine, writable; the rest not. */
    set_subpage(qts, SPP_SMC_PAGE >> 12, 1, 0x00000001);
    for (i = 0; i < 3; i++) {
        qtest_writel(qts, SPP_MB_SMC_RESULT, 0);
        guest_run(qts, SPP_CMD_SMC, 0);
        g_assert_cmphex(qtest_readl(qts, SPP_MB_SMC_RESULT), ==,
                        SPP_SMC_NEW);
    }
    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 0);
    qtest_quit(qts);
}

/*
 * Turn a 1 MiB TSEG at the top of low RAM on or off: q35's SMRAM
 * (G_SMRAME) and ESMRAMC (T_EN, TSEG_SZ) registers.
 */
static void set_tseg(QTestState *qts, bool on)
{
    uint8_t smram, esmramc;

    qtest_outl(qts, 0xcf8, 0x80000000 | 0x9c);      /* 0:0.0, 0x9c */
    smram = qtest_inb(qts, 0xcfd) & ~0x08;
    esmramc = qtest_inb(qts, 0xcfe) & ~0x07;
    qtest_outb(qts, 0xcfd, smram | (on ? 0x08 : 0));
    qtest_outb(qts, 0xcfe, esmramc | (on ? 0x01 : 0));
}

/* The guest stores 10 times to @gpa: blocked and counted, or landed. */
static void check_stores(QTestState *qts, uint32_t gpa, bool protected)
{
    uint64_t before = spp_counter(qts, "violations-cpu");

    guest_run_at(qts, SPP_CMD_STORE_LOOP, 10, gpa);
    g_assert_cmphex(qtest_readl(qts, gpa), ==, protected ? 0 : 1);
    g_assert_cmpuint(spp_counter(qts, "violations-cpu") - before, ==,
                     protected ? 10 : 0);
}

/*
 * Firmware re-bounds RAM (a TSEG carved out of the top of low RAM,
 * then given back, as SeaBIOS and OVMF do at boot): the RAM range that
 * holds the protected pages is deleted and added again, bounded
 * differently.  Every protected page still blocks, every page next to
 * one still takes stores; under KVM the slots both ranges share are
 * kept (kvm_write_trap_keep_slots()), not made again.
 */
static void test_guest_rebound(const void *opaque)
{
    const char *accel = opaque;
    g_autofree char *log = g_build_filename(g_get_tmp_dir(),
                                            "spp-test-rebound-XXXXXX", NULL);
    g_autofree char *args = NULL;
    g_autofree char *trace = NULL;
    /* 64 MiB of RAM: the TSEG is [63 MiB, 64 MiB) */
    static const uint32_t gfns[] = { 0x800, 0x980, 0x1b00, 0x3e00, 0x3eff };
    const uint32_t in_tseg = 0x3f80;
    QTestState *qts;
    unsigned i;
    int fd = g_mkstemp(log);

    g_assert(fd >= 0);
    close(fd);
    args = g_strdup_printf("-spp event-rate=0 -D %s "
                           "-trace kvm_write_trap_keep_slots", log);
    qts = start_guest(accel, args);
    for (i = 0; i < ARRAY_SIZE(gfns); i++) {
        set_subpage(qts, gfns[i], 1, 0);
    }
    set_subpage(qts, in_tseg, 1, 0);

    set_tseg(qts, true);
    /* outside SMM the TSEG reads as all ones */
    g_assert_cmphex(qtest_readl(qts, in_tseg << 12), ==, 0xffffffff);
    for (i = 0; i < ARRAY_SIZE(gfns); i++) {
        check_stores(qts, gfns[i] << 12, true);
        check_stores(qts, (gfns[i] - 1) << 12, false);
    }
    set_tseg(qts, false);
    for (i = 0; i < ARRAY_SIZE(gfns); i++) {
        check_stores(qts, gfns[i] << 12, true);
        check_stores(qts, (gfns[i] + 1) << 12, false);
    }
    check_stores(qts, in_tseg << 12, true);
    check_stores(qts, (in_tseg + 1) << 12, false);
    g_assert_cmpuint(spp_counter(qts, "protected-pages"), ==,
                     ARRAY_SIZE(gfns) + 1);
    qtest_quit(qts);

    g_assert(g_file_get_contents(log, &trace, NULL, NULL));
    unlink(log);
    if (!strcmp(accel, "kvm")) {
        g_assert(strstr(trace, "kvm_write_trap_keep_slots"));
    }
}

/* Protect sub-page 0 of P, run guest command @cmd once, wait for the pause. */
static void run_until_paused(QTestState *qts, uint32_t cmd)
{
    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    qtest_writel(qts, SPP_MB_ARG, 1);
    qtest_writel(qts, SPP_MB_CMD, cmd);
    qtest_qmp_eventwait(qts, "STOP");
    wait_status(qts, "paused");
}

/* pause with a vCPU: the store is dropped and the VM stops. */
static void test_guest_pause(const void *opaque)
{
    const char *accel = opaque;
    QTestState *qts = start_guest(accel, "-spp policy=pause");

    run_until_paused(qts, SPP_CMD_DWORD_LOOP);
    g_assert_cmphex(qtest_readl(qts, SPP_PAGE_P + 4), ==, 0);
    g_assert_cmpuint(spp_counter(qts, "violations-cpu"), ==, 1);

    /* the host lifts the protection and resumes: the guest finishes */
    set_subpage(qts, GFN_P, 1, WP_ALL);
    qtest_qmp_assert_success(qts, "{'execute': 'cont'}");
    while (qtest_readl(qts, SPP_MB_DONE) == 0) {
        g_usleep(1000);
    }

    /*
     * The VM stops at the violating store: the demo's next store, to a
     * writable sub-page of the same page and in the same translation
     * block under TCG, has not run.
     */
    run_until_paused(qts, SPP_CMD_DEMO);
    g_assert_cmphex(qtest_readl(qts, SPP_PAGE_P + 0x10), ==, 0);
    g_assert_cmphex(qtest_readl(qts, SPP_PAGE_P + 0x810), ==, 0);
    g_assert_cmpuint(spp_counter(qts, "violations-cpu"), ==, 2);
    qtest_quit(qts);
}

/* Wake the APs of a guest started with -smp @ncpus. */
static void smp_start(QTestState *qts, unsigned ncpus)
{
    gint64 deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;

    guest_run(qts, SPP_CMD_SMP_START, 0);
    while (qtest_readl(qts, SPP_MB_APS) != ncpus - 1) {
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(1000);
    }
}

/* Start SMP job @job on every vCPU; smp_job_done() tells when it ends. */
static void smp_job_begin(QTestState *qts, uint32_t job, uint32_t arg,
                          uint32_t addr)
{
    qtest_writel(qts, SPP_SMP_CMD, job);
    qtest_writel(qts, SPP_SMP_ARG, arg);
    qtest_writel(qts, SPP_SMP_ADDR, addr);
    qtest_writel(qts, SPP_SMP_GEN, qtest_readl(qts, SPP_SMP_GEN) + 1);
    qtest_writel(qts, SPP_MB_CMD, SPP_CMD_SMP_JOB);
}

/* Whether the job is done: on the first vCPU, and on @ncpus - 1 APs. */
static bool smp_job_done(QTestState *qts, unsigned ncpus, uint32_t done)
{
    return !qtest_readl(qts, SPP_MB_CMD) &&
           qtest_readl(qts, SPP_SMP_DONE) == done + ncpus - 1;
}

/* Wait at most @timeout_us for smp_job_done(). */
static void smp_job_wait(QTestState *qts, unsigned ncpus, uint32_t done,
                         gint64 timeout_us)
{
    gint64 deadline = g_get_monotonic_time() + timeout_us;

    while (!smp_job_done(qts, ncpus, done)) {
        g_assert(g_get_monotonic_time() < deadline);
        g_usleep(1000);
    }
}

/* Run SMP job @job on all @ncpus vCPUs at once; return when all are done. */
static void smp_job(QTestState *qts, unsigned ncpus, uint32_t job,
                    uint32_t arg, uint32_t addr)
{
    uint32_t done = qtest_readl(qts, SPP_SMP_DONE);

    smp_job_begin(qts, job, arg, addr);
    smp_job_wait(qts, ncpus, done, 6 * GUEST_TIMEOUT_US);
}

typedef struct SmpCase {
    const char *accel;
    unsigned ncpus;
} SmpCase;

/*
 * Every vCPU increments counters in the one writable sub-page of a
 * protected page with lock xadd, a lock cmpxchg loop, lock add and a
 * plain add under a spinlock taken with xchg, and flips an aligned
 * 8-byte word there between all-zeros and all-ones while reading it
 * back.  No increment may be lost, no value torn, no
 * protected byte may change, and nothing is a violation.
 */
static void test_guest_smp_atomics(const void *opaque)
{
    const SmpCase *c = opaque;
    g_autofree char *args = g_strdup_printf("-smp %u -spp event-rate=0",
                                            c->ncpus);
    QTestState *qts = start_guest(c->accel, args);
    const uint32_t n = strcmp(c->accel, "kvm") ? 20000 : 4000;
    static const struct {
        uint32_t job;
        unsigned off;
        const char *what;
    } jobs[] = {
        { SPP_JOB_XADD, 0, "lock xadd" },
        { SPP_JOB_CMPXCHG, 4, "lock cmpxchg" },
        { SPP_JOB_LOCK_ADD, 8, "lock add" },
        /* the counter after a spinlock taken with xchg at +12 */
        { SPP_JOB_XCHG_LOCK, 12, "xchg spinlock" },
    };
    uint8_t before[4096], after[4096];
    unsigned i;

    smp_start(qts, c->ncpus);
    for (i = 0; i < sizeof(before); i++) {
        before[i] = i * 7 + 1;
    }
    qtest_memwrite(qts, SPP_PAGE_P, before, sizeof(before));
    set_subpage(qts, GFN_P, 1, 0x00000001);      /* only sub-page 0 */
    for (i = 0; i < ARRAY_SIZE(jobs); i++) {
        uint32_t got;

        bool spin = jobs[i].job == SPP_JOB_XCHG_LOCK;
        unsigned counter = jobs[i].off + (spin ? 4 : 0);
        /* a spinning vCPU waits for one its host thread may have preempted */
        uint32_t rounds = spin && !strcmp(c->accel, "kvm") ? n / 4 : n;

        qtest_writel(qts, SPP_PAGE_P + jobs[i].off, 0);
        qtest_writel(qts, SPP_PAGE_P + counter, 0);
        smp_job(qts, c->ncpus, jobs[i].job, rounds,
                SPP_PAGE_P + jobs[i].off);
        got = qtest_readl(qts, SPP_PAGE_P + counter);
        g_test_message("%s, %u vCPUs, %s: %u of %u increments", c->accel,
                       c->ncpus, jobs[i].what, got, c->ncpus * rounds);
        g_assert_cmpuint(got, ==, c->ncpus * rounds);
    }
    qtest_writel(qts, SPP_SMP_TORN, 0);
    smp_job(qts, c->ncpus, SPP_JOB_TEAR, n, SPP_PAGE_P + 64);
    g_test_message("%s, %u vCPUs: %u torn 8-byte values", c->accel,
                   c->ncpus, qtest_readl(qts, SPP_SMP_TORN));
    g_assert_cmpuint(qtest_readl(qts, SPP_SMP_TORN), ==, 0);

    qtest_memread(qts, SPP_PAGE_P, after, sizeof(after));
    g_assert(memcmp(before + 128, after + 128, sizeof(after) - 128) == 0);
    g_assert_cmpuint(spp_counter(qts, "violations"), ==, 0);
    qtest_quit(qts);
}

/*
 * Every vCPU does lock xadd on a counter in the writable sub-page of a
 * protected page while the host toggles the protection of another
 * sub-page of that page and protects and releases page Q (under KVM a
 * memslot change each time), then migrates the VM mid-job; the
 * destination runs the job to its end.  Not one increment may be lost
 * and no protected byte may change.
 */
static void test_guest_smp_churn(const void *opaque)
{
    const SmpCase *c = opaque;
    bool kvm = !strcmp(c->accel, "kvm");
    g_autofree char *args = g_strdup_printf("-smp %u -spp event-rate=0",
                                            c->ncpus);
    g_autofree char *file = g_build_filename(g_get_tmp_dir(),
                                             "spp-test-smp-XXXXXX", NULL);
    g_autofree char *uri = NULL;
    uint32_t n = kvm ? 20000 : 100000;
    QTestState *src = start_guest(c->accel, args), *dst;
    unsigned attempt;
    uint8_t before[4096], after[4096];
    uint32_t done;
    unsigned i;
    int fd;

    fd = g_mkstemp(file);
    g_assert(fd >= 0);
    close(fd);
    uri = g_strdup_printf("file:%s", file);

    smp_start(src, c->ncpus);
    for (i = 0; i < sizeof(before); i++) {
        before[i] = i * 13 + 5;
    }
    qtest_memwrite(src, SPP_PAGE_P, before, sizeof(before));
    qtest_writel(src, SPP_PAGE_P, 0);
    before[0] = before[1] = before[2] = before[3] = 0;
    /*
     * The changes must overlap the job: on a loaded host the monitor may
     * be slow against the vCPUs, so a job that ended first is run again,
     * four times longer.
     */
    for (attempt = 0;; attempt++) {
        qtest_writel(src, SPP_PAGE_P, 0);
        set_subpage(src, GFN_P, 1, 0x00000001);
        done = qtest_readl(src, SPP_SMP_DONE);
        smp_job_begin(src, SPP_JOB_XADD, n, SPP_PAGE_P);
        for (i = 0; i < 40; i++) {
            set_subpage(src, GFN_P, 1, i % 2 ? 0x00000001 : 0x00000003);
            set_subpage(src, GFN_Q, 1, i % 2 ? WP_ALL : 0x0000ffff);
        }
        set_subpage(src, GFN_P, 1, 0x00000001);
        set_subpage(src, GFN_Q, 1, 0x0000ffff);
        if (!smp_job_done(src, c->ncpus, done)) {
            break;
        }
        g_assert_cmpuint(attempt, <, 2);
        g_test_message("the job ended before the changes: again, longer");
        set_subpage(src, GFN_Q, 1, WP_ALL);
        n *= 4;
    }
    migrate_to_file(src, uri);
    qtest_quit(src);

    dst = qtest_initf("-machine q35 -m 64 -smp %u -cpu %s -accel %s "
                      "-bios %s -spp event-rate=0 -incoming %s", c->ncpus,
                      guest_cpu(c->accel), c->accel, guest_bin, uri);
    smp_job_wait(dst, c->ncpus, done, 6 * GUEST_TIMEOUT_US);
    g_test_message("%s, %u vCPUs, lock xadd across churn and migration: "
                   "%u of %u increments", c->accel, c->ncpus,
                   qtest_readl(dst, SPP_PAGE_P), c->ncpus * n);
    g_assert_cmpuint(qtest_readl(dst, SPP_PAGE_P), ==, c->ncpus * n);
    qtest_memread(dst, SPP_PAGE_P, after, sizeof(after));
    g_assert(memcmp(before + 128, after + 128, sizeof(after) - 128) == 0);
    g_assert_cmphex(get_vector(dst, GFN_P), ==, 0x00000001);
    g_assert_cmphex(get_vector(dst, GFN_Q), ==, 0x0000ffff);
    g_assert_cmpuint(spp_counter(dst, "violations"), ==, 0);
    qtest_quit(dst);
    unlink(file);
}

/* A guest of @c->ncpus vCPUs, its APs woken, with -spp @spp_args. */
static QTestState *start_smp_guest(const SmpCase *c, const char *spp_args)
{
    g_autofree char *args = g_strdup_printf("-smp %u -spp %s", c->ncpus,
                                            spp_args);
    QTestState *qts = start_guest(c->accel, args);

    smp_start(qts, c->ncpus);
    return qts;
}

/*
 * Every vCPU hammers a protected sub-page at once: every store is
 * counted once, the events are rate-limited, no byte lands.
 */
static void test_guest_smp_hammer(const void *opaque)
{
    const SmpCase *c = opaque;
    QTestState *qts = start_smp_guest(c, "event-rate=10");
    const uint32_t n = strcmp(c->accel, "kvm") ? 20000 : 5000;
    gint64 t0 = g_get_monotonic_time();
    GPtrArray *events;
    uint64_t sent;

    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    smp_job(qts, c->ncpus, SPP_JOB_HAMMER, n, SPP_PAGE_P);
    events = take_events(qts);
    sent = spp_counter(qts, "events-sent");

    g_assert_cmpuint(spp_counter(qts, "violations-cpu"), ==, c->ncpus * n);
    g_assert_cmpuint(sent + spp_counter(qts, "events-suppressed"), ==,
                     c->ncpus * n);
    g_assert_cmpuint(events->len, ==, sent);
    g_assert_cmpuint(sent, <=,
                     10 * ((g_get_monotonic_time() - t0) / G_USEC_PER_SEC + 2));
    g_assert_cmphex(qtest_readb(qts, SPP_PAGE_P), ==, 0);
    g_ptr_array_free(events, true);
    qtest_quit(qts);
}

/* Protection changes while every vCPU writes the page. */
static void test_guest_smp_concurrent(const void *opaque)
{
    const SmpCase *c = opaque;
    QTestState *qts = start_smp_guest(c, "event-rate=10");
    uint32_t done = qtest_readl(qts, SPP_SMP_DONE);

    smp_job_begin(qts, SPP_JOB_WRITER, 1, SPP_PAGE_P);
    toggle_while_writing(qts, 40);
    qtest_writel(qts, SPP_SMP_CMD, 0);          /* the writers stop */
    smp_job_wait(qts, c->ncpus, done, GUEST_TIMEOUT_US);
    g_assert_cmpuint(spp_counter(qts, "violations-cpu"), >, 0);
    qtest_quit(qts);
}

/*
 * pause with every vCPU storing: each stores 1 to protected sub-page 0
 * first, then increments a counter in writable sub-page 16.  The VM
 * stops, and every vCPU that wrote stopped at its store: the counter is
 * still 0.  Lifted and resumed, every vCPU finishes; the stores that
 * stopped the VM were dropped, those not made before the pause land.
 */
static void test_guest_smp_pause(const void *opaque)
{
    const SmpCase *c = opaque;
    QTestState *qts = start_smp_guest(c, "policy=pause");
    uint32_t done = qtest_readl(qts, SPP_SMP_DONE);
    uint64_t n;

    set_subpage(qts, GFN_P, 1, 0xfffffffe);
    smp_job_begin(qts, SPP_JOB_STORE_INC, 1, SPP_PAGE_P);
    qtest_qmp_eventwait(qts, "STOP");
    wait_status(qts, "paused");
    n = spp_counter(qts, "violations-cpu");
    g_test_message("%s, %u vCPUs: %" PRIu64 " stopped at their store",
                   c->accel, c->ncpus, n);
    g_assert_cmpuint(n, >=, 1);
    g_assert_cmpuint(n, <=, c->ncpus);
    g_assert_cmphex(qtest_readl(qts, SPP_PAGE_P), ==, 0);
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGE_P + 0x800), ==, 0);

    set_subpage(qts, GFN_P, 1, WP_ALL);
    qtest_qmp_assert_success(qts, "{'execute': 'cont'}");
    smp_job_wait(qts, c->ncpus, done, 6 * GUEST_TIMEOUT_US);
    /* a dropped store is not made again; those not yet made landed */
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGE_P), ==, n < c->ncpus);
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGE_P + 0x800), ==, c->ncpus);
    g_assert_cmpuint(spp_counter(qts, "violations-cpu"), ==, n);
    qtest_quit(qts);
}

/*
 * Every vCPU makes movq stores across into a protected sub-page (under
 * KVM each one goes to the step fallback, which keeps the other vCPUs
 * out of the guest) while the monitor asks every vCPU for its
 * registers: every call comes back, every store's writable half lands
 * and its protected half is blocked and counted.
 */
static void test_guest_smp_step(const void *opaque)
{
    const SmpCase *c = opaque;
    QTestState *qts = start_smp_guest(c, "event-rate=1");
    uint32_t done = qtest_readl(qts, SPP_SMP_DONE);
    /* under KVM each store is a step: about 15 ms in the nested lab */
    const uint32_t n = strcmp(c->accel, "kvm") ? 1000 : 250;
    gint64 deadline = g_get_monotonic_time() + 6 * GUEST_TIMEOUT_US;
    unsigned calls = 0;

    set_subpage(qts, GFN_P, 1, 0x80000000);     /* sub-page 31 writable */
    set_subpage(qts, GFN_P + 1, 1, 0xfffffffe); /* sub-page 0 protected */
    smp_job_begin(qts, SPP_JOB_MOVQ, n, SPP_PAGE_P + 0xffc);
    do {
        g_free(qtest_hmp(qts, "info registers -a"));
        calls++;
        g_assert(g_get_monotonic_time() < deadline);
    } while (!smp_job_done(qts, c->ncpus, done));
    g_test_message("%s, %u vCPUs: %u monitor calls during the stores",
                   c->accel, c->ncpus, calls);
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGE_P + 0xffc), ==, 1);
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGE_Q), ==, 0);
    g_assert_cmpuint(spp_counter(qts, "violations-cpu"), ==, c->ncpus * n);
    qtest_quit(qts);
}

#define BLK_REQ 0x500000
#define BLK_LATENCY_NS 300000000

/* Queue a 512-byte read of sector 0 at BLK_REQ and notify the device. */
static uint32_t blk_read_start(QTestState *qts, QVirtioPCIDevice *dev,
                               QVirtQueue *vq)
{
    uint8_t hdr[16] = { 0 };            /* VIRTIO_BLK_T_IN, sector 0 */
    uint32_t head;

    qtest_memwrite(qts, BLK_REQ, hdr, sizeof(hdr));
    qtest_writeb(qts, BLK_REQ + 16 + 512, 0xff);
    head = qvirtqueue_add(qts, vq, BLK_REQ, 16, false, true);
    qvirtqueue_add(qts, vq, BLK_REQ + 16, 512, true, true);
    qvirtqueue_add(qts, vq, BLK_REQ + 16 + 512, 1, true, false);
    qvirtqueue_kick(qts, &dev->vdev, vq, head);
    return head;
}

static void blk_read_finish(QTestState *qts, QVirtioPCIDevice *dev,
                            QVirtQueue *vq, uint32_t head)
{
    uint32_t len = 0;

    qvirtio_wait_used_elem(qts, &dev->vdev, vq, head, &len,
                           GUEST_TIMEOUT_US);
    g_assert_cmpuint(qtest_readb(qts, BLK_REQ + 16 + 512), ==, 0);
}

/*
 * virtio-blk on an iothread, with a protection on another page of the
 * same RAM: stop, migrate and cont while a request is in flight (the
 * null driver makes it last 300 ms).  Stopping drains the request with
 * the BQL held, so the iothread must complete it, ring update and all,
 * without the BQL.
 */
static void test_iothread_stop(void)
{
    g_autofree char *file = g_strdup_printf("%s/spp-iothread-%d.mig",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    g_autofree char *args = g_strdup_printf(
        "-object iothread,id=io0 -blockdev null-co,node-name=d0,"
        "size=1048576,read-zeroes=on,latency-ns=%d -device virtio-blk-pci,"
        "addr=06.0,iothread=io0,drive=d0,disable-modern=on",
        BLK_LATENCY_NS);
    QTestState *qts = start_qtest(args);
    VirtioDev v;
    uint32_t head;
    int round;

    virtio_dev_start(&v, qts, 6);

    /* One protection, set and cleared; another that stays. */
    set_subpage(qts, 0x600, 1, 0xfffffffe);
    set_subpage(qts, 0x600, 1, WP_ALL);
    head = blk_read_start(qts, v.dev, v.vq);
    qtest_qmp_assert_success(qts, "{'execute': 'stop'}");
    qtest_qmp_assert_success(qts, "{'execute': 'cont'}");
    blk_read_finish(qts, v.dev, v.vq, head);

    set_subpage(qts, 0x601, 1, 0xfffffffe);
    for (round = 0; round < 3; round++) {
        head = blk_read_start(qts, v.dev, v.vq);
        qtest_qmp_assert_success(qts, "{'execute': 'stop'}");
        qtest_qmp_assert_success(qts, "{'execute': 'cont'}");
        blk_read_finish(qts, v.dev, v.vq, head);
    }

    /* migration stops the VM too */
    head = blk_read_start(qts, v.dev, v.vq);
    migrate_to_file(qts, uri);
    wait_status(qts, "postmigrate");
    qtest_qmp_assert_success(qts, "{'execute': 'cont'}");
    blk_read_finish(qts, v.dev, v.vq, head);
    g_assert_cmpuint(get_vector(qts, 0x601), ==, 0xfffffffe);
    unlink(file);

    virtio_dev_stop(&v);
    qtest_quit(qts);
}

/* Run QEMU with @args appended; expect it to fail with @msg on stderr. */
/* The writer SPP cannot judge with @id in query-spp, or NULL (a ref). */
static QDict *find_writer(QTestState *qts, const char *id, unsigned *count)
{
    QDict *info = query_spp(qts);
    QList *list = qdict_get_qlist(info, "writers");
    QDict *found = NULL;
    QListEntry *e;
    unsigned n = 0;

    g_assert(list);
    QLIST_FOREACH_ENTRY(list, e) {
        QDict *w = qobject_to(QDict, qlist_entry_obj(e));

        n++;
        if (!found && !strcmp(qdict_get_str(w, "id"), id)) {
            found = w;
            qobject_ref(found);
        }
    }
    if (count) {
        *count = n;
    }
    qobject_unref(info);
    return found;
}

/* The writers of the last SPP_WRITERS event (after a round trip), or -1. */
static int last_writers_event(QTestState *qts)
{
    QDict *ev, *last = NULL;
    int n = -1;

    qobject_unref(query_spp(qts));
    while ((ev = qtest_qmp_event_ref(qts, "SPP_WRITERS"))) {
        qobject_unref(last);
        last = ev;
    }
    if (last) {
        n = qlist_size(qdict_get_qlist(qdict_get_qdict(last, "data"),
                                       "writers"));
        qobject_unref(last);
    }
    return n;
}

/*
 * Plugging a vhost or VFIO device while memory is protected: refused by
 * default, before the device exists, with an error that names it; with
 * unenforced=allow, SPP does not stand in the way (here the device then
 * fails for lack of its host side, or is plugged and listed).
 */
static void test_writers_hotplug(void)
{
    QTestState *qts = start_qtest("-device pcie-root-port,id=rp0,chassis=1 "
                                  "-device pcie-root-port,id=rp1,chassis=2");
    QDict *info = query_spp(qts), *rsp, *w;
    unsigned n;

    g_assert_cmpstr(qdict_get_str(info, "unenforced"), ==, "refuse");
    g_assert(qlist_empty(qdict_get_qlist(info, "writers")));
    qobject_unref(info);

    set_subpage(qts, 0x100, 1, 0xffff0000);
    rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                    "{'driver': 'vhost-vsock-pci', 'id': 'vs0', "
                    "'guest-cid': 3, 'bus': 'rp0'}}");
    expect_error(qts, "from its vhost back end, which SPP cannot check, "
                 "and 1 page is protected", rsp);
    rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                    "{'driver': 'vfio-pci', 'id': 'vf0', "
                    "'host': '0000:00:00.0', 'bus': 'rp0'}}");
    expect_error(qts, "'vfio-pci' writes guest RAM by DMA through the host "
                 "IOMMU", rsp);
    rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments': "
                    "{'path': '/machine/peripheral/vs0', 'property': "
                    "'type'}}");
    g_assert(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);
    g_assert_cmphex(get_vector(qts, 0x100), ==, 0xffff0000);

    /* An emulated device is plugged as ever. */
    qtest_qmp_assert_success(qts, "{'execute': 'device_add', 'arguments': "
                             "{'driver': 'virtio-rng-pci', 'id': 'rng0', "
                             "'bus': 'rp0'}}");
    g_assert_null(find_writer(qts, "rng0", &n));
    g_assert_cmpuint(n, ==, 0);

    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'block', "
                             "'unenforced': 'allow'}}");
    info = query_spp(qts);
    g_assert_cmpstr(qdict_get_str(info, "unenforced"), ==, "allow");
    qobject_unref(info);
    rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                    "{'driver': 'vhost-vsock-pci', 'id': 'vs0', "
                    "'guest-cid': 3, 'bus': 'rp1'}}");
    if (qdict_haskey(rsp, "error")) {
        const char *desc = qdict_get_str(qdict_get_qdict(rsp, "error"),
                                         "desc");

        g_test_message("vhost-vsock-pci without SPP's refusal: %s", desc);
        g_assert_null(strstr(desc, "SPP"));
    } else {
        /* A host with /dev/vhost-vsock: the device is a listed writer. */
        w = find_writer(qts, "vs0", NULL);
        g_assert(w);
        g_assert_cmpstr(qdict_get_str(w, "kind"), ==, "vhost");
        g_assert(qdict_get_bool(w, "all-ram"));
        g_assert(qdict_get_bool(w, "reaches-protected"));
        qobject_unref(w);
        g_assert_cmpint(last_writers_event(qts), ==, 1);
    }
    qobject_unref(rsp);
    qtest_quit(qts);
}

/*
 * vhost-net (the lab has /dev/vhost-net and /dev/net/tun): a protection
 * is refused by default, naming the NIC and the netdev; accepted and
 * listed with unenforced=allow; plugging another vhost NIC while memory
 * is protected is refused, one without vhost is not.
 */
static void test_kvm_vhost_net(void)
{
    QTestState *qts;
    QDict *w, *rsp;
    unsigned n;

    if (access("/dev/vhost-net", R_OK | W_OK) ||
        access("/dev/net/tun", R_OK | W_OK)) {
        g_test_skip("no usable /dev/vhost-net and /dev/net/tun here (the "
                    "KVM lab has them)");
        return;
    }
    qts = start_guest("kvm", "-netdev tap,id=hn0,vhost=on,script=no,"
                      "downscript=no -device virtio-net-pci,netdev=hn0,"
                      "id=net0,romfile= -device pcie-root-port,id=rp0,"
                      "chassis=1 -device pcie-root-port,id=rp1,chassis=2");
    w = find_writer(qts, "net0", &n);
    g_assert(w);
    g_assert_cmpuint(n, ==, 1);
    g_assert_cmpstr(qdict_get_str(w, "kind"), ==, "vhost");
    g_assert(strstr(qdict_get_str(w, "description"),
                    "NIC 'net0' on netdev 'hn0' (tap"));
    g_assert_cmpstr(qdict_get_str(w, "remedy"), ==,
                    "vhost=off on netdev 'hn0'");
    g_assert(qdict_get_bool(w, "all-ram"));
    g_assert(!qdict_get_bool(w, "reaches-protected"));
    qobject_unref(w);

    rsp = qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                    "{'base_gfn': %d, 'npages': 1, 'wp_map': 0}}",
                    SPP_PAGE_P >> 12);
    expect_error(qts, "NIC 'net0' on netdev 'hn0' (tap): the host kernel "
                 "(vhost-net) writes", rsp);
    g_assert_cmphex(get_vector(qts, SPP_PAGE_P >> 12), ==, 0xffffffff);
    g_assert_cmpuint(spp_counter(qts, "protected-pages"), ==, 0);

    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'block', "
                             "'unenforced': 'allow'}}");
    set_subpage(qts, SPP_PAGE_P >> 12, 1, 0);
    w = find_writer(qts, "net0", NULL);
    g_assert(qdict_get_bool(w, "reaches-protected"));
    qobject_unref(w);
    g_assert_cmpint(last_writers_event(qts), ==, 1);

    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'block', "
                             "'unenforced': 'refuse'}}");
    qtest_qmp_assert_success(qts, "{'execute': 'netdev_add', 'arguments': "
                             "{'type': 'tap', 'id': 'hn1', 'vhost': true, "
                             "'script': 'no', 'downscript': 'no'}}");
    rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments': "
                    "{'driver': 'virtio-net-pci', 'id': 'net1', "
                    "'netdev': 'hn1', 'bus': 'rp0', 'romfile': ''}}");
    expect_error(qts, "netdev 'hn1' (tap) uses vhost", rsp);
    g_assert_null(find_writer(qts, "net1", &n));
    g_assert_cmpuint(n, ==, 1);

    /* The same NIC without vhost is QEMU's own: judged, so plugged. */
    qtest_qmp_assert_success(qts, "{'execute': 'netdev_add', 'arguments': "
                             "{'type': 'tap', 'id': 'hn2', 'vhost': false, "
                             "'script': 'no', 'downscript': 'no'}}");
    qtest_qmp_assert_success(qts, "{'execute': 'device_add', 'arguments': "
                             "{'driver': 'virtio-net-pci', 'id': 'net2', "
                             "'netdev': 'hn2', 'bus': 'rp0', "
                             "'romfile': ''}}");
    g_assert_null(find_writer(qts, "net2", &n));
    g_assert_cmpuint(n, ==, 1);

    /* Allowed, the vhost NIC is plugged, listed and announced. */
    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'block', "
                             "'unenforced': 'allow'}}");
    qtest_qmp_assert_success(qts, "{'execute': 'device_add', 'arguments': "
                             "{'driver': 'virtio-net-pci', 'id': 'net1', "
                             "'netdev': 'hn1', 'bus': 'rp1', "
                             "'romfile': ''}}");
    w = find_writer(qts, "net1", &n);
    g_assert(w);
    g_assert_cmpuint(n, ==, 2);
    g_assert(qdict_get_bool(w, "reaches-protected"));
    qobject_unref(w);
    g_assert_cmpint(last_writers_event(qts), ==, 2);
    qtest_quit(qts);
}

/*
 * kvmclock: KVM writes the guest's clock parameters where the guest put
 * them, which SPP cannot judge.  Protecting any sub-page of that page is
 * refused by default; with unenforced=allow it is applied and listed.
 * What KVM then does with the page is recorded, for the design document.
 */
static void test_kvm_pv_kvmclock(void)
{
    const uint32_t clock = SPP_PAGE_P + 0x800;      /* sub-page 16 */
    QTestState *qts = start_guest("kvm", NULL);
    uint8_t before[32], after[32];
    QDict *w, *rsp;

    guest_run_at(qts, SPP_CMD_WRMSR, 0x4b564d01, clock | 1);
    if (!qtest_readl(qts, clock)) {
        g_test_skip("KVM wrote no kvmclock area (no kvmclock on this "
                    "vCPU model?)");
        qtest_quit(qts);
        return;
    }
    /* Control: unprotected, each MSR write makes KVM write the area. */
    qtest_memread(qts, clock, before, sizeof(before));
    guest_run_at(qts, SPP_CMD_WRMSR, 0x4b564d01, clock | 1);
    qtest_memread(qts, clock, after, sizeof(after));
    g_assert(memcmp(before, after, sizeof(after)));

    /* Any request that protects memory reads the areas back. */
    set_subpage(qts, SPP_PAGE_Q >> 12, 1, 0);
    w = find_writer(qts, "kvmclock", NULL);
    g_assert(w);
    g_assert_cmpstr(qdict_get_str(w, "kind"), ==, "kvm-pv");
    g_assert_cmpuint(get_u(w, "gpa"), ==, clock);
    g_assert_cmpuint(get_u(w, "size"), ==, 32);
    g_assert_cmpint(qdict_get_int(w, "cpu-index"), ==, 0);
    g_assert(!qdict_get_bool(w, "all-ram"));
    g_assert(!qdict_get_bool(w, "reaches-protected"));
    qobject_unref(w);

    /* Sub-page 0 only: the clock's own sub-page stays writable. */
    rsp = qtest_qmp(qts, "{'execute': 'set-subpage', 'arguments': "
                    "{'base_gfn': %d, 'npages': 1, 'wp_map': 4294967294}}",
                    SPP_PAGE_P >> 12);
    expect_error(qts, "kvmclock of cpu 0 at 0x100800", rsp);
    g_assert_cmphex(get_vector(qts, SPP_PAGE_P >> 12), ==, 0xffffffff);

    qtest_qmp_assert_success(qts, "{'execute': 'set-spp-policy', "
                             "'arguments': {'policy': 'block', "
                             "'unenforced': 'allow'}}");
    set_subpage(qts, SPP_PAGE_P >> 12, 1, 0xfffffffe);
    w = find_writer(qts, "kvmclock", NULL);
    g_assert(qdict_get_bool(w, "reaches-protected"));
    qobject_unref(w);
    g_assert_cmpint(last_writers_event(qts), >=, 1);

    /* A new MSR write makes KVM write the area again: does it land? */
    qtest_memread(qts, clock, before, sizeof(before));
    guest_run_at(qts, SPP_CMD_WRMSR, 0x4b564d01, clock | 1);
    g_usleep(100 * 1000);
    qtest_memread(qts, clock, after, sizeof(after));
    g_test_message("kvmclock in a writable sub-page of a protected page: "
                   "KVM's update %s", memcmp(before, after, sizeof(after)) ?
                   "landed" : "did not land");
    /* Whatever KVM did, the protected sub-page 0 holds what it held. */
    g_assert_cmpuint(qtest_readq(qts, SPP_PAGE_P), ==, 0);

    /* In a protected sub-page: again, only recorded. */
    set_subpage(qts, SPP_PAGE_P >> 12, 1, 0);
    qtest_memread(qts, clock, before, sizeof(before));
    guest_run_at(qts, SPP_CMD_WRMSR, 0x4b564d01, clock | 1);
    g_usleep(100 * 1000);
    qtest_memread(qts, clock, after, sizeof(after));
    g_test_message("kvmclock in a protected sub-page: KVM's update %s",
                   memcmp(before, after, sizeof(after)) ?
                   "landed (KVM bypasses the read-only slot)" :
                   "did not land");
    qtest_quit(qts);
}

#ifdef CONFIG_LINUX
/* Bring host interface @ifname up and send it one frame of @len bytes. */
static void tap_send_frame(const char *ifname, uint8_t fill, size_t len)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int p = socket(AF_PACKET, SOCK_RAW, 0);
    struct ifreq ifr = { 0 };
    struct sockaddr_ll sll = { 0 };
    uint8_t frame[256];

    g_assert(s >= 0 && p >= 0 && len <= sizeof(frame));
    pstrcpy(ifr.ifr_name, sizeof(ifr.ifr_name), ifname);
    g_assert(ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
    ifr.ifr_flags |= IFF_UP;
    g_assert(ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = if_nametoindex(ifname);
    sll.sll_halen = 6;
    memset(sll.sll_addr, 0xff, 6);
    memset(frame, fill, len);
    memset(frame, 0xff, 6);                         /* broadcast */
    frame[12] = 0x88;                               /* local experimental */
    frame[13] = 0xb5;                               /* ethertype */
    g_assert(sendto(p, frame, len, 0, (struct sockaddr *)&sll,
                    sizeof(sll)) == len);
    close(p);
    close(s);
}

#define NET_RX_BUF 0x400000

/*
 * The same NIC without vhost is QEMU's own virtio-net, whose receive
 * path is judged: a frame received into a buffer across a protected
 * sub-page lands around it and the protected bytes stay.
 */
/*
 * Work queued on a vCPU (run_on_cpu(): HMP "info registers", the
 * paravirtual-area poll) while it single-steps a store for the step
 * fallback is done: the step once took the kick for itself, and the
 * vCPU then stayed in the guest until its next exit while the monitor
 * waited.  The guest makes movq stores across into a protected page
 * (each one a step) and then spins without exits; every monitor call
 * must come back.  (The stores write zeros over the protected zeros:
 * the step, which judges what changed, counts no violation there.)
 */
static void test_kvm_step_kick(void)
{
    QTestState *qts = start_guest("kvm", "-spp event-rate=1");
    uint32_t done = qtest_readl(qts, SPP_MB_DONE);
    gint64 deadline = g_get_monotonic_time() + 6 * GUEST_TIMEOUT_US;
    unsigned calls = 0, i;

    set_subpage(qts, GFN_P, 1, 0xffff0000);
    set_subpage(qts, GFN_P + 1, 1, 0xfffffffe);
    qtest_writel(qts, SPP_MB_KIND, SPP_KIND_MOVQ_XMM);
    qtest_writel(qts, SPP_MB_ADDR, SPP_PAGE_P + 0xffc);
    qtest_writel(qts, SPP_MB_ARG, 3000);
    qtest_writel(qts, SPP_MB_CMD, SPP_CMD_KIND_LOOP);
    do {
        g_free(qtest_hmp(qts, "info registers"));
        calls++;
        g_assert(g_get_monotonic_time() < deadline);
    } while (qtest_readl(qts, SPP_MB_DONE) == done);
    /* the guest spins in its command loop now, without an exit */
    for (i = 0; i < 20; i++) {
        g_free(qtest_hmp(qts, "info registers"));
    }
    g_test_message("%u monitor calls during the stores", calls);
    /* the stores ran: the writable half of the last one (ARG counts down) */
    g_assert_cmpuint(qtest_readl(qts, SPP_PAGE_P + 0xffc), ==, 1);
    qtest_quit(qts);
}

static void test_kvm_tap_rx(void)
{
    QTestState *qts;
    VirtioDev v;
    uint8_t buf[256];
    uint32_t head, len = 0;

    if (access("/dev/net/tun", R_OK | W_OK) || geteuid()) {
        g_test_skip("needs root and /dev/net/tun (the KVM lab has them)");
        return;
    }
    /* The tiny guest idles; the test drives the NIC as its driver. */
    qts = start_guest("kvm", "-netdev tap,id=hn0,vhost=off,script=no,"
                      "downscript=no,ifname=spptap0 -device virtio-net-pci,"
                      "netdev=hn0,addr=05.0,disable-modern=on,romfile=");
    virtio_dev_start(&v, qts, 5);                   /* queue 0: receive */
    set_subpage(qts, NET_RX_BUF >> 12, 1, 0xfffffffd);  /* sub-page 1 */
    head = qvirtqueue_add(qts, v.vq, NET_RX_BUF + 64, 256, true, false);
    qvirtqueue_kick(qts, &v.dev->vdev, v.vq, head);

    tap_send_frame("spptap0", 0xab, 200);
    qvirtio_wait_used_elem(qts, &v.dev->vdev, v.vq, head, &len,
                           GUEST_TIMEOUT_US);
    g_assert_cmpuint(len, >, 128);
    qtest_memread(qts, NET_RX_BUF + 64, buf, sizeof(buf));
    g_assert_false(all_zero(buf, 64));              /* bytes 64..127 */
    g_assert(all_zero(buf + 64, MIN(len, 192) - 64)); /* 128.. protected */
    expect_device_events(qts, 1, NULL);
    g_assert_cmpuint(spp_counter(qts, "violations-device"), >=, 1);
    virtio_dev_stop(&v);
    qtest_quit(qts);
}
#endif

static void expect_start_failure(const char *args, const char *msg)
{
    const char *qemu = g_getenv("QTEST_QEMU_BINARY");
    g_autofree char *cmd = NULL, *err = NULL;
    g_auto(GStrv) argv = NULL;
    int status;

    g_assert(qemu);
    cmd = g_strdup_printf("%s -machine none -display none -nodefaults -S %s",
                          qemu, args);
    g_assert(g_shell_parse_argv(cmd, NULL, &argv, NULL));
    g_assert(g_spawn_sync(NULL, argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                          NULL, NULL, &err, &status, NULL));
    g_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    if (!strstr(err, msg)) {
        g_error("'%s': stderr '%s' does not mention '%s'", args, err, msg);
    }
}

static void test_cmdline_errors(void)
{
    expect_start_failure("-spp policy=explode", "invalid policy 'explode'");
    expect_start_failure("-spp explode", "invalid policy 'explode'");
    expect_start_failure("-spp event-rate=many", "event-rate");
    expect_start_failure("-spp event-rate=4294967296",
                         "event-rate must be at most");
    expect_start_failure("-spp color=red", "color");
    expect_start_failure("-spp unenforced=ignore",
                         "invalid unenforced 'ignore'");
}

/* -accel kvm,spp=auto on a kernel without SPP: the emulated backend. */
static void test_kvm_backend_auto(void)
{
    QTestState *qts = qtest_init("-machine q35 -m 64 "
                                 "-accel kvm,spp=auto");
    QDict *info = query_spp(qts);

    g_assert_cmpstr(qdict_get_str(info, "backend"), ==, "emulated");
    g_test_message("backend-reason: %s",
                   qdict_get_str(info, "backend-reason"));
    g_assert(strstr(qdict_get_str(info, "backend-reason"),
                    "no SPP interface"));
    qobject_unref(info);
    qtest_quit(qts);
}

/* The kernel's version as major * 1000 + minor (6.12: 6012). */
static int kernel_version(void)
{
    struct utsname u;
    int major = 0, minor = 0;

    g_assert(uname(&u) == 0);
    g_assert(sscanf(u.release, "%d.%d", &major, &minor) == 2);
    return major * 1000 + minor;
}

/*
 * From Linux 6.12 QEMU turns KVM_X86_QUIRK_SLOT_ZAP_ALL off (a memslot
 * deletion zaps only that slot), unless x-spp-zap-all=on; before, the
 * kernel cannot, and nothing is said.
 */
static void test_kvm_zap_quirk(void)
{
    bool can = kernel_version() >= 6012;
    const char *said = "KVM_X86_QUIRK_SLOT_ZAP_ALL off";
    QTestState *qts = qtest_init("-machine q35 -m 64 -accel kvm");
    QDict *info = query_spp(qts);

    g_test_message("kernel %s the quirk; backend-reason: %s",
                   can ? "offers" : "does not offer",
                   qdict_get_str(info, "backend-reason"));
    g_assert(!strstr(qdict_get_str(info, "backend-reason"), said) == !can);
    qobject_unref(info);
    qtest_quit(qts);

    qts = qtest_init("-machine q35 -m 64 -accel kvm,x-spp-zap-all=on");
    info = query_spp(qts);
    g_assert(!strstr(qdict_get_str(info, "backend-reason"), said));
    qobject_unref(info);
    qtest_quit(qts);
}

/*
 * Under KVM each run of protected pages is a read-only memslot: scattered
 * pages trap no neighbour, and a request that could pass KVM's memslot
 * limit (32764 on current kernels) is refused before anything changes.
 */
#define KVM_SCATTER_OK      1000
#define KVM_SCATTER_TOO_MANY 20000

static void test_kvm_memslots(void)
{
    QTestState *qts = qtest_init("-machine q35 -m 1G -accel kvm");
    QList *gfns = qlist_new();
    QDict *rsp;
    unsigned i;

    for (i = 0; i < KVM_SCATTER_TOO_MANY; i++) {
        qlist_append_int(gfns, SCATTER_BASE + 2 * i);
    }
    rsp = qtest_qmp(qts, "{'execute': 'set-subpages', 'arguments': "
                    "{'gfns': %p, 'wp-map': 0}}", gfns);
    expect_error(qts, "KVM_CAP_NR_MEMSLOTS", rsp);
    g_assert_cmpuint(spp_counter(qts, "protected-pages"), ==, 0);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, 0);

    gfns = qlist_new();
    for (i = 0; i < KVM_SCATTER_OK; i++) {
        qlist_append_int(gfns, SCATTER_BASE + 2 * i);
    }
    qtest_qmp_assert_success(qts, "{'execute': 'set-subpages', 'arguments': "
                             "{'gfns': %p, 'wp-map': 0}}", gfns);
    g_assert_cmpuint(spp_counter(qts, "regions"), ==, KVM_SCATTER_OK);
    g_assert_cmpuint(spp_counter(qts, "trapped-unprotected-pages"), ==, 0);
    /* a protected page blocks, the page between two of them does not */
    qtest_writeb(qts, SCATTER_BASE << 12, 0x11);
    qtest_writeb(qts, (SCATTER_BASE + 1) << 12, 0x12);
    g_assert_cmphex(qtest_readb(qts, SCATTER_BASE << 12), ==, 0);
    g_assert_cmphex(qtest_readb(qts, (SCATTER_BASE + 1) << 12), ==, 0x12);
    g_ptr_array_free(take_events(qts), true);
    qtest_quit(qts);
}

/*
 * Live migration converges while protections change: protecting and
 * releasing a page re-creates the memslots around it, which must not
 * make KVM report all their pages dirty again (KVM_DIRTY_LOG_INITIALLY_SET)
 * each round.  The guest is idle; the bandwidth is limited, so the RAM
 * takes rounds; the host toggles a protection every 20 ms throughout.
 */
static void test_kvm_migrate_converges(void)
{
    g_autofree char *file = g_build_filename(g_get_tmp_dir(),
                                             "spp-test-conv-XXXXXX", NULL);
    g_autofree char *uri = NULL;
    QTestState *qts = start_guest("kvm", "-spp event-rate=0");
    gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    const char *status = NULL;
    QDict *rsp = NULL, *ram;
    unsigned toggles = 0;
    int fd;

    fd = g_mkstemp(file);
    g_assert(fd >= 0);
    close(fd);
    uri = g_strdup_printf("file:%s", file);
    qtest_qmp_assert_success(qts, "{'execute': 'migrate-set-parameters', "
                             "'arguments': {'max-bandwidth': 33554432, "
                             "'downtime-limit': 100}}");
    qtest_qmp_assert_success(qts, "{'execute': 'migrate', 'arguments': "
                             "{'uri': %s}}", uri);
    for (;;) {
        set_subpage(qts, GFN_P, 1, toggles++ % 2 ? WP_ALL : 0xfffffffe);
        g_usleep(20 * 1000);
        qobject_unref(rsp);
        rsp = qtest_qmp_assert_success_ref(qts,
                                           "{'execute': 'query-migrate'}");
        status = qdict_get_try_str(rsp, "status");
        g_assert(!status || strcmp(status, "failed"));
        if ((status && !strcmp(status, "completed")) ||
            g_get_monotonic_time() > deadline) {
            break;
        }
    }
    ram = qdict_get_qdict(rsp, "ram");
    g_test_message("migration %s after %u protection changes: %" PRIu64
                   " syncs, %" PRIu64 " pages sent, %" PRIu64
                   " of them zero (RAM: %d pages)", status, toggles,
                   get_u(ram, "dirty-sync-count"),
                   get_u(ram, "normal") + get_u(ram, "duplicate"),
                   get_u(ram, "duplicate"), 64 * 256);
    g_assert_cmpstr(status, ==, "completed");
    qobject_unref(rsp);
    qtest_quit(qts);
    unlink(file);
}

/* -accel kvm,spp=hardware without SPP refuses to start. */
static void test_kvm_backend_hardware(void)
{
    expect_start_failure("-machine q35 -accel kvm,spp=hardware",
                         "-accel kvm,spp=hardware: this kernel has no SPP");
}

/* Does QEMU start (and quit) with "-accel kvm -cpu @model"? */
static bool kvm_cpu_starts(const char *model, char **err)
{
    const char *qemu = g_getenv("QTEST_QEMU_BINARY");
    g_autofree char *cmd = g_strdup_printf(
        "printf '%%s\\n' '{\"execute\": \"qmp_capabilities\"}' "
        "'{\"execute\": \"quit\"}' | %s -machine q35 -m 64 -accel kvm "
        "-cpu %s -display none -nodefaults -S -qmp stdio", qemu, model);
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    int status;

    g_free(*err);
    *err = NULL;
    g_assert(g_spawn_sync(NULL, (char **)argv, NULL,
                          G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, err,
                          &status, NULL));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * Run the store matrix with nothing protected: it uses the SSE moves
 * the tests need.  A KVM that emulates guest code may not run them
 * (KVM internal error).  False, with the reason in @why, if the guest
 * stopped or did not finish.
 */
static bool kvm_guest_runs(char **why)
{
    QTestState *qts = qtest_initf("-machine q35 -m 64 -cpu %s -accel kvm "
                                  "-bios %s", kvm_cpu, guest_bin);
    gint64 deadline = g_get_monotonic_time() + GUEST_TIMEOUT_US;
    uint32_t done = 0;
    bool ready = false, ok = false;

    while (g_get_monotonic_time() < deadline) {
        QDict *rsp = qtest_qmp_assert_success_ref(qts,
                                             "{'execute': 'query-status'}");
        g_autofree char *status = g_strdup(qdict_get_str(rsp, "status"));

        qobject_unref(rsp);
        if (strcmp(status, "running") != 0) {
            *why = g_strdup_printf("the test guest stopped (%s)%s", status,
                                   ready ? " in the store matrix" : "");
            break;
        }
        if (!ready && qtest_readl(qts, SPP_MB_READY) == SPP_MB_READY_MAGIC) {
            ready = true;
            done = qtest_readl(qts, SPP_MB_DONE);
            qtest_writel(qts, SPP_MB_ARG, 0);
            qtest_writel(qts, SPP_MB_CMD, SPP_CMD_MATRIX);
        } else if (ready && qtest_readl(qts, SPP_MB_DONE) != done) {
            ok = true;
            break;
        }
        g_usleep(10 * 1000);
    }
    if (!ok && !*why) {
        *why = g_strdup("the test guest did not finish in time");
    }
    qtest_quit(qts);
    return ok;
}

/*
 * Can the KVM guest tests run here?  Chooses the CPU model.  With
 * SPP_TEST_KVM=yes (make check, where it ran the probe that says this
 * KVM is one to test) a KVM that cannot run them fails the test
 * program; with SPP_TEST_KVM=no they are skipped (make check runs them
 * elsewhere, in the nested-KVM lab).  Says why they do not run.
 */
static bool kvm_probe(void)
{
    static const char *const models[] = {
        "max", "max,-arch-capabilities", "qemu64"
    };
    const char *want = g_getenv("SPP_TEST_KVM");
    g_autofree char *err = NULL, *why = NULL;
    int fd;
    size_t i;

    if (!g_strcmp0(want, "no")) {
        g_test_message("SPP_TEST_KVM=no: skipping the KVM tests (make check "
                       "runs them where a hardware or nested KVM is)");
        return false;
    }
    fd = open("/dev/kvm", O_RDWR);
    if (fd >= 0) {
        close(fd);
    }
    if (fd < 0) {
        why = g_strdup_printf("/dev/kvm: %s", g_strerror(errno));
    } else if (!qtest_has_accel("kvm")) {
        why = g_strdup("this QEMU has no KVM");
    } else {
        for (i = 0; i < ARRAY_SIZE(models); i++) {
            if (kvm_cpu_starts(models[i], &err)) {
                kvm_cpu = models[i];
                break;
            }
            g_test_message("KVM: -cpu %s does not start: %s", models[i],
                           g_strstrip(err));
        }
        if (i == ARRAY_SIZE(models)) {
            why = g_strdup("no CPU model starts under this KVM");
        } else if (kvm_guest_runs(&why)) {
            g_test_message("KVM tests with -cpu %s", kvm_cpu);
            return true;
        }
    }
    if (!g_strcmp0(want, "yes")) {
        g_error("SPP_TEST_KVM=yes but the KVM tests cannot run: %s", why);
    }
    g_test_message("skipping the KVM guest tests: %s", why);
    return false;
}

static void add_guest_tests(const char *accel)
{
    static const unsigned ncpus[] = { 2, 4 };
    static const struct {
        const char *name;
        GTestDataFunc fn;
    } smp_tests[] = {
        { "atomics", test_guest_smp_atomics },
        { "churn", test_guest_smp_churn },
        { "hammer", test_guest_smp_hammer },
        { "concurrent", test_guest_smp_concurrent },
        { "pause", test_guest_smp_pause },
        { "step", test_guest_smp_step },
    };
    size_t i, j;
    g_autofree char *m = g_strdup_printf("/spp/%s/guest-matrix", accel);
    g_autofree char *mc = g_strdup_printf("/spp/%s/guest-matrix-count",
                                          accel);
    g_autofree char *h = g_strdup_printf("/spp/%s/guest-hammer", accel);
    g_autofree char *p = g_strdup_printf("/spp/%s/guest-pause", accel);
    g_autofree char *mig = g_strdup_printf("/spp/%s/guest-migrate", accel);
    g_autofree char *con = g_strdup_printf("/spp/%s/guest-concurrent",
                                           accel);
    g_autofree char *ptab = g_strdup_printf("/spp/%s/guest-page-table",
                                            accel);
    g_autofree char *wr = g_strdup_printf("/spp/%s/guest-writer", accel);
    g_autofree char *wrk = g_strdup_printf("/spp/%s/guest-writer-kinds",
                                           accel);
    g_autofree char *wrr = g_strdup_printf("/spp/%s/guest-writer-real-mode",
                                           accel);
    g_autofree char *smc = g_strdup_printf("/spp/%s/guest-smc", accel);
    g_autofree char *rb = g_strdup_printf("/spp/%s/guest-rebound", accel);

    qtest_add_data_func(m, accel, test_guest_matrix);
    qtest_add_data_func(mc, accel, test_guest_matrix_count);
    qtest_add_data_func(h, accel, test_guest_hammer);
    qtest_add_data_func(p, accel, test_guest_pause);
    qtest_add_data_func(mig, accel, test_guest_migrate);
    qtest_add_data_func(con, accel, test_guest_concurrent);
    qtest_add_data_func(ptab, accel, test_guest_page_table);
    qtest_add_data_func(wr, accel, test_guest_writer);
    qtest_add_data_func(wrk, accel, test_guest_writer_kinds);
    qtest_add_data_func(wrr, accel, test_guest_writer_real_mode);
    qtest_add_data_func(smc, accel, test_guest_smc);
    qtest_add_data_func(rb, accel, test_guest_rebound);
    for (i = 0; i < ARRAY_SIZE(ncpus); i++) {
        for (j = 0; j < ARRAY_SIZE(smp_tests); j++) {
            SmpCase *c = g_new(SmpCase, 1);
            g_autofree char *path = g_strdup_printf("/spp/%s/guest-smp%u-%s",
                                                    accel, ncpus[i],
                                                    smp_tests[j].name);

            *c = (SmpCase) { .accel = accel, .ncpus = ncpus[i] };
            qtest_add_data_func_full(path, c, smp_tests[j].fn, g_free);
        }
    }
}

int main(int argc, char **argv)
{
    int fd, ret;

    g_test_init(&argc, &argv, NULL);

    guest_bin = g_build_filename(g_get_tmp_dir(), "spp-guest-XXXXXX", NULL);
    fd = g_mkstemp(guest_bin);
    g_assert(fd >= 0);
    g_assert(write(fd, spp_guest_bin, sizeof(spp_guest_bin)) ==
             sizeof(spp_guest_bin));
    close(fd);

    qtest_add_func("/spp/qmp/basic", test_qmp_basic);
    qtest_add_func("/spp/qmp/errors", test_qmp_errors);
    qtest_add_func("/spp/hmp", test_hmp);
    qtest_add_func("/spp/policies", test_policies);
    qtest_add_func("/spp/rate-limit", test_rate_limit);
    qtest_add_func("/spp/step", test_step);
    qtest_add_func("/spp/scattered", test_scattered);
    qtest_add_func("/spp/reset", test_reset);
    qtest_add_func("/spp/cmdline-errors", test_cmdline_errors);
    qtest_add_func("/spp/snapshot", test_snapshot);
    qtest_add_func("/spp/dimm-unplug", test_dimm_unplug);
    qtest_add_func("/spp/migrate-no-section", test_migrate_no_section);
    qtest_add_func("/spp/dma/edu", test_dma_edu);
    qtest_add_func("/spp/dma/virtio-rng-map", test_dma_map_virtio_rng);
    qtest_add_func("/spp/dma/viommu-virtio-rng", test_dma_viommu_virtio_rng);
    qtest_add_func("/spp/iothread-stop", test_iothread_stop);
    qtest_add_func("/spp/writers/hotplug", test_writers_hotplug);
    if (qtest_has_accel("tcg")) {
        add_guest_tests("tcg");
    } else {
        g_test_message("TCG is not built in: skipping the TCG guest tests");
    }
    if (kvm_probe()) {
        add_guest_tests("kvm");
        if (qtest_has_accel("tcg")) {
            qtest_add_func("/spp/differential", test_guest_differential);
        }
        qtest_add_func("/spp/kvm/backend-auto", test_kvm_backend_auto);
        qtest_add_func("/spp/kvm/zap-quirk", test_kvm_zap_quirk);
        qtest_add_func("/spp/kvm/memslots", test_kvm_memslots);
        qtest_add_func("/spp/kvm/migrate-converges",
                       test_kvm_migrate_converges);
        qtest_add_func("/spp/kvm/backend-hardware",
                       test_kvm_backend_hardware);
        qtest_add_func("/spp/kvm/vhost-net", test_kvm_vhost_net);
        qtest_add_func("/spp/kvm/pv-kvmclock", test_kvm_pv_kvmclock);
#ifdef CONFIG_LINUX
        qtest_add_func("/spp/kvm/tap-rx", test_kvm_tap_rx);
        qtest_add_func("/spp/kvm/step-kick", test_kvm_step_kick);
#endif
    }

    ret = g_test_run();
    unlink(guest_bin);
    g_free(guest_bin);
    return ret;
}
