#!/usr/bin/env python3
#
# SPP benchmarks.  Every figure is measured side by side in one run and
# reported with the machine, the accelerator and the base version.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later
"""usage: bench.py QEMU GUEST.bin PYTHONPATH VERSION OUTDIR [KVM_FLOOR]
       bench.py --kvm-only QEMU GUEST.bin PYTHONPATH [KVM_FLOOR]
       bench.py --compare QEMU BASE_QEMU BASE_NAME GUEST.bin PYTHONPATH OUT.md

The second form measures only the KVM cases and prints them as one
"bench-json:" line; make bench runs it inside the nested-KVM lab when
this host has no hardware KVM."""

import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sppvm import Vm  # noqa: E402

PAGE_P = 0x100000
GFN_P = PAGE_P >> 12
MB_CMD, MB_ARG, MB_KIND = 0x200004, 0x200008, 0x200018
MB_DONE, MB_ADDR, MB_PROGRESS = 0x20000c, 0x200010, 0x200048
MB_WALK_BYTES = 0x200050
CMD_HAMMER, CMD_STORE_LOOP, CMD_KIND_LOOP, CMD_WALK = 2, 6, 8, 13
WALK_ADDR = 0x400000            # 32 MiB walked, below FAR_BASE
WALK_CHANGES = 1000
# tests/qtest/spp-guest-layout.h
KIND_MOVL, KIND_MOVQ_XMM, KIND_XSAVE, KIND_NONE = 0, 1, 2, 0xffffffff
GIB_PAGES = 262144
SCATTERED = 10000
MANY = 100000
MANY_KVM = 15000                # under KVM's 32764 memslots
LINUX_FREE = 0x20000           # 512 MiB: above the guest's mem=512M
STRIDE = 37
TESTDEV_IOMEM = 0xff000000      # pc-testdev's MMIO buffer
FAR_BASE = 0x10000              # scattered pages start at 256 MiB


def machine():
    model = 'unknown'
    with open('/proc/cpuinfo', encoding='utf-8') as f:
        for line in f:
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    return f'{os.cpu_count()} cores, {model}, Linux {platform.release()}'


# Turns of the exit-bound stores 1(b), 1(c) and 1(e), each about half a
# second; the median of each is kept
STORE_TURNS = 5


def store_cost(vm, addr):
    """ns per guest store to @addr, for a run of about half a second."""
    n = 1000
    while True:
        t = vm.guest(CMD_STORE_LOOP, n, addr)
        if t > 0.5 or n >= 1 << 30:
            return t / n * 1e9
        n = min(int(n * max(2, 0.6 / max(t, 1e-4))), 1 << 30)


def bench_store_cost(qemu, guest, accel, extra=()):
    vm = Vm(qemu, accel, guest, extra=['-device', 'pc-testdev', *extra])
    vm.qmp.cmd('set-spp-policy', policy='block')
    rows = {}
    rows['a'] = store_cost(vm, PAGE_P + 0x810)
    # QEMU's own plain MMIO store (a pc-testdev register, a memcpy) and
    # the stores to P's sub-pages, in turns: exits cost what the lab's
    # host is doing at the time, so the ratios compare like with like
    vm.set(GFN_P, 1, 0xffff0000)        # sub-pages 0-15 protected
    turns = {'e': TESTDEV_IOMEM, 'b': PAGE_P + 0x810, 'c': PAGE_P + 0x10}
    runs = {k: [] for k in turns}
    for _ in range(STORE_TURNS):
        for k, addr in turns.items():
            runs[k].append(store_cost(vm, addr))
    for k in turns:
        rows[k] = statistics.median(runs[k])
    rows['be_turns'] = [b / e for b, e in zip(runs['b'], runs['e'])]
    vm.set(GFN_P, 1, 0xffffffff)
    gfns = [FAR_BASE + i * STRIDE for i in range(SCATTERED)]
    vm.qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0})
    rows['d'] = store_cost(vm, PAGE_P + 0x810)
    rows['regions'] = vm.info()['regions']
    vm.close()
    return rows


def kind_cost(vm, kind, addr):
    """ns per store of @kind to @addr (None if the guest cannot)."""
    n = 100
    while True:
        vm.qt.writel(MB_KIND, kind)
        t = vm.guest(CMD_KIND_LOOP, n, addr)
        if vm.qt.readl(MB_KIND) == KIND_NONE:
            return None
        if t > 0.5 or n >= 1 << 24:
            return t / n * 1e9
        n = min(int(n * max(2, 0.6 / max(t, 1e-4))), 1 << 24)


# (name, kind, offset from P): stores to protected sub-pages of P (and
# of Q for the store across the page boundary)
STORE_KINDS = [
    ('mov dword (KVM: its emulator, one MMIO exit)', KIND_MOVL, 0x10),
    ('movq from an XMM register (KVM: done by QEMU, no step)',
     KIND_MOVQ_XMM, 0x10),
    ('movq from an XMM register across into page Q (KVM: the step, '
     '1 page lifted)', KIND_MOVQ_XMM, 0xffc),
    ('xsave, 576 bytes (KVM: the step)', KIND_XSAVE, 0x40),
]


def bench_store_kinds(qemu, guest, accel, extra=()):
    vm = Vm(qemu, accel, guest, extra=['-cpu', 'max', *extra])
    vm.qmp.cmd('set-spp-policy', policy='block', **{'event-rate': 10})
    vm.set(GFN_P, 1, 0xffff0000)        # sub-pages 0-15 protected
    vm.set(GFN_P + 1, 1, 0xfffffffe)    # sub-page 0 of Q protected
    rows = [kind_cost(vm, kind, PAGE_P + off)
            for _, kind, off in STORE_KINDS]
    vm.close()
    return rows


