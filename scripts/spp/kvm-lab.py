#!/usr/bin/env python3
#
# The nested-KVM lab: run programs under a real KVM on a machine that has
# none.
#
# QEMU's TCG with "-cpu max" emulates AMD SVM with nested paging, and
# Debian's stock kernel loads kvm_amd on it, so a Linux guest (L1) booted
# under TCG has a working /dev/kvm.  This script fetches that kernel and
# busybox from Debian's packages (cached under build/lab), packs an
# initramfs holding busybox, the kvm modules and the given programs with
# their shared libraries and QEMU's firmware, boots it with the binary
# under test, runs the programs inside and returns their output and exit
# status.
#
#   kvm-lab.py [--qemu BIN] [--timeout S] [--file F]... [--dir D]...
#              [--env K=V]... -- PROG [ARG]...
#   kvm-lab.py --probe      report which KVM this host has, and exit
#
# PROG and every --file and --dir are copied to their own absolute paths
# in the initramfs (with the shared libraries of the programs and of the
# libraries in the directories), so paths baked into them stay valid.  Exit status: that of
# the program; 125 if the lab itself failed (the reason is printed).
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later

import argparse
import hashlib
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get('SPP_BUILD_DIR', os.path.join(TOP, 'build'))
LAB = os.path.join(BUILD, 'lab')
LAB_FAILED = 125

# The modules that make /dev/kvm on an AMD CPU with SVM, and
# /dev/net/tun and /dev/vhost-net for the vhost tests, in load order once
# their dependencies (read from the modules themselves) are added.
KVM_MODULES = ['kvm-amd', 'tun', 'vhost-net']
BOOT_TIMEOUT = 180          # seconds from start to the init's "ready"
# One vCPU for the L1.  With two vCPUs on multi-threaded TCG, memslot
# changes while an L2 vCPU ran broke the nested state now and then: an
# L2 whose registers turned to garbage (2 of 25 runs of a test that
# changes protection once, then makes 20,000 trapped stores), an L1 that
# hung, an L1 that died (in about 1 of 5 runs of a loop that changes an
# unrelated page's protection 150 times while the guest stores to its
# ROM).  Two vCPUs on one TCG thread fixed that, but then a Linux L2
# stalled early in its boot.  With one vCPU: 25 of 25 and a Linux L2
# that boots.  SPP_LAB_SMP and SPP_LAB_ACCEL override these.
LAB_ACCEL = 'tcg'
LAB_SMP = '1'
READY = 'kvm-lab: ready'
EXIT_RE = re.compile(r'^kvm-lab: exit status (\d+)\s*$')


def log(msg):
    print('kvm-lab: ' + msg, file=sys.stderr, flush=True)


def fail(msg):
    log('error: ' + msg)
    sys.exit(LAB_FAILED)


def cpu_flags():
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('flags'):
                return set(line.split(':', 1)[1].split())
    return set()


def host_kvm():
    """Which KVM this host has: (kind, reason).

    kind is 'hardware' (the CPU's VMX or SVM, maybe itself nested under a
    hypervisor), 'software' (a KVM that emulates guest code, such as
    kvm_pvm) or 'none'.
    """
    if not os.path.exists('/dev/kvm'):
        return 'none', '/dev/kvm does not exist'
    try:
        os.close(os.open('/dev/kvm', os.O_RDWR))
    except OSError as e:
        return 'none', '/dev/kvm cannot be opened (%s)' % e.strerror
    if os.path.isdir('/sys/module/kvm_pvm'):
        return 'software', ('/dev/kvm is kvm_pvm, a software KVM that '
                            'emulates guest code')
    flags = cpu_flags()
    if not flags & {'vmx', 'svm'}:
        return 'software', ('/dev/kvm exists but the CPU has neither VMX '
                            'nor SVM, so that KVM is not hardware')
    what = 'VMX' if 'vmx' in flags else 'SVM'
    if 'hypervisor' in flags:
        return 'hardware', ('/dev/kvm uses the CPU\'s %s (itself '
                            'virtualised by a hypervisor)' % what)
    return 'hardware', '/dev/kvm uses the CPU\'s %s' % what


