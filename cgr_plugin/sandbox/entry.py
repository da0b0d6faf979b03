"""The parent's own reading of a program before it runs: does it compile, and which
``def solve`` must run. Statuses a program could otherwise forge from inside the sandbox
(``syntax_error``, ``missing_entry``) are decided here, from the text alone.

The entry point is the last top-level ``def solve`` (what Python keeps, and what the audits
read); a decorated one is refused (``entry_mismatch``): what would run is the decorator's
result, not the audited body. The worker then checks that the callable it runs is exactly
the function compiled from that definition.
"""

from __future__ import annotations

import ast
import threading
from dataclasses import dataclass

__all__ = ["ENTRY_POINT", "Entry", "read_entry"]

ENTRY_POINT = "solve"
_PARSE_LOCK = threading.Lock()  # CPython's parser is not safe from a few threads at once


@dataclass(frozen=True)
class Entry:
    status: str  # ok, syntax_error, missing_entry or entry_mismatch
    message: str | None = None
    line: int | None = None  # of the audited ``def solve``


def _compile(program: str) -> ast.Module:
    with _PARSE_LOCK:
        tree = ast.parse(program, "program.py")
        compile(tree, "program.py", "exec", dont_inherit=True)  # what only compiling finds
    return tree


def read_entry(program: str) -> Entry:
    """How ``program`` may run; never raises."""
    try:
        tree = _compile(program)
    except SyntaxError as err:
        return Entry("syntax_error", f"{err.msg} (line {err.lineno})")
    except (ValueError, RecursionError, MemoryError, SystemError, OverflowError) as err:
        return Entry("syntax_error", f"cannot compile: {type(err).__name__}: {err}"[:2000])
    defs = [node for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name == ENTRY_POINT]
    if not defs:
        return Entry("missing_entry", f"no top-level def {ENTRY_POINT}(item, solver)")
    entry = defs[-1]
    if entry.decorator_list:
        return Entry("entry_mismatch", f"{ENTRY_POINT}() is decorated (line {entry.lineno}): "
                     "the decorator's result would run, not the audited function")
    return Entry("ok", line=entry.lineno)
