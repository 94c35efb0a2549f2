"""wirt.images.systemd: `systemctl enable` links, PAM's common files and the first-boot state, on a small tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from wirt.images import systemd
from wirt.images.agent import AGENT_PATH


def _tree(tmp_path: Path, *, with_systemd: bool = True) -> Path:
    tree = tmp_path / "tree"
    units = tree / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "var").mkdir()
    (tree / "usr/share/pam-configs").mkdir(parents=True)
    (units / "systemd-networkd.service").write_text(
        "[Unit]\nDescription=Network\n\n[Service]\nExecStart=/x\n\n[Install]\nWantedBy=multi-user.target\n"
        "Alias=dbus-org.freedesktop.network1.service\nAlso=systemd-networkd.socket\n"
        "Also=systemd-networkd-wait-online.service missing.service\n")
    (units / "systemd-networkd.socket").write_text("[Socket]\nListenNetlink=route 1361\n\n[Install]\nWantedBy=sockets.target\n")
    (units / "systemd-networkd-wait-online.service").write_text("[Install]\nWantedBy=network-online.target\n")
    (units / "multi-user.target").write_text("[Unit]\nDescription=Multi-User System\n")
    if with_systemd:
        (tree / "usr/lib/systemd/systemd").write_text("")
        (tree / "usr/sbin").mkdir(parents=True)
        (tree / "usr/sbin/init").symlink_to("../lib/systemd/systemd")
    return tree


def test_enable_makes_the_install_links(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    made = systemd.enable(tree, "systemd-networkd.service")
    etc = tree / "etc/systemd/system"
    assert os.readlink(etc / "multi-user.target.wants/systemd-networkd.service") == "/usr/lib/systemd/system/systemd-networkd.service"
    assert os.readlink(etc / "dbus-org.freedesktop.network1.service") == "/usr/lib/systemd/system/systemd-networkd.service"
    assert (etc / "sockets.target.wants/systemd-networkd.socket").is_symlink()  # Also=
    assert not (etc / "network-online.target.wants").exists()  # wait-online is left off: it delays the boot
    assert len(made) == 3
    with pytest.raises(FileNotFoundError):
        systemd.enable(tree, "nonexistent.service")


def test_seed_systemd_writes_wirt_units_and_first_boot_state(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    made = systemd.seed_systemd(tree)
    etc = tree / "etc/systemd/system"
    assert "etc/systemd/system/sysinit.target.wants/wirt-agent.service" in made
    agent = (etc / "wirt-agent.service").read_text()
    assert f"ExecStart={AGENT_PATH}" in agent and "DefaultDependencies=no" in agent
    assert "Name=eth0" in (tree / "etc/systemd/network/20-wirt-eth0.network").read_text()
    assert "--autologin root" in (etc / "serial-getty@ttyS0.service.d/wirt-autologin.conf").read_text()
    assert os.readlink(etc / "default.target").endswith("/multi-user.target")
    assert os.readlink(etc / "serial-getty@hvc0.service") == "/dev/null"  # the agent's channel, no getty
    assert "DefaultDeviceTimeoutSec=" in (tree / "etc/systemd/system.conf.d/wirt.conf").read_text()
    assert (tree / "etc/machine-id").read_text() == ""  # a fresh id per VM at its first boot
    stamp = (tree / "etc/.updated").read_text().split("TIMESTAMP_NSEC=")[1].strip()
    assert int(stamp) == (tree / "usr").stat().st_mtime_ns == int(stamp) // 10**9 * 10**9
    assert (tree / "var/.updated").read_text() == (tree / "etc/.updated").read_text()
    assert "pam_unix.so" in (tree / "etc/pam.d/common-auth").read_text()
    # networkd writes no resolv.conf: wirt-resolv copies the lease's DNS servers before network-online
    assert {"etc/systemd/system/multi-user.target.wants/wirt-resolv.service",
            "etc/systemd/system/network-online.target.wants/wirt-resolv.service"} <= set(made)
    resolv = (etc / "wirt-resolv.service").read_text()
    assert "Before=network-online.target" in resolv and "ConditionPathExists=/sys/class/net/eth0" in resolv  # no NIC: no wait
    assert os.access(tree / systemd.RESOLV_PATH.lstrip("/"), os.X_OK)


def test_resolv_script_writes_the_dns_servers_of_the_lease(tmp_path: Path) -> None:
    """wirt-resolv (run here by the host's sh) copies every lease's DNS= servers; no lease in time,
    or a lease without DNS, leaves resolv.conf as it was."""
    script = tmp_path / "wirt-resolv"
    script.write_text(systemd.RESOLV_SCRIPT)
    leases, conf = tmp_path / "leases", tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.1\n")
    run = lambda: subprocess.run(["sh", str(script), str(leases), str(conf), "0"], capture_output=True, text=True,
                                 timeout=30)  # noqa: E731
    assert run().returncode == 0 and conf.read_text() == "nameserver 192.0.2.1\n"  # no lease dir at all
    leases.mkdir()
    (leases / "2").write_text("# This is private data. Do not parse.\nADDRESS=192.0.2.2\nROUTER=192.0.2.1\n")
    assert run().returncode == 0 and conf.read_text() == "nameserver 192.0.2.1\n"  # a lease without DNS
    (leases / "2").write_text("ADDRESS=192.0.2.2\nDNS=10.255.255.53 10.0.0.2\nNTP=10.0.0.9\n")
    (leases / "3").write_text("ADDRESS=10.1.0.5\nDNS=10.0.0.2\n")
    r = run()
    assert r.returncode == 0, r.stderr
    lines = conf.read_text().splitlines()
    assert lines[0].startswith("#") and sorted(lines[1:]) == ["nameserver 10.0.0.2", "nameserver 10.255.255.53"]
    assert [p.name for p in tmp_path.iterdir() if "wirt-resolv" in p.name] == ["wirt-resolv"]  # no temporary left


def test_seed_systemd_without_systemd_only_writes_pam(tmp_path: Path) -> None:
    tree = _tree(tmp_path, with_systemd=False)
    assert systemd.seed_systemd(tree) == []
    assert not (tree / "etc/systemd/system/wirt-agent.service").exists()
    assert set(p.name for p in (tree / "etc/pam.d").iterdir()) == set(systemd.PAM_COMMON)



def test_sysusers_creates_users_groups_and_members(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    etc = tree / "etc"
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    (etc / "group").write_text("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    (etc / "shadow").write_text("root:*::0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    confd = tree / "usr/lib/sysusers.d"
    confd.mkdir(parents=True)
    (confd / "a.conf").write_text('# comment\ng tty 5 -\nu messagebus - "System Message Bus" /nonexistent\n'
                                  'u! systemd-network - "systemd Network Management"\ng render -\n'
                                  'u sshd 100:65534 "sshd user" /run/sshd\nm messagebus render\n')
    added = systemd.apply_sysusers(tree)
    assert added == ["group messagebus", "user messagebus", "group systemd-network", "user systemd-network",
                     "group render", "user sshd"]
    passwd = {line.split(":")[0]: line.split(":") for line in (etc / "passwd").read_text().splitlines()}
    assert passwd["messagebus"][2:] == ["999", "999", "System Message Bus", "/nonexistent", "/usr/sbin/nologin"]
    assert passwd["systemd-network"][2:4] == ["998", "998"] and passwd["systemd-network"][5] == "/"
    assert passwd["sshd"][2:4] == ["100", "65534"]
    group = (etc / "group").read_text().splitlines()
    assert group[:3] == ["root:x:0:", "tty:x:5:", "nogroup:x:65534:"]  # existing entries kept, in order
    assert "render:x:997:messagebus" in group
    assert "messagebus:!*:::::::" in (etc / "shadow").read_text().splitlines()
    assert "render:!*::messagebus" in (etc / "gshadow").read_text().splitlines()
    assert systemd.apply_sysusers(tree) == []  # idempotent


def test_enable_packaged_follows_dh_installsystemd_postinst(tmp_path: Path) -> None:
    """Services of packages added with --packages start at boot, as after `apt install` in the guest."""
    tree = _tree(tmp_path)
    (tree / "usr/lib/systemd/system/nginx.service").write_text("[Service]\nExecStart=/x\n\n[Install]\nWantedBy=multi-user.target\n")
    postinst = ("if deb-systemd-helper --quiet was-enabled 'nginx.service'; then\n"
                "\t\tdeb-systemd-helper enable 'nginx.service' >/dev/null || true\n"
                "deb-systemd-helper enable 'not-shipped.timer' >/dev/null || true\nfi\n")
    assert systemd.postinst_units(postinst) == ["nginx.service", "not-shipped.timer"]
    made = systemd.enable_packaged(tree, {"nginx-common": postinst, "other": "#!/bin/sh\nexit 0\n"})
    assert len(made) == 1
    assert (tree / "etc/systemd/system/multi-user.target.wants/nginx.service").is_symlink()
