"""``cgr models``: the solver and generator models of the registry (models.yaml)."""

from __future__ import annotations

import argparse
from typing import Any

from .subcommand import add_subcommand

EXAMPLES = """\
    cgr models              # name, family, size, backend, offline?, direct prompt, license
    cgr models --offline    # only the models this machine has (no hub needed)
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "models", help="list registered models",
                            examples=EXAMPLES, run=run)
    parser.add_argument("--offline", action="store_true",
                        help="list only the models whose files are on this machine")


def run(args: argparse.Namespace) -> int:
    from ..models.registry import load_registry, offline_status

    print(f"{'name':20} {'family':14} {'size':6} {'backend':9} {'offline':7} "
          f"{'direct':14} license")
    notes = []
    for name, spec in load_registry().items():
        here, how = offline_status(spec)
        if args.offline and not here:
            continue
        notes.append(f"  {name}: {how}")
        print(f"{name:20} {spec.family:14} {spec.parameters:6} {spec.backend:9} "
              f"{'yes' if here else 'no':7} "
              f"{spec.direct.style + '/' + str(spec.direct.max_tokens):14} {spec.license}")
    print("offline: whether the model's files are on this machine")
    print("\n".join(notes))
    return 0
