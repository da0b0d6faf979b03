"""One base for every error cgr-plugin raises on purpose about its input.

The command line prints a ``CGRError`` as one message and exits; anything else is a bug and
keeps its traceback. The error classes also derive from ``ValueError`` (what they were in 0.1),
so callers that caught that keep working.
"""

from __future__ import annotations

__all__ = ["CGRError"]


class CGRError(ValueError):
    """Bad input, settings or files, named in the message; never a bug in cgr-plugin."""