def bench_event_latency(qemu, guest, accel, n=1000, extra=()):
    vm = Vm(qemu, accel, guest, extra=extra)
    vm.qmp.cmd('set-spp-policy', policy='block', **{'event-rate': 0})
    vm.set(GFN_P, 1, 0xfffffffe)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        vm.qt.writel(MB_ARG, 1)
        vm.qt.writel(MB_CMD, CMD_HAMMER)
        while True:
            ev = vm.qmp.pull_event(wait=True)
            if ev['event'] == 'SPP_VIOLATION':
                break
        lat.append(time.perf_counter() - t0)
        while vm.qt.readl(MB_CMD) != 0:
            pass
    vm.close()
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.99)]


def bench_spp_detect(qemu, guest, n=2000):
    """Cost per detected write with SPP (TCG), every event delivered."""
    vm = Vm(qemu, 'tcg', guest)
    vm.qmp.cmd('set-spp-policy', policy='report', **{'event-rate': 0})
    vm.set(GFN_P, 1, 0xfffffffe)
    t = vm.guest(CMD_STORE_LOOP, n, PAGE_P)
    count = 0
    while count < n:
        ev = vm.qmp.pull_event(wait=True)
        if ev['event'] == 'SPP_VIOLATION':
            count += 1
    t_all = t
    vm.close()
    return t_all / n * 1e6


def bench_gdb_detect(qemu, guest, n=2000):
    """The same detection with a gdbstub watchpoint (TCG)."""
    gdb = shutil.which('gdb')
    if not gdb:
        return None, 'gdb is not installed'
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    vm = Vm(qemu, 'tcg', guest, extra=['-gdb', f'tcp:127.0.0.1:{port}'])
    script = os.path.join(vm.tmp, 'watch.gdb')
    with open(script, 'w', encoding='utf-8') as f:
        f.write(f'''set pagination off
set confirm off
target remote 127.0.0.1:{port}
watch *(char (*)[128]){PAGE_P:#x}
set $i = 0
while $i < {n}
  continue
  echo hit\\n
  set $i = $i + 1
end
''')
    log = os.path.join(vm.tmp, 'gdb.log')
    with open(log, 'w', encoding='utf-8') as out:
        g = subprocess.Popen([gdb, '-q', '-nx', '-batch', '-x', script],
                             stdout=out, stderr=subprocess.STDOUT)
        time.sleep(2)                   # attached and continued
        # a counter, so that every store changes the watched value
        t = vm.guest(CMD_STORE_LOOP, n, PAGE_P)
        g.kill()
        g.wait()
    with open(log, encoding='utf-8', errors='replace') as f:
        hits = sum(1 for line in f if line.strip() == 'hit')
    vm.close()
    if hits < n:
        return None, f'gdb reported {hits} of {n} writes'
    return t / n * 1e6, ''


def bench_boot(qemu, guest, accel, protect):
    vm = Vm(qemu, accel, guest, start=False)
    if protect:
        gfns = [FAR_BASE + i * STRIDE for i in range(SCATTERED)]
        vm.qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0})
    vm.qmp.cmd('cont')
    t = vm.wait_ready()
    vm.close()
    return t


def bench_linux_boot(qemu, accel, protect, kernel=None, initrd=None):
    """Seconds from the start of a stock Linux guest to its shell, with
    mem=512M of 1 GiB, and @protect: 10,000 pages scattered between 512
    MiB and 960 MiB, which the guest never writes.  (The top 64 MiB are
    left alone: firmware, ACPI tables and the initrd live there.)"""
    import linuxvm

    def before(qmp):
        gfns = [LINUX_FREE + i * 11 for i in range(SCATTERED)]
        qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0})
        assert qmp.cmd('query-spp')['protected-pages'] == SCATTERED

    vm = linuxvm.LinuxVm(qemu, accel, mem='1G', append='mem=512M', smp=1,
                         kernel=kernel, initrd=initrd,
                         before_boot=before if protect else None)
    t = vm.boot_time
    # the figure is only for a guest that wrote none of those pages
    assert vm.qmp.cmd('query-spp')['violations'] == 0
    vm.close()
    return t


ONE_PAGE_PAIRS = 100


# What a 1-page change's call is made of under KVM, from the trace: the
# client's request reaching the main loop, the work before the first
# re-slot (validation, the flat-view walk, finding the slots, stopping
# the vCPUs), the memslot ioctls, and the rest up to the response.
ONE_PAGE_EVENTS = ('monitor_qmp_cmd_in_band', 'kvm_write_trap_reslot',
                   'kvm_set_user_memory', 'monitor_qmp_respond')


