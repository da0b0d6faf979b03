"""``cgr models``: the solver and generator models of the registry (models.yaml)."""

from __future__ import annotations

import argparse
from typing import Any

from .subcommand import add_subcommand

EXAMPLES = """\
    cgr models   # name, family, size, format, direct prompt style/tokens, license
    """


def add_to(subparsers: Any) -> None:
    add_subcommand(subparsers, "models", help="list registered models", examples=EXAMPLES,
                   run=run)


def run(args: argparse.Namespace) -> int:
    from ..models.registry import load_registry

    for name, spec in load_registry().items():
        print(f"{name:20} {spec.family:14} {spec.parameters:6} {spec.format:5} "
              f"direct={spec.direct.style}/{spec.direct.max_tokens}  {spec.license}")
    return 0
