"""The Debian root disk: dependency resolution, dpkg database, /etc seeding, kmod indexes, ext4.

Fast tests use a synthetic Packages index and tiny .debs built with dpkg-deb; the host's dpkg
reads the database we write (an oracle for its format). Slow tests build the real disk from the
real mirror (cached in the user's cache) and boot it under QEMU when it is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirt.errors import WirtError
from wirt.images import dpkgdb, ext4, moddb, rootfs, scripts
from wirt.images.depsolve import Relation, Universe, conflicts, parse_relations, resolve
from wirt.images.modules import parse_modinfo
from wirt.images.rootinit import KERNEL_CMDLINE, ROOT_INIT


def _index(*stanzas: str) -> Universe:
    text = ""
    for s in stanzas:
        name = s.split("\n", 1)[0].split(":", 1)[1].strip()
        text += s.strip() + f"\nFilename: pool/{name}.deb\nSize: 1\nSHA256: 00\n\n"
    return Universe.from_text(text)


# --- relations and resolution ----------------------------------------------------------------


def test_parse_relations() -> None:
    rel = parse_relations("libc6 (>= 2.36), python3:any (>= 3.11~) | python3-minimal, foo [amd64], bar <!nocheck>")
    assert rel[0] == [Relation("libc6", ">=", "2.36")]
    assert rel[1] == [Relation("python3", ">=", "3.11~", "any"), Relation("python3-minimal")]
    assert rel[2] == [Relation("foo")] and rel[3] == [Relation("bar")]
    assert parse_relations("") == []
    assert Relation("a", ">=", "1.0").allows("1.0") and not Relation("a", ">>", "1.0").allows("1.0")
    assert Relation("a", "<<", "2:0").allows("1:9") and Relation("a", "=", "1.0-1").allows("1.0-1")


def test_resolve_alternatives_provides_predepends_cycles() -> None:
    u = _index(
        "Package: app\nVersion: 1\nPriority: required\nDepends: libold (>= 2) | libnew, mta\nPre-Depends: pre",
        "Package: libold\nVersion: 1",  # too old: the second alternative is taken
        "Package: libnew\nVersion: 3\nDepends: cyc-a",
        "Package: cyc-a\nVersion: 1\nDepends: cyc-b",
        "Package: cyc-b\nVersion: 1\nDepends: cyc-a",  # a cycle ends because a package is chosen once
        "Package: zmail\nVersion: 1\nProvides: mta",
        "Package: amail\nVersion: 1\nProvides: mta",  # providers sorted by name: amail wins
        "Package: pre\nVersion: 1",
        "Package: unrelated\nVersion: 1\nPriority: optional",
    )
    assert u.by_priority("required") == ["app"]
    names = [c.name for c in resolve(u, ["app"])]
    assert names == ["amail", "app", "cyc-a", "cyc-b", "libnew", "pre"]


def test_resolve_prefers_what_is_already_chosen_and_versioned_provides() -> None:
    u = _index(
        "Package: a\nVersion: 1\nDepends: x | y",
        "Package: y\nVersion: 1",
        "Package: x\nVersion: 1",
        "Package: b\nVersion: 1\nDepends: virt (>= 2)",
        "Package: p1\nVersion: 1\nProvides: virt",  # unversioned: cannot satisfy (>= 2), Policy §7.5
        "Package: p2\nVersion: 1\nProvides: virt (= 2.5)",
    )
    assert [c.name for c in resolve(u, ["y", "a"])] == ["a", "y"]
    assert [c.name for c in resolve(u, ["b"])] == ["b", "p2"]
    assert [c.name for c in resolve(u, ["virt"])] == ["p1"]  # a virtual root: its first provider


def test_resolve_errors_and_conflicts() -> None:
    u = _index("Package: a\nVersion: 1\nDepends: missing (>= 1)", "Package: c\nVersion: 1\nConflicts: d",
               "Package: d\nVersion: 1\nProvides: d-virt\nConflicts: d-virt")  # fmt: skip
    with pytest.raises(WirtError, match="cannot satisfy 'missing"):
        resolve(u, ["a"])
    with pytest.raises(WirtError, match="not in the archive"):
        resolve(u, ["nope"])
    assert conflicts(resolve(u, ["d"])) == []  # conflicting with what it provides itself is fine
    assert conflicts(resolve(u, ["c", "d"])) == ["c conflicts d (d 1)"]


def test_latest_version_is_taken() -> None:
    u = _index("Package: a\nVersion: 1.0~rc1", "Package: a\nVersion: 1.0", "Package: a\nVersion: 0.9")
    cand = u.latest("a")
    assert cand is not None and cand.version == "1.0"
    assert u.version("a", "0.9") is not None and u.version("a", "2") is None


# --- dpkg database ---------------------------------------------------------------------------


CONTROL = """Package: demo
Version: 1.0-1
Architecture: riscv64
Multi-Arch: same
Maintainer: t <t@example.invalid>
Installed-Size: 12
Depends: libc6 (>= 2.36)
Description: a demo package
 First paragraph.
 .
 Second paragraph.
