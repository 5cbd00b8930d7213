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
# subtests whose path matches it run; SPP_KVM_SKIP, likewise, names
# subtests not to run.  SPP_KVM_REPEAT=N runs them all N times, round
# after round (a subtest passes when all its N runs pass); a line after
# each round counts the failed runs so far.
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
       grep -E "${SPP_KVM_TESTS:-.}" | grep -v -E "${SPP_KVM_SKIP:-^$}")
if [ -z "$paths" ]; then
    echo "not ok: $test lists no KVM tests (is /dev/kvm usable?)"
    echo "kvm-tests: 0 passed, 1 failed"
    exit 1
fi
repeat=${SPP_KVM_REPEAT:-1}
case $repeat in
''|*[!0-9]*|0)
    echo "not ok: SPP_KVM_REPEAT must be a number from 1, not '$repeat'"
    echo "kvm-tests: 0 passed, 1 failed"
    exit 1 ;;
esac
# Round after round, every subtest once; a line per run in $runs
runs=$(mktemp)
run=1
while [ "$run" -le "$repeat" ]; do
    for p in $paths; do
        start=$(date +%s)
        if out=$(timeout 300 "$test" -p "$p" 2>&1); then
            result=ok
        else
            echo "$out" | grep -v '^# starting QEMU' | tail -60
            result=fail
        fi
        took=$(( $(date +%s) - start ))
        echo "$p $result $took" >> "$runs"
        if [ "$repeat" = 1 ]; then
            [ "$result" = ok ] && echo "ok $p ($took s)" ||
                echo "not ok $p ($took s)"
        elif [ "$result" != ok ]; then
            echo "# $p: run $run of $repeat failed ($took s)"
        fi
    done
    if [ "$repeat" != 1 ]; then
        echo "# round $run of $repeat done: $(grep -c ' fail ' "$runs")" \
             "failed runs so far"
    fi
    run=$((run + 1))
done
for p in $paths; do
    bad=$(grep -c "^$p fail " "$runs")
    if [ "$repeat" != 1 ]; then
        longest=$(grep "^$p " "$runs" | sort -k3 -n | tail -1 | cut -d' ' -f3)
        if [ "$bad" = 0 ]; then
            echo "ok $p ($repeat of $repeat runs passed, the longest" \
                 "$longest s)"
        else
            echo "not ok $p ($bad of $repeat runs failed)"
        fi
    fi
    if [ "$bad" = 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
rm -f "$runs"
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
