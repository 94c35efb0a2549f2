"""Host folders in a real Debian guest (`wirt create --mount`, virtio-9p; slow: one boot).

One confined initramfs VM shares a read-write and a read-only folder. The guest sees the host's
files, its writes land on the host, the read-only share refuses writes, and neither a symlink to
/etc or to a host path nor `..` reaches a host file outside the folder."""

from __future__ import annotations

import hashlib
import os

import pytest

pytestmark = pytest.mark.slow
AGENT_WAIT = 300.0


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from vmhome import module_home

    from wirt.vm.api import VM

    base = tmp_path_factory.mktemp("mount")
    rw, ro = base / "rw", base / "ro"
    (rw / "sub").mkdir(parents=True)
    ro.mkdir()
    (rw / "hello.txt").write_text("hello from the host\n")
    (rw / "big.bin").write_bytes(os.urandom(3 << 20))
    (ro / "readme").write_text("read me only\n")
    (base / "secret").write_text("HOST SECRET\n")
    (rw / "etc").symlink_to("/etc")
    (rw / "to-secret").symlink_to(base / "secret")
    with module_home(tmp_path_factory):
        vm = VM.create("m", memory="192M", disk="none", image="initramfs", net="none",
                       mounts=[f"{rw}:/mnt/rw", f"{ro}:/srv/ro:ro"])
        vm.start()
        assert vm.exec("true", timeout=AGENT_WAIT).status == 0
        vm.base, vm.rw, vm.ro = base, rw, ro
        yield vm


def sh(vm, cmd: str):
    return vm.exec(cmd, kill_after=120)


def test_guest_sees_host_files_and_its_writes_reach_the_host(shared):
    r = sh(shared, "grep ' 9p ' /proc/mounts; cat /mnt/rw/hello.txt; ls /mnt/rw/sub; md5sum /mnt/rw/big.bin")
    assert r.ok, r.stderr
    out = r.stdout.decode()
    assert "/mnt/rw 9p rw," in out and "/srv/ro 9p ro," in out and "msize=512000" in out
    assert "hello from the host" in out
    assert hashlib.md5((shared.rw / "big.bin").read_bytes()).hexdigest() in out
    r = sh(shared, "echo written by the guest > /mnt/rw/sub/new.txt && mkdir /mnt/rw/made && "
                   "mv /mnt/rw/sub/new.txt /mnt/rw/made/moved.txt && dd if=/dev/urandom of=/mnt/rw/g.bin "
                   "bs=64k count=40 2>/dev/null && md5sum /mnt/rw/g.bin && rm /mnt/rw/hello.txt && sync")
    assert r.ok, r.stderr
    assert (shared.rw / "made" / "moved.txt").read_text() == "written by the guest\n"
    assert not (shared.rw / "sub" / "new.txt").exists() and not (shared.rw / "hello.txt").exists()
    assert hashlib.md5((shared.rw / "g.bin").read_bytes()).hexdigest() in r.stdout.decode()
    (shared.rw / "late.txt").write_text("made on the host later\n")  # no caching: seen at once
    assert sh(shared, "cat /mnt/rw/late.txt").stdout == b"made on the host later\n"


def test_read_only_share_refuses_writes(shared):
    assert sh(shared, "cat /srv/ro/readme").stdout == b"read me only\n"
    for cmd in ("echo x > /srv/ro/new", "echo x >> /srv/ro/readme", "rm /srv/ro/readme", "mkdir /srv/ro/d",
                "mv /srv/ro/readme /srv/ro/other", "touch /srv/ro/readme"):
        r = sh(shared, cmd)
        assert r.status != 0 and b"Read-only file system" in r.stderr, (cmd, r)
    assert sorted(os.listdir(shared.ro)) == ["readme"] and (shared.ro / "readme").read_text() == "read me only\n"
    # the host refuses too, whatever the guest's mount options say
    r = sh(shared, "mount -o remount,rw /srv/ro && echo x > /srv/ro/new")
    assert r.status != 0 and not (shared.ro / "new").exists()


def test_symlinks_and_dotdot_stay_in_the_guest(shared):
    # a link to /etc is read by the guest in its own tree: the guest's passwd, not the host's
    r = sh(shared, "cat /mnt/rw/etc/passwd")
    assert r.ok and r.stdout == b"root:x:0:0:root:/root:/bin/sh\n"
    assert open("/etc/passwd", "rb").read() != r.stdout
    secret = shared.base / "secret"
    for cmd in ("cat /mnt/rw/to-secret", f"cat /mnt/rw/../..{secret}", "cat /mnt/rw/../secret",
                "cat /mnt/rw/sub/../../secret", f"cat {secret}"):
        r = sh(shared, cmd)
        assert r.status != 0 and b"HOST SECRET" not in r.stdout, (cmd, r)
    # the guest makes a link to /etc/passwd: on the host it stays a link the server never follows
    r = sh(shared, "ln -s /etc/passwd /mnt/rw/pw && cat /mnt/rw/pw")
    assert r.ok and b"/bin/sh" in r.stdout and os.readlink(shared.rw / "pw") == "/etc/passwd"


def test_vm_process_is_confined_with_the_share(shared):
    from wirt.confine.landlock import abi_version

    conf = shared.status().live["confinement"]
    assert conf["landlock"] == abi_version() and conf["seccomp"] > 0