"""


def test_status_paragraph_layout() -> None:
    ctl = dpkgdb.ControlData(CONTROL, {"conffiles": (b"/etc/demo.conf\nremove-on-upgrade /etc/old\n", 0o644)})
    text = dpkgdb.status_paragraph(ctl, {"/etc/demo.conf": "0123"})
    lines = text.splitlines()
    assert lines[:2] == ["Package: demo", "Status: install ok installed"]
    assert lines.index("Conffiles:") == lines.index("Description: a demo package") - 2
    assert " /etc/demo.conf 0123" in lines and " ." in lines and "old" not in text
    assert ctl.info_name() == "demo:riscv64"


def test_list_file_and_triggers_and_alternatives() -> None:
    assert dpkgdb.list_file(["", "usr/", "usr/bin", "usr/bin/x", "usr/bin/"]) == "/.\n/usr\n/usr/bin\n/usr/bin/x\n"
    ctl = dpkgdb.ControlData("Package: libc-bin\n", {"triggers": (b"interest-await ldconfig\ninterest-noawait /usr/lib64\n", 0)})
    files = dpkgdb.trigger_files([ctl])
    assert files["ldconfig"] == "libc-bin\n" and files["File"] == "/usr/lib64 libc-bin/noawait\n"
    script = (
        "#!/bin/sh\nupdate-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n"
        "    --slave /usr/bin/nawk nawk /usr/bin/mawk \\\n    --slave /usr/share/man/man1/awk.1.gz awk.1.gz /x.gz\n"
        'update-alternatives --install /usr/bin/$X x "$Y" 1\n'
    )
    (alt,) = dpkgdb.parse_alternatives(script)
    assert (alt.link, alt.name, alt.path, alt.priority) == ("/usr/bin/awk", "awk", "/usr/bin/mawk", 5)
    assert alt.slaves[0] == ("/usr/bin/nawk", "nawk", "/usr/bin/mawk")
    admin = dpkgdb.alternatives_admin(alt, {"/usr/bin/mawk"})
    assert admin == "auto\n/usr/bin/awk\nnawk\n/usr/bin/nawk\nawk.1.gz\n/usr/share/man/man1/awk.1.gz\n\n" \
                    "/usr/bin/mawk\n5\n/usr/bin/mawk\n\n\n"  # fmt: skip


@pytest.fixture
def tiny_tree(tmp_path: Path, helpers: type) -> tuple[Path, rootfs.Unpacked]:
    """A tree from three real .debs: merged-/usr symlinks, a file shipped under /bin, accounts."""
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb not found: install dpkg (make test does)")
    debs = tmp_path / "debs"
    debs.mkdir()
    base = helpers.build_deb(debs / "base-files_1_all.deb", "base-files", "1", "all",
                             {"usr/lib/os-release": b"ID=debian\n", "etc/dpkg/origins/debian": b"Vendor: Debian\n"})  # fmt: skip
    # dpkg-deb cannot add the merged-/usr symlinks through build_deb's files; add them with a second deb.
    root = tmp_path / "links"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text("Package: links\nVersion: 1\nArchitecture: all\nMaintainer: t <t@e.invalid>\n"
                                         "Description: t\n")  # fmt: skip
    for d in ("bin", "sbin", "lib"):
        os.symlink(f"usr/{d}", root / d)
    links = debs / "links_1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(links)], check=True, capture_output=True)
    tool = helpers.build_deb(debs / "tool_2_all.deb", "tool", "2", "all",
                             {"bin/tool": b"#!/bin/sh\n", "etc/tool.conf": b"x=1\n",
                              "usr/share/base-passwd/passwd.master": b"root:*:0:0:root:/root:/bin/bash\n"
                                                                     b"_apt:*:42:65534::/nonexistent:/usr/sbin/nologin\n",
                              "usr/share/base-passwd/group.master": b"root:*:0:\nshadow:*:42:\n"}, "libc6")  # fmt: skip
    tree = tmp_path / "tree"
    unpacked = rootfs.unpack_all(tree, [links, tool, base])
    return tree, unpacked


def test_unpack_follows_merged_usr_and_dpkg_reads_the_database(tiny_tree: tuple[Path, rootfs.Unpacked]) -> None:
    tree, unpacked = tiny_tree
    assert (tree / "bin").is_symlink() and (tree / "usr/bin/tool").is_file()
    rootfs.finish_tree(tree, unpacked, mirror="http://mirror.invalid/debian", suite="trixie")
    admin = tree / "var/lib/dpkg"
    assert "/bin/tool" in (admin / "info/tool.list").read_text().splitlines()
    status = (admin / "status").read_text()
    assert "Package: tool\nStatus: install ok installed\n" in status
    if shutil.which("dpkg-query") is None:
        pytest.fail("dpkg-query not found: install dpkg (make test does)")
    q = subprocess.run(["dpkg-query", f"--admindir={admin}", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n"],
                       capture_output=True, text=True, check=True)  # fmt: skip
    assert q.stdout.split("\n")[:3] == ["base-files 1 ii ", "links 1 ii ", "tool 2 ii "]
    files = subprocess.run(["dpkg-query", f"--admindir={admin}", "-L", "tool"], capture_output=True, text=True, check=True)
    assert "/bin/tool" in files.stdout.split()
    assert "bin/tool" in (admin / "info/tool.md5sums").read_text()  # computed, as dpkg does
    audit = subprocess.run(["dpkg", f"--admindir={admin}", "--audit"], capture_output=True, text=True)
    assert audit.returncode == 0 and audit.stdout.strip() == ""


def test_seeded_etc(tiny_tree: tuple[Path, rootfs.Unpacked]) -> None:
    tree, unpacked = tiny_tree
    rootfs.finish_tree(tree, unpacked, mirror="http://mirror.invalid/debian", suite="trixie")
    etc = tree / "etc"
    assert (etc / "passwd").read_text() == "root:x:0:0:root:/root:/bin/bash\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n"
    assert (etc / "shadow").read_text().startswith("root:*::0:99999:7:::\n")
    assert (etc / "shadow").stat().st_mode & 0o777 == 0o640
    assert (etc / "group").read_text() == "root:x:0:\nshadow:x:42:\n"
    assert (etc / "fstab").read_text().splitlines()[-1] == "/dev/vda / ext4 rw,errors=remount-ro,x-systemd.growfs 0 1"
    assert "URIs: http://mirror.invalid/debian\nSuites: trixie\n" in (etc / "apt/sources.list.d/debian.sources").read_text()
    assert (etc / "resolv.conf").read_text().endswith("nameserver 192.0.2.1\n")
    assert (etc / "hostname").read_text() == "wirt\n"
    init = tree / "usr/sbin/wirt-init"
    assert init.read_text() == ROOT_INIT and init.stat().st_mode & 0o111
    assert os.readlink(tree / "var/run") == "/run"


def test_place_stays_inside_the_tree(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "usr/lib/abs").symlink_to("/usr/lib")
    (tmp_path / "evil").symlink_to("../../..")
    assert rootfs.place(tmp_path, "./lib/x.so") == tmp_path / "usr/lib/x.so"
    assert rootfs.place(tmp_path, "lib/abs/y") == tmp_path / "usr/lib/y"
    with pytest.raises(WirtError, match="outside"):
        rootfs.place(tmp_path, "evil/etc/passwd")
    with pytest.raises(WirtError):
        rootfs.place(tmp_path, "usr/../../etc")


# --- kernel module indexes -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(alphabet="abc_-*?[]0123456789:", min_size=1, max_size=12),
                       st.text(alphabet="xyz", max_size=5), max_size=30))  # fmt: skip
def test_kmod_index_roundtrip(entries: dict[str, str]) -> None:
    data = moddb.write_index((k, v, 0) for k, v in entries.items())
    assert moddb.read_index(data) == {k: [v] for k, v in entries.items()}


def test_kmod_index_layout() -> None:
    # One key "ab" -> "v": root node with prefix "ab" and one value (flags PREFIX|VALUES).
    data = moddb.write_index([("ab", "v", 7)])
    assert data[:12] == bytes.fromhex("b007f457 00020001 c000000c")
    assert data[12:] == b"ab\0" + bytes.fromhex("00000001 00000007") + b"v\0"
    assert moddb.alias_normalize("of:N*T*Cvirtio,mmio-x[a-b]") == "of:N*T*Cvirtio,mmio_x[a-b]"
    assert moddb.alias_normalize("x]") is None


def test_module_indexes(helpers: type) -> None:
    infos = {}
    for name, (path, info) in helpers.FAKE_MODULES.items():
        infos[name] = ("kernel/" + path.removesuffix(".xz"), parse_modinfo(helpers.make_ko(info), name))
    out = moddb.module_indexes(infos, ["virtio_console"], b"virtio_console.alias=virtio:d00000003v*\0")
    deps = dict(line.split(":", 1) for line in out["modules.dep"].decode().splitlines())
    assert deps["kernel/drivers/net/virtio_net.ko"].split() == ["kernel/drivers/net/net_failover.ko", "kernel/net/core/failover.ko"]
    assert deps["kernel/fs/ext4/ext4.ko"].split() == ["kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko", "kernel/lib/crc16.ko"]
    assert moddb.read_index(out["modules.dep.bin"])["ext4"][0].startswith("kernel/fs/ext4/ext4.ko: ")
    assert moddb.read_index(out["modules.alias.bin"])["crypto_crc32c"] == ["crc32c_generic"]
    assert "softdep ext4 pre: crypto-crc32c\n" in out["modules.softdep"].decode()
    assert moddb.read_index(out["modules.builtin.bin"]) == {"virtio_console": [""]}
    assert moddb.read_index(out["modules.builtin.alias.bin"]) == {"virtio:d00000003v*": ["virtio_console"]}
    assert moddb.read_index(out["modules.symbols.bin"]) == {}


# --- scripts ---------------------------------------------------------------------------------


def test_root_init_syntax_and_cmdline() -> None:
    subprocess.run(["sh", "-n"], input=ROOT_INIT.encode(), check=True)
    assert KERNEL_CMDLINE == "root=/dev/vda rw init=/usr/sbin/wirt-init"


@pytest.mark.parametrize("has_init", [True, False], ids=["wirt-init", "own-disk"])
def test_initramfs_switches_root(tmp_path: Path, has_init: bool) -> None:
    """The initramfs /init with root=: mounts it, moves /dev /proc /sys, execs switch_root with init=
    (or the disk's /sbin/init when init= is not on it: a user's own root disk)."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    log = tmp_path / "calls"
    newroot = tmp_path / "newroot"
    if has_init:
        (newroot / "usr/sbin").mkdir(parents=True)
        (newroot / "usr/sbin/wirt-init").write_text("#!/bin/sh\n")
    for name in ("mount", "mkdir", "hostname", "ip", "insmod", "devmem", "poweroff", "setsid", "switch_root", "sleep",
                 "busybox"):
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        (stubs / name).chmod(0o755)
    (tmp_path / "cmdline").write_text(f"console=ttyS0 root=/dev/null ro init=/usr/sbin/wirt-init {scripts.run_param('true')}\n")
    script = (scripts.INIT.replace("/proc/cmdline", str(tmp_path / "cmdline"))
              .replace("/proc/sys/kernel/hostname", str(tmp_path / "hostname"))
              .replace("/sys/class/net/eth0", str(tmp_path / "no-eth0"))
              .replace("/lib/modules", str(tmp_path / "none"))
              .replace("/newroot", str(newroot))
              .replace("export PATH=/bin:/sbin:/usr/bin:/usr/sbin", f"export PATH={stubs}:$PATH"))  # fmt: skip
    subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=20)
    calls = log.read_text().splitlines()
    assert f"mount -o ro /dev/null {newroot}" in calls
    assert f"mount --move /proc {newroot}/proc" in calls
    assert calls[-1] == f"switch_root {newroot} " + ("/usr/sbin/wirt-init" if has_init else "/sbin/init")
    assert not any(c.startswith(("devmem", "poweroff")) for c in calls)  # the root disk reports, not the initramfs


