"""Without the extra (Ray not importable), wirt works as before and cluster commands say in one
line how to install it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# a Python whose `import ray` fails, as in an installation without wirt[cluster]
NO_RAY = "import sys; sys.modules['ray'] = None; from wirt.cli import main; sys.exit(main(sys.argv[1:]))"
# the wirt under test, where PYTHONPATH names it (a worktree beside an editable install)
KEEP = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}


@pytest.mark.parametrize("argv", [["cluster", "status"], ["cluster", "up"], ["migrate", "web", "n2"],
                                  ["--cluster", "10.0.0.1:6379", "ls"]])
def test_cluster_commands_say_how_to_install(argv: list[str], tmp_path) -> None:
    r = subprocess.run([sys.executable, "-c", NO_RAY, *argv], capture_output=True, text=True, timeout=120,
                       env={**KEEP, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WIRT_HOME": str(tmp_path / "h")})
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "pip install 'wirt[cluster]'" in r.stderr
    assert r.stdout == ""


def test_single_host_commands_still_work(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-c", NO_RAY, "ls"], capture_output=True, text=True, timeout=120,
                       env={**KEEP, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WIRT_HOME": str(tmp_path / "h")})
    assert r.returncode == 0 and "no VMs" in r.stdout, r.stderr


def test_wirt_cluster_setting_says_how_to_install(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-c", NO_RAY, "ls"], capture_output=True, text=True, timeout=120,
                       env={**KEEP, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WIRT_HOME": str(tmp_path / "h"),
                            "WIRT_CLUSTER": "10.0.0.1:6379"})
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "pip install 'wirt[cluster]'" in r.stderr
