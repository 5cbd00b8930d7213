/*
 * Sub-page write protection (SPP): writers SPP cannot judge
 *
 * Some writers change guest RAM without passing through QEMU's memory
 * core, so SPP never sees their writes: vhost, vhost-user and vhost-vdpa
 * back ends (the host kernel or another process writes from the memory
 * table QEMU gave it), VFIO devices (DMA through the host IOMMU), and
 * under KVM the paravirtual areas KVM writes itself (kvmclock, steal
 * time...), which stop working when their page becomes a read-only
 * memory slot.  Like a migration blocker, each such writer makes a
 * protection request fail with an error that names it, unless the user
 * chose "-spp unenforced=allow"; then it is listed by query-spp and
 * SPP_WRITERS.
 *
 * The list is built from what QEMU itself knows, never from a table of
 * our own that could go stale: the devices in the QOM tree, the NICs and
 * their netdevs, the vhost memory listeners of the system address space,
 * and the vCPUs' paravirtual MSRs, read back on their threads at each
 * request that protects memory and about once a second while memory is
 * protected (the guest can move an area without QEMU seeing it).
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qapi/error.h"
#include "qapi/qapi-events-spp.h"
#include "qapi/qapi-visit-spp.h"
#include "qobject/qdict.h"
#include "exec/address-spaces.h"
#include "hw/core/cpu.h"
#include "hw/qdev-core.h"
#include "hw/virtio/vhost.h"
#include "hw/virtio/virtio.h"
#include "net/net.h"
#include "net/vhost_net.h"
#include "system/kvm.h"
#include "system/system.h"
#include "system/spp-backend.h"
#include "trace.h"

/* How often the vCPUs' paravirtual areas are read while pages are protected. */
#define SPP_PV_PERIOD_MS 1000

typedef struct SppPvEntry {
    int cpu_index;
    SppPvArea area;
} SppPvEntry;

typedef struct SppWriters {
    SppUnenforced unenforced;
    SppPvReadFn *pv_read;
    GArray *pv;                  /* of SppPvEntry, as last read */
    QEMUTimer *pv_timer;
    QEMUBH *update_bh;
    char *reported;              /* the list SPP_WRITERS last sent */
    DeviceListener listener;
} SppWriters;

static SppWriters writers = {
    .unenforced = SPP_UNENFORCED_REFUSE,
};

SppUnenforced spp_get_unenforced(void)
{
    return writers.unenforced;
}

void spp_set_unenforced(SppUnenforced unenforced)
{
    writers.unenforced = unenforced;
}

void spp_writers_set_pv_reader(SppPvReadFn *fn)
{
    writers.pv_read = fn;
}

/* Building the list */

typedef struct SppCollect {
    GPtrArray *list;             /* of SppWriter */
    GPtrArray *owners;           /* devices listed, for the vhost scan */
    GPtrArray *hdevs;            /* vhost devices accounted for */
} SppCollect;

static SppWriter *spp_writer_add(SppCollect *c, SppWriterKind kind,
                                 char *id, char *description, char *remedy)
{
    SppWriter *w = g_new0(SppWriter, 1);

    w->kind = kind;
    w->id = id;
    w->description = description;
    w->remedy = remedy;
    w->all_ram = true;
    g_ptr_array_add(c->list, w);
    return w;
}

static char *spp_device_name(DeviceState *dev)
{
    return dev->id ? g_strdup(dev->id)
                   : object_get_canonical_path(OBJECT(dev));
}

/* vhost- and vfio- devices, by their type or one of its parents. */
static bool spp_class_writer(ObjectClass *oc, SppWriterKind *kind)
{
    for (; oc; oc = object_class_get_parent(oc)) {
        const char *name = object_class_get_name(oc);

        if (g_str_has_prefix(name, "vhost-")) {
            *kind = SPP_WRITER_KIND_VHOST;
            return true;
        }
        if (g_str_has_prefix(name, "vfio-")) {
            *kind = SPP_WRITER_KIND_VFIO;
            return true;
        }
    }
    return false;
}