# --- ext4 ------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("mkfs.ext4") is None and not Path("/usr/sbin/mkfs.ext4").exists(),
                    reason="e2fsprogs not installed")  # fmt: skip
def test_make_ext4_and_fix_owners(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/hello").write_text("#!/bin/sh\necho hi\n")
    (tree / "usr/bin/hello").chmod(0o4755)
    (tree / "bin").symlink_to("usr/bin")
    image = tmp_path / "fs.img"
    ext4.make_ext4(tree, image, 64 << 20)
    assert image.stat().st_size == 64 << 20 and image.stat().st_blocks * 512 < 64 << 20  # sparse
    ext4.check_ext4(image)
    ext4.fix_owners(image, tree, {"usr/bin/hello": (0, 42)})  # what a non-root build does
    stat = subprocess.run(["debugfs", "-R", "stat /usr/bin/hello", str(image)], capture_output=True, text=True).stdout
    assert "Group:    42" in stat and "Mode:  04755" in stat
    ext4.check_ext4(image)
    assert ext4.parse_size("2G") == 2 << 30 and ext4.parse_size("512MiB") == 512 << 20
    with pytest.raises(WirtError):
        ext4.make_ext4(tree, image, 1 << 20)


# --- the real disk (slow) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_disk() -> Path:
    """The real root disk from the real mirror, built once into the user's cache."""
    from wirt.images.rootdisk import root_disk

    return root_disk()


@pytest.mark.slow
def test_real_root_disk(real_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wirt.images import cache
    from wirt.images.rootdisk import root_disk
    from wirt.storage.convert import convert

    if shutil.which("debugfs") is None and not Path("/usr/sbin/debugfs").exists():
        pytest.fail("mkfs.ext4/debugfs not found: install e2fsprogs (make test does)")
    raw = tmp_path / "disk.raw"
    convert(str(real_disk), str(raw), "raw")
    assert raw.stat().st_size == 2 << 30
    ext4.check_ext4(raw)  # e2fsck -fn: clean

    def debugfs(request: str) -> str:
        return subprocess.run(["debugfs", "-R", request, str(raw)], capture_output=True, text=True, check=True).stdout

    bin_listing = debugfs("ls -l /usr/bin")
    for name in ("python3", "python3.13", "apt", "apt-get", "dpkg", "ls", "cat", "busybox"):
        assert f" {name}\n" in bin_listing, name
    assert " modprobe\n" in debugfs("ls -l /usr/sbin") and " wirt-init\n" in debugfs("ls -l /usr/sbin")
    merged = [ln.split() for ln in debugfs("ls -l /").splitlines() if ln.strip()]
    assert {ln[-1] for ln in merged if ln[1] == "120777"} >= {"bin", "sbin", "lib"}  # merged /usr symlinks
    passwd = debugfs("stat /usr/bin/passwd")
    assert "Mode:  04755" in passwd and "User:     0" in passwd  # set-uid root survived
    status = debugfs("cat /var/lib/dpkg/status")
    for name in ("python3", "apt", "coreutils", "libc6", "base-files"):
        assert f"Package: {name}\nStatus: install ok installed\n" in status
    assert "root=/dev/vda" in KERNEL_CMDLINE

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network I/O with a warm cache")

    monkeypatch.setattr(cache, "urlopen", no_network)
    assert root_disk() == real_disk  # warm cache: no network, no work


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-system-riscv64") is None, reason="qemu-system-riscv64 not installed (oracle)")
def test_real_root_disk_boots_under_qemu(real_disk: Path) -> None:
    """Oracle: QEMU's virt board boots the disk through the default initramfs and runs Debian's python3 and apt."""
    from wirt.images.guest import default_guest

    g = default_guest()
    command = "python3 -c 'print(6*7)'; apt-get --version | head -n1; dpkg -l | grep -c '^ii'; dpkg --audit; echo audit=$?"
    proc = subprocess.run(
        ["qemu-system-riscv64", "-M", "virt", "-smp", "1", "-m", "1G", "-nographic", "-no-reboot", "-snapshot",
         "-bios", str(g.firmware), "-kernel", str(g.kernel), "-initrd", str(g.initrd),
         "-append", f"console=ttyS0 quiet panic=1 {KERNEL_CMDLINE} {scripts.run_param(command)}",
         "-drive", f"file={real_disk},format=qcow2,if=none,id=d0", "-device", "virtio-blk-device,drive=d0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout.replace("\r", "")
    assert "\n42\n" in out, out[-2000:]
    assert "\napt 3." in out
    lines = out.split("\n")
    count = lines[lines.index(next(ln for ln in lines if ln.startswith("apt 3."))) + 1]
    assert int(count) > 100  # every package is "ii" (installed)
    assert "\naudit=0\n" in out
    assert scripts.parse_exit_status(out) == 0 and proc.returncode == 0
