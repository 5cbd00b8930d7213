#
# A QEMU running the SPP test guest, driven through QMP and the qtest
# protocol (to read and write guest RAM).  Used by the benchmarks and the
# spp-watch test.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

# tests/qtest/spp-guest-layout.h
MB_READY, MB_CMD, MB_ARG, MB_DONE, MB_ADDR = (0x200000, 0x200004, 0x200008,
                                              0x20000c, 0x200010)
READY_MAGIC = 0x53505021


class Qtest:
    """The qtest protocol, to read and write guest RAM."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = b''

    def cmd(self, line):
        self.sock.sendall(line.encode() + b'\n')
        while True:
            while b'\n' not in self.buf:
                self.buf += self.sock.recv(4096)
            reply, self.buf = self.buf.split(b'\n', 1)
            if not reply.startswith(b'IRQ'):
                break
        words = reply.decode().split()
        if words[0] != 'OK':
            raise RuntimeError(f'qtest: {line}: {reply}')
        return words

    def readl(self, addr):
        return int(self.cmd(f'readl 0x{addr:x}')[1], 16)

    def writel(self, addr, val):
        self.cmd(f'writel 0x{addr:x} 0x{val:x}')


class RawQmp:
    """A synchronous QMP client on a plain socket, as a tool in C would
    be: no event loop between the request and its reply."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.f = self.sock.makefile('rwb', buffering=0)
        self.f.readline()
        self.cmd('qmp_capabilities')

    def cmd(self, name, args=None):
        """The reply: a dict with 'return' or 'error'."""
        msg = {'execute': name}
        if args is not None:
            msg['arguments'] = args
        self.sock.sendall(json.dumps(msg).encode() + b'\n')
        while True:
            reply = json.loads(self.f.readline())
            if 'return' in reply or 'error' in reply:
                return reply

    def close(self):
        self.sock.close()


class Vm:
    def __init__(self, qemu, accel, guest=None, mem='2G', extra=(),
                 start=True):
        # QEMU's own Python QMP library must be on sys.path.
        from qemu.qmp.legacy import QEMUMonitorProtocol
        self.tmp = tempfile.mkdtemp(prefix='spp-bench-')
        qmp = os.path.join(self.tmp, 'qmp.sock')
        raw = os.path.join(self.tmp, 'raw-qmp.sock')
        qt = os.path.join(self.tmp, 'qtest.sock')
        args = [qemu, '-machine', 'q35', '-m', mem, '-accel', accel,
                '-display', 'none', '-nodefaults', '-S',
                '-qmp', f'unix:{qmp},server=on,wait=off',
                '-qmp', f'unix:{raw},server=on,wait=off',
                '-chardev', f'socket,id=qt,path={qt},server=on,wait=off',
                '-qtest', 'chardev:qt', '-qtest-log', '/dev/null', *extra]
        if guest:
            args += ['-bios', guest]
        self.proc = subprocess.Popen(args)
        for _ in range(400):
            if all(os.path.exists(p) for p in (qmp, raw, qt)):
                break
            time.sleep(0.025)
        self.qmp = QEMUMonitorProtocol(qmp)
        self.qmp.connect()
        self.raw = RawQmp(raw)
        self.qt = Qtest(qt)
        if start:
            self.qmp.cmd('cont')
            if guest:
                self.wait_ready()

    def wait_ready(self):
        t0 = time.perf_counter()
        while self.qt.readl(MB_READY) != READY_MAGIC:
            if time.perf_counter() - t0 > 30:
                raise RuntimeError('guest did not start')
        return time.perf_counter() - t0

    def set(self, gfn, npages, wp):
        t = time.perf_counter()
        self.qmp.cmd_raw('set-subpage', {'base_gfn': gfn, 'npages': npages,
                                         'wp_map': wp})
        return time.perf_counter() - t

    def guest(self, cmd, arg, addr=0):
        """Run a guest command; return the seconds until it is done."""
        done = self.qt.readl(MB_DONE)
        self.qt.writel(MB_ADDR, addr)
        self.qt.writel(MB_ARG, arg)
        t0 = time.perf_counter()
        self.qt.writel(MB_CMD, cmd)
        while self.qt.readl(MB_DONE) == done:
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f'guest command {cmd} did not finish')
        return time.perf_counter() - t0

    def info(self):
        return self.qmp.cmd('query-spp')

    def close(self):
        self.raw.close()
        self.qmp.close()
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)
