#
# A real guest: Debian's stock kernel with a busybox userspace, run by the
# QEMU under test (TCG or KVM), driven through QMP and a shell on its
# second serial port.  Used by the real-kernel demo and tests.
#
# The kernel and busybox come from Debian's packages (the nested-KVM
# lab's cache, build/lab).  The guest's init loads the virtio block
# modules, makes /proc/kallsyms readable (kptr_restrict 0) and copies it
# to a virtio disk that the host reads: the guest's own symbol profile,
# with the KASLR slide already applied.  Then it runs a shell whose input
# and output are the second serial port.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SPP_WATCH = os.path.join(HERE, '..', '..', 'contrib', 'spp', 'spp-watch')

INIT = r'''#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp
mount -t tmpfs tmpfs /tmp
for m in %(modules)s; do
    insmod "$m" 2>/dev/null
done
stty -F /dev/ttyS1 raw -echo
# the host's port, opened once and kept open (a failed open would end
# init: wait until it opens)
until (: <> /dev/ttyS1) 2>/dev/null; do
    sleep 0.1
done
exec 3<> /dev/ttyS1
echo 0 > /proc/sys/kernel/kptr_restrict
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
grep -v '\[' /proc/kallsyms > /tmp/kallsyms
if [ -b /dev/vda ] && dd if=/tmp/kallsyms of=/dev/vda bs=1M conv=fsync \
        2>/dev/null; then
    echo "linuxvm: kallsyms $(wc -c < /tmp/kallsyms)" >&3
else
    echo "linuxvm: kallsyms 0 (no /dev/vda, or writing it failed)" >&3
fi
# the host's commands, one per line, not interactive (no prompt, no
# echo), each in its own shell
exec >&3 2>&3
while true; do
    if ! read -r line <&3; then
        sleep 0.1
        continue
    fi
    sh -c "$line" ||
        echo "linuxvm: a line failed ($?): $line" > /dev/kmsg
done
'''

# The virtio disk that carries the symbol profile.
SIDE_DISK_SIZE = 64 << 20
BOOT_TIMEOUT = 300