def run(cmd, **kw):
    return subprocess.run(cmd, check=False, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          **kw)


# SPP_LAB_KERNEL: the Debian kernel the lab boots (its L1): "stable",
# bookworm's 6.1 (the default), or "backports", trixie's 6.12 built for
# bookworm (bookworm-backports, from the same archive)
KERNELS = {'stable': 'linux-image-amd64',
           'backports': 'linux-image-amd64/bookworm-backports'}


def kernel_package():
    """The real package behind the linux-image-amd64 meta-package."""
    which = os.environ.get('SPP_LAB_KERNEL', 'stable')
    if which not in KERNELS:
        fail('SPP_LAB_KERNEL=%s: expected one of %s' %
             (which, ', '.join(sorted(KERNELS))))
    out = run(['apt-cache', 'depends', KERNELS[which]])
    m = re.search(r'Depends: (linux-image-[0-9][^\s]*-amd64)\b', out.stdout)
    if out.returncode or not m:
        fail('apt-cache does not know linux-image-amd64 (run '
             '"apt-get update"?):\n' + out.stdout)
    return m.group(1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def download(pkg):
    """Fetch @pkg's .deb into build/lab/dl once; apt checks its hash."""
    dl = os.path.join(LAB, 'dl')
    os.makedirs(dl, exist_ok=True)
    out = run(['apt-cache', 'show', '--no-all-versions', pkg])
    m = re.search(r'^Filename: .*/([^/\s]+\.deb)$', out.stdout, re.M)
    if out.returncode or not m:
        fail('apt-cache has no package %s (run "apt-get update"?)' % pkg)
    deb = os.path.join(dl, m.group(1))
    sha = re.search(r'^SHA256: ([0-9a-f]{64})$', out.stdout, re.M)
    if os.path.exists(deb):
        if not sha or sha256(deb) == sha.group(1):
            return deb
        log('%s in the cache does not match the archive\'s sha256: '
            'downloading it again' % m.group(1))
        os.unlink(deb)
    log('downloading %s from Debian' % m.group(1))
    with tempfile.TemporaryDirectory(dir=dl) as tmp:
        os.chmod(tmp, 0o755)
        out = run(['apt-get', 'download', '-q', pkg], cwd=tmp)
        got = [f for f in os.listdir(tmp) if f.endswith('.deb')]
        if out.returncode or len(got) != 1:
            fail('downloading %s failed (apt-get download):\n%s' %
                 (pkg, out.stdout))
        # apt names the file with the epoch (1%3a...); keep the pool name
        os.rename(os.path.join(tmp, got[0]), deb)
    return deb


def unpack(deb):
    dest = os.path.join(LAB, os.path.basename(deb)[:-4])
    if not os.path.isdir(dest):
        tmp = dest + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        out = run(['dpkg-deb', '-x', deb, tmp])
        if out.returncode:
            os.unlink(deb)
            fail('%s is not a valid package, removed it; run again:\n%s' %
                 (deb, out.stdout))
        os.rename(tmp, dest)
    return dest


def module_data(path):
    """A module's ELF image (Debian's 6.12 compresses them with xz)."""
    with open(path, 'rb') as f:
        data = f.read()
    return lzma.decompress(data) if path.endswith('.xz') else data


def module_depends(path):
    data = module_data(path)
    m = re.search(rb'\0depends=([^\0]*)\0', data)
    return [d for d in m.group(1).decode().split(',') if d] if m else []


def kvm_modules(kroot):
    """The .ko files to load for kvm-amd and vhost-net, dependencies
    first."""
    return modules(kroot, KVM_MODULES)


def modules(kroot, wanted):
    """The .ko files to load for the modules @wanted, dependencies
    first."""
    index = {}
    builtin = set()
    for dirpath, _, files in os.walk(os.path.join(kroot, 'lib', 'modules')):
        if 'modules.builtin' in files:
            with open(os.path.join(dirpath, 'modules.builtin')) as f:
                builtin |= {os.path.basename(line.strip())[:-3]
                            .replace('_', '-') for line in f}
        for f in files:
            for ext in ('.ko', '.ko.xz'):
                if f.endswith(ext):
                    index[f[:-len(ext)].replace('_', '-')] = \
                        os.path.join(dirpath, f)
    if not index:
        fail('no modules (.ko, .ko.xz) in %s (did the package change?)' %
             kroot)
    order = []

    def add(name):
        name = name.replace('_', '-')
        if name in builtin:
            return
        if name not in index:
            fail('module %s is not in the kernel package' % name)
        if index[name] in order:
            return
        for dep in module_depends(index[name]):
            add(dep)
        order.append(index[name])

    for name in wanted:
        add(name)
    return order


def shared_libs(binary):
    out = run(['ldd', binary])
    if out.returncode:
        # a static program: nothing to add
        return []
    libs = []
    for line in out.stdout.splitlines():
        m = re.search(r'(/\S+) \(0x', line)
        if m:
            libs.append(m.group(1))
    return libs


class Cpio:
    """A newc archive, written directly (no cpio(1) needed)."""

    def __init__(self, path):
        self.f = open(path, 'wb')
        self.ino = 1
        self.seen = set()

    def _entry(self, name, mode, data=b''):
        name = name.lstrip('/')
        if name in self.seen:
            return
        self.seen.add(name)
        hdr = '070701' + ''.join('%08x' % v for v in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0,
            len(name) + 1, 0))
        self.ino += 1
        buf = hdr.encode() + name.encode() + b'\0'
        buf += b'\0' * (-len(buf) % 4)
        buf += data + b'\0' * (-len(data) % 4)
        self.f.write(buf)

    def dirs(self, name):
        parts = name.strip('/').split('/')[:-1]
        for i in range(len(parts)):
            self._entry('/'.join(parts[:i + 1]), stat.S_IFDIR | 0o755)

    def dir(self, name):
        self.dirs(name + '/x')

    def file(self, name, data, mode=0o755):
        self.dirs(name)
        self._entry(name, stat.S_IFREG | mode, data)

    def copy(self, name, src=None):
        with open(src or name, 'rb') as f:
            self.file(name, f.read())

    def symlink(self, name, target):
        self.dirs(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def close(self):
        self._entry('TRAILER!!!', 0)
        self.f.close()


INIT = r'''#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# /tmp stays in the initramfs: the programs may live under it
mkdir -p /dev/shm /tmp
mount -t tmpfs tmpfs /dev/shm
stty -F /dev/ttyS1 raw -echo
exec >/dev/ttyS1 2>&1
for m in %(modules)s; do
    insmod "$m" || echo "kvm-lab: insmod $m failed"
done
if [ ! -c /dev/kvm ]; then
    echo "kvm-lab: no /dev/kvm in the lab (see the console log)"
    echo "kvm-lab: exit status 125"
    poweroff -f
fi
echo "%(ready)s: $(uname -r), $(nproc) vCPUs, $(grep -c . /proc/cpuinfo) lines of cpuinfo"
cd /tmp
%(env)s
%(cmd)s
echo "kvm-lab: exit status $?"
sync
poweroff -f
'''


def stripped(path):
    """@path without its debug information (a smaller initramfs)."""
    with open(path, 'rb') as f:
        if f.read(4) != b'\x7fELF':
            return path
    out = os.path.join(LAB, 'stripped', path.lstrip('/'))
    if not os.path.exists(out) or \
            os.path.getmtime(out) < os.path.getmtime(path):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        r = run(['strip', '--strip-debug', '-o', out + '.tmp', path])
        if r.returncode:
            fail('strip %s failed:\n%s' % (path, r.stdout))
        os.rename(out + '.tmp', out)
    return out


def shquote(s):
    return "'" + s.replace("'", "'\\''") + "'"


# Not copied from a --dir: test suites, and what a Python installation
# has that the lab's programs do not use.
SKIP_DIRS = ('test', 'tests', 'idlelib', 'tkinter', 'ensurepip',
             'site-packages', 'dist-packages', 'config-3.11-x86_64-linux-gnu')


def pack_dir(cp, top, libs):
    """Copy the tree @top (dereferenced) and note its ELF files' libs."""
    for dirpath, dirs, names in os.walk(top, followlinks=True):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.isfile(p):
                continue
            cp.copy(p, os.path.realpath(p))
            if n.endswith('.so') or '.so.' in n:
                libs.update(shared_libs(p))


def pack(cpio_path, kroot, bbroot, files, dirs, env, argv):
    cp = Cpio(cpio_path)
    for d in ('proc', 'sys', 'dev', 'tmp', 'usr/bin'):
        cp.dir(d)
    cp.copy('/bin/busybox', os.path.join(bbroot, 'bin', 'busybox'))
    mods = []
    for ko in kvm_modules(kroot):
        name = '/lib/lab/' + os.path.basename(ko)
        if name.endswith('.xz'):
            name = name[:-3]
        cp.dirs(name)
        cp.file(name, module_data(ko))
        mods.append(name)
    libs = set()
    for f in files:
        libs.update(shared_libs(f))
    for d in dirs:
        pack_dir(cp, d, libs)
    for lib in sorted(libs):
        cp.copy(lib, os.path.realpath(lib))
    for f in files:
        cp.copy(f, stripped(f))
    # QEMU's firmware, where a QEMU run from its build tree looks for it
    # (qemu-bundle/ next to the binary), dereferenced
    share = os.path.join(os.path.dirname(files[0]),
                         'qemu-bundle', 'usr', 'local', 'share', 'qemu')
    if not os.path.isdir(share):
        fail('no firmware in %s (build first: make)' % share)
    for f in sorted(os.listdir(share)):
        p = os.path.join(share, f)
        if os.path.isfile(p):
            cp.copy(p, os.path.realpath(p))
    exports = '\n'.join('export %s=%s' % (k, shquote(v)) for k, v in env)
    init = INIT % {'modules': ' '.join(mods), 'ready': READY,
                   'env': exports, 'cmd': ' '.join(map(shquote, argv))}
    cp.file('/init', init.encode())
    cp.close()


def boot(qemu, kernel, initrd, console, timeout, accel='tcg'):
    """Boot the lab; stream the program's output; return its status."""
    cmd = [qemu, '-machine', 'q35', '-accel', accel, '-cpu', 'max',
           '-smp', os.environ.get('SPP_LAB_SMP', LAB_SMP),
           '-m', '4G', '-display', 'none', '-no-reboot',
           '-monitor', 'none', '-nodefaults',
           '-kernel', kernel, '-initrd', initrd,
           '-append', 'console=ttyS0 quiet panic=-1 nokaslr mitigations=off',
           '-serial', 'file:' + console, '-serial', 'stdio']
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    status = None
    ready = False
    ready_at = 0.0
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b''
    try:
        while True:
            now = time.monotonic() - start
            limit = ready_at + timeout if ready else BOOT_TIMEOUT
            if now > limit:
                log('no %s after %d s: stopping the lab (console log: %s)' %
                    ('exit status' if ready else 'ready',
                     limit - ready_at, console))
                return LAB_FAILED
            chunk = None
            try:
                chunk = proc.stdout.read()
            except BlockingIOError:
                pass
            if chunk:
                buf += chunk
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    text = line.decode(errors='replace').rstrip('\r')
                    m = EXIT_RE.match(text)
                    if m:
                        status = int(m.group(1))
                        continue
                    if text.startswith(READY):
                        ready = True
                        ready_at = now
                        log('L1 up after %.1f s (%s)' %
                            (now, text[len(READY) + 2:]))
                        continue
                    print(text, flush=True)
            elif proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if status is None:
        rc = proc.returncode
        log('the lab stopped without an exit status; its QEMU %s '
            '(console log: %s)' %
            ('was killed by signal %d' % -rc if rc < 0 else
             'exited with status %d' % rc, console))
        return LAB_FAILED
    log('done after %.1f s, exit status %d' %
        (time.monotonic() - start, status))
    return status


def debian_kernel():
    """Debian's kernel and busybox, fetched once: (package, vmlinuz,
    unpacked kernel package, unpacked busybox package)."""
    kpkg = kernel_package()
    kroot = unpack(download(kpkg))
    bbroot = unpack(download('busybox-static'))
    kernels = [f for f in os.listdir(os.path.join(kroot, 'boot'))
               if f.startswith('vmlinuz-')]
    if len(kernels) != 1:
        fail('expected one vmlinuz in %s/boot' % kroot)
    return kpkg, os.path.join(kroot, 'boot', kernels[0]), kroot, bbroot


def main():
    ap = argparse.ArgumentParser(
        description='Run programs under a nested KVM (kvm_amd in a TCG '
                    'guest with emulated SVM).')
    ap.add_argument('--probe', action='store_true',
                    help='print which KVM this host has and exit')
    ap.add_argument('--qemu', default=os.path.join(BUILD,
                                                   'qemu-system-x86_64'),
                    help='the QEMU that runs the lab (and is copied in)')
    ap.add_argument('--file', action='append', default=[],
                    help='another file to copy into the lab')
    ap.add_argument('--dir', action='append', default=[],
                    help='a directory tree to copy into the lab (without '
                         'test suites and installed Python packages)')
    ap.add_argument('--env', action='append', default=[],
                    help='K=V for the program\'s environment')
    ap.add_argument('--timeout', type=int, default=900,
                    help='seconds the program may run (default 900)')
    ap.add_argument('argv', nargs='*', help='-- PROG [ARG]...')
    args = ap.parse_args()

    if args.probe:
        kind, reason = host_kvm()
        print('%s: %s' % (kind, reason))
        return 0
    if not args.argv:
        ap.error('no program to run')
    env = []
    for e in args.env:
        if '=' not in e:
            ap.error('--env wants K=V, not %r' % e)
        env.append(tuple(e.split('=', 1)))
    qemu = os.path.realpath(args.qemu)
    if not os.access(qemu, os.X_OK):
        fail('no QEMU binary at %s (build first: make)' % args.qemu)
    prog = shutil.which(args.argv[0]) or args.argv[0]
    prog = os.path.abspath(prog)
    if not os.access(prog, os.X_OK):
        fail('cannot run %s' % args.argv[0])
    files = [qemu, prog] + [os.path.abspath(f) for f in args.file]
    for f in files:
        if not os.path.isfile(f):
            fail('no such file: %s' % f)
    dirs = [os.path.abspath(d) for d in args.dir]
    for d in dirs:
        if not os.path.isdir(d):
            fail('no such directory: %s' % d)

    kpkg, kernel, kroot, bbroot = debian_kernel()

    os.makedirs(LAB, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=LAB) as tmp:
        initrd = os.path.join(tmp, 'initrd.cpio')
        pack(initrd, kroot, bbroot, files, dirs, env,
             [prog] + args.argv[1:])
        log('booting %s with %s -accel %s; initramfs %d MiB' %
            (kpkg, qemu, os.environ.get('SPP_LAB_ACCEL', LAB_ACCEL),
             os.path.getsize(initrd) >> 20))
        console = os.path.join(LAB, 'console.log')
        return boot(qemu, kernel, initrd, console, args.timeout,
                    os.environ.get('SPP_LAB_ACCEL', LAB_ACCEL))


if __name__ == '__main__':
    sys.exit(main())
