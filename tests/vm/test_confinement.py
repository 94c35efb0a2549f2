"""What a VM may open (wirt.vm.access): its folder, wirt's image cache and base images (read
only) and the files named explicitly; paths from vm.toml, snapshot metadata and qcow2 backing names cannot widen that.
Non-regular files (devices, FIFOs) are refused with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tomli_w

from wirt.errors import WirtError
from wirt.machine.snapshot import _canonical, write_state_file
from wirt.storage.qcow2_create import create_qcow2
from wirt.vm.access import grant
from wirt.vm.snapshots import VMSnapshots
from wirt.vm.store import VMStore


@pytest.fixture
def secret(tmp_path):
    """A host file outside every VM: what a hostile vm.toml or snapshot would point a disk at."""
    p = tmp_path / "host-secret"
    p.write_bytes(b"host secret!" * 4096)
    return p


def _set_disk(vm, path: str, fmt: str = "raw", read_only: bool = False) -> None:
    cfg = vm.config.to_dict()
    cfg["disks"][0] = {"path": path, "format": fmt, "size": "1M", "read_only": read_only}
    vm.paths.config.write_text(tomli_w.dumps(cfg))


@pytest.mark.parametrize("form", ["absolute", "dotdot", "symlink"])
def test_vm_toml_disk_outside_the_vm_is_refused(tiny_vm, secret, form):
    if form == "absolute":
        path = str(secret)
    elif form == "dotdot":
        path = os.path.relpath(secret, tiny_vm.paths.root)
        assert path.startswith("..")
    else:
        (tiny_vm.paths.root / "link.img").symlink_to(secret)
        path = "link.img"
    _set_disk(tiny_vm, path, read_only=form == "absolute")
    with pytest.raises(WirtError) as err:
        tiny_vm.start()
    text = str(err.value)
    assert "outside VM 'tiny'" in text and "\n" not in text
    assert not tiny_vm.status(query=False).running


def test_a_disk_named_explicitly_is_allowed(tiny_vm, secret):
    grant(VMStore().home, tiny_vm.config.uuid, [str(secret)])  # what the CLI records for a named file
    _set_disk(tiny_vm, str(secret), read_only=True)
    tiny_vm.start()
    assert tiny_vm.status().running


@pytest.mark.parametrize("shared", ["cache", "bases"])
def test_a_shared_image_is_only_read(tiny_vm, shared):
    """wirt's image cache and base images back every VM's overlay: vm.toml may name a file there
    as a read-only disk, never as a writable one (one VM would change every VM's root disk)."""
    from wirt.paths import cache_dir
    from wirt.vm.access import bases_dir

    folder = cache_dir() if shared == "cache" else bases_dir(VMStore().home)
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / f"test-shared-base-{os.getpid()}.raw"
    base.write_bytes(b"base" * 4096)
    try:
        _set_disk(tiny_vm, str(base), read_only=False)
        with pytest.raises(WirtError) as err:
            tiny_vm.start()
        assert "shared by every VM" in str(err.value) and "\n" not in str(err.value)
        assert not tiny_vm.status(query=False).running
        assert base.read_bytes() == b"base" * 4096
        _set_disk(tiny_vm, str(base), read_only=True)
        tiny_vm.start()
        assert tiny_vm.status().running
        tiny_vm.stop(force=True)
    finally:
        base.unlink()


def test_backing_file_outside_the_vm_is_refused(tiny_vm, secret):
    disk = tiny_vm.paths.root / "evil.qcow2"
    create_qcow2(str(disk), 1 << 20, backing=str(secret), backing_format="raw")
    _set_disk(tiny_vm, "evil.qcow2", fmt="qcow2")
    with pytest.raises(WirtError, match="backing file.*outside VM 'tiny'"):
        tiny_vm.start()


def test_boot_file_from_vm_toml_outside_the_vm_is_refused(tiny_vm, secret):
    cfg = tiny_vm.config.to_dict()
    cfg["boot"]["kernel"] = str(secret)
    tiny_vm.paths.config.write_text(tomli_w.dumps(cfg))
    with pytest.raises(WirtError, match="boot.kernel.*outside VM 'tiny'"):
        tiny_vm.start()


def test_dev_zero_as_a_disk_is_one_line(tiny_vm):
    grant(VMStore().home, tiny_vm.config.uuid, ["/dev/zero"])
    _set_disk(tiny_vm, "/dev/zero", read_only=True)
    with pytest.raises(WirtError, match="/dev/zero is a device, not a regular file"):
        tiny_vm.start()


@pytest.mark.parametrize("argv", [["disk", "info", "/dev/zero"], ["disk", "check", "/dev/zero"],
                                  ["run", "--kernel", "/dev/zero"], ["run", "--firmware", "/dev/zero"]])
def test_non_regular_files_on_the_command_line_are_one_line(argv, tmp_path):
    r = subprocess.run([sys.executable, "-m", "wirt", *argv], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, WIRT_HOME=str(tmp_path)))
    assert r.returncode == 2, r.stderr
    assert "not a regular file" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_a_fifo_is_refused_without_blocking(tmp_path):
    from wirt.storage import open_image

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(WirtError, match="is a FIFO"):
        open_image(fifo, format="raw")


