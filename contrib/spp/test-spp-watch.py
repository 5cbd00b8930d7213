#!/usr/bin/env python3
#
# Tests for spp-watch against a running QEMU with the SPP test guest.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later
"""usage: test-spp-watch.py QEMU GUEST.bin QEMU_PYTHON_DIR

Prints TAP."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, 'spp-watch')
PAGE_P = 0x100000
CMD_HAMMER, CMD_STORE_LOOP = 2, 6


def start_tool(sock, *args, env):
    proc = subprocess.Popen([sys.executable, TOOL, sock, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    line = proc.stderr.readline()
    assert 'watching' in line, f'tool did not start: {line!r}'
    return proc


def read_lines(proc, n, timeout=20):
    lines = []
    deadline = time.time() + timeout
    while len(lines) < n and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    return lines


def start_vm(qemu, guest, Vm, tag):
    """A VM with a second QMP socket for the tool."""
    sock = f'/tmp/spp-watch-{tag}{os.getpid()}.sock'
    vm = Vm(qemu, 'tcg', guest, mem='64M',
            extra=['-qmp', f'unix:{sock},server=on,wait=off'])
    return vm, sock


def stop_vm(vm, sock):
    vm.close()
    if os.path.exists(sock):
        os.unlink(sock)


def test_watch_and_restore(qemu, guest, env, Vm):
    vm, sock = start_vm(qemu, guest, Vm, 'r')
    try:
        vm.set(PAGE_P >> 12, 1, 0x12345678)     # the state to restore
        tool = start_tool(sock, '--json', '--restore',
                          f'0x{PAGE_P:x}+8k:sub=0-1', env=env)
        info = vm.qmp.cmd('query-subpage', **{'base-gfn': PAGE_P >> 12,
                                               'npages': 3})
        assert [e['wp-map'] for e in info] == [0xfffffffc, 0xfffffffc,
                                               0xffffffff], info
        vm.guest(CMD_STORE_LOOP, 3, PAGE_P + 0x84)       # sub-page 1
        vm.guest(CMD_STORE_LOOP, 1, PAGE_P + 0x1000)     # page 2, sub 0
        vm.guest(CMD_STORE_LOOP, 5, PAGE_P + 0x100)      # writable
        lines = [json.loads(x) for x in read_lines(tool, 4)]
        assert len(lines) == 4, lines
        assert all(d['source'] == 'cpu' and d['cpu-index'] == 0 and
                   d['action'] == 'block' for d in lines), lines
        assert [(d['gfn'], d['subpage']) for d in lines] == \
            [(0x100, 1)] * 3 + [(0x101, 0)], lines
        assert vm.qt.readl(PAGE_P + 0x84) == 0
        assert vm.qt.readl(PAGE_P + 0x100) == 1

        tool.send_signal(signal.SIGINT)
        out, err = tool.communicate(timeout=20)
        assert tool.returncode == 0, err
        assert '4 violation event(s) seen' in err, err
        assert 'restored 2 page(s)' in err, err
        info = vm.qmp.cmd('query-subpage', **{'base-gfn': PAGE_P >> 12,
                                               'npages': 2})
        assert [e['wp-map'] for e in info] == [0x12345678, 0xffffffff], info
    finally:
        stop_vm(vm, sock)


def test_text_output(qemu, guest, env, Vm):
    vm, sock = start_vm(qemu, guest, Vm, 't')
    try:
        tool = start_tool(sock, f'{PAGE_P}:0xfffffffe', env=env)
        vm.guest(CMD_HAMMER, 1)
        line = read_lines(tool, 1)[0]
        # the writer: its instruction, ring and the byte it stored
        assert re.search(r'cpu 0 at 0x[0-9a-f]+ \(ring 0\), value 0x[0-9a-f]{2}: '
                         r'1-byte write at 0x100000 hit gfn 0x100 sub-page 0: '
                         r'block', line), line
        pc = re.search(r'cpu 0 at (0x[0-9a-f]+)', line).group(1)
        tool.send_signal(signal.SIGTERM)
        _, err = tool.communicate(timeout=20)
        assert tool.returncode == 0
        # the summary at exit groups the writes by writer
        assert re.search(r'writers seen, most events first:\n'
                         rf'spp-watch:   {pc}: \d+ write\(s\), \d+ byte\(s\) '
                         r'blocked', err), err
        # without --restore the protection stays
        assert vm.qmp.cmd('query-subpage', **{'base-gfn': PAGE_P >> 12,
                                              'npages': 1})[0]['wp-map'] == \
            0xfffffffe
    finally:
        stop_vm(vm, sock)


def test_connection_lost(qemu, guest, env, Vm):
    vm, sock = start_vm(qemu, guest, Vm, 'l')
    tool = start_tool(sock, f'0x{PAGE_P:x}', env=env)
    vm.proc.kill()
    vm.proc.wait()
    out, err = tool.communicate(timeout=20)
    stop_vm(vm, sock)
    assert tool.returncode == 1, (tool.returncode, err)
    assert 'lost the connection to QEMU' in err, err


def test_bad_arguments(qemu, guest, env, Vm):
    cases = [
        (['/nonexistent.sock', '0x100000'], 1, 'cannot connect'),
        (['/tmp/x.sock', '0x100001'], 2, 'not page aligned'),
        (['/tmp/x.sock', '0x100000+100'], 2, 'multiple of 4096'),
        (['/tmp/x.sock', '0x100000:sub=5-40'], 2, 'not within 0-31'),
        (['/tmp/x.sock', '0x100000:0x1ffffffff'], 2, 'not a 32-bit value'),
        (['/tmp/x.sock'], 2, 'the following arguments are required'),
    ]
    for argv, code, msg in cases:
        p = subprocess.run([sys.executable, TOOL, *argv], capture_output=True,
                           text=True, env=env, timeout=30)
        assert p.returncode == code, (argv, p.returncode, p.stderr)
        assert msg in p.stderr, (argv, p.stderr)


def test_symbol_errors(qemu, guest, env, Vm):
    """Symbol files and names that cannot be used are refused."""
    tmp = tempfile.mkdtemp(prefix='spp-watch-syms-')
    files = {
        'placeholder': 'ffffffffffffffff B The real System.map is in the '
                       'linux-image-6.1.0-dbg package\n',
        'hidden': '0000000000000000 T _stext\n0000000000000000 T _etext\n',
        'good': 'ffffffff81000000 T _stext\n'
                'ffffffff81000100 t dup\nffffffff81000200 t dup\n'
                'ffffffff81c00990 T asm_exc_divide_error\n'
                'ffffffff81c009a0 T asm_exc_page_fault\n'
                'ffffffff81e01d32 T _etext\n',
        'empty': 'no symbols here\n',
    }
    for name, text in files.items():
        with open(os.path.join(tmp, name), 'w') as f:
            f.write(text)
    good = os.path.join(tmp, 'good')
    cases = [
        (['/tmp/x.sock', '_stext'], 2, 'give --symbols FILE'),
        (['--symbols', os.path.join(tmp, 'placeholder'), '/tmp/x.sock',
          '_stext'], 2, 'placeholder System.map'),
        (['--symbols', os.path.join(tmp, 'hidden'), '/tmp/x.sock',
          '_stext'], 2, 'kptr_restrict'),
        (['--symbols', os.path.join(tmp, 'empty'), '/tmp/x.sock',
          '_stext'], 2, 'holds no symbols'),
        (['--symbols', os.path.join(tmp, 'missing'), '/tmp/x.sock',
          '_stext'], 2, 'cannot read'),
        (['--symbols', good, '/tmp/x.sock', '_stext+'], 2, 'not ADDR'),
    ]
    for argv, code, msg in cases:
        p = subprocess.run([sys.executable, TOOL, *argv], capture_output=True,
                           text=True, env=env, timeout=30)
        assert p.returncode == code, (argv, p.returncode, p.stderr)
        assert msg in p.stderr, (argv, p.stderr)

    # A guest that is not a running 64-bit kernel: no slide, nothing set.
    vm, sock = start_vm(qemu, guest, Vm, 's')
    try:
        for ranges, msg in ((['_stext'], 'not a running 64-bit kernel'),
                            (['dup'], 'symbols are named'),
                            (['nosuch'], 'no symbol'),
                            (['_etext'], 'size is unknown')):
            argv = ['--symbols', good]
            if msg != 'not a running 64-bit kernel':
                argv += ['--kaslr-slide', '0']
            p = subprocess.run([sys.executable, TOOL, *argv, sock, *ranges],
                               capture_output=True, text=True, env=env,
                               timeout=60)
            assert p.returncode == 1, (ranges, p.returncode, p.stderr)
            assert msg in p.stderr, (ranges, p.stderr)
        assert vm.info()['protected-pages'] == 0
    finally:
        stop_vm(vm, sock)
        subprocess.run(['rm', '-rf', tmp], check=False)


def test_device_names(qemu, guest, env, Vm):
    """A device write is named by the id (or path) of writer-device."""
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader('spp_watch', TOOL)
    spec = importlib.util.spec_from_loader('spp_watch', loader)
    tool = importlib.util.module_from_spec(spec)
    loader.exec_module(tool)
    base = {'source': 'device', 'gpa': PAGE_P, 'gfn': PAGE_P >> 12,
            'subpage': 0, 'size': 4}
    cases = [
        ({}, 'device'),
        ({'writer-device': '/machine/peripheral/edu0'}, 'device edu0'),
        ({'writer-device': '/machine/peripheral-anon/device[2]'},
         'device /machine/peripheral-anon/device[2]'),
    ]
    for extra, want in cases:
        d = dict(base, **extra)
        assert tool.describe_writer(d, {}) == want, (d, want)
        assert tool.writer_key(d, {}) == want, (d, want)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    qemu, guest, pypath = sys.argv[1:]
    sys.path.insert(0, pypath)
    sys.path.insert(0, os.path.join(HERE, '..', '..', 'scripts', 'spp'))
    from sppvm import Vm
    env = dict(os.environ, QEMU_PYTHON=pypath)
    tests = [test_watch_and_restore, test_text_output, test_connection_lost,
             test_bad_arguments, test_symbol_errors, test_device_names]
    print(f'1..{len(tests)}')
    failed = 0
    for i, t in enumerate(tests, 1):
        try:
            t(qemu, guest, env, Vm)
            print(f'ok {i} {t.__name__}')
        except Exception as e:      # report and go on with the others
            failed += 1
            print(f'not ok {i} {t.__name__}: {e!r}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
