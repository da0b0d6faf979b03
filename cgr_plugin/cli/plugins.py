"""``cgr plugins``: installed plugins, what each registered, and the broken ones."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .subcommand import add_subcommand

EXAMPLES = """\
    cgr plugins
    cgr plugins --json
    CGR_LOAD_PLUGINS=myscore cgr plugins   # only the entry point named myscore
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "plugins",
                            help="list loaded plugins, what each registered, and broken ones "
                                 "(exit status 1 when any is broken)",
                            examples=EXAMPLES, run=run)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from .. import plugins as plugin_manager

    found = plugin_manager.describe()
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        for name, kinds in found["plugins"].items():
            added = "; ".join(f"{kind}: {', '.join(sorted(names))}"
                              for kind, names in sorted(kinds.items())) or "nothing"
            print(f"{name}: {added}")
        for name, why in found["broken"].items():
            print(f"BROKEN {name}: {why}")
    return 1 if found["broken"] else 0