def one_page_changes(vm, accel, gfn, log):
    """Protect and clear page @gfn ONE_PAGE_PAIRS times, one set-subpage
    each, from the synchronous client: (median seconds a call, and under
    KVM the median memslot ioctls a call and the median seconds of each
    part of a call, from the trace in @log, as a dict)."""
    spans = []
    if accel == 'kvm':
        for name in ONE_PAGE_EVENTS:
            vm.qmp.cmd('trace-event-set-state', name=name, enable=True)
    start = os.path.getsize(log) if accel == 'kvm' else 0
    for i in range(2 * ONE_PAGE_PAIRS):
        t0 = time.time()
        assert 'return' in vm.raw.cmd('set-subpage', {
            'base_gfn': gfn, 'npages': 1,
            'wp_map': 0xffffffff if i % 2 else 0x5555aaaa})
        spans.append((t0, time.time()))
    if accel != 'kvm':
        return statistics.median(b - a for a, b in spans), None, None
    for name in ONE_PAGE_EVENTS:
        vm.qmp.cmd('trace-event-set-state', name=name, enable=False)
    # "pid@seconds.micros:event ..." (-msg timestamp=on)
    events = []
    with open(log) as f:
        f.seek(start)
        for line in f:
            head, _, rest = line.partition(':')
            name = rest.split('(', 1)[0].split(' ', 1)[0]
            if '@' in head and name in ONE_PAGE_EVENTS:
                events.append((float(head.split('@')[1]), name))
    ioctls = []
    parts = {k: [] for k in ('dispatch', 'before', 'ioctls', 'after',
                             'reply')}
    for a, b in spans:
        mine = [e for e in events if a <= e[0] <= b]
        ioctls.append(sum(1 for e in mine if e[1] == 'kvm_set_user_memory'))
        when = {}
        for t, name in mine:
            when.setdefault(name, []).append(t)
        if len(when) < len(ONE_PAGE_EVENTS):
            continue            # an event was not traced for this call
        first, last = (min(when['kvm_write_trap_reslot']),
                       max(when['kvm_set_user_memory']))
        cmd, resp = when['monitor_qmp_cmd_in_band'][0], \
            when['monitor_qmp_respond'][-1]
        parts['dispatch'].append(cmd - a)
        parts['before'].append(first - cmd)
        parts['ioctls'].append(last - first)
        parts['after'].append(resp - last)
        parts['reply'].append(b - resp)
    return (statistics.median(b - a for a, b in spans),
            statistics.median(ioctls),
            {k: statistics.median(v) if v else 0.0
             for k, v in parts.items()})


def one_page_row(accel, runs, res, how=''):
    t, ioctls, parts = res
    note = ''
    if ioctls is not None:
        note = (f'{ioctls:.0f} memslot ioctls a call; medians: '
                f'{parts["dispatch"] * 1e6:.0f} us to the main loop, '
                f'{parts["before"] * 1e6:.0f} us to the first re-slot, '
                f'{parts["ioctls"] * 1e6:.0f} us from it to the last '
                f'ioctl, {parts["after"] * 1e6:.0f} us to the response, '
                f'{parts["reply"] * 1e6:.0f} us to the client')
    return (f'set-subpage of 1 page, {runs:,} runs already protected{how} '
            f'(median of {2 * ONE_PAGE_PAIRS} calls, protect and clear)',
            f'{t * 1e6:.0f} us', note)


def bench_changes(qemu, accel):
    rows = []
    log = os.path.join(os.environ.get('TMPDIR', '/tmp'),
                       'spp-bench-changes-%d.log' % os.getpid())
    vm = Vm(qemu, accel, extra=('-D', log, '-msg', 'timestamp=on'))
    base = FAR_BASE
    t = vm.set(base, GIB_PAGES, 0x0000ffff)
    rows.append(('set-subpage, 1 GiB contiguous (262,144 pages), one call',
                 f'{t * 1e3:.1f} ms',
                 f'{GIB_PAGES / t / 1e6:.1f} M pages/s, '
                 f'{vm.info()["regions"]} region'))
    t = vm.set(base, GIB_PAGES, 0xffffffff)
    rows.append(('clear the same 1 GiB, one call', f'{t * 1e3:.1f} ms', ''))

    gfns = [base + i * STRIDE for i in range(SCATTERED)]
    t0 = time.perf_counter()
    vm.qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0x5555aaaa})
    t = time.perf_counter() - t0
    info = vm.info()
    rows.append((f'set-subpages, {SCATTERED:,} scattered pages, one call',
                 f'{t * 1e3:.0f} ms',
                 f'{SCATTERED / t:,.0f} pages/s, {info["regions"]} regions'))
    t0 = time.perf_counter()
    vm.qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0xffffffff})
    t = time.perf_counter() - t0
    info = vm.info()
    assert info['protected-pages'] == 0 and info['regions'] == 0
    rows.append(('clear them, one set-subpages', f'{t * 1e3:.0f} ms',
                 'back to 0 pages, 0 regions'))

    # one call per page, from a synchronous client (see RawQmp)
    times = []
    for g in gfns:
        t0 = time.perf_counter()
        assert 'return' in vm.raw.cmd('set-subpage', {
            'base_gfn': g, 'npages': 1, 'wp_map': 0x5555aaaa})
        times.append(time.perf_counter() - t0)
    info = vm.info()
    rows.append((f'set-subpage, {SCATTERED:,} scattered pages, '
                 'one call each', f'{sum(times):.2f} s',
                 f'median {statistics.median(times) * 1e6:.0f} us a call, '
                 f'{info["trapped-unprotected-pages"]} unprotected pages '
                 'trapped'))
    # QEMU's monitor reads a request one byte per main-loop iteration:
    # the same request to a command that rejects it, and an empty one
    floor = []
    for _ in range(2000):
        t0 = time.perf_counter()
        assert 'error' in vm.raw.cmd('query-status', {
            'base_gfn': gfns[0], 'npages': 1, 'wp_map': 0x5555aaaa})
        floor.append(time.perf_counter() - t0)
    empty = []
    for _ in range(2000):
        t0 = time.perf_counter()
        vm.raw.cmd('query-status')
        empty.append(time.perf_counter() - t0)
    rows.append(('QMP floor: the same request, rejected (query-status)',
                 f'{statistics.median(floor) * 1e6:.0f} us',
                 f'an empty query-status: '
                 f'{statistics.median(empty) * 1e6:.0f} us'))

    # a 1-page change far from the others, with 10,000 runs and with 10
    one = base + SCATTERED * STRIDE + 4096
    many_runs = one_page_changes(vm, accel, one, log)
    vm.qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0xffffffff})
    vm.qmp.cmd('set-subpages', **{'gfns': gfns[:10], 'wp-map': 0x5555aaaa})
    few_runs = one_page_changes(vm, accel, one, log)
    # the same with the VM paused: no vCPU to stop and start again
    vm.qmp.cmd('stop')
    paused = one_page_changes(vm, accel, one, log)
    vm.qmp.cmd('cont')
    rows.append(one_page_row(accel, 10, few_runs))
    rows.append(one_page_row(accel, SCATTERED, many_runs))
    rows.append(('1-page change, 10,000 runs / 10 runs',
                 f'{many_runs[0] / few_runs[0]:.2f}',
                 'goal: the same cost (1.0)'))
    rows.append(one_page_row(accel, 10, paused, ', the VM paused'))
    vm.qmp.cmd('set-subpages', **{'gfns': gfns[:10], 'wp-map': 0xffffffff})

    # under KVM each run is a memslot: 100,000 runs are refused
    for count in (MANY, MANY_KVM) if accel == 'kvm' else (MANY,):
        many = [base + 2 * i for i in range(count)]
        t0 = time.perf_counter()
        r = vm.qmp.cmd_raw('set-subpages', {'gfns': many, 'wp-map': 0})
        t = time.perf_counter() - t0
        info = vm.info()
        name = f'set-subpages, {count:,} pages two pages apart, one call'
        if 'error' in r:
            assert info['protected-pages'] == 0
            rows.append((name, f'{t * 1e3:.0f} ms',
                         'refused, nothing changed: ' + r['error']['desc']))
            continue
        rows.append((name, f'{t * 1e3:.0f} ms',
                     f'{info["regions"]:,} regions, '
                     f'{info["trapped-unprotected-pages"]:,} unprotected '
                     'pages trapped'))
    vm.close()
    if os.path.exists(log):
        os.unlink(log)
    return rows


