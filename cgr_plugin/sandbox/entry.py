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
import gc
import threading
from dataclasses import dataclass

__all__ = ["ENTRY_POINT", "Entry", "parse_python", "read_entry"]

ENTRY_POINT = "solve"

# CPython 3.11's parser keeps its recursion depth in shared state: two parses at once fail
# with "SystemError: AST constructor recursion depth mismatch". That happens across threads
# (programs of a pool) and within one: a garbage-collector finalizer that prints a traceback
# (e.g. an async client's unretrieved task) parses source in the middle of another parse. So
# every parse in cgr (extraction's and this one) holds this lock with the collector paused,
# and a clash with a parse outside cgr's control is retried once.
_PARSE_LOCK = threading.RLock()


def parse_python(code: str, *, compiled: bool = False) -> ast.Module:
    """``ast.parse(code)`` safely from any thread; ``compiled``: also compile the tree, which
    finds what only the compiler sees (``return`` outside a function, ...)."""
    with _PARSE_LOCK:
        collecting = gc.isenabled()
        gc.disable()
        try:
            try:
                tree = ast.parse(code, "program.py")
            except SystemError:
                tree = ast.parse(code, "program.py")
            if compiled:
                compile(tree, "program.py", "exec", dont_inherit=True)
            return tree
        finally:
            if collecting:
                gc.enable()


@dataclass(frozen=True)
class Entry:
    status: str  # ok, syntax_error, missing_entry or entry_mismatch
    message: str | None = None
    line: int | None = None  # of the audited ``def solve``


def read_entry(program: str) -> Entry:
    """How ``program`` may run; never raises."""
    try:
        tree = parse_python(program, compiled=True)
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
