#!/usr/bin/env python3
#
# The SPP demonstration: boot the tiny guest, write-protect half of one
# page at 128-byte granularity, and watch the guest's writes being
# blocked as SPP_VIOLATION events arrive over QMP.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later
"""usage: demo.py QEMU GUEST.bin PYTHONPATH"""

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time

ROUNDS = 5
PAGE_P = 0x100000
GFN_P = PAGE_P >> 12
MB_DONE = 0x20000c
WP_MAP = 0xffff0000         # sub-pages 0-15 protected, 16-31 writable


def hmp(qmp, line):
    return qmp.cmd('human-monitor-command', **{'command-line': line})


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    qemu, guest, pypath = sys.argv[1:]
    sys.path.insert(0, pypath)
    from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

    tmp = tempfile.mkdtemp(prefix='spp-demo-')
    sock = os.path.join(tmp, 'qmp.sock')
    accel = ['-accel', 'kvm', '-accel', 'tcg'] \
        if os.access('/dev/kvm', os.R_OK | os.W_OK) else ['-accel', 'tcg']
    args = [qemu, '-machine', 'q35', '-m', '64', *accel, '-bios', guest,
            '-display', 'none', '-nodefaults', '-S',
            '-qmp', f'unix:{sock},server=on,wait=off']
    print('$ ' + ' '.join(args))
    proc = subprocess.Popen(args)
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        qmp = QEMUMonitorProtocol(sock)
        qmp.connect()
        info = qmp.cmd('query-spp')
        print(f"\nSPP backend: {info['backend']} ({info['backend-reason']})")
        kvm = qmp.cmd('query-kvm')
        print(f"accelerator: {'KVM' if kvm['enabled'] else 'TCG'}")

        print(f'\n-> set-subpage base_gfn={GFN_P:#x} npages=1 '
              f'wp_map={WP_MAP:#010x}')
        qmp.cmd_raw('set-subpage', {'base_gfn': GFN_P, 'npages': 1,
                                    'wp_map': WP_MAP})
        print(hmp(qmp, f'info subpage {GFN_P:#x} 1').rstrip())

        print(f'\nThe guest now stores 1..{ROUNDS} to {PAGE_P + 0x10:#x} '
              f'(sub-page 0, protected) and to {PAGE_P + 0x810:#x} '
              '(sub-page 16, writable):\n')
        qmp.cmd('cont')
        seen = 0
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                ev = qmp.pull_event(wait=0.2)
            except (TimeoutError, asyncio.TimeoutError):
                ev = None
            if ev and ev['event'] == 'SPP_VIOLATION':
                d = ev['data']
                seen += 1
                print(f"<- SPP_VIOLATION gpa={d['gpa']:#x} gfn={d['gfn']:#x} "
                      f"subpage={d['subpage']} size={d['size']} "
                      f"source={d['source']} cpu-index={d.get('cpu-index')} "
                      f"action={d['action']}")
            done = hmp(qmp, f'xp /1wx {MB_DONE:#x}').split()[-1]
            if int(done, 16) >= 1 and not ev:
                break

        print('\nGuest memory afterwards:')
        print('  protected ' + hmp(qmp, f'xp /1wx {PAGE_P + 0x10:#x}').strip())
        print('  writable  ' + hmp(qmp, f'xp /1wx {PAGE_P + 0x810:#x}').strip())
        info = qmp.cmd('query-spp')
        print(f"\nquery-spp: {info['violations']} violations "
              f"({info['violations-cpu']} by vCPUs), "
              f"{info['bytes-blocked']} bytes blocked, "
              f"{info['events-sent']} events sent")
        # quit; the library may log the connection's end, which is expected
        logging.getLogger('qemu.qmp').setLevel(logging.CRITICAL)
        try:
            qmp.cmd('quit')
        except Exception:       # QEMU may close before it answers
            pass
        qmp.close()
        proc.wait(timeout=10)
        ok = seen == ROUNDS and info['bytes-blocked'] == 4 * ROUNDS
        print('\ndemo ' + ('OK: every write to the protected sub-page was '
                           'blocked and reported' if ok else 'FAILED'))
        return 0 if ok else 1
    finally:
        if proc.poll() is None:
            proc.kill()
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)


if __name__ == '__main__':
    sys.exit(main())
