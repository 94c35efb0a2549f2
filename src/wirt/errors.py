"""User-facing errors: one line that says what is wrong and how to fix it."""


class WirtError(Exception):
    """An error caused by the user's input or environment, shown as one line (no traceback)."""

    exit_code = 2
