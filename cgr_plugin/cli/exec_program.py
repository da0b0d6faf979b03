"""``cgr exec``: run one program against one item in the sandbox; print its record."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .subcommand import CGRError, add_subcommand, read_input

EXAMPLES = """\
    cgr exec program.py --item item.json --solver smollm2-135m
    cgr exec generator_output.md --item record_line.json --budget 4 --timeout 60
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "exec",
                            help="run one program in the sandbox against one item",
                            description="Run one program in the sandbox against one item and "
                                        "print the record as one JSON line (the assisted and "
                                        "generator channels).",
                            examples=EXAMPLES, run=run)
    parser.add_argument("program", help="a Python file (or generator output with a code block)")
    parser.add_argument("--item", required=True, help="item JSON, as in a record's 'item' field "
                        "(a whole record line works too)")
    parser.add_argument("--solver", default="smollm2-135m", help="registry or lm-eval model")
    parser.add_argument("--budget", type=int, default=8, help="solver calls allowed")
    parser.add_argument("--timeout", type=float, default=20.0, help="program seconds")


def run(args: argparse.Namespace) -> int:
    from ..data.items import MCQAItem
    from ..models.backends import make_backend
    from ..models.registry import DirectSettings, load_registry
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
    text = read_input(args.program, "program")
    solver, spec = make_backend(args.solver, {}, registry=load_registry())
    direct = spec.direct if spec else DirectSettings()  # the same defaults as the cgr model
    settings = AssistedSettings(budget=args.budget,
                                limits=SandboxLimits.for_timeout(args.timeout))
    assisted, generator = run_item_program(
        text, item, solver=solver, settings=settings,
        direct_prompt=lambda it: render("direct.j2", item=it, style=direct.style),
        direct_max_tokens=direct.max_tokens)
    record = CGRRecord(item=item.to_json(), solver=solver.name, generator=str(args.program),
                       assisted=assisted, generator_side=generator)
    print(record.to_json())
    return 0
