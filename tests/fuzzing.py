"""How hard the fuzz tests try: a short run in the suite (CI), a long one with `make fuzz`
(WIRT_FUZZ_SCALE=100). The fuzz tests are Hypothesis properties; a failing example is shrunk
and stored in .hypothesis/ so the next run tries it first."""

from __future__ import annotations

import os

SCALE = max(1, int(os.environ.get("WIRT_FUZZ_SCALE", "1") or 1))


def examples(n: int) -> int:
    """`n` examples in the normal suite, `n * WIRT_FUZZ_SCALE` under `make fuzz`."""
    return n * SCALE
