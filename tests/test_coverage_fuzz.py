"""The coverage-guided fuzz targets (tests/coverage_fuzz.py, atheris) run briefly in every test run,
and for WIRT_FUZZ_SECONDS each under `make fuzz`: a finding makes libFuzzer exit non-zero and
write the input it found to crash-* or oom-* in the working folder (printed here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RUNS = {"qcow2": 400, "vmtoml": 3000, "control": 3000, "snapshot": 300}


@pytest.mark.parametrize("target", list(RUNS))
def test_coverage_guided_fuzz_target(target, tmp_path):
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.fail("atheris is missing; `make test` installs it (pip install atheris)")
    seconds = os.environ.get("WIRT_FUZZ_SECONDS")
    budget = [f"-max_total_time={int(seconds)}"] if seconds else [f"-runs={RUNS[target]}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    # libFuzzer's RSS limit reads ru_maxrss, which a forked child inherits from its parent's high-water
    # mark (pytest's can be gigabytes by now): a small launcher process starts the fuzzer instead.
    launcher = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"
    r = subprocess.run([sys.executable, "-c", launcher, sys.executable, str(HERE / "coverage_fuzz.py"), target,
                        *budget, "-rss_limit_mb=1024", "-print_final_stats=1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=600 + int(seconds or 0))
    found = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "oom-", "timeout-", "leak-")))
    assert r.returncode == 0 and not found, f"{target}: {found}\n{r.stderr[-4000:]}"
    assert "Done" in r.stderr, r.stderr[-2000:]
