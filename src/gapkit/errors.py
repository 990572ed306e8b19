"""One exception type for user-facing problems.

`GapkitError` subclasses ValueError so the Python API raises a ValueError (as documented) while
the CLI can tell a user mistake (print one line, exit 2) from a bug (traceback).
"""
from __future__ import annotations


class GapkitError(ValueError):
    """A problem with the user's input or configuration, stated in one line."""


class GapkitTypeError(GapkitError, TypeError):
    """Wrong type of input (e.g. a pickle where arrays were expected)."""