def load_lab():
    spec = importlib.util.spec_from_file_location(
        'kvm_lab', os.path.join(HERE, 'kvm-lab.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def prepare():
    """(vmlinuz, initramfs, kernel package): built once, cached."""
    lab = load_lab()
    kpkg, kernel, kroot, bbroot = lab.debian_kernel()
    out = os.path.join(lab.LAB, 'linuxvm-%s.cpio' % kpkg)
    mods = lab.modules(kroot, ['virtio_pci', 'virtio_blk'])
    names = ['/lib/m/' + os.path.basename(m).removesuffix('.xz')
             for m in mods]
    init = INIT % {'modules': ' '.join(names)}
    stamp = out + '.init'
    if os.path.exists(out) and os.path.exists(stamp) and \
            open(stamp).read() == init:
        return kernel, out, kpkg
    cp = lab.Cpio(out + '.tmp')
    for d in ('proc', 'sys', 'dev', 'tmp'):
        cp.dir(d)
    cp.copy('/bin/busybox', os.path.join(bbroot, 'bin', 'busybox'))
    for m, name in zip(mods, names):
        cp.file(name, lab.module_data(m))
    cp.file('/init', init.encode())
    cp.close()
    os.rename(out + '.tmp', out)
    with open(stamp, 'w') as f:
        f.write(init)
    return kernel, out, kpkg


class GuestError(Exception):
    pass


def end_process(proc, timeout, sig=None):
    """Send @sig to @proc if it still runs; kill it if it has not exited
    @timeout seconds later.  Returns its exit status."""
    if sig is not None and proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode


class LinuxVm:
    """The stock kernel under @accel; .qmp, .sh(), .kallsyms."""

    def __init__(self, qemu, accel='tcg', kaslr=True, mem='1G', smp=2,
                 extra=(), kernel=None, initrd=None, append='',
                 before_boot=None):
        """@before_boot(qmp), when given, runs on the paused VM before the
        guest starts; boot_time then counts from the start of the guest."""
        self.smp = smp
        self.tools = []
        if kernel:
            self.kpkg = os.path.basename(kernel)
        else:
            kernel, initrd, self.kpkg = prepare()
        self.tmp = tempfile.mkdtemp(prefix='spp-linux-')
        self.qmp_path = os.path.join(self.tmp, 'qmp.sock')
        # a second monitor, for a tool such as spp-watch
        self.tool_qmp = os.path.join(self.tmp, 'tool-qmp.sock')
        shell = os.path.join(self.tmp, 'shell.sock')
        self.side = os.path.join(self.tmp, 'side.img')
        self.console = os.path.join(self.tmp, 'console.log')
        with open(self.side, 'wb') as f:
            f.truncate(SIDE_DISK_SIZE)
        self.before_boot = before_boot
        append = 'console=ttyS0 panic=-1 earlyprintk=serial,ttyS0' + (
            '' if kaslr else ' nokaslr') + (' ' + append if append else '')
        args = [qemu, '-machine', 'q35', '-accel', accel, '-m', mem,
                '-smp', str(smp), '-display', 'none', '-nodefaults',
                '-no-reboot', '-kernel', kernel, '-initrd', initrd,
                '-append', append,
                '-qmp', f'unix:{self.qmp_path},server=on,wait=off',
                '-qmp', f'unix:{self.tool_qmp},server=on,wait=off',
                '-chardev', f'socket,id=sh,path={shell},server=on,wait=off',
                '-serial', f'file:{self.console}', '-serial', 'chardev:sh',
                '-drive', f'file={self.side},format=raw,if=virtio',
                *extra]
        if accel == 'kvm':
            args += ['-cpu', 'host']
        if before_boot:
            args.append('-S')
        self.start = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        try:
            self._boot(args, shell)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def _boot(self, args, shell):
        from qemu.qmp.legacy import QEMUMonitorProtocol
        for _ in range(400):
            if os.path.exists(self.qmp_path) and os.path.exists(shell):
                break
            if self.proc.poll() is not None:
                raise GuestError(f'QEMU exited with {self.proc.returncode}')
            time.sleep(0.025)
        self.qmp = QEMUMonitorProtocol(self.qmp_path)
        self.qmp.connect()
        if self.before_boot:
            self.before_boot(self.qmp)
            self.start = time.monotonic()
            self.qmp.cmd('cont')
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(shell)
        self.buf = b''
        self._read_until(b'linuxvm: kallsyms ', BOOT_TIMEOUT)
        line = self._read_line(10)
        size = int(line.split()[0])
        self.boot_time = time.monotonic() - self.start
        with open(self.side, 'rb') as f:
            data = f.read(size)
        if not size or len(data) != size or b'\0' in data:
            raise GuestError('the guest did not hand over its symbol '
                             'profile (%s)' % line)
        self.kallsyms = os.path.join(self.tmp, 'kallsyms')
        with open(self.kallsyms, 'wb') as f:
            f.write(data)

    def _recv(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            chunk = None
        if chunk == b'':
            raise GuestError('the guest\'s shell went away (console: %s)' %
                             self.console_tail())
        return chunk or b''

    def _read_until(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if time.monotonic() > deadline:
                raise GuestError('no %r from the guest after %d s '
                                 '(console: %s)' % (marker, timeout,
                                                    self.console_tail()))
            self.buf += self._recv(deadline)
        before, self.buf = self.buf.split(marker, 1)
        return before

    def _read_line(self, timeout):
        return self._read_until(b'\n', timeout).decode().strip()

    def console_tail(self, n=5):
        try:
            with open(self.console, errors='replace') as f:
                return ' | '.join(f.read().splitlines()[-n:])
        except OSError:
            return '(none)'

    def sh(self, cmd, timeout=60):
        """Run @cmd (one line) in the guest's shell: (exit status,
        output)."""
        marker = b'@@spp-done@@'
        if '\n' in cmd:
            raise ValueError('one line at a time')
        self.sock.sendall(b'{ ' + cmd.encode() + b'; }; echo "' +
                          marker[:6] + b'"' + marker[6:] + b' $?\n')
        out = self._read_until(marker, timeout)
        status = int(self._read_line(timeout))
        return status, out.decode(errors='replace')

    def start_watch(self, opts, ranges, pypath, **popen_args):
        """spp-watch @opts on the tools' QMP socket, for @ranges; close()
        kills it if it still runs then."""
        proc = subprocess.Popen(
            [sys.executable, SPP_WATCH, *opts, self.tool_qmp, *ranges],
            text=True, env=dict(os.environ, QEMU_PYTHON=pypath),
            **popen_args)
        self.tools.append(proc)
        return proc

    def hmp(self, line):
        return self.qmp.cmd('human-monitor-command',
                            **{'command-line': line})

    def close(self):
        for proc in self.tools:
            end_process(proc, 0)
        try:
            self.qmp.cmd('quit')
        except Exception:       # already gone
            pass
        try:
            self.qmp.close()
        except Exception:       # already gone
            pass
        self.sock.close()
        end_process(self.proc, 10)
        shutil.rmtree(self.tmp, ignore_errors=True)
