"""From generator text to a runnable program, plus static audits of that program.

Program contract (also in README and templates/_generator_contract.j2)::

    GENERATOR_ANSWER = "C"      # the generator's own letter, a code constant
    DIFFICULTY = "medium"       # easy | medium | hard

    def solve(item, solver):    # item: question, options, letters, context, payload
        ...                     # solver: ask, choose, judge, pick
        return letter           # one of item.letters, or None when the evidence is inconclusive
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..record import HARD_CODED, hard_coded
from ..sandbox.entry import parse_python

__all__ = ["ENTRY_POINT", "Program", "audit_program", "extract_program", "read_constants"]

ENTRY_POINT = "solve"
SOLVER_METHODS = ("ask", "choose", "judge")
DIFFICULTIES = ("easy", "medium", "hard")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_CODE_START = re.compile(r"^(?:def |class |import |from |@|[A-Z_][A-Z0-9_]* *=|async def )")
_PLACEHOLDER = re.compile(r"<[^<>\n]{1,60}>|\A\s*[?X]?\s*\Z|\.\.\.|\bTODO\b")
_TEMPLATE_TEXT = re.compile(r"<[^<>\n]{1,60}>|\bTODO\b")


@dataclass
class Program:
    status: str  # ok, no_code, syntax_error, missing_entry
    code: str | None = None  # what runs: driver lines removed
    source: str | None = None  # the extracted code as the generator wrote it
    message: str | None = None
    tree: ast.Module | None = field(default=None, repr=False)


def _blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def _parse(code: str) -> ast.Module:
    return parse_python(code)  # one lock for every parse in cgr (see there why)


def _parses(code: str) -> ast.Module | None:
    try:
        return _parse(code)
    except (SyntaxError, ValueError):
        return None


def _unfenced_code(text: str) -> str | None:
    """Prose around code with no fence: from the first code-looking line, as much as parses."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)]
    if not starts:
        return None
    first = starts[0]
    for end in range(len(lines), first, -1):
        chunk = "\n".join(lines[first:end]).strip()
        if chunk and _parses(chunk) is not None:
            return chunk + "\n"
    return "\n".join(lines[first:]).strip() + "\n"


def _defines_entry(tree: ast.Module) -> ast.FunctionDef | None:
    """The solve() that runs: Python keeps the last top-level definition."""
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == ENTRY_POINT:
            found = node
    return found


def _calls_entry(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
               and n.func.id == ENTRY_POINT for n in ast.walk(node))


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and "__name__" in ast.unparse(node.test))


def extract_program(text: str | None) -> Program:
    """Pick the program out of generator output; never raises."""
    if not text or not text.strip():
        return Program("no_code", message="the generator returned no text")
    blocks = _blocks(text)
    candidates = [code for lang, code in blocks if lang in ("", "python", "py", "python3")]
    if blocks and not candidates:
        candidates = [code for _, code in blocks]
    if not candidates:
        whole = text.strip() + "\n"
        candidates = [whole] if _parses(whole) is not None else []
        unfenced = None if candidates else _unfenced_code(text)
        candidates = candidates or ([unfenced] if unfenced else [])
    if not candidates:
        return Program("no_code", message="no Python code in the generator output")
    with_entry = [c for c in candidates if re.search(rf"^def {ENTRY_POINT}\b", c, re.M)]
    source = (with_entry or candidates)[0]
    if len(candidates) > 1:
        # helpers in one block, solve() in another; of several solve()s the last one wins
        joined = "\n\n".join(candidates)
        if _parses(joined) is not None and _defines_entry(_parse(joined)):
            source = joined
    try:
        tree = _parse(source)
    except SyntaxError as err:
        return Program("syntax_error", source=source,
                       message=f"{err.msg} (line {err.lineno})")
    entry = _defines_entry(tree)
    if entry is None:
        return Program("missing_entry", source=source, tree=tree,
                       message=f"no top-level def {ENTRY_POINT}(item, solver)")
    params = entry.args.posonlyargs + entry.args.args
    if len(params) < 2 and entry.args.vararg is None:
        return Program("missing_entry", source=source, tree=tree,
                       message=f"{ENTRY_POINT}() must take (item, solver), takes "
                               f"{len(params)} argument(s)")
    lines = source.splitlines()
    drop: set[int] = set()
    for node in tree.body:  # top-level driver code would run solve() a second time
        if not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef) and (
                _calls_entry(node) or _is_main_guard(node)):
            drop.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    code = "\n".join(line for i, line in enumerate(lines) if i not in drop) + "\n"
    return Program("ok", code=code, source=source, tree=_parse(code),
                   message=f"removed {len(drop)} driver line(s)" if drop else None)


