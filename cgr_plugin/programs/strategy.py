"""What strategy a program follows, read from its code: strategy tags for the report.

Tags say which helpers a program calls (and at how many places), and whether it loops over the
options, does arithmetic or comparisons on item data, reads ``item.payload`` or
``item.context``, and uses a solver reply in a condition or in a score. They are static: they
describe the program's text, not what ran (the trace and the provenance class say that).

Data flow is followed through assignments, loop targets and comprehensions by name (the whole
program as one scope): a name assigned from an expression that mentions item data carries item
data, one assigned from a solver call carries a reply.
"""

from __future__ import annotations

import ast
from typing import Any

from ..record import STRATEGY_TAGS
from ..sandbox.entry import parse_python

__all__ = ["HELPERS", "STRATEGY_TAGS", "strategy"]

HELPERS = ("ask", "choose", "judge", "pick")
REPLY_HELPERS = {"ask", "choose", "judge"}
_OPTION_FIELDS = {"letters", "choices", "options"}
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


class _Flow:
    """Which names carry item data, which carry solver replies, in a program."""

    def __init__(self, tree: ast.AST, item: str, solver: str) -> None:
        self.item, self.solver = item, solver
        self.item_names: set[str] = {item}
        self.reply_names: set[str] = set()
        for _ in range(3):  # names assigned from names: a few passes reach a fixed point
            for node in ast.walk(tree):
                for targets, value in _bindings(node):
                    names = {n.id for t in targets for n in ast.walk(t)
                             if isinstance(n, ast.Name)}
                    if self.has_item(value):
                        self.item_names |= names
                    if self.has_reply(value):
                        self.reply_names |= names

    def has_item(self, node: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and n.id in self.item_names for n in ast.walk(node))

    def has_reply(self, node: ast.AST) -> bool:
        return any((isinstance(n, ast.Name) and n.id in self.reply_names)
                   or _helper(n, self.solver) in REPLY_HELPERS for n in ast.walk(node))


def _bindings(node: ast.AST) -> list[tuple[list[ast.AST], ast.AST]]:
    """(targets, value) pairs a node binds: assignments, loops, comprehensions, and the
    containers a subscript store fills (``scores[x] = ...`` binds ``scores``)."""
    if isinstance(node, ast.Assign):
        targets = [t.value if isinstance(t, ast.Subscript) else t for t in node.targets]
        return [(targets, node.value)]
    if isinstance(node, ast.AugAssign | ast.AnnAssign) and node.value is not None:
        target = node.target.value if isinstance(node.target, ast.Subscript) else node.target
        return [([target], node.value)]
    if isinstance(node, ast.For | ast.comprehension):
        return [([node.target], node.iter)]
    if isinstance(node, ast.NamedExpr):
        return [([node.target], node.value)]
    return []  # a comprehension's value flows to the assignment that holds it


def _helper(node: ast.AST, solver: str) -> str | None:
    """``judge`` for ``solver.judge(...)``, and so on; None for any other node."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == solver
            and node.func.attr in HELPERS):
        return node.func.attr
    return None


def _entry(tree: ast.Module) -> tuple[str, str]:
    """The names ``solve`` gives its item and solver (``item``, ``solver`` by default)."""
    for node in reversed(tree.body):
        if isinstance(node, ast.FunctionDef) and node.name == "solve":
            args = [a.arg for a in node.args.args]
            return (args[0] if args else "item", args[1] if len(args) > 1 else "solver")
    return "item", "solver"


def _loops_over_options(node: ast.AST, item: str) -> bool:
    if not isinstance(node, ast.For | ast.comprehension):
        return False
    return any(isinstance(n, ast.Attribute) and n.attr in _OPTION_FIELDS
               and isinstance(n.value, ast.Name) and n.value.id == item
               for n in ast.walk(node.iter))


def strategy(source: str | None) -> dict[str, Any] | None:
    """``{"calls": {helper: call sites}, "tags": [tag, ...]}`` for a program; None if it does
    not parse."""
    try:
        tree = parse_python(source or "")
    except (SyntaxError, ValueError):
        return None
    item, solver = _entry(tree)
    flow = _Flow(tree, item, solver)
    calls = {name: 0 for name in HELPERS}
    tags: set[str] = set()
    for node in ast.walk(tree):
        helper = _helper(node, solver)
        if helper:
            calls[helper] += 1
            if helper == "pick" and any(flow.has_reply(a) for a in node.args):
                tags.add("reply_in_score")
        if _loops_over_options(node, item):
            tags.add("loops_over_options")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == item and node.attr in ("payload", "context"):
            tags.add(f"reads_{node.attr}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC) \
                and not (isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant)
                         and isinstance(node.left.value, str)) \
                and (flow.has_item(node.left) or flow.has_item(node.right)):
            tags.add("arithmetic_on_item")
        if isinstance(node, ast.Compare) and flow.has_item(node):
            tags.add("compares_item_data")
        if isinstance(node, ast.If | ast.While | ast.IfExp | ast.Assert) \
                and flow.has_reply(node.test):
            tags.add("reply_in_condition")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("max", "min", "sorted") \
                and any(flow.has_reply(a) for a in [*node.args, *(k.value for k in node.keywords)]):
            tags.add("reply_in_score")
    return {"calls": {k: v for k, v in calls.items() if v},
            "tags": [tag for tag in STRATEGY_TAGS if tag in tags]}
