#!/usr/bin/env python3
#
# SPP benchmarks: the cost of protection changes.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later
"""usage: bench.py QEMU PYTHONPATH VERSION RESULTS.md"""

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

GIB_PAGES = 262144
SCATTERED = 10000
STRIDE = 37             # pages between two scattered pages


def machine():
    model = 'unknown'
    with open('/proc/cpuinfo', encoding='utf-8') as f:
        for line in f:
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    return f'{os.cpu_count()} cores, {model}, Linux {platform.release()}'


class Vm:
    def __init__(self, qemu, accel, mem):
        from qemu.qmp.legacy import QEMUMonitorProtocol
        self.tmp = tempfile.mkdtemp(prefix='spp-bench-')
        sock = os.path.join(self.tmp, 'qmp.sock')
        self.proc = subprocess.Popen(
            [qemu, '-machine', 'q35', '-m', mem, '-accel', accel,
             '-display', 'none', '-nodefaults', '-S',
             '-qmp', f'unix:{sock},server=on,wait=off'])
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        self.qmp = QEMUMonitorProtocol(sock)
        self.qmp.connect()

    def set(self, gfn, npages, wp):
        t = time.perf_counter()
        self.qmp.cmd_raw('set-subpage', {'base_gfn': gfn, 'npages': npages,
                                         'wp_map': wp})
        return time.perf_counter() - t

    def info(self):
        return self.qmp.cmd('query-spp')

    def close(self):
        self.qmp.close()
        self.proc.terminate()
        self.proc.wait()
        os.rmdir(self.tmp) if not os.listdir(self.tmp) else None


def round_trip(vm):
    samples = []
    for _ in range(200):
        t = time.perf_counter()
        vm.qmp.cmd('query-spp')
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def bench_changes(qemu, accel):
    rows = []
    vm = Vm(qemu, accel, '2G')
    rtt = round_trip(vm)
    rows.append(('QMP round trip (query-spp), median', f'{rtt * 1e3:.3f} ms',
                 ''))

    base = 0x10000                              # 256 MiB
    t = vm.set(base, GIB_PAGES, 0x0000ffff)
    info = vm.info()
    rows.append(('set-subpage, 1 GiB contiguous (262,144 pages), one call',
                 f'{t * 1e3:.1f} ms',
                 f'{GIB_PAGES / t / 1e6:.2f} M pages/s, '
                 f'{info["regions"]} region(s)'))
    t = vm.set(base, GIB_PAGES, 0xffffffff)
    rows.append(('clear the same 1 GiB, one call', f'{t * 1e3:.1f} ms', ''))

    gfns = [base + i * STRIDE for i in range(SCATTERED)]
    times = [vm.set(g, 1, 0x5555aaaa) for g in gfns]
    info = vm.info()
    total = sum(times)
    times.sort()
    rows.append((f'set-subpage, {SCATTERED:,} scattered pages, one call each',
                 f'{total:.2f} s total',
                 f'median {statistics.median(times) * 1e3:.3f} ms, '
                 f'p99 {times[int(len(times) * 0.99)] * 1e3:.3f} ms, '
                 f'{info["protected-pages"]} pages in '
                 f'{info["regions"]} regions'))
    regions = info['regions']
    t0 = time.perf_counter()
    for g in gfns:
        vm.set(g, 1, 0xffffffff)
    total = time.perf_counter() - t0
    info = vm.info()
    rows.append((f'clear the {SCATTERED:,} pages, one call each',
                 f'{total:.2f} s total',
                 f'back to {info["protected-pages"]} pages, '
                 f'{info["regions"]} regions'))
    assert info['protected-pages'] == 0 and info['regions'] == 0
    t0 = time.perf_counter()
    vm.qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0x5555aaaa})
    t = time.perf_counter() - t0
    info = vm.info()
    rows.append((f'set-subpages, the same {SCATTERED:,} pages in one call',
                 f'{t * 1e3:.1f} ms',
                 f'{info["protected-pages"]} pages in '
                 f'{info["regions"]} regions'))
    t0 = time.perf_counter()
    vm.qmp.cmd('set-subpages', **{'gfns': gfns, 'wp-map': 0xffffffff})
    t = time.perf_counter() - t0
    info = vm.info()
    rows.append((f'set-subpages, clear them in one call', f'{t * 1e3:.1f} ms',
                 f'back to {info["protected-pages"]} pages, '
                 f'{info["regions"]} regions'))
    assert info['protected-pages'] == 0 and info['regions'] == 0
    vm.close()
    return rows, regions


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    qemu, pypath, version, out = sys.argv[1:]
    sys.path.insert(0, pypath)
    accels = ['tcg']
    skipped = []
    if os.access('/dev/kvm', os.R_OK | os.W_OK):
        accels.append('kvm')
    else:
        skipped.append('KVM: /dev/kvm cannot be used on this machine')

    lines = [f'# SPP benchmark results\n',
             f'- machine: {machine()}',
             f'- QEMU base: {version}',
             f'- date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}']
    lines += [f'- skipped: {s}' for s in skipped]
    for accel in accels:
        rows, regions = bench_changes(qemu, accel)
        lines += ['', f'## Protection changes ({accel.upper()})', '',
                  '| case | time | notes |', '|---|---|---|']
        lines += [f'| {a} | {b} | {c} |' for a, b, c in rows]
        lines += ['', f'With {regions} overlay regions, KVM would use at '
                  f'most {2 * regions + 1} memory slots for the RAM they '
                  'split (one read-only slot per region plus the RAM '
                  'between them).']
    text = '\n'.join(lines) + '\n'
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w', encoding='utf-8') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
