#!/bin/bash
# The fork's test suite: build, then run
#  - check-patches (series applies, is reproducible, checkpatch clean);
#  - our qtests and upstream qtests through meson's test runner;
#  - the KVM subtests on a hardware KVM, or in the nested-KVM lab
#    (kvm-tests.sh): there on Debian's 6.1, the SMP ones on an L1 with
#    two vCPUs, the memslot-changing ones again on Debian's 6.12;
#  - a real kernel watched (test-linux.py; under KVM with the KVM tests);
#  - spp-watch and libvirt tests.
# Ends with "N passed, N failed" (test programs and checks).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

QTESTS="spp-test qmp-test qmp-cmd-test"
UNIT_TESTS="test-kvm-spp test-kvm-spp-insn test-spp-diff"
targets=""
for t in $QTESTS; do
    targets="$targets tests/qtest/$t"
done
for t in $UNIT_TESTS; do
    targets="$targets tests/unit/$t"
done
# shellcheck disable=SC2086
"$TOP/scripts/spp/build.sh" $targets

passed=0
failed=0
# tally STATUS: count one check as passed (0) or failed
tally() {
    if [ "$1" = 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
}

# From here on each check is counted, not fatal.
set +e
"$TOP/scripts/spp/check-patches.sh"
tally $?

step test "meson test: $QTESTS $UNIT_TESTS"
names="$UNIT_TESTS"
for t in $QTESTS; do
    names="$names qtest-x86_64/$t"
done
log=$BUILD/check.log
# shellcheck disable=SC2086
# The KVM subtests run below, on a KVM worth testing (SPP_TEST_KVM=no).
(cd "$OBJ" && SPP_TEST_KVM=no "$OBJ/pyvenv/bin/meson" test --no-rebuild \
     --print-errorlogs $names) 2>&1 | tee "$log"
ok=$(sed -n 's/^Ok:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
expfail=$(sed -n 's/^Expected Fail:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
fail=$(sed -n 's/^Fail:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
unexp=$(sed -n 's/^Unexpected Pass:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
timeout=$(sed -n 's/^Timeout:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
skipped=$(sed -n 's/^Skipped:[[:space:]]*\([0-9]*\).*/\1/p' "$log" | tail -1)
if [ -z "$ok" ]; then
    echo "error: meson test printed no summary (see $log)" >&2
    failed=$((failed + 1))
fi
passed=$((passed + ${ok:-0} + ${expfail:-0}))
failed=$((failed + ${fail:-0} + ${unexp:-0} + ${timeout:-0}))

# tally_kvm LOG: count the "kvm-tests: P passed, F failed" line of LOG
# (none: one failure)
tally_kvm() {
    local p f
    p=$(sed -n 's/^kvm-tests: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' \
        "$1" | tail -1)
    f=$(sed -n 's/^kvm-tests: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' \
        "$1" | tail -1)
    if [ -z "$p" ]; then
        echo "error: the KVM tests printed no summary (see $1)" >&2
        f=1
    fi
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
}

# Where the KVM tests run (kvm-tests.sh decides the same way)
kvm_kind=$(python3 "$TOP/scripts/spp/kvm-lab.py" --probe)
in_lab=yes
if [ "${SPP_KVM:-auto}" != lab ] && [ "${kvm_kind%%:*}" = hardware ]; then
    in_lab=no
fi

# In the lab, the tests whose guest has several vCPUs run in a lab of
# their own, below, whose L1 has two.
step test "the KVM tests of spp-test, each on its own"
if [ "$in_lab" = yes ]; then
    export SPP_KVM_SKIP=guest-smp
fi
"$TOP/scripts/spp/kvm-tests.sh" 2>&1 | tee "$BUILD/check-kvm.log"
unset SPP_KVM_SKIP
tally_kvm "$BUILD/check-kvm.log"

if [ "$in_lab" = yes ]; then
    # Guests of 2 and 4 vCPUs, every vCPU storing, on an L1 with two
    # vCPUs.  Those two share one TCG thread: under multi-threaded TCG
    # the nested state of the lab breaks (docs/devel/spp.rst, "Tests").
    step test "the SMP KVM tests, in a lab whose L1 has 2 vCPUs"
    SPP_LAB_SMP=2 SPP_LAB_ACCEL=tcg,thread=single SPP_KVM_TESTS=guest-smp \
        "$TOP/scripts/spp/kvm-tests.sh" 2>&1 | tee "$BUILD/check-kvm-smp.log"
    tally_kvm "$BUILD/check-kvm-smp.log"

    # The lab's default kernel (6.1) cannot turn KVM_X86_QUIRK_SLOT_ZAP_ALL
    # off; Debian's 6.12 (bookworm-backports) can, and QEMU then does:
    # the subtests that change memslots under running vCPUs run on it too.
    step test "the memslot-changing KVM tests again, on Debian's 6.12 kernel"
    SPP_LAB_KERNEL=backports \
    SPP_KVM_TESTS='zap-quirk|memslots|guest-matrix$|guest-hammer$|guest-concurrent$|guest-smc|guest-rebound|smp2-(atomics|churn)|differential' \
        "$TOP/scripts/spp/kvm-tests.sh" 2>&1 | tee "$BUILD/check-kvm612.log"
    tally_kvm "$BUILD/check-kvm612.log"
fi

step test "a real kernel watched: Debian's stock kernel under TCG, KASLR on"
timeout 600 python3 "$TOP/contrib/spp/test-linux.py" \
    "$BUILD/qemu-system-x86_64" "$SRC/python" tcg 2>&1 |
    tee "$BUILD/check-linux.log"
linux_rc=${PIPESTATUS[0]}
passed=$((passed + $(grep -c '^ok ' "$BUILD/check-linux.log")))
linux_failed=$(grep -c '^not ok ' "$BUILD/check-linux.log")
if [ "$linux_rc" != 0 ] && [ "$linux_failed" = 0 ]; then
    linux_failed=1
fi
failed=$((failed + linux_failed))

step test "contrib/spp/spp-watch against a running QEMU"
python3 "$TOP/tests/qtest/spp-guest-build.py" cc \
    "$TOP/tests/qtest/spp-guest.S" "$BUILD/spp-check-guest.bin" ||
    die "cannot build the test guest"
timeout 600 python3 "$TOP/contrib/spp/test-spp-watch.py" \
    "$BUILD/qemu-system-x86_64" "$BUILD/spp-check-guest.bin" \
    "$SRC/python" 2>&1 | grep -v 'terminating on signal' |
    tee "$BUILD/check-spp-watch.log"
tally "${PIPESTATUS[0]}"

step test "SPP through libvirt (virsh qemu-monitor-command/-event)"
python3 "$TOP/tests/qtest/spp-guest-build.py" cc \
    "$TOP/tests/qtest/spp-guest.S" "$BUILD/spp-check-demo-guest.bin" \
    -DSPP_AUTORUN=5 || die "cannot build the demo guest"
timeout 600 "$TOP/contrib/spp/test-libvirt.sh" "$BUILD/qemu-system-x86_64" \
    "$BUILD/spp-check-demo-guest.bin" 2>&1 | tee "$BUILD/check-libvirt.log"
tally "${PIPESTATUS[0]}"

# Sub-tests that the test programs skipped, with their reasons.
grep -h '^# .*skipping\|SKIP' "$OBJ"/meson-logs/testlog.txt 2>/dev/null |
    sort -u | sed 's/^/note: /'

echo "$passed passed, $failed failed, ${skipped:-0} skipped"
[ "$failed" = 0 ]
