"""``cgr bundle``: rebuild the prepared MCQA data shipped in task_configs/_data."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .._paths import TASKS_DIR
from .subcommand import CGRError, add_subcommand

EXAMPLES = """\
    cgr bundle --source ../shared/data --check   # every shipped byte is reproducible
    cgr bundle --source ../shared/data sciq mmlu # rebuild two datasets in place
    cgr bundle --hub --out /tmp/bundle           # from the Hugging Face hub
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "bundle",
                            help="rebuild the prepared MCQA bundle from source files",
                            examples=EXAMPLES, run=run)
    parser.add_argument("--source", default=os.environ.get("CGR_DATA_SOURCE", "../shared/data"),
                        help="folder with the original dataset files (default: %(default)s)")
    parser.add_argument("--hub", action="store_true", help="read rows from the Hugging Face hub")
    parser.add_argument("--out", default=str(TASKS_DIR / "_data"), help="output folder")
    parser.add_argument("--check", action="store_true", help="rebuild in memory and fail unless "
                        "every byte matches the shipped files")
    parser.add_argument("datasets", nargs="*", help="datasets to rebuild (default: all)")


def run(args: argparse.Namespace) -> int:
    from ..data.bundle import build_bundle

    source = None if args.hub else Path(args.source).expanduser()
    if source is not None and not source.is_dir():
        print(f"cgr bundle: source folder {source} does not exist (pass --source DIR with the "
              "original files, or --hub)", file=sys.stderr)
        return 2
    try:
        manifest = build_bundle(Path(args.out), source_root=source,
                                names=args.datasets or None, from_hub=args.hub, check=args.check)
    except (KeyError, ValueError, FileNotFoundError) as err:
        # data/bundle.py says an unknown dataset, missing source files and a --check mismatch
        # with these built-in types (its ItemErrors are CGRErrors already).
        if isinstance(err, CGRError):
            raise
        raise CGRError(err.args[0] if isinstance(err, KeyError) else str(err)) from err
    for name, entry in sorted(manifest.items()):
        if not args.datasets or name in args.datasets:
            dropped = (entry.get("dropped") or {}).get("count", 0)
            left_out = f" ({dropped} left out: not valid MCQA)" if dropped else ""
            print(f"{name:30} {entry['items']:6} items  sha256 {entry['sha256'][:16]}  "
                  f"{entry['license']}{left_out}")
    print("bundle matches the shipped files" if args.check else f"wrote {args.out}")
    return 0
