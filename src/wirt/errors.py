"""User-facing errors: one line that says what is wrong and how to fix it."""


class WirtError(Exception):
    """An error caused by the user's input or environment, shown as one line (no traceback)."""

    exit_code = 2


class StateError(WirtError):
    """The thing exists but is in the wrong state for the request (already running, not
    running, busy with another command): the request may succeed later. REST answers 409."""


class NotFoundError(WirtError):
    """The named VM, snapshot or file does not exist. REST answers 404."""
