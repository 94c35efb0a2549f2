"""Which commands a cluster address (--cluster or WIRT_CLUSTER) sends to the cluster, and that
the VM commands without a cluster form are refused in one line instead of silently acting on
this host's VMs. No cluster runs here: these refusals come before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from wirt.cli import main

NOWHERE = "127.0.0.1:1"  # nothing listens: a command that tried to connect would fail differently


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WIRT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WIRT_CLUSTER", raising=False)
    monkeypatch.delenv("WIRT_REMOTE", raising=False)
    return tmp_path / "home"


@pytest.mark.parametrize("argv", [["status", "web"], ["snapshot", "ls", "web"], ["set", "web", "--cpus", "2"],
                                  ["ssh", "web"], ["fork", "web", "s1", "web2"]])
def test_host_vm_commands_are_refused_with_a_cluster(argv: list[str], capsys, monkeypatch) -> None:
    assert main(["--cluster", NOWHERE, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"`wirt {argv[0]}` acts on this host's VMs" in err and "with --cluster" in err
    monkeypatch.setenv("WIRT_CLUSTER", NOWHERE)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "with WIRT_CLUSTER" in err and "or unset WIRT_CLUSTER" in err


def test_host_commands_run_here_with_wirt_cluster_set_and_refuse_an_explicit_cluster(tmp_path, capsys,
                                                                                     monkeypatch) -> None:
    assert main(["--cluster", NOWHERE, "disk", "create", str(tmp_path / "x.qcow2"), "1M"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cluster does not apply to `wirt disk`" in err
    assert not (tmp_path / "x.qcow2").exists()
    monkeypatch.setenv("WIRT_CLUSTER", NOWHERE)  # a setting for the VM commands; disk images are this host's
    assert main(["disk", "create", str(tmp_path / "x.qcow2"), "1M"]) == 0
    assert (tmp_path / "x.qcow2").is_file()


def test_a_dead_cluster_address_fails_at_once_in_one_line(capsys) -> None:
    """Nothing listens at NOWHERE: `ls` on it says so at once (Ray's connect retried for minutes)."""
    import time

    t = time.monotonic()
    assert main(["--cluster", NOWHERE, "ls"]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - t < 30
    assert err.count("\n") == 1 and f"cannot reach the wirt cluster at {NOWHERE}" in err, err

