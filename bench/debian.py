"""A real Debian workload: boot the root disk, run python3 + sqlite3 + gzip, power off; wirt beside QEMU.

The micro benchmarks (mips.py, disk.py, ...) time one thing each; this one times what a user
waits for: a Debian root disk (wirt's minimal init, no network) boots until its guest agent
answers, runs a fixed, deterministic python3 program (20000 rows into an sqlite3 database in one
transaction, an index, aggregate and index queries, a few MB of generated text through the gzip
binary and back) and powers off gracefully (the agent's `poweroff`: sync, root read-only,
`poweroff -f`). Measured from VM start to (a) agent answers `true`, (b) workload done, (c) the
hypervisor process has exited. Where qemu-system-riscv64 is installed the same runs under QEMU on
a qcow2 overlay of the very same root disk, with the same firmware, kernel, initramfs and kernel
command line (bench/density.py's QemuVM), and both must print the same checksum.

Usage: python bench/debian.py [--memory 1G] [--repeat 1] [--no-qemu]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import density  # noqa: E402
import guestbench as gb  # noqa: E402

INIT = "minimal"
WORK_TIMEOUT = 1800.0  # seconds the workload may run
EXIT_TIMEOUT = 120.0   # seconds from the power-off request until the process is gone

WORKLOAD = r"""python3 - <<'EOF'
import hashlib, random, sqlite3, subprocess
rng, h = random.Random(20240601), hashlib.sha256()
db = sqlite3.connect("/tmp/bench.db")
db.execute("drop table if exists t")
db.execute("create table t (id integer primary key, k integer, name text, v real)")
with db:
    db.executemany("insert into t (k, name, v) values (?, ?, ?)",
                   [(rng.randrange(1000), "n%06d" % rng.randrange(10**6), rng.random()) for _ in range(20000)])
db.execute("create index t_k on t (k)")
for q in ("select count(*), sum(k), round(sum(v), 6), min(name), max(name) from t",
          "select k, count(*), round(avg(v), 6) from t group by k order by k",
          "select count(*), round(sum(v), 6) from t where k between 100 and 199",
          "select id, name from t where k = 7 order by name",
          "select substr(name, 1, 3) p, count(*) from t group by p order by 2 desc, 1 limit 20"):
    for row in db.execute(q):
        h.update(repr(row).encode())
db.close()
data = "".join("%d %.12f %d\n" % (i, rng.random(), i * i % 9973) for i in range(120000)).encode()
gz = subprocess.run(["gzip", "-6", "-n", "-c"], input=data, capture_output=True, check=True).stdout
back = subprocess.run(["gzip", "-d", "-c"], input=gz, capture_output=True, check=True).stdout
assert back == data, "gzip round trip differs"
h.update(hashlib.sha256(data).digest() + hashlib.sha256(gz).digest())
print(len(data), len(gz), h.hexdigest())
EOF"""

Times = tuple[float, float, float, str]  # start -> agent, -> workload done, -> exited; checksum line


def checksum(status: int, out: bytes, err: bytes, system: str) -> str:
    """The workload's output line, or SystemExit naming what went wrong."""
    text = out.decode(errors="replace").strip()
    if status != 0 or len(text.split()) != 3:
        why = (err.decode(errors="replace").strip().splitlines() or [text or "no output"])[-1]
        raise SystemExit(f"{system}: the workload failed (status {status}): {why}")
    return text


def run_wirt(memory: str) -> Times:
    """Boot the root disk under wirt, run the workload, power off gracefully; the times."""
    from wirt.errors import WirtError
    from wirt.vm.api import VM

    home = tempfile.mkdtemp(prefix="wirt-debian-")
    os.environ["WIRT_HOME"] = home
    vm = None
    try:
        vm = VM.create("debian", memory=memory, disk="4G", init=INIT, net="none")
        t0 = time.perf_counter()
        vm.start()
        if vm.exec("true", timeout=density.AGENT_WAIT * 2).status != 0:
            raise SystemExit("wirt: `true` failed in the guest")
        agent = time.perf_counter() - t0
        r = vm.exec(WORKLOAD, timeout=density.AGENT_WAIT, kill_after=WORK_TIMEOUT)
        done = time.perf_counter() - t0
        line = checksum(r.status, r.stdout, r.stderr, "wirt")
        st = vm.stop(timeout=EXIT_TIMEOUT)  # graceful: the agent's poweroff; returns once the process is gone
        exited = time.perf_counter() - t0
        if st.state != "stopped":
            raise SystemExit(f"wirt: the VM ended {st.state} after power-off ({st.reason})")
        return agent, done, exited, line
    except WirtError as exc:
        raise SystemExit(f"wirt: {exc}") from None
    finally:
        if vm is not None and vm.status(query=False).running:
            try:
                vm.stop(force=True)
            except WirtError:
                pass
        shutil.rmtree(home, ignore_errors=True)


