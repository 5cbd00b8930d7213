/*
 * Sub-page write protection (SPP): HMP commands
 *
 * Thin wrappers: each parses its arguments and calls the QMP command,
 * which does the work; errors go through hmp_handle_error().
 *
 * Copyright (c) 2026 The QEMU SPP fork developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-spp.h"
#include "qobject/qdict.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "system/spp.h"

void hmp_set_subpage(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    int64_t wp_map = qdict_get_int(qdict, "wp_map");

    if (wp_map < 0 || wp_map > UINT32_MAX) {
        error_setg(&err, "wp_map must be a 32-bit value (0 to 0xffffffff)");
    } else {
        qmp_set_subpage(qdict_get_int(qdict, "base_gfn"),
                        qdict_get_int(qdict, "npages"), wp_map, &err);
    }
    hmp_handle_error(mon, err);
}

void hmp_get_subpage(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;

    qmp_get_subpage(qdict_get_int(qdict, "base_gfn"),
                    qdict_get_int(qdict, "npages"),
                    qdict_get_str(qdict, "filename"), &err);
    hmp_handle_error(mon, err);
}

void hmp_info_subpage(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    SubpageInfoList *list, *l;

    list = qmp_query_subpage(qdict_get_int(qdict, "base_gfn"),
                             qdict_get_int(qdict, "npages"), &err);
    if (hmp_handle_error(mon, err)) {
        return;
    }
    monitor_printf(mon, "%-18s %-10s %s\n", "gfn", "wp_map",
                   "sub-pages 0..31 (w = writable, - = protected)");
    for (l = list; l; l = l->next) {
        char map[SPP_SUBPAGES + 1];
        unsigned i;

        for (i = 0; i < SPP_SUBPAGES; i++) {
            map[i] = (l->value->wp_map >> i) & 1 ? 'w' : '-';
        }
        map[SPP_SUBPAGES] = '\0';
        monitor_printf(mon, "0x%016" PRIx64 " 0x%08" PRIx32 " %s\n",
                       l->value->gfn, l->value->wp_map, map);
    }
    qapi_free_SubpageInfoList(list);
}

void hmp_info_spp(Monitor *mon, const QDict *qdict)
{
    SppInfo *info = qmp_query_spp(&error_abort);
    SppWriterList *w;

    monitor_printf(mon, "backend: %s (%s)\n", SppBackend_str(info->backend),
                   info->backend_reason);
    monitor_printf(mon, "policy: %s\n", SppPolicy_str(info->policy));
    monitor_printf(mon, "event rate limit: %" PRIu32 " per second%s\n",
                   info->event_rate, info->event_rate ? "" : " (unlimited)");
    monitor_printf(mon, "protected pages: %" PRIu64 "\n",
                   info->protected_pages);
    monitor_printf(mon, "backend regions: %" PRIu64 "\n", info->regions);
    monitor_printf(mon, "unprotected pages trapped: %" PRIu64 "\n",
                   info->trapped_unprotected_pages);
    monitor_printf(mon, "violations: %" PRIu64 " (cpu %" PRIu64
                   ", device %" PRIu64 ")\n", info->violations,
                   info->violations_cpu, info->violations_device);
    monitor_printf(mon, "bytes blocked: %" PRIu64 "\n", info->bytes_blocked);
    monitor_printf(mon, "events: %" PRIu64 " sent, %" PRIu64 " suppressed\n",
                   info->events_sent, info->events_suppressed);
    monitor_printf(mon, "writers SPP cannot judge (unenforced=%s):%s\n",
                   SppUnenforced_str(info->unenforced),
                   info->writers ? "" : " none");
    for (w = info->writers; w; w = w->next) {
        monitor_printf(mon, "  %s %s%s: %s\n    avoid with: %s\n",
                       SppWriterKind_str(w->value->kind), w->value->id,
                       w->value->reaches_protected ?
                       " [can write protected pages]" : "",
                       w->value->description, w->value->remedy);
    }
    qapi_free_SppInfo(info);
}

void hmp_spp_policy(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    const char *name = qdict_get_str(qdict, "policy");
    bool has_rate = qdict_haskey(qdict, "event_rate");
    int policy = qapi_enum_parse(&SppPolicy_lookup, name, -1, &err);

    if (policy < 0) {
        hmp_handle_error(mon, err);
        return;
    }
    if (has_rate && (qdict_get_int(qdict, "event_rate") < 0 ||
                     qdict_get_int(qdict, "event_rate") > UINT32_MAX)) {
        error_setg(&err, "event_rate must be 0..%u", UINT32_MAX);
        hmp_handle_error(mon, err);
        return;
    }
    qmp_set_spp_policy(policy, has_rate,
                       has_rate ? qdict_get_int(qdict, "event_rate") : 0,
                       false, 0, &err);
    hmp_handle_error(mon, err);
}
