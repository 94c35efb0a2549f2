# wirt: two commands on a fresh Debian machine.
#   make run   - set up everything and boot the default Debian VM to a shell (Ctrl-A x quits)
#   make test  - set up everything and run the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# System packages the tests need: the RISC-V cross toolchain (test programs), qemu-img
# (qcow2 interop), QEMU itself (reference for benchmarks), dtc (device tree review), passt.
SYSTEM_PACKAGES := gcc-riscv64-unknown-elf binutils-riscv64-unknown-elf picolibc-riscv64-unknown-elf \
	qemu-utils qemu-system-misc device-tree-compiler passt opensbi debian-archive-keyring gpgv \
	gnupg cpio e2fsprogs xz-utils zstd iproute2

.PHONY: setup system-packages venv run test bench clean

setup: system-packages venv

system-packages:
	@bash scripts/install-system-packages.sh $(SYSTEM_PACKAGES)

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test,serve]'
	@touch $@

venv: $(VENV)/.installed

run: setup
	$(VENV)/bin/wirt run

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) bench/mips.py

clean:
	rm -rf $(VENV) build src/*.egg-info
