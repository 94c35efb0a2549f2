# wirt: two commands on a fresh Debian machine.
#   make run   - set up everything and boot the default Debian VM to a shell (Ctrl-A x quits)
#   make test  - set up everything and run the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# System packages the tests need: the RISC-V cross toolchain (test programs), qemu-img
# (qcow2 interop), QEMU itself (reference for benchmarks), dtc (device tree review), passt,
# chromium and its WebDriver (the web console's browser test), openssl (a test certificate),
# libseccomp2 (the VM process's seccomp filter, through pyseccomp), the OpenSSH client (`wirt ssh`),
# zsh (the zsh completion test).
SYSTEM_PACKAGES := gcc-riscv64-unknown-elf binutils-riscv64-unknown-elf picolibc-riscv64-unknown-elf \
	qemu-utils qemu-system-misc device-tree-compiler passt opensbi debian-archive-keyring gpgv \
	gnupg cpio e2fsprogs xz-utils zstd iproute2 chromium chromium-driver openssl libseccomp2 openssh-client zsh

WEB := src/wirt/serve/web

.PHONY: setup system-packages venv webui bytecode run test fuzz bench clean

setup: system-packages venv webui bytecode

system-packages:
	@bash scripts/install-system-packages.sh $(SYSTEM_PACKAGES)

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test,serve,cluster]'
	@touch $@

venv: $(VENV)/.installed

# The web console's front-end packages (xterm.js) from the npm registry, pinned in package.json;
# npm writes the lockfile here at setup. Neither node_modules nor the lockfile is committed.
$(WEB)/node_modules/.installed: $(WEB)/package.json
	@command -v npm >/dev/null || bash scripts/install-system-packages.sh npm
	@cd $(WEB) && npm install --no-audit --no-fund --loglevel=error
	@touch $@

webui: $(WEB)/node_modules/.installed

# wirt's own modules as bytecode, as a regular pip install leaves them: an editable install
# compiles them at import, every start, where the environment forbids writing bytecode
# (PYTHONDONTWRITEBYTECODE), 0.13 s of each `wirt run`. Up-to-date files are skipped.
bytecode: venv
	@$(PY) -m compileall -q src/wirt

run: setup
	$(VENV)/bin/wirt run

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The fuzz tests (Hypothesis properties over qcow2 metadata, snapshot state, vm.toml, control
# requests, virtio registers and rings; differential CPU programs against QEMU) with WIRT_FUZZ_SCALE
# times the examples of `make test`, and the coverage-guided atheris targets (tests/coverage_fuzz.py)
# for WIRT_FUZZ_SECONDS each.
FUZZ_TESTS := tests/storage/test_fuzz_qcow2.py tests/machine/test_fuzz_snapshot.py tests/vm/test_fuzz_config.py \
	tests/devices/virtio/test_virtio_fuzz.py tests/cpu/test_differential.py tests/test_coverage_fuzz.py
fuzz: setup
	WIRT_FUZZ_SCALE=$${WIRT_FUZZ_SCALE:-100} WIRT_FUZZ_SECONDS=$${WIRT_FUZZ_SECONDS:-300} \
		$(PY) -m pytest -q $(FUZZ_TESTS)

bench: setup
	$(PY) bench/mips.py

clean:
	rm -rf $(VENV) build src/*.egg-info $(WEB)/node_modules $(WEB)/package-lock.json
