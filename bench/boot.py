"""Boot time of the default Debian guest: wirt beside QEMU on the same kernel and initramfs.

Measures, from process start, the time until the guest command's output appears and until
the process exits, for
- `wirt run -- echo <marker>` (default kernel + initramfs, OpenSBI fw_dynamic), and
- `qemu-system-riscv64 -M virt -m 512M -smp 1 -nographic -bios fw_dynamic.bin -kernel Image
  -initrd initrd -append ...` with the very same files and kernel command line,
then prints both and the ratio. With --milestones it also boots wirt in-process and prints
the guest instruction count and time at each boot stage (OpenSBI banner, Linux banner,
/init, command output, power-off).

Usage: python bench/boot.py [--memory 512M] [--deterministic] [--milestones] [--no-qemu]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import guestbench as gb  # noqa: E402

MARKER = "wirt-bench-hello"
_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def timed(cmd: list[str], marker: str, timeout: float = 1800) -> tuple[float | None, float, int]:
    """(seconds to the marker on stdout or None, seconds to exit, exit status) of `cmd`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    seen: list[float] = []
    buf = bytearray()
    needle = marker.encode()

    def reader() -> None:
        assert proc.stdout is not None
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                return
            buf.extend(chunk)
            if not seen and needle in buf:
                seen.append(time.perf_counter() - start)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    t.join(5)
    return (seen[0] if seen else None), time.perf_counter() - start, rc


def milestones(guest, memory: int, deterministic: bool) -> None:
    """Boot in-process and print instructions/seconds at each boot stage."""
    from wirt.cli.run import _bootargs
    from wirt.machine.board import Machine

    stages = {"OpenSBI v": "OpenSBI banner", "Linux version": "Linux banner",
              "Run /init": "/init starts", MARKER: "command output"}
    got: dict[str, tuple[int, float]] = {}
    start = time.perf_counter()
    holder: dict = {}
    text = bytearray()

    def out(data: bytes) -> None:
        text.extend(data)
        for key in stages:
            if key not in got and key.encode() in text:
                got[key] = (holder["m"].hart.instret, time.perf_counter() - start)

    m = Machine(guest.firmware.read_bytes(), guest.kernel.read_bytes(), guest.initrd.read_bytes(),
                memory_size=memory, deterministic=deterministic, on_output=out,
                bootargs=_bootargs(f"echo {MARKER}", ""))   # what `wirt run` boots with
    holder["m"] = m
    ready = time.perf_counter() - start
    t0 = time.perf_counter()
    r = m.run()
    run_s = time.perf_counter() - t0
    print(f"in-process boot ({'deterministic' if deterministic else 'real-time'} mode), "
          f"machine built in {ready:.2f} s:")
    for key, name in stages.items():
        if key in got:
            n, s = got[key]
            print(f"  {name:16s} {n / 1e6:9.1f} M instructions  {s:7.2f} s")
        else:
            print(f"  {name:16s} not seen")
    print(f"  {'end (' + r.reason + ')':16s} {r.instructions / 1e6:9.1f} M instructions  "
          f"{time.perf_counter() - start:7.2f} s   ({r.instructions / run_s / 1e6:.0f} MIPS average)")
    st = m.stats
    print(f"  exits: {st['mmio_exits']} MMIO, {st['wfi_exits']} WFI ({st['idle_seconds']:.2f} s asleep), "
          f"{st['slices']} slices")
    js = m.hart.jit_stats()
    if js.get("setting", "off") != "off":
        print(f"  translation tier ({js['setting']}): {js['regions']} regions compiled in "
              f"{js['compile_s']:.1f} s (background), entered {js['entered']} times, "
              f"{js['side_exits']} side exits, {js['limit_exits']} limit exits, "
              f"{js['invalidations']} invalidations, "
              f"{js['translated_insns'] / max(r.instructions, 1):.0%} of instructions translated")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory", default="512M")
    ap.add_argument("--deterministic", action="store_true")
    ap.add_argument("--milestones", action="store_true", help="also boot in-process, per-stage counts")
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()

    from wirt.images.guest import default_guest
    from wirt.images.scripts import run_param
    from wirt.units import parse_size

    guest = default_guest()
    print(f"guest: Linux {guest.kernel_version}, initrd {guest.initrd.stat().st_size / 1e6:.1f} MB "
          f"({len(guest.modules)} modules)")

    wirt_cmd = [sys.executable, "-c", _MAIN, "run", "--memory", args.memory]
    if args.deterministic:
        wirt_cmd.append("--deterministic")
    w_out, w_exit, w_rc = timed([*wirt_cmd, "--", "echo", MARKER], MARKER)
    if w_out is None:
        raise SystemExit(f"wirt run did not print the marker (exit status {w_rc})")
    print(f"wirt  : output after {w_out:6.2f} s, exit after {w_exit:6.2f} s (status {w_rc})")

    qemu = gb.qemu_exe()
    if qemu and not args.no_qemu:
        print(gb.qemu_banner())
        from wirt.cli.run import _bootargs

        append = _bootargs(f"echo {MARKER}", "")  # exactly the command line `wirt run` passes
        q_out, q_exit, q_rc = timed([qemu, "-M", "virt", "-m", args.memory.rstrip("B"), "-smp", "1",
                                     "-nographic", "-bios", str(guest.firmware), "-kernel", str(guest.kernel),
                                     "-initrd", str(guest.initrd), "-append", append], MARKER)
        if q_out is None:
            print(f"qemu  : the marker never appeared (exit status {q_rc})")
        else:
            print(f"qemu  : output after {q_out:6.2f} s, exit after {q_exit:6.2f} s (status {q_rc})")
            print(f"ratio : wirt/qemu = {w_out / q_out:.2f}x to output, {w_exit / q_exit:.2f}x to exit")
    else:
        print("qemu  : not run (qemu-system-riscv64 not installed or --no-qemu)")

    if args.milestones:
        milestones(guest, parse_size(args.memory), args.deterministic)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
