"""``cgr export``: a run's programs as a package that ``--model_args programs=`` replays."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .subcommand import add_subcommand

EXAMPLES = """\
    cgr export out_qwen --out programs_qwen
    cgr-eval --model cgr --model_args programs=programs_qwen --tasks cgr_arc_easy \\
             --confirm_run_unsafe_code   # replays them, no generator
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "export",
                            help="write a run's programs as a replayable package",
                            examples=EXAMPLES, run=run)
    parser.add_argument("runs", nargs="+",
                        help="lm-eval --output_path folders (with --log_samples)")
    parser.add_argument("--out", required=True, help="package folder to write")


def run(args: argparse.Namespace) -> int:
    from ..analysis.export import export_package

    manifest = export_package([Path(r) for r in args.runs], Path(args.out))
    print(f"wrote {manifest['programs']} programs ({', '.join(manifest['tasks'])}) to {args.out}")
    return 0
