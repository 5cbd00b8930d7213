#!/bin/sh
# Run each KVM subtest of spp-test on its own (one failure cannot hide
# the rest), on this machine's /dev/kvm.  Runs on the host or inside the
# nested-KVM lab (busybox sh), so it uses only POSIX sh.
#
#   kvm-test-loop.sh SPP-TEST QEMU [TAP-PROGRAM ARG...]
#
# Prints "ok PATH" or "not ok PATH" per subtest, with the failing
# output; then runs TAP-PROGRAM, if given, and counts its "ok" and
# "not ok" lines too.  Ends with "kvm-tests: P passed, F failed".
# SPP_KVM_TESTS, when set, is an extended regular expression: only the
# subtests whose path matches it run.
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later

test=$1
export QTEST_QEMU_BINARY=$2
shift 2
export SPP_TEST_KVM=yes
passed=0
failed=0
paths=$("$test" -l | grep -e '/spp/kvm/' -e '/spp/differential$' |
       grep -E "${SPP_KVM_TESTS:-.}")
if [ -z "$paths" ]; then
    echo "not ok: $test lists no KVM tests (is /dev/kvm usable?)"
    echo "kvm-tests: 0 passed, 1 failed"
    exit 1
fi
for p in $paths; do
    start=$(date +%s)
    if out=$(timeout 300 "$test" -p "$p" 2>&1); then
        echo "ok $p ($(( $(date +%s) - start )) s)"
        passed=$((passed + 1))
    else
        echo "$out" | grep -v '^# starting QEMU' | tail -60
        echo "not ok $p ($(( $(date +%s) - start )) s)"
        failed=$((failed + 1))
    fi
done
if [ $# -gt 0 ]; then
    start=$(date +%s)
    timeout 600 "$@" > /tmp/tap.log 2>&1
    rc=$?
    cat /tmp/tap.log
    ok=$(grep -c '^ok ' /tmp/tap.log)
    bad=$(grep -c '^not ok ' /tmp/tap.log)
    if [ "$rc" != 0 ] && [ "$bad" = 0 ]; then
        bad=1
    fi
    echo "$1: $ok passed, $bad failed ($(( $(date +%s) - start )) s)"
    passed=$((passed + ok))
    failed=$((failed + bad))
fi
echo "kvm-tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