def qemu_exec(vm: density.QemuVM, command: str, timeout: float) -> tuple[int, bytes, bytes]:
    """Run `command` through the QEMU guest's agent: (status, stdout, stderr)."""
    if not vm.agent.wait_ready(density.AGENT_WAIT):
        raise SystemExit("qemu: the guest agent did not come up")
    out, err, status = bytearray(), bytearray(), -1
    for ev in vm.agent.events(vm.agent.start(command), timeout=timeout):
        if ev.kind == "exit":
            status = ev.status
        else:
            (err if ev.kind == "stderr" else out).extend(ev.data)
    return status, bytes(out), bytes(err)


def run_qemu(qemu: str, memory: str) -> Times:
    """The same as run_wirt under QEMU, on a qcow2 overlay of the same root disk."""
    from wirt.errors import WirtError
    from wirt.images.guest import default_guest
    from wirt.images.rootdisk import root_disk
    from wirt.images.rootinit import root_cmdline
    from wirt.storage.qcow2_create import create_qcow2
    from wirt.vm.runner import BASE_BOOTARGS

    work = Path(tempfile.mkdtemp(prefix="wirt-debian-qemu-"))
    try:
        disk = work / "root.qcow2"
        create_qcow2(str(disk), 4 << 30, backing=str(root_disk()), backing_format="qcow2")
        t0 = time.perf_counter()
        vm = density.QemuVM(qemu, default_guest(), memory, f"{BASE_BOOTARGS} {root_cmdline(INIT)}", work, 0, disk)
        try:
            if vm.exec_true() != 0:
                raise SystemExit("qemu: `true` failed in the guest")
            agent = time.perf_counter() - t0
            status, out, err = qemu_exec(vm, WORKLOAD, WORK_TIMEOUT)
            done = time.perf_counter() - t0
            line = checksum(status, out, err, "qemu")
            vm.agent.poweroff()  # the same request wirt's graceful stop sends
            try:
                code = vm.proc.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise SystemExit(f"qemu: did not exit within {EXIT_TIMEOUT:g} s of the power-off request") from None
            exited = time.perf_counter() - t0
            if code != 0:
                raise SystemExit(f"qemu: exited with status {code} after power-off")
            return agent, done, exited, line
        finally:
            vm.close()
    except WirtError as exc:
        raise SystemExit(f"qemu: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def best(runs: list[Times]) -> Times:
    """The run with the shortest total (start -> exited)."""
    return min(runs, key=lambda r: r[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory", default="1G", help="guest RAM (default 1G)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per system; the best is reported (default 1)")
    ap.add_argument("--no-qemu", action="store_true", help="run wirt only")
    args = ap.parse_args()
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    qemu = None if args.no_qemu else gb.qemu_exe()
    if qemu:
        print(gb.qemu_banner())

    print(f"debian root disk, {args.memory}, init {INIT}: start -> agent, -> workload done, -> exited")
    rows: dict[str, Times] = {}
    for name in ("wirt", "qemu") if qemu else ("wirt",):
        runs = []
        for i in range(args.repeat):
            runs.append(run_wirt(args.memory) if name == "wirt" else run_qemu(qemu, args.memory))  # type: ignore[arg-type]
            if args.repeat > 1:
                print(f"  {name} run {i + 1}/{args.repeat}: total {runs[-1][2]:.1f} s", flush=True)
        if len({r[3] for r in runs}) != 1:
            raise SystemExit(f"{name}: the workload printed different checksums across runs: {sorted({r[3] for r in runs})}")
        rows[name] = best(runs)
        agent, done, exited, _ = rows[name]
        print(f"{name:5s} agent {agent:6.1f} s, workload {done:6.1f} s (work part {done - agent:5.1f} s), "
              f"exit {exited:6.1f} s", flush=True)
    print(f"checksum (bytes, gzipped, sha256): {rows['wirt'][3]}")
    if "qemu" in rows:
        (wa, wd, we, wl), (qa, qd, qe, ql) = rows["wirt"], rows["qemu"]
        if wl != ql:
            raise SystemExit(f"checksum mismatch: wirt printed {wl!r}, qemu printed {ql!r}")
        print("checksum: wirt and qemu agree")
        print(f"ratio wirt/qemu: agent {wa / qa:.2f}x, workload {wd / qd:.2f}x "
              f"(work part {(wd - wa) / (qd - qa):.2f}x), total {we / qe:.2f}x")
    else:
        print("qemu : not run (qemu-system-riscv64 not installed or --no-qemu)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
