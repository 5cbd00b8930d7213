#!/usr/bin/env python3
#
# A real kernel, watched: Debian's stock kernel booted once under the
# given accelerator, protected and watched through spp-watch by symbol.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later
"""usage: test-linux.py QEMU QEMU_PYTHON_DIR tcg|kvm [--nokaslr] [--smp N]
                     [--kernel VMLINUZ --initrd INITRD]

Prints TAP.  Checks, on one boot:
 1 the kernel keeps running with its text and read-only data protected
   (policy report), and with the protection lifted again
 2 enabling a tracepoint rewrites kernel text: the writes are reported,
   named by symbol (the tracepoint's call site in __schedule and its
   static call), and the named bytes did change
 3 modprobe_path protected by symbol: exactly the sub-pages that hold
   its bytes; an overwrite from guest user space is blocked and reported
   by symbol, the rest of the page stays writable, the guest goes on
 4 the KASLR slide: with KASLR on, spp-watch finds it from the guest's
   IDT given a profile without it; with nokaslr it is 0
"""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'scripts', 'spp'))
import linuxvm  # noqa: E402

KERNEL_BASE = 0xffffffff81000000    # _text without KASLR
PAGE = 4096
ENABLE_TRACEPOINT = ('mount -t tracefs nodev /sys/kernel/tracing && '
                     'echo 1 > /sys/kernel/tracing/events/sched/'
                     'sched_switch/enable')

results = []


def check(name, cond, why=''):
    results.append(bool(cond))
    n = len(results)
    print(f'{"ok" if cond else "not ok"} {n} {name}'
          + ('' if cond else f' # {why}'), flush=True)


def load_kallsyms(path):
    syms = {}
    with open(path) as f:
        for line in f:
            addr, _, name = line.split()[:3]
            syms.setdefault(name, int(addr, 16))
    return syms


