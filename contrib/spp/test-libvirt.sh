#!/bin/bash
#
# Drive SPP through libvirt only: a private, unprivileged libvirt daemon
# (session mode, in a temporary directory) runs a domain whose emulator
# is this fork and whose firmware is the tiny test guest, and the test
# talks to QEMU only through virsh qemu-monitor-command and
# qemu-monitor-event.  Everything is removed at the end.  Prints TAP.
#
# usage: test-libvirt.sh QEMU GUEST.bin
#   GUEST.bin must be built with -DSPP_AUTORUN=5 (it then stores 1..5 to
#   gpa 0x100010 and 0x100810 once it runs).
#
# Copyright (c) 2026 The QEMU SPP fork developers
#
# SPDX-License-Identifier: GPL-2.0-or-later

set -uo pipefail
QEMU=$(readlink -f "$1")
GUEST=$2
USER_=nobody

echo "1..6"
if [ "$(id -u)" != 0 ] || ! command -v virsh >/dev/null ||
   ! command -v libvirtd >/dev/null; then
    for i in 1 2 3 4 5 6; do
        echo "ok $i # SKIP needs root (to run the daemon as $USER_), virsh and libvirtd"
    done
    exit 0
fi

T=$(mktemp -d /tmp/spp-libvirt-XXXXXX)
chmod 755 "$T"
cp "$GUEST" "$T/guest.bin"
# The daemon and QEMU run as $USER_, who may not reach the build tree:
# give them a copy of the binary and of the data it finds next to it.
mkdir "$T/qemu"
cp "$QEMU" "$T/qemu/"
# (-L: the firmware there are links; dangling ones are not needed)
cp -rL "$(dirname "$QEMU")/qemu-bundle" "$T/qemu/" 2>/dev/null
if [ ! -f "$T/qemu/qemu-bundle/usr/local/share/qemu/bios-256k.bin" ]; then
    echo "Bail out! cannot copy the QEMU binary's data to $T"
    exit 1
fi
QEMU=$T/qemu/$(basename "$QEMU")
chmod -R a+rX "$T"
chown -R "$USER_" "$T"
ENV=(env HOME="$T" XDG_RUNTIME_DIR="$T/run" XDG_CONFIG_HOME="$T/config"
     XDG_CACHE_HOME="$T/cache")
as_user() { runuser -u "$USER_" -- "${ENV[@]}" "$@"; }
virsh_() { as_user virsh -q -c qemu:///session "$@"; }
DAEMON=

cleanup() {
    virsh_ destroy spp-test >/dev/null 2>&1
    virsh_ undefine spp-test >/dev/null 2>&1
    local pid
    pid=$(cat "$T/run/libvirt/libvirtd.pid" 2>/dev/null)
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    [ -n "$DAEMON" ] && wait "$DAEMON" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

as_user mkdir -p "$T/run"
as_user libvirtd >"$T/libvirtd.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do
    [ -S "$T/run/libvirt/libvirt-sock" ] && break
    sleep 0.1
done

# The domain of docs/system/spp.rst ("libvirt"), with what virt-install
# gives a domain on a session connection: 2 vCPUs, a virtio disk (here
# on an iothread), a virtio NIC (user networking: a session daemon
# cannot make taps), VNC graphics and a serial console.
truncate -s 16M "$T/disk.img"
chown "$USER_" "$T/disk.img"
cat >"$T/dom.xml" <<XML
<domain type='qemu'>
  <name>spp-test</name>
  <memory unit='MiB'>64</memory>
  <vcpu>2</vcpu>
  <iothreads>1</iothreads>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader type='rom'>$T/guest.bin</loader>
  </os>
  <features><acpi/></features>
  <devices>
    <emulator>$QEMU</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' iothread='1'/>
      <source file='$T/disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'>
      <model type='virtio'/>
    </interface>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <video><model type='virtio'/></video>
    <serial type='pty'/>
    <console type='pty'/>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
chown "$USER_" "$T/dom.xml"

n=0
check() {       # check DESCRIPTION COMMAND...: ok when COMMAND succeeds
    local what=$1
    shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n $what"
    else
        echo "not ok $n $what"
        FAILED=1
    fi
}
FAILED=0

start_paused() {
    virsh_ define "$T/dom.xml" >/dev/null && virsh_ start --paused spp-test
}
check "define and start the domain (paused)" start_paused

qmp_set() {
    local out
    out=$(virsh_ qemu-monitor-command spp-test \
        '{"execute":"set-subpage","arguments":{"base_gfn":256,"npages":1,"wp_map":4294901760}}')
    grep -q '"return":{}' <<<"$out"
}
check "QMP set-subpage through qemu-monitor-command" qmp_set

# json_has JSON PYTHON-EXPRESSION: the expression over r (the reply)
json_has() {
    python3 -c 'import json, sys; r = json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}

hmp_set() {
    local out
    virsh_ qemu-monitor-command spp-test --hmp 'set-subpage 0x101 1 0x0' \
        >/dev/null &&
    out=$(virsh_ qemu-monitor-command spp-test \
        '{"execute":"query-subpage","arguments":{"base-gfn":256,"npages":2}}') &&
    json_has "$out" "r['return'] == [{'gfn': 256, 'wp-map': 0xffff0000}, {'gfn': 257, 'wp-map': 0}]" &&
    out=$(virsh_ qemu-monitor-command spp-test --hmp 'info subpage 0x100 1') &&
    grep -q -- '----------------wwwwwwwwwwwwwwww' <<<"$out"
}
check "HMP set-subpage and info subpage, query-subpage" hmp_set

events() {
    local out
    virsh_ qemu-monitor-event spp-test --event SPP_VIOLATION --loop \
        --timeout 30 >"$T/events.txt" 2>&1 &
    local ev=$!
    sleep 1
    virsh_ resume spp-test >/dev/null || return 1
    for _ in $(seq 300); do
        [ "$(grep -c SPP_VIOLATION "$T/events.txt")" -ge 5 ] && break
        sleep 0.1
    done
    kill $ev 2>/dev/null
    wait $ev 2>/dev/null
    [ "$(grep -c SPP_VIOLATION "$T/events.txt")" = 5 ] &&
    [ "$(grep SPP_VIOLATION "$T/events.txt" | grep '"gfn":256' |
         grep '"subpage":0' | grep -c '"source":"cpu"')" = 5 ]
}
check "5 SPP_VIOLATION events through qemu-monitor-event" events

query_spp() {
    local out
    out=$(virsh_ qemu-monitor-command spp-test '{"execute":"query-spp"}') &&
    json_has "$out" "r['return']['violations'] == 5 and r['return']['violations-cpu'] == 5 and r['return']['bytes-blocked'] == 20 and r['return']['protected-pages'] == 2 and r['return']['writers'] == []"
}
check "query-spp counters, and no writer SPP cannot judge" query_spp

vnc() {
    local out
    out=$(virsh_ qemu-monitor-command spp-test '{"execute":"query-vnc"}') &&
    json_has "$out" "r['return']['enabled'] and r['return']['service'] != ''" &&
    out=$(virsh_ qemu-monitor-command spp-test '{"execute":"query-iothreads"}') &&
    json_has "$out" "len(r['return']) == 1"
}
check "VNC server and iothread of the virt-install-style domain" vnc

[ "$FAILED" = 0 ] || { echo "# libvirtd log:"; sed 's/^/# /' "$T/libvirtd.log"; }
exit "$FAILED"
