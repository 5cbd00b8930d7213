/*
 * Sub-page write protection: which device made a DMA write
 *
 * A PCI device writes guest memory through an address space of its own
 * (pci_get_address_space()), and the memory core tells the handler of
 * trapped writes which address space a write is made in
 * (memory_write_trap_cur_as).  This index, from that address space to
 * the device's QOM path, is kept as devices are realized and
 * unrealized, so that a violation on any thread names its device
 * without walking the QOM tree (which needs the BQL).
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "exec/ram-write-trap.h"
#include "hw/pci/pci_device.h"
#include "hw/qdev-core.h"
#include "qemu/thread.h"
#include "qom/object.h"
#include "system/spp-backend.h"
#include "system/system.h"

static struct {
    QemuMutex lock;
    GHashTable *paths;          /* AddressSpace * -> QOM path */
    DeviceListener listener;
} spp_dma;

static PCIDevice *spp_dma_pci(DeviceState *dev)
{
    return (PCIDevice *)object_dynamic_cast(OBJECT(dev), TYPE_PCI_DEVICE);
}

static void spp_dma_realize(DeviceListener *listener, DeviceState *dev)
{
    PCIDevice *pdev = spp_dma_pci(dev);
    char *path = pdev ? object_get_canonical_path(OBJECT(dev)) : NULL;

    if (path) {
        qemu_mutex_lock(&spp_dma.lock);
        g_hash_table_insert(spp_dma.paths, pci_get_address_space(pdev),
                            path);
        qemu_mutex_unlock(&spp_dma.lock);
    }
}

static void spp_dma_unrealize(DeviceListener *listener, DeviceState *dev)
{
    PCIDevice *pdev = spp_dma_pci(dev);

    if (pdev) {
        qemu_mutex_lock(&spp_dma.lock);
        g_hash_table_remove(spp_dma.paths, pci_get_address_space(pdev));
        qemu_mutex_unlock(&spp_dma.lock);
    }
}

static int spp_dma_add_existing(Object *obj, void *opaque)
{
    DeviceState *dev = (DeviceState *)object_dynamic_cast(obj, TYPE_DEVICE);

    if (dev && dev->realized) {
        spp_dma_realize(NULL, dev);
    }
    return 0;
}

char *spp_dma_writer(void)
{
    AddressSpace *as = memory_write_trap_cur_as;
    char *path = NULL;

    if (as && spp_dma.paths) {
        qemu_mutex_lock(&spp_dma.lock);
        path = g_strdup(g_hash_table_lookup(spp_dma.paths, as));
        qemu_mutex_unlock(&spp_dma.lock);
    }
    return path;
}

static void spp_dma_machine_done(Notifier *n, void *unused)
{
    spp_dma.paths = g_hash_table_new_full(NULL, NULL, NULL, g_free);
    object_child_foreach_recursive(object_get_root(), spp_dma_add_existing,
                                   NULL);
    spp_dma.listener.realize = spp_dma_realize;
    spp_dma.listener.unrealize = spp_dma_unrealize;
    device_listener_register(&spp_dma.listener);
}

static Notifier spp_dma_machine_done_notifier = {
    .notify = spp_dma_machine_done,
};

static void spp_dma_register(void)
{
    qemu_mutex_init(&spp_dma.lock);
    qemu_add_machine_init_done_notifier(&spp_dma_machine_done_notifier);
}
type_init(spp_dma_register)