static int spp_collect_device(Object *obj, void *opaque)
{
    SppCollect *c = opaque;
    DeviceState *dev = (DeviceState *)object_dynamic_cast(obj, TYPE_DEVICE);
    SppWriterKind kind;

    if (dev && dev->realized && spp_class_writer(object_get_class(obj),
                                                 &kind)) {
        const char *type = object_get_typename(obj);

        if (kind == SPP_WRITER_KIND_VFIO) {
            spp_writer_add(c, kind, spp_device_name(dev),
                g_strdup_printf("%s device '%s': the assigned device writes "
                                "guest RAM by DMA through the host IOMMU",
                                type, dev->id ?: type),
                g_strdup_printf("unplug '%s' before protecting",
                                dev->id ?: type));
        } else {
            spp_writer_add(c, kind, spp_device_name(dev),
                g_strdup_printf("%s device '%s': its vhost back end writes "
                                "guest RAM directly", type, dev->id ?: type),
                g_strdup_printf("use the device's emulated counterpart "
                                "instead of '%s'", type));
        }
        g_ptr_array_add(c->owners, obj);
        return 0;               /* its children are part of it */
    }
    object_child_foreach(obj, spp_collect_device, c);
    return 0;
}

static const char *spp_netdev_kind(NetClientState *peer, const char **how)
{
    switch (peer->info->type) {
    case NET_CLIENT_DRIVER_TAP:
        *how = "the host kernel (vhost-net) writes received packets";
        return "tap";
    case NET_CLIENT_DRIVER_VHOST_USER:
        *how = "the vhost-user process writes received packets";
        return "vhost-user";
    case NET_CLIENT_DRIVER_VHOST_VDPA:
        *how = "the vDPA device writes received packets by DMA";
        return "vhost-vdpa";
    default:
        *how = "a vhost back end writes received packets";
        return NetClientDriver_str(peer->info->type);
    }
}

static void spp_collect_nic(NICState *nic, void *opaque)
{
    SppCollect *c = opaque;
    NetClientState *nc = &nic->ncs[0];
    NetClientState *peer = nc->peer;
    VHostNetState *vn = peer ? get_vhost_net(peer) : NULL;
    const char *kind, *how;
    int i;

    if (!vn) {
        return;
    }
    kind = spp_netdev_kind(peer, &how);
    spp_writer_add(c, SPP_WRITER_KIND_VHOST, g_strdup(nc->name),
        g_strdup_printf("NIC '%s' on netdev '%s' (%s): %s into guest RAM",
                        nc->name, peer->name, kind, how),
        peer->info->type == NET_CLIENT_DRIVER_TAP ?
        g_strdup_printf("vhost=off on netdev '%s'", peer->name) :
        g_strdup_printf("a netdev without vhost for NIC '%s' (tap with "
                        "vhost=off, user...)", nc->name));
    for (i = 0; i < MAX(nic->conf->peers.queues, 1); i++) {
        peer = nic->ncs[i].peer;
        vn = peer ? get_vhost_net(peer) : NULL;
        if (vn) {
            g_ptr_array_add(c->hdevs, &vn->dev);
        }
    }
}

/* Netdevs without a NIC write nothing: their vhost devices do not count. */
static void spp_collect_idle_netdevs(SppCollect *c)
{
    NetClientState *ncs[MAX_QUEUE_NUM];
    int n = qemu_find_net_clients_except(NULL, ncs, NET_CLIENT_DRIVER_NIC,
                                         MAX_QUEUE_NUM);
    int i;

    for (i = 0; i < n; i++) {
        VHostNetState *vn = ncs[i]->peer ? NULL : get_vhost_net(ncs[i]);

        if (vn) {
            g_ptr_array_add(c->hdevs, &vn->dev);
        }
    }
}

