"""``cgr study``: a whole grid (tasks x solvers x generators x families x controls) from one
YAML file: cells run as cgr-eval children, resumable, ending in one report (docs/studies.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._paths import STUDIES_DIR
from .subcommand import CGRError, add_subcommand

EXAMPLES = """\
    cgr study smoke --dry-run                     # the plan: cells, commands, calls, time
    cgr study studies/smoke.yaml --out study_out  # run it; the same command again resumes
    cgr study cpu_default --dry-run --no-measure  # cached model speeds only, no model loads
    cgr study my_study.yaml --out my_study        # your own grid (docs/studies.md)
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(
        subparsers, "study", help="run a whole study grid from a YAML file (resumable)",
        examples=EXAMPLES, run=run,
        description="Run every cell of a study (programs written once per generator and "
                    "family, replayed for every other solver; controls once per solver), "
                    "skip the cells that finished before, and write one report.")
    parser.add_argument("study", help="a study YAML file, or the name of a shipped one "
                                      f"({', '.join(shipped_studies())})")
    parser.add_argument("--out", help="output folder (default: study_NAME)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and its estimated cost; run nothing")
    parser.add_argument("--no-measure", action="store_true",
                        help="with --dry-run: estimate from cached model speeds only (no "
                             "model is loaded to time it)")


def shipped_studies() -> list[str]:
    return sorted(path.stem for path in STUDIES_DIR.glob("*.yaml"))


def study_file(name: str) -> Path:
    """A path as given, else a shipped study by name (``smoke`` or ``smoke.yaml``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    shipped = STUDIES_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if shipped.is_file() and path.parent == Path("."):
        return shipped
    raise CGRError(f"no study file {name!r}: not a file, and not a shipped study "
                   f"({', '.join(shipped_studies())})")


def run(args: argparse.Namespace) -> int:
    from ..run.study import format_plan, load_study, make_plan, run_study

    spec = load_study(study_file(args.study))
    out = Path(args.out or f"study_{spec.name}")
    if args.dry_run:
        plan = make_plan(spec, measure=not args.no_measure,
                         say=lambda line: print(f"cgr study: {line}", file=sys.stderr))
        print(format_plan(plan, out))
        return 0
    if args.no_measure:
        raise CGRError("--no-measure goes with --dry-run (a run measures nothing)")
    return run_study(spec, out)
