"""GET /metrics: Prometheus text format (prometheus-client), one `vm` label per series.

Sampled at scrape time: every VM's state from its files, and for running VMs the `stats` of
its control socket (the figures of `wirt top`): host CPU seconds and RSS of the VM process,
guest instructions and MIPS, disk and network bytes and operations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from wirt.errors import WirtError
from wirt.serve.app import HOME, run

__all__ = ["register", "VMCollector"]

STATES = ("stopped", "starting", "running", "paused", "stopping", "crashed", "invalid")
#: stats key -> (series name, help, counter?)
SERIES = {
    "cpu_seconds": ("wirt_vm_cpu_seconds", "host CPU time of the VM process", True),
    "rss_bytes": ("wirt_vm_rss_bytes", "resident memory of the VM process", False),
    "instructions": ("wirt_vm_instructions", "guest instructions retired", True),
    "mips": ("wirt_vm_mips", "guest million instructions per second (since the previous sample)", False),
    "disk_read_bytes": ("wirt_vm_disk_read_bytes", "bytes the guest read from its disks", True),
    "disk_write_bytes": ("wirt_vm_disk_write_bytes", "bytes the guest wrote to its disks", True),
    "disk_read_ops": ("wirt_vm_disk_read_ops", "disk read requests", True),
    "disk_write_ops": ("wirt_vm_disk_write_ops", "disk write requests", True),
    "net_rx_bytes": ("wirt_vm_network_receive_bytes", "bytes of frames received by the guest", True),
    "net_tx_bytes": ("wirt_vm_network_transmit_bytes", "bytes of frames sent by the guest", True),
    "net_rx_packets": ("wirt_vm_network_receive_packets", "frames received by the guest", True),
    "net_tx_packets": ("wirt_vm_network_transmit_packets", "frames sent by the guest", True),
}


class VMCollector:
    """A prometheus-client collector reading the VMs of one home at each scrape."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def collect(self) -> Iterator[Metric]:
        from wirt.vm.api import VM
        from wirt.vm.control import call

        state = GaugeMetricFamily("wirt_vm_state", "1 for the VM's current state", labels=["vm", "state"])
        memory = GaugeMetricFamily("wirt_vm_memory_bytes", "configured guest RAM", labels=["vm"])
        cpus = GaugeMetricFamily("wirt_vm_cpus", "configured virtual CPUs", labels=["vm"])
        fams: dict[str, Any] = {
            k: (CounterMetricFamily if counter else GaugeMetricFamily)(name, doc, labels=["vm"])
            for k, (name, doc, counter) in SERIES.items()}
        for vm in VM.list(self.home):
            st = vm.status(query=False)
            s = st.state
            try:
                cfg = vm.config
                memory.add_metric([vm.name], cfg.memory)
                cpus.add_metric([vm.name], cfg.cpus)
            except WirtError:
                s = "invalid"
            if st.running:
                try:
                    stats = call(vm.paths.control, "stats", timeout=2.0)
                    live = call(vm.paths.control, "status", timeout=2.0)
                    s = "paused" if live.get("paused") else "running"
                except WirtError:
                    stats, s = {}, "starting" if st.state == "running" else st.state
                for k, fam in fams.items():
                    if isinstance(stats.get(k), (int, float)):
                        fam.add_metric([vm.name], stats[k])
            for name in STATES:
                state.add_metric([vm.name, name], 1.0 if name == s else 0.0)
        yield state
        yield memory
        yield cpus
        yield from fams.values()


def register(app: web.Application) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(VMCollector(app[HOME]))

    async def metrics(request: web.Request) -> web.Response:
        body = await run(request, generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
