#!/usr/bin/env python3
#
# Turn the assembled tree's differences from the pristine base back into
# the numbered patch series under patches/.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later
"""Regenerate patches/ from an assembled tree.

Every upstream file that differs between the base tree and the assembled
tree belongs to a patch.  A patch keeps its subject and explanation;
only its diff is regenerated.  A file several patches change (as quilt
does it): the earlier patches keep their diffs of it as they are, and
the last one takes the difference between the file after the earlier
ones and the tree; to move a change between them, edit the earlier
patch's diff by hand.  A changed file that no patch
owns yet gets a new patch, with a subject to edit.  A changed file of our
own (a file the repository holds) is copied back into the repository.

The output depends only on the two trees and the existing patch headers,
so running it twice gives byte-identical patches.
"""

import argparse
import difflib
import filecmp
import os
import re
import shutil
import subprocess
import sys

AUTHOR = 'QEMU SPP fork developers <qemu-spp-fork@localhost>'
FROM_LINE = 'From 0000000000000000000000000000000000000000 ' \
            'Mon Sep 17 00:00:00 2001'
IGNORE = {'__pycache__', '.spp-base-pin'}


class Patch:
    def __init__(self, name, subject, body, files, diffs=None):
        self.name = name
        self.subject = subject
        self.body = body
        self.files = files
        self.diffs = diffs or {}    # path -> its diff text in the patch


def read_series(patch_dir):
    series = os.path.join(patch_dir, 'series')
    names = []
    if os.path.exists(series):
        with open(series, encoding='utf-8') as f:
            for line in f:
                line = line.split('#', 1)[0].strip()
                if line:
                    names.append(line)
    patches = []
    for name in names:
        with open(os.path.join(patch_dir, name), encoding='utf-8') as f:
            text = f.read()
        m = re.search(r'^Subject: (?:\[PATCH[^\]]*\] )?(.*)$', text, re.M)
        if not m:
            sys.exit(f'update-patches: {name}: no Subject line')
        subject = m.group(1)
        rest = text[m.end():]
        body = rest.split('\n---\n', 1)[0]
        body = re.sub(r'\n*Signed-off-by: .*\n*$', '', body.strip('\n'))
        files = re.findall(r'^diff --git a/(\S+) b/', text, re.M)
        diffs = {}
        tail = text.rsplit('\n-- \n', 1)[0] + '\n'
        parts = re.split(r'^(?=diff --git a/)', tail, flags=re.M)[1:]
        for part in parts:
            diffs[re.match(r'diff --git a/(\S+) b/', part).group(1)] = part
        patches.append(Patch(name, subject, body, files, diffs))
    return patches


def changed_files(base, tree, ours):
    """Files (relative paths) that differ between base and tree."""
    changed = []
    added = []

    def walk(rel):
        cmp = filecmp.dircmp(os.path.join(base, rel), os.path.join(tree, rel),
                             ignore=list(IGNORE))
        for name in cmp.right_only:
            path = os.path.join(rel, name)
            if os.path.isdir(os.path.join(tree, path)):
                for root, dirs, files in os.walk(os.path.join(tree, path)):
                    dirs[:] = sorted(d for d in dirs if d not in IGNORE)
                    for fn in sorted(files):
                        added.append(os.path.relpath(os.path.join(root, fn),
                                                     tree))
            else:
                added.append(path)
        for name in cmp.left_only:
            changed.append(os.path.join(rel, name))
        for name in cmp.common_files:
            path = os.path.join(rel, name)
            a = os.path.join(base, path)
            b = os.path.join(tree, path)
            if path in ours:
                continue
            if os.path.islink(a) or os.path.islink(b):
                # A link changes only if its target does.
                if not (os.path.islink(a) and os.path.islink(b) and
                        os.readlink(a) == os.readlink(b)):
                    changed.append(path)
            elif not filecmp.cmp(a, b, shallow=False):
                changed.append(path)
        for name in sorted(cmp.common_dirs):
            path = os.path.join(rel, name)
            a = os.path.join(base, path)
            b = os.path.join(tree, path)
            if os.path.islink(a) or os.path.islink(b):
                if not (os.path.islink(a) and os.path.islink(b) and
                        os.readlink(a) == os.readlink(b)):
                    changed.append(path)
                continue
            walk(path)

    walk('')
    return sorted(p for p in changed if p not in ours), sorted(added)


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding='utf-8', errors='surrogateescape') as f:
        return f.read().splitlines(keepends=True)


