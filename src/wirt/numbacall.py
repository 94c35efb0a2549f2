"""Calling a numba-compiled function without its dispatcher, where a call is frequent."""

from __future__ import annotations

from typing import Any, Callable


def compiled_entry(dispatcher: Any, args: tuple) -> Callable[..., Any]:
    """The compiled function for these arguments' types, to call without numba's dispatcher,
    which matches the type of every argument at every call (about 0.1 us an array argument).
    Only for callers whose arguments keep these types for as long as they keep the result
    (their own arrays, of fixed dtype and layout); the dispatcher itself where no compiled
    version matches (call it once first, so that one is)."""
    try:
        return dispatcher.overloads[tuple(dispatcher.typeof_pyval(a) for a in args)].entry_point
    except (KeyError, AttributeError):
        return dispatcher
