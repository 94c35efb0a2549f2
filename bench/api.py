"""`wirt serve` under load: requests per second of VM list and get with 50 VMs defined, the
latency of a start request, and the memory of the idle server.

A private WIRT_HOME gets a `wirt serve` process (Unix socket) and --vms VMs (bare firmware that
spins in a loop: no Linux, so the figures are the API's and the VM store's, not a boot's). One
client on one keep-alive connection over the Unix socket sends GET /v1/vms and GET
/v1/vms/{name} for --seconds each (sequential requests: latency-bound, what a script sees).
The start latency is POST /v1/vms/{name}/start until the answer (the VM process answers its
control socket), over --starts starts: the first starts a fresh VM process (and leaves the warm
zygote of vm/zygote.py running), later ones are forked from the zygote. Idle RSS
is the server's VmRSS after the runs. QEMU has no REST API of its own, so there is no ratio.

Usage: python bench/api.py [--vms 50] [--seconds 5] [--starts 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=600)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def call(conn: http.client.HTTPConnection, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = conn.getresponse()
    return r.status, r.read()


def spin_firmware() -> bytes:
    """`j .` at the reset address: a guest that only burns its time slices."""
    from wirt.machine import rvenc as E

    return E.assemble([E.jal("zero", 0)])


def rate(conn: http.client.HTTPConnection, path: str, seconds: float) -> tuple[float, float]:
    """(requests per second, median latency in ms) of GET path, sequentially for `seconds`."""
    n, lat = 0, []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        status, _ = call(conn, "GET", path)
        lat.append(time.perf_counter() - t)
        assert status == 200, status
        n += 1
    return n / seconds, statistics.median(lat) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--starts", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wirt-bench-api-"))
    home = tmp / "home"
    fw = tmp / "spin.bin"
    fw.write_bytes(spin_firmware())
    env = dict(os.environ, WIRT_HOME=str(home), PYTHONUNBUFFERED="1")
    srv = subprocess.Popen([sys.executable, "-m", "wirt", "serve"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        line = srv.stdout.readline()
        m = re.search(r"unix:(\S+)", line)
        assert m, line
        conn = UnixHTTP(m.group(1))
        print(f"creating {args.vms} VMs ...", flush=True)
        for i in range(args.vms):
            status, body = call(conn, "POST", "/v1/vms", {"name": f"vm{i:02d}", "image": "none", "disk": "none",
                                                          "memory": "32M", "net": "none", "firmware": str(fw)})
            assert status == 201, body
        list_rps, list_ms = rate(conn, "/v1/vms", args.seconds)
        get_rps, get_ms = rate(conn, "/v1/vms/vm07", args.seconds)
        starts = []
        for i in range(args.starts):
            t = time.perf_counter()
            status, body = call(conn, "POST", "/v1/vms/vm00/start")
            starts.append(time.perf_counter() - t)
            assert status == 200, body
            status, body = call(conn, "POST", "/v1/vms/vm00/stop?force=true")
            assert status == 200, body
        time.sleep(1.0)
        rss = next(int(x.split()[1]) for x in open(f"/proc/{srv.pid}/status") if x.startswith("VmRSS:")) * 1024
        print(f"GET /v1/vms ({args.vms} VMs):  {list_rps:8.1f} requests/s  (median {list_ms:.1f} ms)")
        print(f"GET /v1/vms/NAME:          {get_rps:8.1f} requests/s  (median {get_ms:.1f} ms)")
        print(f"POST start (answer when the VM process is up): first {starts[0] * 1000:.0f} ms, "
              f"then {', '.join(f'{s * 1000:.0f}' for s in starts[1:])} ms")
        print(f"idle server RSS: {rss / (1 << 20):.1f} MiB")
        print("QEMU: no REST API of its own to compare with")
    finally:
        srv.terminate()
        srv.wait(30)
        from wirt.vm.api import VM

        from wirt.vm import zygote

        for vm in VM.list(home):
            if vm.status(query=False).running:
                vm.stop(force=True)
        zygote.stop(home)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
