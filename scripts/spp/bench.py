#!/usr/bin/env python3
#
# SPP benchmarks.  Every figure is measured side by side in one run and
# reported with the machine, the accelerator and the base version.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later
"""usage: bench.py QEMU GUEST.bin PYTHONPATH VERSION OUTDIR [KVM_FLOOR]"""

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
MB_CMD, MB_ARG = 0x200004, 0x200008
CMD_HAMMER, CMD_STORE_LOOP = 2, 6
GIB_PAGES = 262144
SCATTERED = 10000
STRIDE = 37
FAR_BASE = 0x10000              # scattered pages start at 256 MiB


def machine():
    model = 'unknown'
    with open('/proc/cpuinfo', encoding='utf-8') as f:
        for line in f:
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    return f'{os.cpu_count()} cores, {model}, Linux {platform.release()}'


def store_cost(vm, addr):
    """ns per guest store to @addr, for a run of about half a second."""
    n = 1000
    while True:
        t = vm.guest(CMD_STORE_LOOP, n, addr)
        if t > 0.5 or n >= 1 << 30:
            return t / n * 1e9
        n = min(int(n * max(2, 0.6 / max(t, 1e-4))), 1 << 30)


def bench_store_cost(qemu, guest, accel):
    vm = Vm(qemu, accel, guest)
    vm.qmp.cmd('set-spp-policy', policy='block')
    rows = {}
    rows['a'] = store_cost(vm, PAGE_P + 0x810)
    vm.set(GFN_P, 1, 0xffff0000)        # sub-pages 0-15 protected
    rows['b'] = store_cost(vm, PAGE_P + 0x810)
    rows['c'] = store_cost(vm, PAGE_P + 0x10)
    vm.set(GFN_P, 1, 0xffffffff)
    gfns = [FAR_BASE + i * STRIDE for i in range(SCATTERED)]
    vm.qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0})
    rows['d'] = store_cost(vm, PAGE_P + 0x810)
    rows['regions'] = vm.info()['regions']
    vm.close()
    return rows


def bench_event_latency(qemu, guest, accel, n=1000):
    vm = Vm(qemu, accel, guest)
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


