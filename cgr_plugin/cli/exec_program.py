"""``cgr exec``: run one program against one item in the sandbox; print its record."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .subcommand import CGRError, add_subcommand, read_input

EXAMPLES = """\
    cgr exec program.py --item item.json --solver smollm2-135m
    cgr exec generator_output.md --item record_line.json --budget 4 --timeout 60
    cgr exec program.py --item item.json --solver canned   # no model: where does it answer from?
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "exec",
                            help="run one program in the sandbox against one item",
                            description="Run one program in the sandbox against one item and "
                                        "print the record as one JSON line (the assisted and "
                                        "generator channels, the program's provenance class "
                                        "with its evidence); the class and its reason also go "
                                        "to stderr.",
                            examples=EXAMPLES, run=run)
    parser.add_argument("program", help="a Python file (or generator output with a code block)")
    parser.add_argument("--item", required=True, help="item JSON, as in a record's 'item' field "
                        "(a whole record line works too)")
    parser.add_argument("--solver", default="smollm2-135m", help="registry or lm-eval model, or "
                        "'canned' (seeded random replies, no model: the provenance audit's "
                        "canned solver)")
    parser.add_argument("--budget", type=int, default=8, help="solver calls allowed")
    parser.add_argument("--timeout", type=float, default=20.0, help="program seconds")
    parser.add_argument("--provenance-seeds", type=int, default=3, metavar="N",
                        help="canned-solver seeds of the provenance re-runs (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (solver.pick "
                        "tie-breaks, the re-runs' canned solvers and permutations)")


def run(args: argparse.Namespace) -> int:
    from ..data.items import MCQAItem
    from ..models.backends import make_backend
    from ..models.registry import DirectSettings, load_registry
    from ..programs.canned import CannedBackend
    from ..prompts import render
    from ..record import CGRRecord
    from ..run.assisted import AssistedSettings, run_item_program
    from ..sandbox.runner import SandboxLimits

    try:
        data = json.loads(read_input(args.item, "item file"))
    except json.JSONDecodeError as err:
        raise CGRError(f"{args.item}: not JSON ({err})") from None
    if isinstance(data, dict) and "schema" in data and "item" in data:
        data = data["item"]  # a whole record line: take its item
    item = MCQAItem.from_json(data)
    if args.provenance_seeds < 0:
        raise CGRError("--provenance-seeds must be 0 or more")
    text = read_input(args.program, "program")
    if args.solver == "canned":
        solver, spec = CannedBackend(item.letters, item.choices, args.seed), None
    else:
        solver, spec = make_backend(args.solver, {}, registry=load_registry())
    direct = spec.direct if spec else DirectSettings()  # the same defaults as the cgr model
    settings = AssistedSettings(budget=args.budget, seed=args.seed,
                                provenance_seeds=args.provenance_seeds,
                                limits=SandboxLimits.for_timeout(args.timeout))
    assisted, generator = run_item_program(
        text, item, solver=solver, settings=settings,
        direct_prompt=lambda it: render("direct.j2", item=it, style=direct.style),
        direct_max_tokens=direct.max_tokens)
    record = CGRRecord(item=item.to_json(), solver=solver.name, generator=str(args.program),
                       assisted=assisted, generator_side=generator)
    if assisted.provenance:
        print(f"provenance: {assisted.provenance['class']} ({assisted.provenance['reason']})",
              file=sys.stderr)
    print(record.to_json())
    return 0
