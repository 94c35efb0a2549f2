"""cloud-init provisioning: user-data checked on the host, and the NoCloud seed disk a VM gets.

Debian's real `cloud-init` package runs in the guest (it is added to the root disk of VMs made
with --user-data or --ssh-key: `CLOUD_PACKAGES`). It finds its data on a small disk whose file
system is labelled `cidata` (cloud-init's NoCloud datasource, "seed on a local file system"),
holding `user-data` (the user's file, verbatim), `meta-data` (instance id, host name, SSH keys)
and `vendor-data` (wirt's defaults, which user-data overrides). The disk is an ISO 9660 image
(`build_seed`): cloud-init accepts only vfat and iso9660 seeds.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from wirt.errors import WirtError
from wirt.fileio import atomic_path

__all__ = ["CLOUD_PACKAGES", "SEED_LABEL", "read_user_data", "read_public_key",
           "default_public_key", "build_seed", "VENDOR_DATA"]

CLOUD_PACKAGES = ("cloud-init",)
SEED_LABEL = "cidata"
USER_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
# Accepted first lines (cloud-init's user-data formats: cloud-config, a script, an include list,
# a Jinja template, MIME multi-part).
_HEADERS = ("#cloud-config", "#!", "#include", "## template: jinja", "Content-Type:", "#cloud-boothook")
# Root keeps the SSH keys too (Debian's cloud.cfg sets disable_root: true, which would answer a
# root login with "please log in as debian"), so `wirt ssh` works as on other VMs.
VENDOR_DATA = "#cloud-config\ndisable_root: false\n"


def read_user_data(path: str | Path) -> bytes:
    """The user-data file's bytes, refused with a one-line error naming the line when its YAML
    does not parse (a #cloud-config file) or its first line is no user-data format."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise WirtError(f"--user-data {path}: no such file") from None
    except IsADirectoryError:
        raise WirtError(f"--user-data {path}: is a directory, not a file") from None
    except OSError as exc:
        raise WirtError(f"--user-data {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WirtError(f"--user-data {path}: not UTF-8 text (byte {exc.start})") from None
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip()
    if not first.startswith(_HEADERS):
        raise WirtError(f"--user-data {path}: line 1 must be #cloud-config (or #! for a script), not {first[:40]!r}")
    if first.startswith("#cloud-config"):
        try:
            doc = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
            raise WirtError(f"--user-data {path}: invalid YAML at {where}: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise WirtError(f"--user-data {path}: invalid YAML: {exc}") from None
        if doc is not None and not isinstance(doc, dict):
            raise WirtError(f"--user-data {path}: a cloud-config must be a mapping of keys (users:, runcmd:, ...), "
                            f"not a {type(doc).__name__}")
    return data


def read_public_key(path: str | Path, what: str = "--ssh-key") -> str:
    """One OpenSSH public key line from `path` (a .pub file, or a private key with its .pub beside it)."""
    p = Path(path).expanduser()
    if not str(path).strip() or not p.name:
        raise WirtError(f"{what} {str(path)!r}: is not a file name; give a public key file "
                        "(e.g. ~/.ssh/id_ed25519.pub)")
    pub = p if p.suffix == ".pub" else p.with_name(p.name + ".pub")
    try:
        line = pub.read_text().strip()
    except FileNotFoundError:
        raise WirtError(f"{what} {path}: {pub} does not exist; give a public key file (e.g. ~/.ssh/id_ed25519.pub)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WirtError(f"{what} {path}: cannot read {pub} ({exc})") from None
    parts = line.split()
    if len(parts) < 2 or "\n" in line or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise WirtError(f"{what} {path}: {pub} is not an OpenSSH public key (one line: TYPE BASE64 [COMMENT])")
    return line


def default_public_key() -> Path | None:
    """The user's first ~/.ssh/id_{ed25519,ecdsa,rsa}.pub, if any."""
    for name in USER_KEYS:
        p = Path.home() / ".ssh" / f"{name}.pub"
        if p.is_file():
            return p
    return None


def build_seed(dest: Path, user_data: bytes, *, instance_id: str, hostname: str, public_keys: list[str]) -> None:
    """Write the NoCloud seed disk to `dest`: an ISO 9660 image with the volume label cidata (cloud-init
    looks only at vfat and iso9660 file systems so labelled: DataSourceNoCloud), with Rock Ridge
    and Joliet names, written by pycdlib (no root, no system tools)."""
    import io

    import pycdlib

    meta = {"instance-id": instance_id, "local-hostname": hostname}
    if public_keys:
        meta["public-keys"] = list(public_keys)
    files = {"user-data": user_data,
             "meta-data": yaml.safe_dump(meta, default_flow_style=False, sort_keys=False).encode(),
             "vendor-data": VENDOR_DATA.encode()}
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=SEED_LABEL)
    for name, data in files.items():
        iso_name = "/" + name.replace("-", "").upper()[:8] + ".;1"
        iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path="/" + name)
    try:
        with atomic_path(Path(dest), 0o600) as tmp:
            iso.write(str(tmp))
    finally:
        iso.close()