def read_constants(tree: ast.Module | None, letters: Sequence[str]
                   ) -> tuple[str | None, str, str | None]:
    """(generator letter or None, its status, difficulty) from the program's constants.

    Status: ok, missing (no GENERATOR_ANSWER), placeholder (template text left in),
    invalid (a value that is not one of the item's letters).
    """
    values: dict[str, Any] = {}
    for node in (tree.body if tree else []):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        value = getattr(node, "value", None)
        if isinstance(value, ast.Constant):
            for target in targets:
                if isinstance(target, ast.Name):
                    values[target.id] = value.value
    difficulty = values.get("DIFFICULTY")
    difficulty = difficulty.strip().lower() if isinstance(difficulty, str) else None
    difficulty = difficulty if difficulty in DIFFICULTIES else None
    if "GENERATOR_ANSWER" not in values:
        return None, "missing", difficulty
    raw = values["GENERATOR_ANSWER"]
    if not isinstance(raw, str):
        return None, "invalid", difficulty
    if _PLACEHOLDER.search(raw):
        return None, "placeholder", difficulty
    letter = raw.strip().strip("()").upper()
    if letter in letters:
        return letter, "ok", difficulty
    return None, "invalid", difficulty


def _similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.lower(), b.lower(), autojunk=False).ratio()


def _closest_window(literal: str, text: str) -> tuple[float, bool]:
    """(best similarity of ``text`` to a same-length stretch of ``literal``, exact substring?)"""
    lowered, target = literal.lower(), text.lower()
    if target in lowered:
        return 1.0, True
    if len(literal) <= len(text) * 1.25:
        return _similar(literal, text), False
    starts = [0] + [i + 1 for i, ch in enumerate(lowered) if not ch.isalnum()]
    best = 0.0
    for start in starts[:400]:
        best = max(best, _similar(lowered[start:start + len(target)], target))
    return best, False


def _constant_names(entry: ast.FunctionDef, literals: set[str]) -> set[str]:
    """Names in solve() that are only ever assigned one of the literal answers."""
    assigned: dict[str, list[ast.expr]] = {}
    for node in ast.walk(entry):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign) and isinstance(node.target,
                                                                             ast.Name):
            assigned.setdefault(node.target.id, []).append(node.value or node.target)
    return {name for name, values in assigned.items()
            if all(isinstance(v, ast.Constant) and isinstance(v.value, str)
                   and v.value.strip() in literals for v in values)}


def audit_program(program: Program, *, question: str, choices: Sequence[str],
                  letters: Sequence[str]) -> dict[str, Any]:
    """Static audit flags; run-time evidence (solver calls made) is merged by the caller."""
    flags: dict[str, Any] = {"returns_literal": False, "returns_generator_answer": False,
                             "no_solver_call": False, "retyped_item": False,
                             "altered_item": False, "placeholders": [], "interface": "ok"}
    tree = program.tree
    if program.status != "ok" or tree is None:
        flags["interface"] = program.status
        return flags
    entry = _defines_entry(tree)
    literal_answers = {*letters, *(c.strip() for c in choices)}
    constant_names = _constant_names(entry, literal_answers) if entry else set()
    for node in ast.walk(entry) if entry else ():
        if isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and (
                    value.value.strip() in literal_answers):
                flags["returns_literal"] = True
            if isinstance(value, ast.Name) and value.id in constant_names:
                flags["returns_literal"] = True
            if isinstance(value, ast.Name) and value.id == "GENERATOR_ANSWER":
                flags["returns_generator_answer"] = True
    # any .ask/.choose/.judge call counts: the solver may be passed on or renamed
    flags["no_solver_call"] = not any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        and n.func.attr in SOLVER_METHODS for n in ast.walk(tree))
    texts = [t for t in (question, *choices) if len(t.strip()) >= 12]
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        literal = node.value.strip()
        if _TEMPLATE_TEXT.search(literal) and len(literal) < 80:
            flags["placeholders"].append(literal)
        if len(literal) < 12 or len(literal) > 4000:
            continue
        for text in texts:
            score, exact = _closest_window(literal, text.strip())
            if score >= 0.8:
                flags["retyped_item"] = True
                flags["altered_item"] = flags["altered_item"] or not exact
    flags[HARD_CODED] = hard_coded(flags)  # before the run: no solver calls known yet
    return flags