def walk_rounds(vm):
    return vm.qt.readl(MB_PROGRESS), time.perf_counter()


def bench_walk(qemu, guest, accel, extra=(), nchanges=WALK_CHANGES,
               walk_bytes=0):
    """The guest's memory walk (a store to each page of 32 MiB, or
    @walk_bytes, round after round), in rounds per second: undisturbed,
    while the host makes @nchanges protection changes elsewhere (one
    set-subpage call each, protecting then clearing scattered pages far
    from the walk), and undisturbed again.  Returns (before, during,
    after, seconds of the changes)."""
    vm = Vm(qemu, accel, guest, extra=extra)
    done = vm.qt.readl(MB_DONE)
    vm.qt.writel(MB_WALK_BYTES, walk_bytes)
    vm.qt.writel(MB_ADDR, WALK_ADDR)
    vm.qt.writel(MB_ARG, 0xffffffff)
    vm.qt.writel(MB_CMD, CMD_WALK)
    t0 = time.perf_counter()
    while vm.qt.readl(MB_PROGRESS) < 3:     # the walk's pages are mapped
        if time.perf_counter() - t0 > 120:
            raise RuntimeError('the guest does not walk')
        time.sleep(0.01)

    def rate(window):
        r0, t0 = walk_rounds(vm)
        window()
        r1, t1 = walk_rounds(vm)
        return (r1 - r0) / (t1 - t0), t1 - t0

    gfns = [FAR_BASE + i * STRIDE for i in range(nchanges // 2)]

    def changes(pages=gfns):
        for wp in (0x5555aaaa, 0xffffffff):
            for g in pages:
                assert 'return' in vm.raw.cmd('set-subpage', {
                    'base_gfn': g, 'npages': 1, 'wp_map': wp})

    def settle():
        """Wait until the walk is back at its speed: two half-second
        rates within 10% of each other (KVM faults the walk's pages back
        in after a change, slowly under the nested lab)."""
        last = 0
        for _ in range(40):
            now, _ = rate(lambda: time.sleep(0.5))
            if last and abs(now - last) <= 0.1 * max(now, last):
                return
            last = now

    # TCG sizes a vCPU's TLB to its use when it flushes it: before the
    # first flush, a 32 MiB walk thrashes the small initial one.  A few
    # changes first, so the undisturbed walk has the TLB it would have.
    changes(gfns[:10])
    settle()
    before, _ = rate(lambda: time.sleep(2))
    during, secs = rate(changes)
    settle()
    after, _ = rate(lambda: time.sleep(2))
    vm.qt.writel(MB_ARG, 0)                 # stop after this round
    t0 = time.perf_counter()
    while vm.qt.readl(MB_DONE) == done:
        if time.perf_counter() - t0 > 120:
            raise RuntimeError('the guest walk does not stop')
        time.sleep(0.01)
    assert vm.info()['protected-pages'] == 0
    vm.close()
    return before, during, after, secs


def bench_step(qemu, n=300):
    """The step fallback's cycle without the KVM single-step: lift one
    page, a 64-byte store half on a protected sub-page, judge, restore."""
    rows = []
    for pages in (1, SCATTERED):
        vm = Vm(qemu, 'qtest')
        gfns = [FAR_BASE + i * STRIDE for i in range(pages)]
        vm.qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0x0000ffff})
        target = gfns[pages // 2]
        data = ''.join(f'{0x80 | i:02x}' for i in range(64))
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            assert vm.qmp.cmd('x-spp-step', action='begin',
                              gfns=[target])['count'] == 1
            vm.qt.cmd(f'write 0x{(target << 12) + 2016:x} 64 0x{data}')
            assert vm.qmp.cmd('x-spp-step', action='end')['count'] == 4
            times.append(time.perf_counter() - t0)
        info = vm.info()
        assert info['bytes-blocked'] == 32 * n
        rows.append((f'{pages:,} protected page{"s" if pages > 1 else ""}, '
                     f'{info["regions"]} regions',
                     f'{statistics.median(times) * 1e6:.0f} us'))
        vm.close()
    return rows


def chart(results, path):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = ['(a) unprotected page', '(b) writable sub-page',
              '(c) protected sub-page', '(d) other page, 10k protected']
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(results), 1)
    for i, (accel, rows) in enumerate(results.items()):
        vals = [rows[k] for k in 'abcd']
        xs = [x + i * width for x in range(4)]
        ax.bar(xs, vals, width, label=accel.upper())
    ax.set_xticks([x + width * (len(results) - 1) / 2 for x in range(4)])
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_yscale('log')
    ax.set_ylabel('ns per guest store (log)')
    ax.set_title('SPP: cost of a guest store')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def measure(qemu, guest, accel, floor=None, linux=(None, None)):
    """The cases measured under every accelerator.  SPP_BENCH_ONLY (a
    comma-separated list of the keys below) measures some of them only,
    for a look at one figure; make bench needs them all."""
    only = os.environ.get('SPP_BENCH_ONLY')
    want = set(only.split(',')) if only else None
    cases = [
        ('stores', 'guest store cost',
         lambda: bench_store_cost(qemu, guest, accel)),
        ('kinds', 'store kinds on protected sub-pages',
         lambda: bench_store_kinds(qemu, guest, accel)),
        ('changes', 'protection changes', lambda: bench_changes(qemu, accel)),
        ('walk', 'changes while the guest walks its memory',
         lambda: bench_walk(qemu, guest, accel)),
        ('latency', 'violation to event',
         lambda: bench_event_latency(qemu, guest, accel)),
        ('linux_boot', 'stock Linux boot',
         lambda: [statistics.median(
             bench_linux_boot(qemu, accel, protect, *linux)
             for _ in range(3)) for protect in (False, True)]),
        ('boot', 'boot',
         lambda: [statistics.median(bench_boot(qemu, guest, accel, protect)
                                    for _ in range(3))
                  for protect in (False, True)]),
    ]
    r = {}
    if want and want - {c[0] for c in cases} - {'floor'}:
        raise SystemExit('SPP_BENCH_ONLY: no case %s' %
                         ', '.join(sorted(want - {c[0] for c in cases})))
    if floor and accel == 'kvm' and (not want or 'floor' in want):
        res = subprocess.run([floor], capture_output=True, text=True,
                             check=True).stdout.split()
        r['floor'] = float(res[0])
    for key, what, fn in cases:
        if want and key not in want:
            continue
        print(f'bench: {what} ({accel})', flush=True)
        r[key] = fn()
    return r


