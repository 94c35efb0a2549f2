"""`wirt ssh`: log in to a VM's SSH server through its loopback port forward, with no prompt.

The VM's [network] ssh_port is forwarded by passt from 127.0.0.1 on the host to the guest's port
22. Before ssh runs, the guest agent (a channel only the host has: virtio-console) is used to
 - install the user's public key for root (idempotent), and
 - read the guest's SSH host key, which goes into a known_hosts file in the VM's directory,
so ssh checks the host key strictly (StrictHostKeyChecking=yes) without trust on first use.
The key is the one given, else the user's first ~/.ssh/id_{ed25519,ecdsa,rsa}, else one wirt makes
for itself under $WIRT_HOME/ssh (ssh-keygen, no passphrase).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from wirt.errors import WirtError
from wirt.images.cloudinit import default_public_key, read_public_key
from wirt.vm.store import DIR_MODE, atomic_write

__all__ = ["free_loopback_port", "find_key", "ssh_command", "HOST_KEY_WAIT"]

HOST_KEY_WAIT = 300  # seconds the guest may take to make its host key and start sshd (first boot)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick), for a VM's SSH forward."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise WirtError(f"{name} not found; install the OpenSSH client (Debian package openssh-client)")
    return exe


def find_key(given: str | None, home: Path) -> tuple[Path, str]:
    """(private key, public key line): `given` (a private key or its .pub), else the user's
    ~/.ssh/id_*, else wirt's own key in HOME/ssh (made now if missing)."""
    if given:
        p = Path(given).expanduser()
        private = p.with_suffix("") if p.suffix == ".pub" else p
        if not private.is_file():
            raise WirtError(f"--ssh-key {given}: the private key {private} does not exist")
        return private, read_public_key(private)
    pub = default_public_key()
    if pub is not None and pub.with_suffix("").is_file():
        return pub.with_suffix(""), read_public_key(pub)
    own = home / "ssh" / "id_ed25519"
    if not own.is_file():
        own.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        r = subprocess.run([_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "wirt", "-f", str(own)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise WirtError(f"ssh-keygen could not make {own}: {r.stderr.strip() or r.returncode}")
    return own, read_public_key(own)


# Run by the guest agent: wait for the host key and sshd (a first boot makes the key), add the
# user's key (stdin) to root's authorized_keys, print the host key.
_GUEST_SETUP = r"""
i=0
while [ ! -s /etc/ssh/ssh_host_ed25519_key.pub ] || ! ss -Hltn 'sport = :22' | grep -q .; do
    i=$((i + 1))
    if [ "$i" -gt {wait} ]; then
        echo "no SSH server listens in the guest (is openssh-server installed and the VM booted with systemd?)" >&2
        exit 3
    fi
    sleep 1
done
key=$(cat)
umask 077
mkdir -p /root/.ssh
grep -qxF "$key" /root/.ssh/authorized_keys 2>/dev/null || echo "$key" >> /root/.ssh/authorized_keys
cat /etc/ssh/ssh_host_ed25519_key.pub
"""


def ssh_command(vm: object, key: str | None = None, command: list[str] | None = None,
                wait: float = HOST_KEY_WAIT) -> list[str]:
    """The ssh command line that logs in to running VM `vm` (a wirt.vm.api.VM) as root, after the
    agent installed the key and the host key was pinned (module docstring)."""
    from wirt.vm.api import VM

    assert isinstance(vm, VM)
    cfg = vm.config
    port = cfg.network.ssh_port or next((p.host for p in cfg.network.ports if p.guest == 22 and p.protocol == "tcp"), 0)
    if not port:
        raise WirtError(f"VM {vm.name!r} has no port forward to its SSH server; create it with --net user "
                        "(wirt then forwards a loopback port) or --port HOST:22")
    ssh = _tool("ssh")
    private, pub = find_key(key, vm.store.home)
    r = vm.exec(_GUEST_SETUP.replace("{wait}", str(int(wait))), stdin=pub.encode() + b"\n", timeout=wait,
                kill_after=wait + 30)
    if r.status != 0:
        raise WirtError(f"VM {vm.name!r}: {r.stderr.decode(errors='replace').strip() or f'setup failed ({r.status})'}")
    host_key = r.stdout.decode(errors="replace").strip().splitlines()[-1:]
    fields = host_key[0].split() if host_key else []
    if len(fields) < 2 or fields[0] != "ssh-ed25519":
        raise WirtError(f"VM {vm.name!r} gave no SSH host key ({r.stdout[:80]!r})")
    known = vm.paths.root / "known_hosts"
    atomic_write(known, f"[127.0.0.1]:{port} {fields[0]} {fields[1]}\n")
    argv = [ssh, "-i", str(private), "-p", str(port), "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "root@127.0.0.1"]
    if command:
        argv += ["--", *command]
    return argv
