"""``cgr``: the plugin's own chores, one module per subcommand (listed in SUBCOMMANDS).

A ``CGRError`` (bad input, named in its message) prints as one line and exits with status 2;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from ..errors import CGRError
from . import (
    bundle,
    compare,
    disable_lm_eval,
    enable_lm_eval,
    exec_program,
    export,
    fetch_model,
    models,
    path,
    plugins,
    report,
    sandbox_check,
    study,
    validate_dataset,
)

__all__ = ["SUBCOMMANDS", "build_parser", "cgr_main"]

# In `cgr --help` order. A new subcommand is one module with add_to(subparsers) and run(args).
SUBCOMMANDS = (bundle, models, fetch_model, exec_program, report, compare, export, study,
               enable_lm_eval, disable_lm_eval, plugins, sandbox_check, path, validate_dataset)

EPILOG = """\
    examples:
      cgr path                         # task folder, for lm_eval --include_path
      cgr validate-dataset my_tasks/my_mcqa.yaml   # every problem of a dataset YAML
      cgr models                       # registered solver/generator models
      cgr fetch-model qwen2.5-coder-1.5b
      cgr bundle --source ../shared/data --check
      cgr exec program.py --item item.json --solver smollm2-135m
      cgr report out_smol out_qwen --out report
      cgr compare run_a/samples_arc_easy_*.jsonl run_b/samples_arc_easy_*.jsonl
      cgr export out_qwen --out programs_qwen   # then --model_args programs=...
      cgr study smoke --dry-run        # a whole grid from studies/smoke.yaml: plan and cost
      cgr plugins                      # installed plugins and what they add
      cgr enable-lm-eval               # then: lm_eval --model cgr --tasks 'cgr_*'
    """


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cgr", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="cgr-plugin utilities (run evaluations with cgr-eval)",
        epilog=textwrap.dedent(EPILOG))
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_to(subparsers)
    return parser


def cgr_main(argv: Sequence[str] | None = None) -> None:
    """``cgr``: bundle rebuilds, model files, reports, and the lm-eval opt-in."""
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except CGRError as err:
        print(f"cgr {args.command}: error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status)
