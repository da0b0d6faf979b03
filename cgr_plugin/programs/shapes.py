"""A program's shape: its code with names and literals abstracted away, so that two programs
that differ only in variable names, prompt wording or retyped question text compare equal.

The assisted channel measures item-specific programs only if programs differ from each other
and from what the generator prompt shows. ``shape`` gives each program a comparable form and a
short id (``shape_id``); ``prompt_examples`` finds the programs a prompt shows (its ```python
blocks); ``copies_prompt`` says whether a program has the shape of one of them. A run's
diversity is distinct shapes / programs (lm-eval metric ``program_diversity``).

What is abstracted: every local name (renamed in order of first use), every constant and every
f-string (prompt text is wording, not strategy), docstrings, and the module-level constants
GENERATOR_ANSWER and DIFFICULTY. What is kept: the control flow, the calls and the attributes
read (``item.options``, ``solver.judge``), operators and comprehension structure.
"""

from __future__ import annotations

import ast
import hashlib
import re
from functools import lru_cache

from ..sandbox.entry import parse_python

__all__ = ["copies_prompt", "prompt_examples", "shape", "shape_id"]

_FENCE = re.compile(r"^```[ \t]*python[ \t]*\n(.*?)^```", re.S | re.M)
_CONSTANTS = {"GENERATOR_ANSWER", "DIFFICULTY"}
_KEPT_NAMES = {"item", "solver", "len", "range", "enumerate", "zip", "max", "min", "sum",
               "sorted", "int", "float", "str", "abs", "round", "dict", "list", "set", "any",
               "all", "print", "None", "True", "False", "isinstance", "map", "filter"}


class _Abstract(ast.NodeTransformer):
    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        if name in _KEPT_NAMES:
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(id=self._name(node.id), ctx=node.ctx), node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return ast.copy_location(ast.arg(arg=self._name(node.arg)), node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if node.name != "solve":
            node.name = self._name(node.name)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:] or [ast.Pass()]  # a docstring is wording
        node.body = body
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return ast.copy_location(ast.Constant(value="_"), node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return ast.copy_location(ast.Constant(value="_"), node)


def _kept(tree: ast.Module) -> ast.Module:
    body = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if isinstance(node, ast.Assign) and all(
                isinstance(t, ast.Name) and t.id in _CONSTANTS for t in node.targets):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue  # imports are what a body uses; the body says it
        body.append(node)
    return ast.Module(body=body, type_ignores=[])


@lru_cache(maxsize=1024)  # the prompt's example is shaped again for every item of a run
def shape(source: str | None) -> str | None:
    """The program's code with names and literals abstracted; None if it does not parse."""
    if not source:
        return None
    try:
        tree = parse_python(source)
    except (SyntaxError, ValueError):
        return None
    return ast.dump(_Abstract().visit(_kept(tree)), annotate_fields=False)


def shape_id(source: str | None) -> str | None:
    """A short id of the program's shape (12 hex digits); equal ids, equal shapes."""
    found = shape(source)
    return None if found is None else hashlib.sha256(found.encode()).hexdigest()[:12]


def prompt_examples(prompt: str) -> list[str]:
    """The programs a prompt shows: its ```python blocks that parse and define ``solve``."""
    return [block for block in _FENCE.findall(prompt or "")
            if shape(block) is not None and re.search(r"^def solve\b", block, re.M)]


def copies_prompt(source: str | None, prompt: str) -> bool:
    """Whether the program has the shape of a program the prompt shows."""
    mine = shape(source)
    return mine is not None and any(shape(example) == mine for example in prompt_examples(prompt))
