"""cloud-init inputs checked on the host, and the NoCloud seed disk (no guest boots)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from wirt.errors import WirtError
from wirt.images import cloudinit

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host"


def test_user_data_is_checked_with_line_numbers(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("#cloud-config\npackages: [nginx-light]\nruncmd:\n  - echo hi\n")
    assert cloudinit.read_user_data(good) == good.read_bytes()
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    assert cloudinit.read_user_data(script).startswith(b"#!")
    bad = tmp_path / "bad.yaml"
    bad.write_text("#cloud-config\npackages:\n  - nginx\n runcmd: [x]\n")
    with pytest.raises(WirtError, match=r"bad.yaml: invalid YAML at line 4, column 2"):
        cloudinit.read_user_data(bad)
    for text, msg in (("packages: [a]\n", "line 1 must be #cloud-config"),
                      ("#cloud-config\n- a\n- b\n", "must be a mapping")):
        bad.write_text(text)
        with pytest.raises(WirtError, match=msg):
            cloudinit.read_user_data(bad)
    with pytest.raises(WirtError, match="no such file"):
        cloudinit.read_user_data(tmp_path / "missing")


def test_public_keys_are_checked(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text(KEY + "\n")
    (tmp_path / "k").write_text("private\n")
    assert cloudinit.read_public_key(tmp_path / "k.pub") == KEY
    assert cloudinit.read_public_key(tmp_path / "k") == KEY  # the .pub beside a private key
    (tmp_path / "bad.pub").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(WirtError, match="not an OpenSSH public key"):
        cloudinit.read_public_key(tmp_path / "bad.pub")
    with pytest.raises(WirtError, match="does not exist"):
        cloudinit.read_public_key(tmp_path / "none.pub")


def _read_iso(path: Path, name: str) -> bytes:
    import io

    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
        return out.getvalue()
    finally:
        iso.close()


def test_seed_disk_is_a_cidata_iso9660_with_the_three_files(tmp_path: Path) -> None:
    """cloud-init's NoCloud takes only vfat or iso9660 file systems labelled cidata (blkid's view)."""
    seed = tmp_path / "seed.raw"
    user = b"#cloud-config\nwrite_files:\n  - path: /etc/x\n    content: hi\n"
    cloudinit.build_seed(seed, user, instance_id="iid-1", hostname="web", public_keys=[KEY])
    blkid = subprocess.run(["blkid", "-p", "-o", "export", str(seed)], capture_output=True, text=True).stdout
    assert "TYPE=iso9660" in blkid.split() and "LABEL=cidata" in blkid.split()
    assert _read_iso(seed, "user-data") == user
    assert yaml.safe_load(_read_iso(seed, "meta-data")) == {"instance-id": "iid-1", "local-hostname": "web",
                                                            "public-keys": [KEY]}
    assert yaml.safe_load(_read_iso(seed, "vendor-data")) == {"disable_root": False}