def diff_counts(text):
    body = text.splitlines()
    start = next((i for i, x in enumerate(body) if x.startswith('@@')),
                 len(body))
    plus = sum(1 for x in body[start:] if x.startswith('+'))
    minus = sum(1 for x in body[start:] if x.startswith('-'))
    return plus, minus


def apply_diff(path, lines, diff_text):
    """@lines (a file's content) with @diff_text applied, or exit."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        target = os.path.join(d, 'f')
        with open(target, 'w', encoding='utf-8',
                  errors='surrogateescape') as f:
            f.writelines(lines)
        r = subprocess.run(['patch', '-s', '--batch', '-F0', '-p1',
                            '--no-backup-if-mismatch', target],
                           input=diff_text, text=True, capture_output=True)
        if r.returncode != 0:
            sys.exit(f'update-patches: an earlier patch\'s diff of {path} '
                     f'does not apply any more:\n{r.stdout}{r.stderr}')
        return read_lines(target)


def file_diff(base, tree, path, before=None):
    a = read_lines(os.path.join(base, path)) if before is None else before
    b = read_lines(os.path.join(tree, path))
    out = [f'diff --git a/{path} b/{path}\n']
    old, new = f'a/{path}', f'b/{path}'
    if not a:
        out.append('new file mode 100644\n')
        old = '/dev/null'
    if not b:
        out.append('deleted file mode 100644\n')
        new = '/dev/null'
    body = list(difflib.unified_diff(a, b, old, new, n=3))
    for line in body:
        if not line.endswith('\n'):
            line += '\n\\ No newline at end of file\n'
        out.append(line)
    plus = sum(1 for x in body[2:] if x.startswith('+'))
    minus = sum(1 for x in body[2:] if x.startswith('-'))
    return ''.join(out), plus, minus


def render(patch, base, tree, before):
    """@before: path -> the file's lines after the earlier patches, for
    the files earlier patches change too."""
    diffs = []
    stats = []
    total_plus = total_minus = 0
    width = max(len(p) for p in patch.files)
    for path in patch.files:
        if path in patch.kept:
            text = patch.diffs[path]
            plus, minus = diff_counts(text)
        else:
            text, plus, minus = file_diff(base, tree, path,
                                          before.get(path))
        diffs.append(text)
        total_plus += plus
        total_minus += minus
        stats.append(f' {path.ljust(width)} | {plus + minus:3d} '
                     f'{"+" * min(plus, 40)}{"-" * min(minus, 40)}\n')
    n = len(patch.files)
    summary = f' {n} file{"s" if n != 1 else ""} changed'
    if total_plus:
        summary += f', {total_plus} insertion{"s" if total_plus != 1 else ""}(+)'
    if total_minus:
        summary += f', {total_minus} deletion{"s" if total_minus != 1 else ""}(-)'
    body = patch.body.strip('\n')
    return (f'{FROM_LINE}\nFrom: {AUTHOR}\nSubject: [PATCH] {patch.subject}\n\n'
            f'{body}\n\nSigned-off-by: {AUTHOR}\n---\n'
            + ''.join(stats) + summary + '\n\n' + ''.join(diffs)
            + '-- \n2.39.5\n\n')


def slug(text):
    return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')[:52]


def main():
    top = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--base', default=os.path.join(top, 'build', 'base'))
    ap.add_argument('--tree', default=os.path.join(top, 'build', 'src'))
    ap.add_argument('--patches', default=os.path.join(top, 'patches'),
                    help='existing series (headers are kept)')
    ap.add_argument('--out', help='write the series here instead of '
                    'updating --patches (nothing else is changed)')
    args = ap.parse_args()

    for d in (args.base, args.tree):
        if not os.path.isdir(d):
            sys.exit(f'update-patches: {d} is missing: run "make" first')

    ours = set(subprocess.run(
        ['bash', '-c', f'. {top}/scripts/spp/lib.sh; overlay_files'],
        check=True, capture_output=True, text=True).stdout.split())

    changed, added = changed_files(args.base, args.tree, ours)
    patches = read_series(args.patches)

    if not args.out:
        for path in sorted(ours):
            src = os.path.join(args.tree, path)
            dst = os.path.join(top, path)
            if not os.path.exists(src) or filecmp.cmp(src, dst,
                                                      shallow=False):
                continue
            if os.path.getmtime(src) > os.path.getmtime(dst):
                shutil.copy2(src, dst)
                print(f'update-patches: copied our file {path} back')
            else:
                print(f'update-patches: {path} is newer in the repository '
                      'than in the tree; kept (run "make" to re-assemble)')
        for path in added:
            if path in ours:
                continue
            dst = os.path.join(top, path)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(args.tree, path), dst)
            print(f'update-patches: new file {path} added to the repository '
                  '(git add it)')

    owner = {}          # path -> the last patch that changes it
    for p in patches:
        p.kept = set()
        for f in p.files:
            if f in owner:
                owner[f].kept.add(f)
            owner[f] = p
    orphans = [f for f in changed if f not in owner]
    # A file's content after the patches before its last owner.
    before = {}
    for p in patches:
        for f in sorted(p.kept):
            if f not in before:
                before[f] = read_lines(os.path.join(args.base, f))
            before[f] = apply_diff(f, before[f], p.diffs[f])
    kept = []
    for p in patches:
        # The last owner of a file drops it if the earlier ones did it all.
        # (A file reverted to the base stays with it if earlier patches
        # change it: its diff then undoes theirs.)
        p.files = [f for f in p.files if f in p.kept or
                   ((f in changed or f in before) and
                    before.get(f) != read_lines(os.path.join(args.tree, f)))]
        if p.files:
            kept.append(p)
        else:
            print(f'update-patches: {p.name} no longer changes anything: '
                  'dropped')
    number = 1 + max([int(p.name[:4]) for p in patches
                      if p.name[:4].isdigit()] or [0])
    for f in orphans:
        subject = f'{f}: SPP hook'
        body = f'TODO: explain why {f} changes.'
        p = Patch(f'{number:04d}-{slug(f)}.patch', subject, body, [f])
        p.kept = set()
        kept.append(p)
        number += 1
        print(f'update-patches: new patch {p.name} for {f}: edit its '
              'subject and explanation')

    out = args.out or args.patches
    os.makedirs(out, exist_ok=True)
    if not args.out:
        for old in patches:
            if old not in kept:
                os.remove(os.path.join(out, old.name))
    for p in kept:
        p.files.sort()
        text = render(p, args.base, args.tree, before)
        with open(os.path.join(out, p.name), 'w', encoding='utf-8') as f:
            f.write(text)
    with open(os.path.join(out, 'series'), 'w', encoding='utf-8') as f:
        f.write('# Patches to upstream QEMU files, applied in this order.\n')
        f.write('# Regenerate with "make update-patches"; see README.md.\n')
        for p in kept:
            f.write(p.name + '\n')
    if not args.out:
        # The edits in the tree are captured: the next assembly may go on.
        stamp = os.path.join(os.path.dirname(args.tree), '.assembled')
        if os.path.exists(stamp):
            os.utime(stamp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