def bench_changes(qemu, accel):
    rows = []
    vm = Vm(qemu, accel)
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

    times = [vm.set(g, 1, 0x5555aaaa) for g in gfns[:2000]]
    rows.append(('set-subpage, 2,000 scattered pages, one call each',
                 f'{sum(times):.2f} s',
                 f'median {statistics.median(times) * 1e3:.2f} ms a call'))
    vm.close()
    return rows


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
            assert vm.qt.cmd(f'spp-step begin {target}')[1] == '1'
            vm.qt.cmd(f'write 0x{(target << 12) + 2016:x} 64 0x{data}')
            assert vm.qt.cmd('spp-step end')[1] == '4'
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


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    qemu, guest, pypath, version, outdir = sys.argv[1:6]
    floor = sys.argv[6] if len(sys.argv) == 7 else None
    sys.path.insert(0, pypath)
    kvm = os.access('/dev/kvm', os.R_OK | os.W_OK)
    accels = ['tcg'] + (['kvm'] if kvm else [])

    out = ['# SPP benchmark results', '',
           f'- machine: {machine()}',
           f'- base: {version}',
           f'- date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}',
           f'- accelerators: {", ".join(a.upper() for a in accels)}']
    if not kvm:
        out.append('- skipped: every KVM case (/dev/kvm cannot be used on '
                   'this machine)')
    out.append('')

    stores = {}
    for accel in accels:
        print(f'bench: guest store cost ({accel})', flush=True)
        stores[accel] = bench_store_cost(qemu, guest, accel)
    out += ['## 1. Guest store cost', '',
            '| case | ' + ' | '.join(f'{a.upper()} ns/store | ratio to (a)'
                                      for a in accels) + ' |',
            '|---|' + '---|---|' * len(accels)]
    names = {'a': '(a) unprotected page',
             'b': '(b) writable sub-page of a protected page',
             'c': '(c) protected sub-page, policy block',
             'd': f'(d) unrelated page, {SCATTERED:,} other pages protected'}
    for k in 'abcd':
        cells = []
        for a in accels:
            r = stores[a]
            cells.append(f'{r[k]:.1f} | {r[k] / r["a"]:.1f}x')
        out.append(f'| {names[k]} | ' + ' | '.join(cells) + ' |')
    out += ['', f'In (d) the {SCATTERED:,} pages sit in '
            f'{stores["tcg"]["regions"]} overlay regions.', '']

    out += ['## 2. The floor for a trapped store under KVM', '']
    if kvm and floor:
        res = subprocess.run([floor], capture_output=True, text=True,
                             check=True).stdout.split()
        floor_ns = float(res[0])
        ratio = stores['kvm']['b'] / floor_ns
        out += [f'- bare KVM_EXIT_MMIO round trip (minimal VMM, read-only '
                f'memslot): {floor_ns:.0f} ns',
                f'- case 1(b) under KVM / floor: {ratio:.2f} (goal: at most '
                '1.5)',
                '- with hardware SPP, 1(b) would cost what 1(a) costs: '
                'writable sub-pages would not exit at all.', '']
    else:
        out += ['Skipped: needs /dev/kvm.', '']

    out += ['## 3. Protection changes', '']
    for accel in accels:
        print(f'bench: protection changes ({accel})', flush=True)
        rows = bench_changes(qemu, accel)
        out += [f'### {accel.upper()}', '', '| case | time | notes |',
                '|---|---|---|']
        out += [f'| {a} | {b} | {c} |' for a, b, c in rows]
        out.append('')
    out += ['Under KVM each overlay region is one read-only memslot (plus '
            'the RAM slots between regions): at most 512 regions.', '']

    out += ['## 4. Violation to event', '',
            '| accelerator | median | 99th percentile |', '|---|---|---|']
    for accel in accels:
        print(f'bench: violation to event ({accel})', flush=True)
        med, p99 = bench_event_latency(qemu, guest, accel)
        out.append(f'| {accel.upper()} | {med * 1e6:.0f} us | '
                   f'{p99 * 1e6:.0f} us |')
    out += ['', 'From the host writing the guest\'s command to the '
            'SPP_VIOLATION event read by a QMP client, over 1,000 '
            'violations; it includes the guest noticing the command.', '']

    print('bench: SPP against a gdbstub watchpoint (tcg)', flush=True)
    spp_us = bench_spp_detect(qemu, guest)
    gdb_us, why = bench_gdb_detect(qemu, guest)
    out += ['## 5. What users do today: a gdbstub watchpoint (TCG)', '',
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
    out += ['## 6. The step fallback, without the KVM single-step', '',
            '| protection | median cycle |', '|---|---|']
    out += [f'| {a} | {b} |' for a, b in bench_step(qemu)]
    out += ['', 'One cycle, through the qtest protocol: `spp-step begin` '
            '(copy the page, take it out of the overlays), a 64-byte write '
            'in place of the instruction, `spp-step end` (diff, judge, put '
            'back, overlays restored); 300 cycles, each blocking 32 bytes '
            '(4 violations).  '
            'Under KVM a real step adds the exclusive section, two '
            'KVM_SET_GUEST_DEBUG calls and one KVM_RUN, and two memslot '
            'updates: not measured here.', '']

    out += ['## 7. Boot overhead', '', '| accelerator | no protection | '
            f'{SCATTERED:,} pages protected |', '|---|---|---|']
    for accel in accels:
        print(f'bench: boot ({accel})', flush=True)
        plain = statistics.median(bench_boot(qemu, guest, accel, False)
                                  for _ in range(3))
        prot = statistics.median(bench_boot(qemu, guest, accel, True)
                                 for _ in range(3))
        out.append(f'| {accel.upper()} | {plain * 1e3:.1f} ms | '
                   f'{prot * 1e3:.1f} ms |')
    out += ['', 'Time from `cont` to the tiny guest\'s ready mark.', '']

    os.makedirs(outdir, exist_ok=True)
    if chart(stores, os.path.join(outdir, 'results.png')):
        out += ['![store cost](results.png)', '']
    text = '\n'.join(out)
    with open(os.path.join(outdir, 'results.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
