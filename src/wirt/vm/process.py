"""The VM process: `python -m wirt.vm.process NAME`, started detached by `wirt start`.

It forks once, before any thread exists:
- the worker (child) writes run/pid, applies the resource limits, builds the Machine through
  `wirt.vm.runner`, serves the control socket and runs the guest. On a clean end it writes
  run/exit.json;
- the monitor (parent, run/monitor.pid) waits for the worker and records how it ended in
  last-exit.json: a clean exit, or a crash with the exit status or signal and the last
  console lines. Then it moves the console log out of run/ and removes run/. It also writes
  the host event log for the worker, which is confined to the VM's folder while the guest runs
  (docs/security.md): the worker reports guest events (a kernel panic) as JSON lines on a pipe.
So a `kill -9` of the VM process is seen ("crashed", with the signal), and only a kill of
both processes leaves stale files (cleaned at the next start, see wirt.vm.status).
stdout and stderr are run/console.log (set up by the starter), so tracebacks land there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wirt.errors import WirtError
from wirt.vm.store import VMPaths, VMStore, atomic_write, read_json

__all__ = ["main"]


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


# ---- the monitor ------------------------------------------------------------------------------
def _oom_killed(paths: VMPaths) -> bool:
    """Whether the kernel's OOM killer ended the worker (its cgroup's memory.events counts it)."""
    try:
        cgroup = (paths.run / "cgroup").read_text().strip()
    except OSError:
        return False
    for path in ([os.path.join(cgroup, "memory.events")] if cgroup else []):
        try:
            for line in open(path):
                if line.startswith("oom_kill ") and int(line.split()[1]) > 0:
                    return True
        except (OSError, ValueError):
            pass
    return False


#: The events a worker may report through the monitor (it cannot write $WIRT_HOME once confined).
GUEST_EVENTS = ("panic",)


def _relay(paths: VMPaths, fd: int) -> None:
    """Monitor side: record each event the worker reports on `fd` (a JSON line) until it closes."""
    from wirt.vm import events

    with os.fdopen(fd, "rb") as pipe:
        for line in pipe:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("type") in GUEST_EVENTS and isinstance(ev.get("line"), str):
                events.emit(paths.root.parent.parent, paths.name, ev["type"], line=ev["line"][:1000])


def _reporter(fd: int | None) -> Callable[[str, str], None]:
    """Worker side: report(type, line) sends a guest event to the monitor (dropped without one)."""
    def report(type: str, line: str) -> None:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, (json.dumps({"type": type, "line": line}) + "\n").encode())
    return report


def monitor(paths: VMPaths, child: int, events_fd: int | None = None) -> int:
    """Wait for the worker; forward termination signals to it; record its guest events and how it ended."""
    relay = None
    if events_fd is not None:
        relay = threading.Thread(target=_relay, args=(paths, events_fd), name="wirt-events", daemon=True)
        relay.start()

    def forward(signum: int, frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            status = -1
            break
    if relay is not None:
        relay.join(5.0)  # the worker is gone: its end of the pipe is closed, the rest is read
    from wirt.vm.status import _tail

    clean = read_json(paths.exit_record)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS:
        how = "killed by SIGSYS: it made a system call its seccomp filter forbids (docs/security.md)"
    elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL and _oom_killed(paths):
        how = "killed by SIGKILL: out of memory (its memory limit)"
    elif os.WIFSIGNALED(status):
        how = f"killed by {_signame(os.WTERMSIG(status))}"
    elif os.WIFEXITED(status):
        how = f"exited with status {os.WEXITSTATUS(status)}"
    else:
        how = "lost (no exit status)"
    record: dict[str, Any] = {"ended": time.time(), "pid": child, "exit": how}
    if clean is not None and clean.get("clean"):
        record.update(state="stopped", reason=clean.get("reason", "stopped"), detail=clean.get("detail", ""))
    elif paths.force_marker.exists():
        record.update(state="stopped", reason=f"forced off by `wirt stop --force` ({how})")
    else:
        detail = (clean or {}).get("detail", "")
        record.update(state="crashed", reason=how + (f": {detail}" if detail else ""),
                      console_tail=_tail(paths.console_log))
    info = read_json(paths.info) or {}
    if info.get("started"):
        record["started"] = info["started"]
    atomic_write(paths.last_exit, json.dumps(record, indent=1))
    from wirt.vm import events

    events.emit(paths.root.parent.parent, paths.name, record["state"], reason=record["reason"])
    if paths.console_log.exists():
        os.replace(paths.console_log, paths.last_console)
    shutil.rmtree(paths.run, ignore_errors=True)
    return 0


# ---- the worker --------------------------------------------------------------------------------
def worker(store: VMStore, paths: VMPaths, events_fd: int | None = None) -> int:
    """Run the VM; guest events go to the monitor on `events_fd`. Returns the process exit status."""
    from wirt.vm import limits, runner
    from wirt.vm.consolehub import ConsoleHub
    from wirt.vm.control import ControlServer
    from wirt.vm.service import VMService

    atomic_write(paths.pid, f"{os.getpid()}\n")
    info = read_json(paths.info) or {}
    cfg = store.load(paths.name)
    # The run uses the resources admitted at start (a later `wirt set` applies next time).
    cfg.memory = int(info.get("memory", cfg.memory))
    cfg.cpus = int(info.get("cpus", cfg.cpus))
    plan = limits.LimitPlan(cfg.name, cfg.cpus, cfg.memory, int(info.get("overhead", 256 << 20)),
                            int(info.get("rlimit_headroom", 8 << 30)), int(info.get("io_weight", 100)),
                            tuple(cfg.cpu_affinity))
    applied = limits.apply_limits(plan)
    if applied.cgroup:  # the monitor looks there for an OOM kill
        atomic_write(paths.run / "cgroup", applied.cgroup + "\n")
    print(f"wirt: VM {cfg.name} (pid {os.getpid()}): limits {applied.method}: {', '.join(applied.details)}",
          flush=True)
    hub = ConsoleHub(sys.stdout.fileno())
    boot = runner.BootFiles(**info["boot"]) if "boot" in info else runner.resolve_boot(cfg, paths.root)
    from wirt.vm import events

    # A guest kernel panic is an event (the guest reboots after it: panic=1 in the boot arguments),
    # recorded by the monitor: Landlock keeps this process out of $WIRT_HOME's event log.
    report = _reporter(events_fd)
    watch = events.PanicWatch(hub.output, lambda line: report("panic", line))
    run = runner.Runner(cfg, boot, watch, paths.root)
    result: runner.RunResult | None = None
    server = None
    data: Any = None
    try:
        run.build()
        for w in run.warnings:
            print(f"wirt: warning: {w}", flush=True)
        hub.feed = run.feed_input
        service = VMService(cfg, run, hub, applied)
        from wirt.vm import events
        from wirt.vm.confinement import confine_vm

        events.emit(store.home, cfg.name, "started", pid=os.getpid())  # $WIRT_HOME: before Landlock
        # Set-up is done: from here on the process needs no new files outside its folder, no
        # exec, no new processes (docs/security.md). This thread runs the CPU and its devices;
        # the control server's threads start after, so Landlock covers them too, and nothing
        # answers on the control socket before the process is confined.
        service.confinement = confine_vm(paths, cfg)
        service.confinement.notices[:0] = applied.notices  # resource limits that could not be enforced
        print(f"wirt: VM {cfg.name}: confined: {service.confinement.summary()}", flush=True)
        for note in service.confinement.notices:
            print(f"wirt: notice: {note}", flush=True)
        run.memory_limit = ", ".join(applied.details) or "no limit set"

        def thread_died(args: threading.ExceptHookArgs) -> None:
            if isinstance(args.exc_value, MemoryError):  # a device back-end or server thread
                run.out_of_memory(f"in thread {args.thread.name if args.thread else '?'}")
            else:
                threading.__excepthook__(args)

        threading.excepthook = thread_died
        server = ControlServer(paths.control, service.commands(), console=hub.attach,
                               on_fatal=lambda exc: run.out_of_memory("serving a control request"))
        server.start()
        if run.data_port is not None:
            from wirt.vm.datachan import DataChannel

            data = DataChannel(paths.data_socket, run.data_port)
            data.start()

        def on_term(signum: int, frame: object) -> None:
            run.halt()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        result = run.run()
    except WirtError as exc:
        print(f"wirt: error: {exc}", flush=True)
        atomic_write(paths.exit_record, json.dumps({"clean": False, "reason": "error", "detail": str(exc)}))
        return 1
    except MemoryError:
        detail = f"out of memory: the VM process hit its memory limit ({', '.join(applied.details) or 'no limit set'})"
        print(f"wirt: error: {detail}", flush=True)
        atomic_write(paths.exit_record, json.dumps({"clean": False, "reason": "error", "detail": detail}))
        return 1
    finally:
        if server is not None:
            server.close()
        if data is not None:
            data.close()
        hub.close_all()
        run.close()  # flush and close the disks
    if run.fatal:  # e.g. out of memory in a thread: the run was halted to end as a failure
        print(f"\r\nwirt: error: {run.fatal}", flush=True)
        atomic_write(paths.exit_record, json.dumps({"clean": False, "reason": "error", "detail": run.fatal}))
        return 1
    print(f"\r\nwirt: VM {cfg.name} ended: {result.reason}"
          + (f" (code {result.code})" if result.code else "") + (f": {result.detail}" if result.detail else ""),
          flush=True)
    atomic_write(paths.exit_record, json.dumps({
        "clean": result.clean, "reason": result.reason, "code": result.code, "detail": result.detail,
        "instructions": result.instructions}))
    return 0 if result.clean else 1


def main(argv: list[str] | None = None) -> int:
    from wirt.gcpolicy import defer_collections, skip_final_collection

    defer_collections()
    skip_final_collection()
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m wirt.vm.process NAME (started by `wirt start NAME`)", file=sys.stderr)
        return 2
    store = VMStore()
    try:
        paths = store.require(args[0])
    except WirtError as exc:
        print(f"wirt: error: {exc}", file=sys.stderr)
        return 2
    if not paths.run.is_dir():
        print("wirt: error: run/ is missing; start VMs with `wirt start`", file=sys.stderr)
        return 2
    atomic_write(paths.run / "monitor.pid", f"{os.getpid()}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    events_r, events_w = os.pipe()  # close-on-exec: only the worker and the monitor hold it
    child = os.fork()
    if child == 0:
        os.close(events_r)
        code = 1
        try:
            code = worker(store, paths, events_w)
        except BaseException:  # noqa: BLE001 -- the traceback goes to the console log
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(events_w)
    return monitor(paths, child, events_r)


if __name__ == "__main__":
    sys.exit(main())
