# The QEMU SPP fork.  See README.md.
#
#   make            fetch the base, assemble build/src and build QEMU
#   make demo       build, then run the SPP demonstration: Debian's stock
#                   kernel watched by symbol
#   make demo-tiny  the faster demonstration with the tiny test guest
#   make check      build, then run the test suite
#   make check-kvm  build, then run only the KVM tests: in the nested-KVM
#                   lab, or on this host's KVM with SPP_KVM=host
#   make bench      build, then run the benchmarks
#   make bench-compare BASELINE=REV   sections 1, 2 against the fork at REV
#   make update-patches   turn edits of upstream files in build/src
#                         back into patches/
#   make check-patches    the series applies to the pristine base,
#                         checkpatch.pl is clean on patches and our files,
#                         and every prefix of the series builds and passes
#                         its tests (SPP_SKIP_SERIES=1 skips that)
#   SPP_LAB_KERNEL=backports make check-kvm   the lab on Debian's 6.12

SHELL := /bin/bash
SPP := scripts/spp

.PHONY: all build deps demo demo-tiny check check-kvm check-patches update-patches bench bench-compare clean distclean

all: build

deps:
	@$(SPP)/install-deps.sh

build: deps
	@$(SPP)/build.sh

demo: build
	@$(SPP)/demo.sh

demo-tiny: build
	@$(SPP)/demo.sh tiny

check: deps
	@$(SPP)/check.sh

check-kvm: deps
	@$(SPP)/build.sh tests/qtest/spp-test
	@SPP_KVM=$${SPP_KVM:-lab} $(SPP)/kvm-tests.sh

bench: build
	@$(SPP)/bench.sh

bench-compare: build
	@$(SPP)/bench-compare.sh "$(BASELINE)"

update-patches:
	@python3 $(SPP)/update-patches.py

check-patches: deps
	@$(SPP)/check-patches.sh

clean:
	rm -rf build/qemu-build build/src build/stage

distclean:
	rm -rf build
