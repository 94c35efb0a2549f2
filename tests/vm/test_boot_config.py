"""How a VM boots its root disk: init (systemd or minimal), host name, and `create --image PATH` (no guest boots)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from wirt.errors import WirtError
from wirt.vm.runner import root_cmdline
from wirt.vm.schema import VMConfig, default_hostname, validate_hostname


def _cfg(**boot) -> VMConfig:
    cfg = VMConfig.new("web_1.test", net="none")
    for k, v in boot.items():
        setattr(cfg.boot, k, v)
    return cfg


def test_kernel_arguments_for_each_init_and_host_name() -> None:
    systemd = root_cmdline(_cfg(root=True, init="systemd"))
    assert "root=/dev/vda" in systemd and "init=" not in systemd and "net.ifnames=0" in systemd
    minimal = root_cmdline(_cfg(root=True, init="minimal"))
    assert "init=/usr/sbin/wirt-init" in minimal
    # The VM's name made a host name label, unless one is given.
    assert "wirt.hostname=web-1-test systemd.hostname=web-1-test" in systemd
    assert root_cmdline(_cfg(hostname="db.example")).split() == ["wirt.hostname=db.example", "systemd.hostname=db.example"]
    bare = _cfg()
    bare.image = "none"
    assert root_cmdline(bare) == ""


def test_host_names_are_checked() -> None:
    assert validate_hostname("web-1.example") == "web-1.example"
    for bad in ("", "-web", "web_1", "a" * 64, "a..b", "web-"):
        with pytest.raises(WirtError, match="host name|empty"):
            validate_hostname(bad)
    assert default_hostname("_x.y_") == "x-y" and default_hostname("___") == "wirt"


def test_vm_toml_boot_init_and_hostname_round_trip_and_old_files_boot_minimal() -> None:
    cfg = _cfg(root=True, init="systemd", hostname="web")
    again = VMConfig.from_dict(cfg.to_dict(), "vm.toml")
    assert (again.boot.init, again.boot.hostname) == ("systemd", "web")
    old = cfg.to_dict()
    del old["boot"]["init"]
    assert VMConfig.from_dict(old, "vm.toml").boot.init == "minimal"  # disks made before systemd images
    bad = cfg.to_dict()
    bad["boot"]["init"] = "upstart"
    with pytest.raises(WirtError, match=r"vm.toml: boot.init: 'upstart' is not an init"):
        VMConfig.from_dict(bad, "vm.toml")
    bad["boot"].update(init="systemd", hostname="no_underscores")
    with pytest.raises(WirtError, match=r"vm.toml: boot.hostname"):
        VMConfig.from_dict(bad, "vm.toml")


def test_create_from_a_users_disk_file(home: Path, tmp_path: Path) -> None:
    from wirt.storage.qcow2_create import create_qcow2
    from wirt.vm.api import VM

    own = tmp_path / "own.qcow2"
    create_qcow2(str(own), 64 << 20)
    vm = VM.create("mine", disk="128M", image=str(own), init="minimal", hostname="box", net="none")
    cfg = vm.config
    assert (cfg.image, cfg.boot.root, cfg.boot.init, cfg.boot.hostname) == ("disk", True, "minimal", "box")
    assert cfg.disks[0].size == 128 << 20
    info = subprocess.run(["qemu-img", "info", "--output=json", str(vm.paths.disk("disk0.qcow2"))],
                          capture_output=True, text=True, check=True).stdout
    assert f'"backing-filename": "{own}"' in info and own.stat().st_size < 1 << 20  # the base is never written


def test_create_refuses_bad_images_inits_and_host_names(home: Path, tmp_path: Path, capsys) -> None:
    from wirt import cli

    for argv, msg in ((["--image", str(tmp_path / "nope.qcow2")], "no such file"),
                      (["--image", str(tmp_path)], "not a regular file"),
                      (["--image", "debianx"], "unknown image"),
                      (["--image", "initramfs", "--hostname", "a_b"], "is not a host name")):
        assert cli.main(["create", "v", "--net", "none", *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert cli.main(["create", "v", "--init", "upstart"]) == 2
    assert "--init upstart: unknown init; use systemd or minimal" in capsys.readouterr().err


def test_named_images_are_listed_and_created_from(home: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from wirt import cli
    from wirt.images import named
    from wirt.storage.qcow2_create import create_qcow2
    from wirt.vm.api import VM

    monkeypatch.setenv("WIRT_CACHE", str(tmp_path / "cache"))
    disk = tmp_path / "cache/rootdisk/debian-trixie-riscv64-0123456789abcdef.qcow2"
    disk.parent.mkdir(parents=True)
    create_qcow2(str(disk), 2 << 30)
    named.save("web-base", disk, ["nginx-light"])
    with pytest.raises(WirtError, match="built in"):
        named.save("debian", disk, [])
    vm = VM.create("w", disk="4G", image="web-base", init="minimal", net="none")
    assert (vm.config.image, vm.config.boot.root) == ("web-base", True)
    assert cli.main(["image", "ls"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("rootdisk") and f"web-base: {disk.name}" in line for line in out), out
    ud = tmp_path / "user-data"
    ud.write_text("#cloud-config\nruncmd:\n  - [sh, -c, 'echo ok']\n")
    assert cli.main(["create", "w3", "--image", "web-base", "--user-data", str(ud), "--net", "none"]) == 2
    err = capsys.readouterr().err  # nothing on that disk would read the seed: refused, not ignored
    assert "has no cloud-init" in err and "--packages nginx-light,cloud-init`" in err and len(err.strip().splitlines()) == 1
    named.save("cloud-base", disk, ["nginx-light", "cloud-init"])
    vm = VM.create("w4", disk="4G", image="cloud-base", user_data=str(ud), net="none")
    assert [d.path for d in vm.config.disks] == ["disk0.qcow2", "seed.raw"]
    disk.unlink()
    assert cli.main(["create", "w2", "--image", "web-base", "--net", "none"]) == 2
    assert "build --name web-base --packages nginx-light" in capsys.readouterr().err


def test_create_with_user_data_attaches_a_seed_and_refuses_bad_yaml(home: Path, tmp_path: Path, capsys) -> None:
    from wirt import cli
    from wirt.storage.qcow2_create import create_qcow2
    from wirt.vm.api import VM

    own = tmp_path / "own.qcow2"
    create_qcow2(str(own), 64 << 20)
    ud = tmp_path / "user-data"
    ud.write_text("#cloud-config\nruncmd:\n  - [sh, -c, 'echo ok']\n")
    key = tmp_path / "k.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me\n")
    vm = VM.create("ci", disk="128M", image=str(own), user_data=str(ud), ssh_key=str(key), net="none")
    seed = vm.config.disks[1]
    assert (seed.path, seed.format, seed.read_only) == ("seed.raw", "raw", True)
    import io

    import pycdlib

    iso, out = pycdlib.PyCdlib(), io.BytesIO()
    iso.open(str(vm.paths.disk("seed.raw")))
    iso.get_file_from_iso_fp(out, rr_path="/meta-data")
    iso.close()
    meta = out.getvalue().decode()
    assert "local-hostname: ci" in meta and f"instance-id: iid-{vm.config.uuid}" in meta

    ud.write_text("#cloud-config\nruncmd:\n  - a\n - b\n")
    assert cli.main(["create", "ci2", "--image", str(own), "--user-data", str(ud), "--net", "none"]) == 2
    err = capsys.readouterr().err
    assert "invalid YAML at line 4" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["create", "ci3", "--image", str(own), "--ssh-key", str(tmp_path / "no.pub")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["create", "ci4", "--init", "minimal", "--ssh-key", str(key)]) == 2
    assert "runs under systemd" in capsys.readouterr().err
    assert not any((home / "vms" / n).exists() for n in ("ci2", "ci3", "ci4"))


def test_a_users_disk_is_granted_to_its_vm(home: Path, tmp_path: Path) -> None:
    """--image PATH names a file outside the VM folder and the cache: the VM may open it (a grant)."""
    from wirt.storage.qcow2_create import create_qcow2
    from wirt.vm import access
    from wirt.vm.api import VM

    own = tmp_path / "elsewhere" / "own.qcow2"
    own.parent.mkdir()
    create_qcow2(str(own), 64 << 20)
    vm = VM.create("g", disk="128M", image=str(own), init="minimal", net="none")
    assert str(own.resolve()) in access.granted(home, vm.config.uuid)
    access.vm_policy(vm.paths, vm.config.uuid).check(own, "disk")  # would raise if refused