def compare(builds, guest, accel, rounds=3):
    """
    Sections 1 and 2 and the violation-to-event latency for each build
    in @builds (name -> (qemu, extra arguments)), @rounds times, every
    other round in the other order; the median is kept.
    """
    runs = {name: [] for name in builds}
    order = list(builds)
    for rnd in range(rounds):
        for name in order if rnd == 0 else order[::-1]:
            qemu, extra = builds[name]
            print(f'bench: {name}, {accel}, round {rnd + 1}', flush=True)
            runs[name].append({
                'stores': bench_store_cost(qemu, guest, accel, extra),
                'kinds': bench_store_kinds(qemu, guest, accel, extra),
                'latency': bench_event_latency(qemu, guest, accel, 300,
                                               extra)[0]})

    def low(vals):
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    res = {}
    for name, rs in runs.items():
        res[name] = {
            'stores': {k: low(r['stores'][k] for r in rs) for k in 'abcde'},
            'kinds': [low(r['kinds'][i] for r in rs)
                      for i in range(len(STORE_KINDS))],
            'latency': low(r['latency'] for r in rs)}
    return res


def lab_results(cmd):
    """Run @cmd (kvm-lab.py and its arguments); the "bench-json:" result."""
    print('bench: the KVM cases run in the nested-KVM lab', flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    result = None
    for line in proc.stdout:
        if line.startswith('bench-json: '):
            result = json.loads(line[len('bench-json: '):])
        else:
            print(line, end='', flush=True)
    if proc.wait() or result is None:
        sys.exit('bench: the KVM cases failed in the lab')
    return result


def compare_in_lab(lab, qemu, base, guest, pypath):
    """compare() under KVM, inside the nested-KVM lab."""
    me = os.path.abspath(__file__)
    here = os.path.dirname(me)
    cmd = [sys.executable, lab.__file__, '--timeout', '3000',
           '--qemu', qemu, '--file', os.path.realpath(base), '--file', guest,
           '--file', me,
           '--file', os.path.join(here, 'sppvm.py'),
           '--dir', os.path.dirname(os.__file__), '--dir', pypath, '--',
           os.path.realpath(sys.executable), me, '--compare-kvm-only',
           os.path.realpath(qemu), os.path.realpath(base), guest, pypath,
           firmware_dir(qemu)]
    return lab_results(cmd)


def firmware_dir(qemu):
    """Where @qemu, run from its build tree, finds its firmware."""
    return os.path.join(os.path.dirname(os.path.realpath(qemu)),
                        'qemu-bundle', 'usr', 'local', 'share', 'qemu')


def compare_builds(qemu, base, guest, accel, fw_dir):
    # In the lab only the first binary's firmware is there: both use it.
    fw = ['-L', fw_dir]
    return compare({'baseline': (base, fw), 'this tree': (qemu, fw)},
                   guest, accel)


def compare_main():
    """bench.py --compare QEMU BASE_QEMU BASE_NAME GUEST PYPATH OUT.md"""
    if sys.argv[1] == '--compare-kvm-only':
        qemu, base, guest, pypath, fw_dir = sys.argv[2:7]
        sys.path.insert(0, pypath)
        r = compare_builds(qemu, base, guest, 'kvm', fw_dir)
        print('bench-json: ' + json.dumps(r), flush=True)
        return
    qemu, base, base_name, guest, pypath, out_path = sys.argv[2:8]
    sys.path.insert(0, pypath)
    lab = load_kvm_lab()
    kind, _ = lab.host_kvm()
    where = os.environ.get('SPP_KVM', 'auto')
    res = {'tcg': compare_builds(qemu, base, guest, 'tcg',
                                 firmware_dir(qemu))}
    if where == 'host' or (where == 'auto' and kind == 'hardware'):
        kvm_label = f'KVM ({kind})'
        res['kvm'] = compare_builds(qemu, base, guest, 'kvm',
                                    firmware_dir(qemu))
    else:
        kvm_label = 'KVM (nested: kvm_amd on TCG\'s SVM, in the lab)'
        res['kvm'] = compare_in_lab(lab, qemu, base, guest, pypath)
    label = {'tcg': 'TCG', 'kvm': kvm_label}
    rows = [(f'1({k}) {name}', lambda r, k=k: r['stores'][k])
            for k, name in (('a', 'unprotected page'),
                            ('b', 'writable sub-page of a protected page'),
                            ('c', 'protected sub-page, policy block'),
                            ('d', 'unrelated page, 10,000 protected'),
                            ('e', 'QEMU\'s own MMIO store (pc-testdev)'))]
    rows += [(f'2 {name}', lambda r, i=i: r['kinds'][i])
             for i, (name, _, _) in enumerate(STORE_KINDS)]
    rows.append(('violation to event, median (us)',
                 lambda r: r['latency'] * 1e6))
    out = ['# Before and after: a build of this tree against a baseline', '',
           f'- machine: {machine()}',
           f'- baseline: {base_name}',
           f'- date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}',
           f'- accelerators: TCG, and {kvm_label}', '',
           'Sections 1 and 2 of `make bench` (ns per guest store; events '
           'rate-limited as there, so the writer is looked up only for '
           'the few events sent) and the violation-to-event latency of '
           'section 5 (every event sent, each with its writer), for both '
           'builds in one run: each case three times, every other round '
           'in the other order, the median kept.  A ratio above 1.0 is '
           'this tree slower; on a small shared host, TCG figures move by '
           'up to 30% from run to run.', '',
           '| case | ' + ' | '.join(
               f'{label[a]} baseline | {label[a]} this tree | ratio'
               for a in ('tcg', 'kvm')) + ' |',
           '|---|' + '---|---|---|' * 2]
    for name, get in rows:
        cells = []
        for a in ('tcg', 'kvm'):
            b, t = get(res[a]['baseline']), get(res[a]['this tree'])
            if b is None or t is None:
                cells += ['-', '-', '-']
            else:
                cells += [f'{b:.1f}', f'{t:.1f}', f'{t / b:.2f}x']
        out.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    with open(out_path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(out) + '\n')
    print('\n'.join(out))
    print(f'bench: wrote {out_path}')


def load_kvm_lab():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'kvm-lab.py')
    spec = importlib.util.spec_from_file_location('kvm_lab', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measure_in_lab(lab, qemu, guest, pypath, floor):
    """Run the KVM cases inside the nested-KVM lab; their results."""
    import linuxvm
    me = os.path.abspath(__file__)
    here = os.path.dirname(me)
    kernel, initrd, _ = linuxvm.prepare()
    cmd = [sys.executable, lab.__file__, '--timeout', '3000',
           '--qemu', qemu, '--file', guest, '--file', me,
           '--file', os.path.join(here, 'sppvm.py'),
           '--file', os.path.join(here, 'linuxvm.py'),
           '--file', kernel, '--file', initrd,
           '--dir', os.path.dirname(os.__file__), '--dir', pypath]
    if os.environ.get('SPP_BENCH_ONLY'):
        cmd += ['--env', 'SPP_BENCH_ONLY=' + os.environ['SPP_BENCH_ONLY']]
    if floor:
        cmd += ['--file', floor]
    py = os.path.realpath(sys.executable)
    cmd += ['--', py, me, '--kvm-only', os.path.realpath(qemu), guest,
            pypath, kernel, initrd] + ([floor] if floor else [])
    return lab_results(cmd)


def walk_only():
    """In the lab: the walk under KVM for each set of -accel options."""
    qemu, guest, pypath, nchanges, walk_bytes = sys.argv[2:7]
    sys.path.insert(0, pypath)
    res = {}
    for accel in sys.argv[7:]:
        print(f'bench: walk, -accel {accel}', flush=True)
        res[accel] = bench_walk(qemu, guest, accel, (), int(nchanges),
                                int(walk_bytes))
    print('bench-json: ' + json.dumps(res), flush=True)


def walk_in_lab(lab, qemu, guest, pypath, nchanges, walk_bytes, accels):
    """bench_walk() under the lab's nested KVM, once per -accel string."""
    me = os.path.abspath(__file__)
    here = os.path.dirname(me)
    cmd = [sys.executable, lab.__file__, '--timeout', '3000',
           '--qemu', qemu, '--file', guest, '--file', me,
           '--file', os.path.join(here, 'sppvm.py'),
           '--dir', os.path.dirname(os.__file__), '--dir', pypath,
           '--', os.path.realpath(sys.executable), me, '--walk-only',
           os.path.realpath(qemu), guest, pypath, str(nchanges),
           str(walk_bytes), *accels]
    return lab_results(cmd)


def kvm_only():
    qemu, guest, pypath, kernel, initrd = sys.argv[2:7]
    floor = sys.argv[7] if len(sys.argv) > 7 else None
    sys.path.insert(0, pypath)
    r = measure(qemu, guest, 'kvm', floor, (kernel, initrd))
    print('bench-json: ' + json.dumps(r), flush=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--kvm-only':
        kvm_only()
        return
    if len(sys.argv) > 1 and sys.argv[1] == '--walk-only':
        walk_only()
        return
    if len(sys.argv) > 1 and sys.argv[1] in ('--compare',
                                             '--compare-kvm-only'):
        compare_main()
        return
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    qemu, guest, pypath, version, outdir = sys.argv[1:6]
    floor = sys.argv[6] if len(sys.argv) == 7 else None
    sys.path.insert(0, pypath)
    lab = load_kvm_lab()
    kind, reason = lab.host_kvm()
    where = os.environ.get('SPP_KVM', 'auto')
    if where == 'host' or (where == 'auto' and kind == 'hardware'):
        kvm_label = f'KVM ({kind})'
    else:
        kvm_label = 'KVM (nested: kvm_amd on TCG\'s SVM, in the lab)'

    res = {'tcg': measure(qemu, guest, 'tcg')}
    if kvm_label.startswith('KVM (nested'):
        res['kvm'] = measure_in_lab(lab, qemu, guest, pypath, floor)
    else:
        res['kvm'] = measure(qemu, guest, 'kvm', floor)
    accels = ['tcg', 'kvm']
    label = {'tcg': 'TCG', 'kvm': kvm_label}
    stores = {a: res[a]['stores'] for a in accels}

    out = ['# SPP benchmark results', '',
           f'- machine: {machine()}',
           f'- base: {version}',
           f'- date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}',
           f'- this host\'s KVM: {kind} ({reason})',
           f'- accelerators: TCG, and {kvm_label}']
    if kvm_label.startswith('KVM (nested'):
        out.append('- every KVM figure below comes from a nested KVM inside '
                   'a TCG guest: it is not a hardware figure, and only its '
                   'ratios to other KVM figures of the same run mean much')
    out.append('')

    out += ['## 1. Guest store cost', '',
            '| case | ' + ' | '.join(f'{label[a]} ns/store | ratio to (a)'
                                      for a in accels) + ' |',
            '|---|' + '---|---|' * len(accels)]
    names = {'a': '(a) unprotected page',
             'b': '(b) writable sub-page of a protected page',
             'c': '(c) protected sub-page, policy block',
             'd': f'(d) unrelated page, {SCATTERED:,} other pages protected',
             'e': '(e) QEMU\'s own MMIO store (a pc-testdev register)'}
    for k in 'abcde':
        cells = []
        for a in accels:
            r = stores[a]
            cells.append(f'{r[k]:.1f} | {r[k] / r["a"]:.1f}x')
        out.append(f'| {names[k]} | ' + ' | '.join(cells) + ' |')
    out += ['', f'In (d) the {SCATTERED:,} pages are '
            f'{stores["tcg"]["regions"]:,} trapped runs under TCG and '
            f'{stores["kvm"]["regions"]:,} under KVM (each a read-only '
            'memslot); no unprotected page is trapped.', '']

    out += ['## 2. Stores KVM\'s emulator cannot run: the step fallback', '',
            '| store to a protected sub-page | ' +
            ' | '.join(f'{label[a]} ns/store | ratio to mov dword'
                       for a in accels) + ' |',
            '|---|' + '---|---|' * len(accels)]
    for i, (name, _, _) in enumerate(STORE_KINDS):
        cells = []
        for a in accels:
            v, base = res[a]['kinds'][i], res[a]['kinds'][0]
            cells.append('n/a | n/a' if v is None else
                         f'{v:.0f} | {v / base:.1f}x')
        out.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    out += ['', 'Policy block, `-cpu max`.  Under KVM a mov dword exits to '
            'QEMU through KVM\'s emulator; KVM\'s emulator cannot run MOVQ '
            'from an XMM register (nor VEX stores or XSAVE) on a read-only '
            'memslot and reports an emulation failure: QEMU then does a '
            'plain vector store itself when it stays in one page, and steps '
            'the rest (lift the pages, single-step, judge, restore).', '']

    out += ['## 3. The floors for a trapped store', '',
            'What any store QEMU emulates costs: a store to a register of '
            'a trivial emulated device (1(e)), and under KVM the bare '
            'KVM_EXIT_MMIO round trip of a minimal VMM.', '',
            '| accelerator | 1(b) / 1(e): a writable sub-page against '
            'QEMU\'s own MMIO store (goal: at most 1.3) | the same ratio '
            f'in each of the {STORE_TURNS} turns |', '|---|---|---|']
    for a in accels:
        turns = ', '.join(f'{t:.2f}' for t in stores[a]['be_turns'])
        out.append(f'| {label[a]} | {stores[a]["b"] / stores[a]["e"]:.2f} '
                   f'| {turns} |')
    out += ['', f'1(b), 1(c) and 1(e) are measured in {STORE_TURNS} turns, '
            'one after the other, each about half a second; the tables give '
            'the median of each.', '']
    if 'floor' in res['kvm']:
        floor_ns = res['kvm']['floor']
        ratio = stores['kvm']['b'] / floor_ns
        out += [f'- bare KVM_EXIT_MMIO round trip (minimal VMM, read-only '
                f'memslot), {label["kvm"]}: {floor_ns:.0f} ns',
                f'- case 1(b) under KVM / floor: {ratio:.2f} (goal: at most '
                '1.5)',
                '- with hardware SPP, 1(b) would cost what 1(a) costs: '
                'writable sub-pages would not exit at all.', '']
    else:
        out += ['Skipped: the floor program was not built.', '']

    out += ['## 4. Protection changes', '']
    for a in accels:
        out += [f'### {label[a]}', '', '| case | time | notes |',
                '|---|---|---|']
        out += [f'| {x} | {y} | {z} |' for x, y, z in res[a]['changes']]
        out.append('')
    out += ['Under KVM each region (run of protected pages) is one '
            'read-only memslot, and the RAM between runs more slots: a '
            'request whose new runs could pass KVM\'s memslot limit is '
            'refused before anything changes.  The QMP round trip is part '
            'of every figure.', '']
    out += ['### Changes while the guest runs', '',
            'The tiny guest stores to each page of 32 MiB, round after '
            f'round; the host makes {WALK_CHANGES:,} protection changes '
            'far from those pages (one `set-subpage` each: protect, then '
            'clear, scattered pages).  Goal: the guest keeps at least 80% '
            'of its undisturbed speed.', '',
            '| accelerator | undisturbed (before / after) | during the '
            'changes | kept | the changes took |', '|---|---|---|---|---|']
    for a in accels:
        before, during, after, secs = res[a]['walk']
        base = (before + after) / 2
        out.append(f'| {label[a]} | {before:.1f} / {after:.1f} rounds/s | '
                   f'{during:.1f} rounds/s | {during / base * 100:.0f}% | '
                   f'{secs:.2f} s |')
    out.append('')

    out += ['## 5. Violation to event', '',
            '| accelerator | median | 99th percentile |', '|---|---|---|']
    for a in accels:
        med, p99 = res[a]['latency']
        out.append(f'| {label[a]} | {med * 1e6:.0f} us | '
                   f'{p99 * 1e6:.0f} us |')
    out += ['', 'From the host writing the guest\'s command to the '
            'SPP_VIOLATION event read by a QMP client, over 1,000 '
            'violations; it includes the guest noticing the command.', '']

    print('bench: SPP against a gdbstub watchpoint (tcg)', flush=True)
    spp_us = bench_spp_detect(qemu, guest)
    gdb_us, why = bench_gdb_detect(qemu, guest)
    out += ['## 6. What users do today: a gdbstub watchpoint (TCG)', '',
            '| mechanism | cost per detected write |', '|---|---|',
            f'| SPP, policy report, every event delivered | {spp_us:.1f} us |']
    if gdb_us:
        out.append(f'| gdb watchpoint on the same 128 bytes, commands '
                   f'that continue | {gdb_us:.1f} us |')
        out += ['', f'The watchpoint costs {gdb_us / spp_us:.0f}x more per '
                'detected write, and it exists only under TCG.', '']
    else:
        out += ['', f'gdb: skipped ({why}).', '']

    print('bench: step fallback cycle (qtest)', flush=True)
    out += ['## 7. The step fallback\'s memory-core cycle, without KVM', '',
            '| protection | median cycle |', '|---|---|']
    out += [f'| {a} | {b} |' for a, b in bench_step(qemu)]
    out += ['', 'One cycle, through QMP: `x-spp-step` begin (copy the '
            'page, release its write trap), a 64-byte write in place of '
            'the instruction, `x-spp-step` end (diff, judge, put back, '
            'trap restored); 300 cycles, each blocking 32 bytes '
            '(4 violations).  Section 2 has the whole step under KVM.', '']

    out += ['## 8. Boot overhead', '', '| accelerator | no protection | '
            f'{SCATTERED:,} pages protected |', '|---|---|---|']
    for a in accels:
        plain, prot = res[a]['boot']
        out.append(f'| {label[a]} | {plain * 1e3:.1f} ms | '
                   f'{prot * 1e3:.1f} ms |')
    out += ['', 'Time from `cont` to the tiny guest\'s ready mark.', '']
    out += ['Stock Linux (Debian\'s kernel, busybox, one vCPU; `mem=512M` '
            f'of 1 GiB; {SCATTERED:,} pages protected, 11 apart, from 512 '
            'MiB), from `cont` to its shell, median of 3:', '',
            '| accelerator | no protection | protected | overhead |',
            '|---|---|---|---|']
    for a in accels:
        plain, prot = res[a]['linux_boot']
        out.append(f'| {label[a]} | {plain:.2f} s | {prot:.2f} s | '
                   f'{(prot / plain - 1) * 100:+.1f}% |')
    out.append('')

    os.makedirs(outdir, exist_ok=True)
    if chart(stores, os.path.join(outdir, 'results.png')):
        out += ['![store cost](results.png)', '']
    text = '\n'.join(out)
    with open(os.path.join(outdir, 'results.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
