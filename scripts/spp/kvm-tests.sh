#!/bin/bash
# Run the KVM subtests of spp-test on a KVM worth testing: this host's,
# if it is a hardware KVM, else (no /dev/kvm, or a software KVM that
# emulates guest code) inside the nested-KVM lab (kvm-lab.py).
#
#   SPP_KVM=auto (default) | host | lab
#
# Expects spp-test and QEMU to be built.  Ends with
# "kvm-tests: P passed, F failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"

spp_test=$OBJ/tests/qtest/spp-test
qemu=$OBJ/qemu-system-x86_64
[ -x "$spp_test" ] && [ -x "$qemu" ] ||
    die "build spp-test first (make check builds it)"
probe=$(python3 "$TOP/scripts/spp/kvm-lab.py" --probe)
kind=${probe%%:*}
case ${SPP_KVM:-auto} in
auto)
    if [ "$kind" = hardware ]; then where=host; else where=lab; fi ;;
host)
    [ "$kind" != none ] || die "SPP_KVM=host, but this host has no KVM: $probe"
    where=host ;;
lab)
    where=lab ;;
*)
    die "SPP_KVM must be auto, host or lab, not '${SPP_KVM}'" ;;
esac

echo "this host's KVM: $probe"
start=$(date +%s)
# The real-kernel test: Debian's kernel, booted without KASLR (the TCG
# run in make check boots it with KASLR), on one vCPU, as the lab has.
read -r vmlinuz initrd < <(cd "$TOP/scripts/spp" && python3 -c \
    'import linuxvm; k, i, _ = linuxvm.prepare(); print(k, i)') ||
    die "cannot prepare the stock kernel guest"
pydir=$SRC/python
linux_test=("$TOP/contrib/spp/test-linux.py" "$qemu" "$pydir" kvm --nokaslr
            --smp 1 --kernel "$vmlinuz" --initrd "$initrd")
# SPP_KVM_TESTS (a regular expression over the subtests' paths) runs
# some of them only, and then not the real-kernel test; SPP_KVM_SKIP (the
# same) leaves some out.
lab_env=()
if [ -n "${SPP_KVM_TESTS:-}" ]; then
    linux_test=()
    lab_env=(--env "SPP_KVM_TESTS=$SPP_KVM_TESTS")
fi
if [ -n "${SPP_KVM_SKIP:-}" ]; then
    lab_env+=(--env "SPP_KVM_SKIP=$SPP_KVM_SKIP")
fi
# SPP_KVM_REPEAT=N runs each subtest N times (kvm-test-loop.sh)
repeat=${SPP_KVM_REPEAT:-1}
[[ $repeat =~ ^[1-9][0-9]*$ ]] ||
    die "SPP_KVM_REPEAT must be a number from 1, not '$repeat'"
lab_env+=(--env "SPP_KVM_REPEAT=$repeat")
set +e
if [ "$where" = host ]; then
    echo "KVM tests: on this host's $kind KVM"
    "$TOP/scripts/spp/kvm-test-loop.sh" "$spp_test" "$qemu" \
        ${linux_test[@]:+python3} "${linux_test[@]}"
    rc=$?
else
    echo "KVM tests: in the nested-KVM lab (kvm_amd in a TCG guest with" \
         "emulated SVM; figures from it are not hardware figures)"
    py=$(readlink -f /usr/bin/python3)
    python3 "$TOP/scripts/spp/kvm-lab.py" --timeout $((1500 * repeat)) \
        --file "$spp_test" \
        "${lab_env[@]}" \
        --file "$vmlinuz" --file "$initrd" \
        --file "$TOP/contrib/spp/test-linux.py" \
        --file "$TOP/contrib/spp/spp-watch" \
        --file "$TOP/scripts/spp/linuxvm.py" --file "$py" \
        --dir "$(/usr/bin/python3 -c 'import os; print(os.path.dirname(os.__file__))')" \
        --dir "$pydir" \
        -- "$TOP/scripts/spp/kvm-test-loop.sh" "$spp_test" "$qemu" \
        ${linux_test[@]:+"$py"} "${linux_test[@]}"
    rc=$?
    if [ "$rc" = 125 ]; then
        echo "kvm-tests: 0 passed, 1 failed (the lab did not run)"
    fi
fi
echo "KVM tests took $(( $(date +%s) - start )) s"
exit "$rc"
