#!/usr/bin/env python3
#
# make demo: a real Linux kernel, watched by symbol.
#
# Boots Debian's stock kernel with a tiny busybox userspace under the
# fork's QEMU (KVM where this machine has a hardware KVM, else TCG),
# protects its text and system call table through spp-watch by symbol,
# lets the guest rewrite its own text (enabling a tracepoint), then
# guards modprobe_path at sub-page granularity and lets guest user space
# try to overwrite it.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later
"""usage: demo-linux.py QEMU QEMU_PYTHON_DIR"""

import queue
import signal
import subprocess
import sys
import threading
import time

import linuxvm

SHOWN = 6           # violation lines shown per step

T0 = time.monotonic()


def say(text=''):
    stamp = f'[{time.monotonic() - T0:5.1f}s] ' if text else ''
    print(stamp + text, flush=True)


def indent(text, prefix='        '):
    for line in text.rstrip('\n').splitlines():
        print(prefix + line, flush=True)


class Watch:
    """spp-watch in the background; its lines are shown as they come."""

    def __init__(self, vm, opts, ranges, pypath):
        shown = ['spp-watch'] + [
            'kallsyms' if a == vm.kallsyms else a for a in opts] + \
            ['QMP-SOCKET'] + ranges
        indent('$ ' + ' '.join(shown))
        self.proc = vm.start_watch(opts, ranges, pypath,
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.violations = []
        while True:
            line = self._next(60)
            if line is None:
                raise SystemExit('demo: spp-watch did not start')
            indent(line, '        spp-watch| ')
            if 'watching' in line:
                break
            if 'error' in line or 'refused' in line:
                raise SystemExit('demo: spp-watch failed')

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip('\n'))
        self.lines.put(None)

    def _next(self, timeout):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def show(self, quiet=2.0):
        """Show the violations that arrive until none came for @quiet s."""
        n = 0
        while True:
            line = self._next(quiet)
            if line is None:
                break
            self.violations.append(line)
            n += 1
            if n <= SHOWN:
                indent(line.split(' ', 1)[1], '        spp-watch| ')
        if n > SHOWN:
            print(f'        spp-watch| ... and {n - SHOWN} more', flush=True)
        return self.violations[-n:] if n else []

    def stop(self):
        linuxvm.end_process(self.proc, 60, signal.SIGINT)
        while True:
            line = self._next(0.5)
            if line is None:
                break
            indent(line, '        spp-watch| ')


def symbols_in(lines):
    names = []
    for line in lines:
        if ' at ' in line:
            sym = line.split(' at ', 1)[1].split('+', 1)[0]
            if sym not in names:
                names.append(sym)
    return names


def main():
    # a timeout's SIGTERM still shuts the guest down (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    qemu, pypath = sys.argv[1:]
    sys.path.insert(0, pypath)

    lab = linuxvm.load_lab()
    kind, reason = lab.host_kvm()
    accel = 'kvm' if kind == 'hardware' else 'tcg'
    print('== Sub-page write protection: a real Linux kernel, watched by '
          'symbol ==')
    say('Fetching Debian\'s stock kernel and busybox (cached in build/lab)')
    kernel, initrd, kpkg = linuxvm.prepare()
    if accel == 'kvm':
        say(f'Booting {kpkg} (KASLR on) under KVM: {reason}')
    else:
        say(f'Booting {kpkg} (KASLR on) under TCG: no hardware KVM here '
            f'({reason})')
    vm = linuxvm.LinuxVm(qemu, accel, kernel=kernel, initrd=initrd)
    watch = None
    try:
        nsyms = sum(1 for _ in open(vm.kallsyms))
        say(f'The guest is up after {vm.boot_time:.1f} s.  Its init made '
            '/proc/kallsyms readable and copied it to a virtio disk; that '
            f'file ({nsyms:,} symbols, KASLR slide included) is the symbol '
            'profile spp-watch uses.')
        print()
        say('Step 1: protect the kernel\'s code (_stext.._etext) and its '
            'system call table, with policy "report": writes land, and '
            'each one is reported.')
        watch = Watch(vm, ['--symbols', vm.kallsyms, '--policy', 'report',
                           '--restore'],
                      ['_stext.._etext', 'sys_call_table'], pypath)
        print()
        say('Step 2: inside the guest, enable the sched_switch tracepoint.  '
            'The kernel patches its own code to do that (a static key '
            'flips), so this is a write into protected kernel text:')
        indent('guest# mount -t tracefs nodev /sys/kernel/tracing')
        indent('guest# echo 1 > /sys/kernel/tracing/events/sched/'
               'sched_switch/enable')
        vm.sh('mount -t tracefs nodev /sys/kernel/tracing && echo 1 > '
              '/sys/kernel/tracing/events/sched/sched_switch/enable')
        text = watch.show()
        say(f'{len(text)} writes into kernel text reported, in: '
            f'{", ".join(symbols_in(text)) or "(none)"}.  The guest goes '
            'on.')
        watch.stop()
        watch = None
        print()
        say('Step 3: guard modprobe_path, the path of the program the '
            'kernel runs to load modules (a classic target of kernel '
            'exploits), with policy "block".  Only the 128-byte sub-pages '
            'holding its bytes are protected:')
        watch = Watch(vm, ['--symbols', vm.kallsyms, '--policy', 'block',
                           '--restore'], ['modprobe_path'], pypath)
        print()
        say('Step 4: inside the guest, root overwrites it:')
        indent('guest# echo /tmp/evil > /proc/sys/kernel/modprobe')
        vm.sh('echo /tmp/evil > /proc/sys/kernel/modprobe')
        blocked = watch.show()
        status, out = vm.sh('cat /proc/sys/kernel/modprobe')
        indent('guest# cat /proc/sys/kernel/modprobe')
        indent(out)
        status2, out2 = vm.sh('echo the guest is still running')
        indent('guest# echo the guest is still running')
        indent(out2)
        watch.stop()
        watch = None
        info = vm.qmp.cmd('query-spp')
        print()
        say('Summary:')
        indent(f'- kernel text: {len(text)} rewrites reported by symbol, '
               'the guest went on')
        indent(f'- modprobe_path: {len(blocked)} blocked writes, it still '
               f'reads {out.strip()!r}; the rest of its page stayed '
               'writable')
        indent(f'- QEMU counted {info["violations"]} violations, '
               f'{info["bytes-blocked"]} bytes blocked; protection lifted '
               f'again ({info["protected-pages"]} pages protected now)')
        ok = (text and blocked and out.strip() == '/sbin/modprobe' and
              status2 == 0)
    finally:
        if watch:
            watch.stop()
        vm.close()
    say('Done: the guest is shut down and nothing is left running.')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