static bool spp_owner_listed(SppCollect *c, Object *obj)
{
    for (; obj; obj = obj->parent) {
        if (g_ptr_array_find(c->owners, obj, NULL)) {
            return true;
        }
    }
    return false;
}

/*
 * Every vhost device listens to the system address space to keep its
 * memory table: one not accounted for above (a cryptodev, a device type
 * we do not know) is listed too.
 */
static void spp_collect_vhost_listeners(SppCollect *c)
{
    static const char *const backend[] = {
        [VHOST_BACKEND_TYPE_KERNEL] = "vhost (kernel)",
        [VHOST_BACKEND_TYPE_USER] = "vhost-user",
        [VHOST_BACKEND_TYPE_VDPA] = "vhost-vdpa",
    };
    MemoryListener *l;

    QTAILQ_FOREACH(l, &address_space_memory.listeners, link_as) {
        struct vhost_dev *hdev;
        const char *type = "vhost";
        char *id;

        if (!l->name || strcmp(l->name, "vhost")) {
            continue;
        }
        hdev = container_of(l, struct vhost_dev, memory_listener);
        if (g_ptr_array_find(c->hdevs, hdev, NULL) ||
            (hdev->vdev && spp_owner_listed(c, OBJECT(hdev->vdev)))) {
            continue;
        }
        if (hdev->vhost_ops &&
            hdev->vhost_ops->backend_type < ARRAY_SIZE(backend) &&
            backend[hdev->vhost_ops->backend_type]) {
            type = backend[hdev->vhost_ops->backend_type];
        }
        id = hdev->vdev ? spp_device_name(DEVICE(hdev->vdev))
                        : g_strdup("vhost");
        spp_writer_add(c, SPP_WRITER_KIND_VHOST, id,
            g_strdup_printf("a %s back end%s%s writes guest RAM directly",
                            type, hdev->vdev ? " of " : "",
                            hdev->vdev ? id : ""),
            g_strdup("remove the device or back end that uses vhost"));
    }
}

static bool spp_range_protected(uint64_t gpa, uint64_t size)
{
    uint64_t gfn;

    for (gfn = gpa >> SPP_PAGE_SHIFT;
         gfn <= (gpa + size - 1) >> SPP_PAGE_SHIFT; gfn++) {
        if (spp_get_vector(gfn) != SPP_WP_ALL) {
            return true;
        }
    }
    return false;
}

static void spp_collect_pv(SppCollect *c)
{
    guint i;

    for (i = 0; writers.pv && i < writers.pv->len; i++) {
        SppPvEntry *e = &g_array_index(writers.pv, SppPvEntry, i);
        SppWriter *w;

        w = spp_writer_add(c, SPP_WRITER_KIND_KVM_PV,
            g_strdup(e->area.feature),
            g_strdup_printf("%s of cpu %d at 0x%" PRIx64 " (%" PRIu64
                            " bytes): %s", e->area.feature, e->cpu_index,
                            e->area.gpa, e->area.size, e->area.what),
            g_strdup(e->area.remedy));
        w->all_ram = false;
        w->has_cpu_index = true;
        w->cpu_index = e->cpu_index;
        w->has_gpa = true;
        w->gpa = e->area.gpa;
        w->has_size = true;
        w->size = e->area.size;
    }
}

static GPtrArray *spp_collect(void)
{
    SppCollect c = {
        .list = g_ptr_array_new(),
        .owners = g_ptr_array_new(),
        .hdevs = g_ptr_array_new(),
    };
    guint i;

    spp_collect_device(qdev_get_machine(), &c);
    qemu_foreach_nic(spp_collect_nic, &c);
    spp_collect_idle_netdevs(&c);
    spp_collect_vhost_listeners(&c);
    spp_collect_pv(&c);
    for (i = 0; i < c.list->len; i++) {
        SppWriter *w = g_ptr_array_index(c.list, i);

        w->reaches_protected = w->all_ram ? spp_protected_pages() != 0
                                  : spp_range_protected(w->gpa, w->size);
    }
    g_ptr_array_free(c.owners, true);
    g_ptr_array_free(c.hdevs, true);
    return c.list;
}

