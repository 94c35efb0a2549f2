"""The CLI for scripts (fast): --version, --json output and its documented fields, shell completion,
config.toml [create] defaults, `start --wait` without an agent, `disk convert`'s format choice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wirt.cli import main

_MAIN = "import sys, wirt.cli as c; sys.exit(c.main(sys.argv[1:]))"


def _wirt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=env)


def _json(capsys, argv: list[str]):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.split()
    assert out[0] == "wirt" and out[1][0].isdigit()


def test_parser_for_one_command_stops_at_its_module() -> None:
    """`wirt run` builds only the parsers up to the module that has `run` (start-up time), and
    the command is found past the global options that take a value."""
    from wirt.cli import _command_name, build_parser

    assert _command_name(["--cluster", "a:1", "ls", "-a"]) == "ls"
    assert _command_name(["--remote=unix:/x", "run", "--", "true"]) == "run"
    assert _command_name(["--version"]) is None and _command_name([]) is None
    choices = build_parser("run")._subparsers._group_actions[0].choices
    assert "run" in choices and "snapshot" not in choices and "cluster" in choices  # plug-ins always
    assert "snapshot" in build_parser(None)._subparsers._group_actions[0].choices


# The fields docs/cli.md promises for each command's JSON.
LS_FIELDS = {"name", "state", "cpus", "memory", "disk_used", "disk_size", "ip", "uptime", "pid", "reason"}
STATUS_FIELDS = {"name", "uuid", "state", "pid", "uptime", "reason", "cpus", "cpu_affinity", "memory", "image",
                 "boots_from_disk", "disks", "disk_used", "network", "agent", "warnings", "limits"}
TOP_FIELDS = {"name", "state", "rss", "cpu_percent", "mips", "vcpu_mips", "disk_read", "disk_write", "net_rx",
              "net_tx"}
SNAPSHOT_FIELDS = {"name", "parent", "created", "kind", "memory_bytes", "disk_bytes", "current"}
IMAGE_FIELDS = {"kind", "path", "name", "size", "disk_used", "mtime"}


def test_json_of_ls_status_top_and_snapshot_ls(tiny_vm, capsys):
    rows = _json(capsys, ["ls", "--json"])
    assert [r["name"] for r in rows] == ["tiny"] and set(rows[0]) == LS_FIELDS and rows[0]["state"] == "stopped"
    st = _json(capsys, ["status", "--json", "tiny"])
    assert set(st) == STATUS_FIELDS
    assert st["state"] == "stopped" and st["pid"] is None and st["memory"] == 32 << 20
    assert st["network"] == {"mode": "none", "mac": tiny_vm.config.network.mac, "ports": [], "ip": None}
    assert [set(d) for d in st["disks"]] == [{"path", "format", "size", "read_only"}]
    assert _json(capsys, ["top", "--once", "--json", "--interval", "0.1"]) == []
    assert main(["snapshot", "create", "tiny", "s1"]) == 0  # stopped: disk-only
    capsys.readouterr()
    snaps = _json(capsys, ["snapshot", "ls", "--json", "tiny"])
    assert len(snaps) == 1 and set(snaps[0]) == SNAPSHOT_FIELDS and snaps[0]["kind"] == "disk"

    tiny_vm.start()
    st = _json(capsys, ["status", "--json", "tiny"])
    assert st["state"] == "running" and st["pid"] > 0 and st["agent"] is False
    rows = _json(capsys, ["top", "--once", "--json", "--interval", "0.2"])
    assert len(rows) == 1 and set(rows[0]) == TOP_FIELDS and rows[0]["rss"] > 0 and rows[0]["mips"] is not None
    assert len(rows[0]["vcpu_mips"]) == 1 and rows[0]["vcpu_mips"][0] == pytest.approx(rows[0]["mips"], rel=0.01)


def test_image_ls_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WIRT_CACHE", str(tmp_path))
    assert _json(capsys, ["image", "ls", "--json"]) == []
    (tmp_path / "kernel" / "1").mkdir(parents=True)
    (tmp_path / "kernel" / "1" / "vmlinux-x").write_bytes(b"k" * 100)
    (tmp_path / "debs").mkdir()
    (tmp_path / "debs" / "a.deb").write_bytes(b"not an image")
    rows = _json(capsys, ["image", "ls", "--json"])
    assert len(rows) == 1 and set(rows[0]) == IMAGE_FIELDS
    assert rows[0]["kind"] == "kernel" and rows[0]["name"] == "vmlinux-x" and rows[0]["size"] == 100


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed (make test installs it)")
def test_disk_info_json_matches_qemu_img(tmp_path, capsys):
    base = tmp_path / "base.raw"
    top = tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(base), "1M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(top)], check=True)
    subprocess.run(["qemu-img", "snapshot", "-c", "snap1", str(top)], check=True)
    ours = _json(capsys, ["disk", "info", "--output", "json", str(top)])
    theirs = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(top)], capture_output=True,
                                       text=True, check=True).stdout)
    for key in ("filename", "format", "virtual-size", "cluster-size", "backing-filename",
                "backing-filename-format", "full-backing-filename", "dirty-flag"):
        assert ours[key] == theirs[key], key
    assert [(s["id"], s["name"], s["date-sec"]) for s in ours["snapshots"]] == \
        [(s["id"], s["name"], s["date-sec"]) for s in theirs["snapshots"]]
    for key in ("compat", "refcount-bits", "corrupt"):
        assert ours["format-specific"]["data"][key] == theirs["format-specific"]["data"][key]
    chain = _json(capsys, ["disk", "info", "--json", "--backing-chain", str(top)])
    assert [c["format"] for c in chain] == ["qcow2", "raw"]


def test_disk_convert_says_which_format_it_chose(tmp_path, capsys):
    src = tmp_path / "a.raw"
    src.write_bytes(b"\x01" * 65536)
    assert main(["disk", "convert", str(src), str(tmp_path / "b.img")]) == 0
    assert "as raw" in capsys.readouterr().err
    assert (tmp_path / "b.img").read_bytes() == src.read_bytes()
    assert main(["disk", "convert", str(src), str(tmp_path / "c.qcow2")]) == 0
    assert "as qcow2" in capsys.readouterr().err
    assert (tmp_path / "c.qcow2").read_bytes()[:4] == b"QFI\xfb"


def _complete(line: str, env: dict[str, str]) -> list[str]:
    """What bash offers for `line` with wirt's completion script loaded (as a user's shell would)."""
    script = subprocess.run([sys.executable, "-c", _MAIN, "completion", "bash"], capture_output=True, text=True,
                            check=True, env=env).stdout
    words = line.split(" ")
    probe = (f'{script}\nCOMP_WORDS=({" ".join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; '
             f'COMP_LINE={line!r}; COMP_POINT={len(line)}; _python_argcomplete wirt; '
             'printf "%s\\n" "${COMPREPLY[@]}"')
    r = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    return sorted(x.strip() for x in r.stdout.splitlines() if x.strip() and not x.startswith("-"))


def _completion_env(firmware, tmp_path) -> dict[str, str]:
    """VMs alpha, alps (the shared prefix) and beta, a snapshot of alpha, and an environment whose
    `wirt` on PATH runs this tree's: what the completion tests complete."""
    from wirt.vm.api import VM

    for name in ("alpha", "alps", "beta"):
        VM.create(name, memory="32M", disk="1M", image="none", net="none", firmware=str(firmware))
    VM("alpha").snapshot("first")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "wirt").write_text(f"#!/bin/sh\nexec {sys.executable} -c '{_MAIN}' \"$@\"\n")
    (shim / "wirt").chmod(0o755)
    return dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_completes_vm_and_snapshot_names(home, firmware, tmp_path):
    env = _completion_env(firmware, tmp_path)
    assert _complete("wirt start al", env) == ["alpha", "alps"]
    assert _complete("wirt rm ", env) == ["alpha", "alps", "beta"]
    assert _complete("wirt snapshot restore alpha ", env) == ["first"]
    assert "status" in _complete("wirt st", env)
    assert _complete("wirt create al", env) == []  # a new name: nothing to offer


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_completes_vm_and_snapshot_names(home, firmware, tmp_path):
    """The zsh script as printed, run by zsh; only the completion system's `_describe` (which needs
    a live completion widget) and `compdef` (compinit) are stood in for: they print what zsh would offer."""
    env = _completion_env(firmware, tmp_path)
    script = tmp_path / "wirt.zsh"
    script.write_text(_wirt("completion", "zsh", env=env).stdout)

    def offered(line: str) -> list[str]:
        probe = ('compdef() { :; }; _describe() { print -rl -- "${(@P)2}"; }; source "$1"; '
                 'words=(${(z)2}); BUFFER=$2; CURSOR=${#2}; _python_argcomplete')
        r = subprocess.run(["zsh", "-f", "-c", probe, "zsh", str(script), line], capture_output=True, text=True,
                           env=env, timeout=60, cwd=tmp_path)  # host files offered by cp: tmp_path's
        return sorted(x.split(":")[0].rstrip("\\") for x in r.stdout.splitlines() if x and not x.startswith("-"))

    assert offered("wirt start al") == ["alpha", "alps"]
    assert offered("wirt snapshot restore alpha ") == ["first"]
    assert offered("wirt cp be") == ["beta"]