class Watch:
    """spp-watch running against the guest, with --json."""

    def __init__(self, vm, opts, ranges):
        self.proc = vm.start_watch(['--json', *opts], ranges, sys.path[0],
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        self.info = []
        # bounded: spp-watch is killed if it does not start in time
        timer = threading.Timer(120, self.proc.kill)
        timer.start()
        try:
            while True:
                line = self.proc.stderr.readline()
                if not line:
                    raise RuntimeError('spp-watch exited: ' +
                                       ' | '.join(self.info))
                self.info.append(line.strip())
                if 'watching' in line:
                    break
        finally:
            timer.cancel()
        self.lines = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        self.events = []

    def _reader(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def collect(self, quiet=2.0, limit=30.0):
        """Events until none came for @quiet seconds."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            try:
                line = self.lines.get(timeout=quiet)
            except queue.Empty:
                break
            if line.strip():
                self.events.append(json.loads(line))
        return self.events

    def stop(self):
        status = linuxvm.end_process(self.proc, 120, signal.SIGINT)
        self.info += self.proc.stderr.read().splitlines()
        return status


def gva_bytes(vm, gva, size, tmp):
    path = os.path.join(tmp, 'mem-%x' % gva)
    vm.qmp.cmd('memsave', val=gva, size=size, filename=path)
    with open(path, 'rb') as f:
        return f.read()


def alive(vm):
    status, out = vm.sh('echo alive; dmesg | grep -c -e "BUG:" -e Oops',
                        timeout=60)
    lines = out.split()
    return lines[:1] == ['alive'] and lines[1:] == ['0'], out


def main():
    # a timeout's SIGTERM still shuts the guest down (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    args = sys.argv[1:]
    if len(args) < 3:
        sys.exit(__doc__)
    qemu, pypath, accel = args[:3]
    kaslr = '--nokaslr' not in args
    kernel = initrd = None
    smp = int(args[args.index('--smp') + 1]) if '--smp' in args else 2
    if '--kernel' in args:
        kernel = args[args.index('--kernel') + 1]
        initrd = args[args.index('--initrd') + 1]
    sys.path.insert(0, pypath)

    vm = linuxvm.LinuxVm(qemu, accel, kaslr=kaslr, kernel=kernel,
                         initrd=initrd, smp=smp)
    tmp = tempfile.mkdtemp(prefix='spp-test-linux-')
    try:
        run(vm, accel, kaslr, tmp)
    finally:
        vm.close()
        subprocess.run(['rm', '-rf', tmp], check=False)
    print(f'1..{len(results)}')
    return 0 if all(results) else 1


def run(vm, accel, kaslr, tmp):
    print(f'# {vm.kpkg} booted under {accel} in {vm.boot_time:.1f} s, '
          f'KASLR {"on" if kaslr else "off"}, {vm.smp} vCPUs', flush=True)
    syms = load_kallsyms(vm.kallsyms)
    slide = syms['_text'] - KERNEL_BASE

    # 1 and 2: text and read-only data, policy report, a tracepoint
    sched = syms['__schedule']
    sched_size = min(a for a in syms.values() if a > sched) - sched
    before = gva_bytes(vm, sched, sched_size, tmp)
    w = Watch(vm, ['--symbols', vm.kallsyms, '--policy', 'report',
                   '--restore'],
              ['_stext.._etext', '__start_rodata..__end_rodata'])
    info = vm.qmp.cmd('query-spp')
    pages = info['protected-pages']
    ok, out = alive(vm)
    status, tp_out = vm.sh(ENABLE_TRACEPOINT)
    events = w.collect()
    ok2, out2 = alive(vm)
    after = gva_bytes(vm, sched, sched_size, tmp)
    rc = w.stop()
    check('the kernel runs with its text and read-only data protected '
          f'({pages} pages), and enables a tracepoint',
          pages > 3000 and ok and ok2 and status == 0 and rc == 0,
          f'pages {pages}, {out!r}, {out2!r}, tracepoint {status} '
          f'{tp_out!r}, spp-watch {rc}: {w.info[-3:]}')
    named = {e.get('symbol') for e in events}
    text = [e for e in events if e.get('section') == 'kernel text']
    changed = [e for e in text if e.get('symbol') == '__schedule' and
               before[e['offset']] != after[e['offset']]]
    check('the text rewrite is reported by symbol: the call site in '
          '__schedule (whose bytes did change there) and '
          '__SCT__tp_func_sched_switch',
          len(text) == len(events) and changed and
          '__SCT__tp_func_sched_switch' in named and
          all(e['action'] == 'report' for e in events),
          f'{len(events)} events, {len(text)} in text, symbols {named}, '
          f'{len(changed)} changed in __schedule')
    writers = {e.get('writer-symbol') for e in events}
    check('the text rewrite names its writer: kernel code, in ring 0 '
          f'({", ".join(sorted(str(x) for x in writers))})',
          events and None not in writers and
          all(e.get('writer-ring') == 0 for e in events),
          f'writers {writers}, rings {set(e.get("writer-ring") for e in events)}')
    check('spp-watch restored the protection on exit',
          vm.qmp.cmd('query-spp')['protected-pages'] == 0)

    # 3 and 4: modprobe_path, by a profile without the slide if KASLR
    profile = vm.kallsyms
    if kaslr:
        profile = os.path.join(tmp, 'System.map')
        with open(vm.kallsyms) as src, open(profile, 'w') as dst:
            for line in src:
                addr, rest = line.split(' ', 1)
                dst.write('%016x %s' % (int(addr, 16) - slide, rest))
    mp = syms['modprobe_path']
    mp_end = min(a for a in syms.values() if a > mp)
    w = Watch(vm, ['--symbols', profile, '--policy', 'block', '--restore'],
              ['modprobe_path'])
    m = re.search(r'gpa: (0x[0-9a-f]+)',
                  vm.hmp('gva2gpa 0x%x' % mp))
    gfn = int(m.group(1), 16) // PAGE
    want = 0xffffffff
    for sub in range((mp % PAGE) // 128, ((mp_end - 1) % PAGE) // 128 + 1):
        want &= ~(1 << sub)
    got = vm.qmp.cmd('query-subpage', **{'base-gfn': gfn,
                                         'npages': 1})[0]['wp-map']
    status, out = vm.sh('echo /tmp/evil > /proc/sys/kernel/modprobe; '
                        'cat /proc/sys/kernel/modprobe')
    events = w.collect()
    ok, alive_out = alive(vm)
    rc = w.stop()
    check('modprobe_path by symbol protects exactly the sub-pages of its '
          f'{mp_end - mp} bytes (vector 0x{got:08x}, the other sub-pages '
          'of the page writable)', got == want,
          f'vector 0x{got:08x}, want 0x{want:08x}')
    check('overwriting modprobe_path from guest user space is blocked and '
          'reported by symbol, and the guest goes on',
          out.strip() == '/sbin/modprobe' and events and ok and rc == 0 and
          all(e.get('symbol') == 'modprobe_path' and
              e['action'] == 'block' for e in events),
          f'modprobe {out!r}, events {events[:3]}, alive {alive_out!r}')
    writers = {(e.get('writer-symbol'), e.get('writer-ring'))
               for e in events}
    # Debian 6.1 inlines _proc_do_string() into proc_dostring()
    check('the overwrite of modprobe_path is attributed to the kernel\'s '
          'sysctl string handler (proc_dostring), in ring 0, with the '
          'bytes written',
          len(writers) == 1 and
          writers <= {('proc_dostring', 0), ('_proc_do_string', 0)} and
          all('value' in e for e in events) and
          bytes(e['value'] & 0xff for e in events[:9]) == b'/tmp/evil',
          f'writers {writers}, values '
          f'{[hex(e.get("value", -1)) for e in events[:9]]}')
    found = [line for line in w.info if 'KASLR slide' in line]
    check(f'the KASLR slide (0x{slide:x}) is found from the guest\'s IDT',
          found and found[0].endswith(' slide 0x%x' % slide) and
          (slide != 0) == kaslr, f'{found}')


if __name__ == '__main__':
    sys.exit(main())