static SppWriterList *spp_to_list(GPtrArray *arr)
{
    SppWriterList *head = NULL, **tail = &head;
    guint i;

    for (i = 0; i < arr->len; i++) {
        QAPI_LIST_APPEND(tail, (SppWriter *)g_ptr_array_index(arr, i));
    }
    g_ptr_array_free(arr, true);
    return head;
}

SppWriterList *spp_writers_list(void)
{
    return spp_to_list(spp_collect());
}

/* The paravirtual areas */

static void spp_pv_read_cpu(CPUState *cpu, run_on_cpu_data data)
{
    SppPvArea areas[SPP_PV_MAX_AREAS];
    GArray *pv = data.host_ptr;
    unsigned n = writers.pv_read(cpu, areas), i;

    trace_spp_writers_pv_read(cpu->cpu_index, n);
    for (i = 0; i < n; i++) {
        SppPvEntry e = { .cpu_index = cpu->cpu_index, .area = areas[i] };

        g_array_append_val(pv, e);
    }
}

/* Read every vCPU's areas on its thread (which may drop the BQL). */
static void spp_pv_read(void)
{
    GArray *pv;
    CPUState *cpu;

    if (!writers.pv_read || !kvm_enabled()) {
        return;
    }
    pv = g_array_new(false, false, sizeof(SppPvEntry));
    CPU_FOREACH(cpu) {
        run_on_cpu(cpu, spp_pv_read_cpu, RUN_ON_CPU_HOST_PTR(pv));
    }
    if (writers.pv) {
        g_array_unref(writers.pv);
    }
    writers.pv = pv;
}

static void spp_pv_tick(void *opaque)
{
    spp_pv_read();
    spp_writers_update();
}

/* Checking and reporting */

/* Whether a range protects something in [@gpa, @gpa + @size). */
static bool spp_ranges_protect(const SppRange *r, size_t n, uint64_t gpa,
                               uint64_t size)
{
    uint64_t first = gpa >> SPP_PAGE_SHIFT;
    uint64_t last = (gpa + size - 1) >> SPP_PAGE_SHIFT;
    size_t j;

    for (j = 0; j < n; j++) {
        if (r[j].wp != SPP_WP_ALL && r[j].gfn <= last &&
            first <= r[j].gfn + r[j].npages - 1) {
            return true;
        }
    }
    return false;
}

bool spp_writers_check(const SppRange *r, size_t n, Error **errp)
{
    g_autoptr(GPtrArray) list = NULL;
    guint i;

    if (!spp_ranges_protect(r, n, 0, UINT64_MAX)) {
        return true;                 /* only removes protection */
    }
    spp_pv_read();
    list = spp_collect();
    g_ptr_array_set_free_func(list, (GDestroyNotify)qapi_free_SppWriter);
    if (writers.unenforced != SPP_UNENFORCED_REFUSE) {
        return true;
    }
    for (i = 0; i < list->len; i++) {
        SppWriter *w = g_ptr_array_index(list, i);

        if (w->all_ram || spp_ranges_protect(r, n, w->gpa, w->size)) {
            trace_spp_writers_refused(w->id, r[0].npages);
            error_setg(errp, "%s, which SPP cannot check: to protect this "
                       "memory, avoid it (%s), or accept that it is not "
                       "enforced with -spp unenforced=allow",
                       w->description, w->remedy);
            return false;
        }
    }
    return true;
}

static char *spp_signature(SppWriterList *list)
{
    GString *s = g_string_new(NULL);

    for (; list; list = list->next) {
        SppWriter *w = list->value;

        g_string_append_printf(s, "%d/%s/%" PRId64 "/%" PRIx64 "/%d;",
                               w->kind, w->id, w->cpu_index, w->gpa,
                               w->reaches_protected);
    }
    return g_string_free(s, false);
}

