"""``cgr sandbox-check``: the sandbox conformance suite against a registered backend."""

from __future__ import annotations

import argparse
from typing import Any

from ..sandbox import conformance
from .subcommand import add_subcommand


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(
        subparsers, "sandbox-check", examples=conformance.EXAMPLES, run=run,
        help="run the catalogue of hostile programs against a sandbox backend (exit status 1 "
             "when any attack got through)",
        description="Run the catalogue of hostile programs against a registered sandbox "
                    "backend (`cgr plugins` lists them); each must end with one of its allowed "
                    "statuses and leave nothing behind.")
    conformance.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return conformance.run_suite(args)