def _reseal(folder, edit) -> None:
    """Edit a snapshot's body and recompute its checksum, as anyone can."""
    path = folder / "snapshot.json"
    body = json.loads(path.read_text())["body"]
    edit(body)
    os.chmod(path, 0o600)
    path.unlink()
    write_state_file(folder, body)
    assert _canonical(body)


def test_resealed_snapshot_naming_a_host_file_is_refused(tiny_vm, secret):
    store = VMStore()
    snaps = VMSnapshots(tiny_vm.paths)
    snaps.create_disk_only(store, tiny_vm.config, "s1")
    before = tiny_vm.paths.config.read_text()

    for layer in (str(secret), os.path.relpath(secret, tiny_vm.paths.root)):
        def edit(body, layer=layer):
            body["disks"][0]["layer"] = layer
        _reseal(snaps.folder("s1"), edit)
        with pytest.raises(WirtError, match="layer .* is not a file in the VM's folder") as err:
            snaps.restore_stopped(store, tiny_vm.config, "s1")
        assert "\n" not in str(err.value)
        assert tiny_vm.paths.config.read_text() == before


def test_resealed_snapshot_whose_layer_is_backed_by_a_host_file_is_refused(tiny_vm, secret):
    store = VMStore()
    snaps = VMSnapshots(tiny_vm.paths)
    snaps.create_disk_only(store, tiny_vm.config, "s1")
    layer = tiny_vm.paths.root / "snapshots" / "layers" / "evil.qcow2"
    create_qcow2(str(layer), 1 << 20, backing=str(secret), backing_format="raw")

    def edit(body):
        body["disks"][0]["layer"] = os.path.relpath(layer, tiny_vm.paths.root)
    _reseal(snaps.folder("s1"), edit)
    before = tiny_vm.paths.config.read_text()
    with pytest.raises(WirtError, match="backing file.*outside VM 'tiny'"):
        snaps.restore_stopped(store, tiny_vm.config, "s1")
    assert tiny_vm.paths.config.read_text() == before


def test_resealed_memory_image_path_is_refused(tiny_vm, secret):
    tiny_vm.start()
    tiny_vm.snapshot("s1")
    folder = VMSnapshots(tiny_vm.paths).folder("s1")

    def edit(body):
        body["memory"]["file"] = str(secret)
    _reseal(folder, edit)
    with pytest.raises(WirtError, match="memory image must be memory.img"):
        tiny_vm.restore("s1")
    assert tiny_vm.status().state == "running"


def test_fork_of_a_resealed_snapshot_cannot_reach_host_files(tiny_vm, secret):
    from wirt.vm.snapshots import fork_vm

    store = VMStore()
    snaps = VMSnapshots(tiny_vm.paths)
    snaps.create_disk_only(store, tiny_vm.config, "s1")

    def edit(body):
        body["disks"][0] = {"index": 0, "read_only": True, "path": str(secret), "format": "raw"}
        body["config"]["disks"][0] = {"path": str(secret), "format": "raw", "size": "1M", "read_only": True}
    _reseal(snaps.folder("s1"), edit)
    with pytest.raises(WirtError, match="outside VM 'tiny'"):
        fork_vm(store, "tiny", "s1", "copy")
    assert not store.exists("copy")


@pytest.fixture
def listener(tmp_path):
    """A Unix socket outside every VM that records whether anybody connected: what a hostile
    vm.toml would point the VM's network at (a container runtime's or a database's socket)."""
    import socket

    path = tmp_path / "host-service.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    srv.settimeout(20)
    yield path, srv
    srv.close()


def test_vm_toml_network_socket_outside_the_vm_is_refused(tiny_vm, listener):
    import socket

    path, srv = listener
    cfg = tiny_vm.config.to_dict()
    cfg["network"]["mode"] = f"socket:{path}"
    tiny_vm.paths.config.write_text(tomli_w.dumps(cfg))
    with pytest.raises(WirtError) as err:
        tiny_vm.start()
    assert "network.mode socket" in str(err.value) and "outside VM 'tiny'" in str(err.value)
    assert "\n" not in str(err.value)
    srv.settimeout(0.5)
    with pytest.raises(socket.timeout):
        srv.accept()  # nobody connected


def test_network_socket_named_on_the_command_line_is_allowed(home, firmware, listener, tmp_path, monkeypatch):
    from wirt.cli import main
    from wirt.vm.api import VM

    path, srv = listener
    monkeypatch.chdir(tmp_path)  # a relative path is the caller's: recorded as an absolute one
    assert main(["create", "peer", "--memory", "32M", "--image", "none", "--disk", "none",
                 "--firmware", str(firmware), "--net", f"socket:./{path.name}"]) == 0
    vm = VM("peer")
    assert vm.config.network.mode == f"socket:{path}"
    try:
        vm.start()
        conn, _ = srv.accept()  # the VM joined the socket the user named
        conn.close()
    finally:
        vm.stop(force=True)