void spp_writers_update(void)
{
    g_autoptr(SppWriterList) list = spp_writers_list();
    g_autofree char *sig = spp_signature(list);
    unsigned n = 0;
    SppWriterList *l;

    if (writers.pv_timer) {
        if (spp_protected_pages() && writers.pv_read && kvm_enabled()) {
            if (!timer_pending(writers.pv_timer)) {
                timer_mod(writers.pv_timer,
                          qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                          SPP_PV_PERIOD_MS);
            }
        } else {
            timer_del(writers.pv_timer);
        }
    }
    if (!g_strcmp0(sig, writers.reported) ||
        (!writers.reported && !*sig)) {
        return;
    }
    for (l = list; l; l = l->next) {
        SppWriter *w = l->value;

        n++;
        if (w->reaches_protected && w->kind == SPP_WRITER_KIND_KVM_PV &&
            writers.unenforced == SPP_UNENFORCED_REFUSE) {
            /* The guest moved it there: nothing to refuse, only to say. */
            warn_report("spp: %s, on a protected page: KVM cannot update "
                        "it there", w->description);
        }
    }
    trace_spp_writers_changed(n);
    g_free(writers.reported);
    writers.reported = g_steal_pointer(&sig);
    qapi_event_send_spp_writers(list);
}

/* Devices come and go */

static void spp_writers_update_bh(void *opaque)
{
    spp_writers_update();
}

static void spp_device_changed(DeviceListener *listener, DeviceState *dev)
{
    /* Not now: an unplugged device is still in the tree. */
    qemu_bh_schedule(writers.update_bh);
}

static bool spp_hide_device(DeviceListener *listener, const QDict *opts,
                            bool from_json, Error **errp)
{
    const char *driver = qdict_get_try_str(opts, "driver");
    const char *netdev = qdict_get_try_str(opts, "netdev");
    ObjectClass *oc = driver ? object_class_by_name(driver) : NULL;
    NetClientState *nc = netdev ? qemu_find_netdev(netdev) : NULL;
    uint64_t nprot = spp_protected_pages();
    g_autofree char *why = NULL;
    SppWriterKind kind;

    if (!nprot || writers.unenforced != SPP_UNENFORCED_REFUSE) {
        return false;
    }
    if (oc && spp_class_writer(oc, &kind)) {
        why = g_strdup_printf("'%s' writes guest RAM %s", driver,
                              kind == SPP_WRITER_KIND_VFIO ?
                              "by DMA through the host IOMMU" :
                              "from its vhost back end");
    } else if (nc && get_vhost_net(nc)) {
        const char *how;
        const char *type = spp_netdev_kind(nc, &how);

        why = g_strdup_printf("netdev '%s' (%s) uses vhost: %s into guest "
                              "RAM", netdev, type, how);
    } else {
        return false;
    }
    error_setg(errp, "%s, which SPP cannot check, and %" PRIu64 " %s "
               "protected: remove the protection first, use a device or "
               "netdev without vhost, or accept that it is not enforced "
               "with -spp unenforced=allow", why, nprot,
               nprot == 1 ? "page is" : "pages are");
    return false;
}

static void spp_writers_machine_done(Notifier *n, void *unused)
{
    writers.listener.realize = spp_device_changed;
    writers.listener.unrealize = spp_device_changed;
    writers.listener.hide_device = spp_hide_device;
    writers.update_bh = qemu_bh_new(spp_writers_update_bh, NULL);
    writers.pv_timer = timer_new_ms(QEMU_CLOCK_REALTIME, spp_pv_tick, NULL);
    device_listener_register(&writers.listener);
}

static Notifier spp_writers_machine_done_notifier = {
    .notify = spp_writers_machine_done,
};

static void spp_writers_register(void)
{
    qemu_add_machine_init_done_notifier(&spp_writers_machine_done_notifier);
}
type_init(spp_writers_register)