def test_a_closed_stdout_ends_quietly():
    """`wirt ... | head -1`: the reader is gone before wirt writes; no traceback, SIGPIPE's status."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-c", _MAIN, "completion", "bash"], stdout=w, stderr=subprocess.PIPE,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        os.close(w)
    assert p.returncode == 141 and p.stderr == "", p.stderr


def test_config_toml_create_defaults(home, firmware, capsys):
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[create]\nmemory = "48M"\ndisk = "none"\nimage = "none"\nnet = "none"\n')
    assert main(["create", "d1", "--firmware", str(firmware)]) == 0
    capsys.readouterr()
    st = _json(capsys, ["status", "--json", "d1"])
    assert st["memory"] == 48 << 20 and st["disks"] == [] and st["image"] == "none" and st["network"]["mode"] == "none"
    assert main(["create", "d2", "--firmware", str(firmware), "--memory", "40M", "--disk", "1M"]) == 0
    capsys.readouterr()
    st = _json(capsys, ["status", "--json", "d2"])
    assert st["memory"] == 40 << 20 and [d["size"] for d in st["disks"]] == [1 << 20]  # arguments win
    for bad, word in (('memory = "lots"', "not a size"), ("cpus = 0", "not a CPU count"),
                      ('image = "arch"', "not an image"), ('net = "wifi"', "not a network mode"),
                      ("colour = 1", "not a known setting")):
        (home / "config.toml").write_text(f"[create]\n{bad}\n")
        r = _wirt("create", "d3", "--firmware", str(firmware), env=dict(os.environ))
        assert r.returncode == 2 and word in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "create." in r.stderr and "Traceback" not in r.stderr


def test_start_wait_without_an_agent_fails_in_one_line(tiny_vm):
    r = _wirt("start", "--wait", "--timeout", "1", "tiny")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "did not answer within 1 s" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert tiny_vm.status().state == "running"  # it stays up: only the wait gave up
