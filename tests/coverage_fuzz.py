"""Coverage-guided fuzzing with atheris (libFuzzer for Python): `python tests/coverage_fuzz.py
TARGET [libFuzzer options]`, e.g. `-max_total_time=60` or `-runs=500`. `make fuzz` runs every
target for WIRT_FUZZ_SECONDS each; tests/test_coverage_fuzz.py runs each one briefly in the suite.

The Hypothesis properties (tests/*/test_fuzz_*.py) draw inputs from the shapes of their
strategies; these targets let libFuzzer mutate raw bytes and keep the inputs that reach new
branches of wirt's own code (instrumented at import). Each target feeds one parser what a hostile
file or client could give it; what must hold is that of the matching property:

    qcow2         bytes written over a real image's metadata: open, `check_image` and reads work
                  or raise a one-line WirtError
    vmtoml        a vm.toml text: a valid configuration or a one-line WirtError
    control       one control-socket request line: a structured reply, never an exception
    snapshot      a snapshot's machine state with bytes edited in its JSON text: refused with one
                  line (wirt.machine.statecheck) or loaded by the machine without an exception

Anything else (another exception, a crash, memory past libFuzzer's -rss_limit_mb) is a finding:
libFuzzer writes the input to crash-*/oom-* in the working folder.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

# wirt.storage.qcow2_check is left uninstrumented: it compares numpy arrays, and atheris's tracing
# of those comparisons keeps every array alive (120 KiB a run: 1.4 GB after 12000 runs).
with atheris.instrument_imports(include=["wirt"], exclude=["wirt.storage.qcow2_check"]):
    from wirt.errors import WirtError
    from wirt.machine import statecheck
    from wirt.storage.qcow2 import Qcow2Image
    from wirt.storage.qcow2_check import check_image
    from wirt.storage.qcow2_create import create_qcow2
    from wirt.vm import control
    from wirt.vm.store import VMStore

CS = 65536
METADATA = 5 * CS  # header, refcount table, refcount block, L1 table, first L2 table
WORK = Path(tempfile.mkdtemp(prefix="wirt-fuzz-"))


def _one_line(exc: WirtError) -> None:
    if "\n" in str(exc):
        raise AssertionError(f"a WirtError of several lines: {exc!r}")


# ---- qcow2 -------------------------------------------------------------------------------------
def _qcow2_setup() -> Callable[[bytes], None]:
    base = WORK / "base.qcow2"
    create_qcow2(str(base), 16 << 20, cluster_size=CS)
    with Qcow2Image(str(base), read_only=False) as img:
        img.write(0, b"\x5a" * 100_000)
        img.write(8 << 20, b"\x11" * CS)
        img.write_compressed(40, bytes(range(256)) * (CS // 256))
        img.create_snapshot("s1")
        img.write(CS, b"\x22" * 5000)
    image = base.read_bytes()
    path = WORK / "fuzzed.qcow2"

    def one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        b = bytearray(image)
        for _ in range(fdp.ConsumeIntInRange(1, 8)):
            at = fdp.ConsumeIntInRange(0, METADATA - 1)
            blob = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
            b[at:at + len(blob)] = blob
        path.write_bytes(bytes(b))
        try:
            with Qcow2Image(str(path), read_only=True, repair_dirty=False) as img:
                check_image(img)
                for off in (0, CS, 8 << 20, 40 * CS, img.size - 4096):
                    if 0 <= off <= img.size - 4096:
                        img.read(off, 4096)
        except WirtError as exc:
            _one_line(exc)

    return one


# ---- vm.toml -----------------------------------------------------------------------------------
def _vmtoml_setup() -> Callable[[bytes], None]:
    os.environ["WIRT_HOME"] = str(WORK / "home")
    store = VMStore()
    folder = store.vms / "fuzz"
    folder.mkdir(parents=True)
    config = folder / "vm.toml"

    import tomli_w

    from wirt.vm.schema import VMConfig

    seed = VMConfig.new("fuzz", cpus=2, memory="64M", image="none", net="user", ports=["8080:80"])
    SEEDS["vmtoml"] = [tomli_w.dumps(seed.to_dict()).encode()]

    def one(data: bytes) -> None:
        config.write_bytes(data)
        try:
            cfg = store.load("fuzz")
        except WirtError as exc:
            _one_line(exc)
            return
        cfg.to_dict()  # a valid configuration can be written back

    return one


# ---- control protocol --------------------------------------------------------------------------
def _control_setup() -> Callable[[bytes], None]:
    def echo(req: dict) -> dict:
        return {"echo": control.arg(req, "text", str)}

    server = control.ControlServer(WORK / "c.sock", {"ping": lambda req: {}, "echo": echo})
    SEEDS["control"] = [b'{"id": 1, "cmd": "ping"}', b'{"id": "a", "cmd": "echo", "text": "hi"}',
                        b'{"cmd": "echo", "text": 5}', b'{"id": [1], "cmd": "status"}']

    def one(data: bytes) -> None:
        reply, _ = server.dispatch(data)
        if not isinstance(reply, dict) or ("ok" not in reply and "error" not in reply):
            raise AssertionError(f"not a structured reply: {reply!r}")
        json.dumps(reply)  # it can be sent

    return one


# ---- snapshot machine state --------------------------------------------------------------------
def _snapshot_setup() -> Callable[[bytes], None]:
    sys.path.insert(0, str(Path(__file__).parent / "machine"))
    from test_snapshot import machine

    from wirt.machine.attach import attach_rng

    m = machine(bytearray())
    attach_rng(m)
    m.run(max_insns=9000)
    good = m.state()
    text = json.dumps(good).encode()

    def one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        b = bytearray(text)
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            at = fdp.ConsumeIntInRange(0, len(b) - 1)
            blob = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
            b[at:at + len(blob)] = blob
        try:
            saved = json.loads(b)
        except (ValueError, RecursionError):
            return  # not JSON: read_state_file refuses it before this point
        try:
            statecheck.check_state(m.state(), saved)
        except WirtError as exc:
            _one_line(exc)
            return
        m.load_state(saved)  # passed the check: must load
        m.load_state(good)

    return one


#: starting inputs of a target (valid ones, for libFuzzer to mutate from), set by its setup
SEEDS: dict[str, list[bytes]] = {}

TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {
    "qcow2": _qcow2_setup, "vmtoml": _vmtoml_setup, "control": _control_setup, "snapshot": _snapshot_setup,
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]")
    one = TARGETS[argv[1]]()
    args = argv[2:]
    if SEEDS.get(argv[1]) and not any(not a.startswith("-") for a in args):
        corpus = WORK / f"corpus-{argv[1]}"  # no corpus folder given: start from the seeds
        corpus.mkdir()
        for i, seed in enumerate(SEEDS[argv[1]]):
            (corpus / f"seed{i}").write_bytes(seed)
        args.append(str(corpus))
    atheris.Setup([argv[0], *args], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
