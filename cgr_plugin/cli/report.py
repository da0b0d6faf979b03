"""``cgr report``: statistics, tables and plots over finished runs (report.md, .html, .json)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .subcommand import CGRError, add_subcommand

EXAMPLES = """\
    cgr report out_smol out_qwen --out report
    cgr report out --partitions partitions.yaml --gate 0.25   # docs/statistics.md
    cgr report out --resamples 2000 --seed 1                  # a quicker draft
    cgr report out_before out_after --compare                 # B - A per dataset and item
    cgr report out_smol out_qwen --compare --channel direct
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "report", help="statistics and plots over finished runs",
                            examples=EXAMPLES, run=run)
    parser.add_argument("runs", nargs="+",
                        help="lm-eval --output_path folders (with --log_samples)")
    parser.add_argument("--out", default="cgr_report", help="output folder (default: %(default)s)")
    parser.add_argument("--gate", type=float, default=0.30,
                        help="direct-accuracy threshold of the direct_gate partition")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=20240519, help="bootstrap seed")
    parser.add_argument("--partitions", help="YAML file of user-defined partitions")
    parser.add_argument("--compare", action="store_true",
                        help="two runs A B: pair items by (task, item id) and report B - A")
    parser.add_argument("--channel", default="assisted",
                        help="the channel --compare compares (default: %(default)s; also "
                             "direct, generator, budget_matched, cot, fixed:NAME)")
    parser.add_argument("--no-explorer", action="store_true",
                        help="leave the item explorer out of report.html (a smaller page)")


def run(args: argparse.Namespace) -> int:
    import yaml

    from ..analysis.control_runs import pair_separate_controls
    from ..analysis.explorer import explorer_data
    from ..analysis.paired_runs import compare_runs, name_runs
    from ..analysis.render import write_report
    from ..analysis.runs import item_outcome, iter_logged
    from ..analysis.summary import build_summary, load_partitions

    if args.resamples < 1:
        raise CGRError("--resamples must be at least 1")
    partitions = []
    if args.partitions:
        try:
            partitions = load_partitions(args.partitions)
        except (OSError, ValueError, yaml.YAMLError) as err:  # the file is the user's
            raise CGRError(f"partitions file {args.partitions}: {err}") from err
    comparison = None
    if args.compare:
        if len(args.runs) != 2:
            raise CGRError(f"--compare takes two run folders, A and B (got {len(args.runs)})")
        first, second = (list(iter_logged([run])) for run in args.runs)
        labels = (str(Path(args.runs[0])), str(Path(args.runs[1])))  # as outcomes name runs
        comparison = compare_runs(first, second, labels=labels, channel=args.channel,
                                  resamples=args.resamples, seed=args.seed)
        logged = [*first, *second]
        outcomes = name_runs([item_outcome(item) for item in first],
                             [item_outcome(item) for item in second])
    else:
        logged = list(iter_logged(args.runs))
        outcomes = pair_separate_controls([item_outcome(item) for item in logged])
    if not outcomes:
        raise CGRError("no items to report on")
    summary = build_summary(outcomes, runs=args.runs, partitions=partitions, gate=args.gate,
                            resamples=args.resamples, seed=args.seed)
    explorer = None if args.no_explorer else explorer_data(logged, outcomes, comparison)
    for kind, path in write_report(summary, Path(args.out), explorer, comparison).items():
        print(f"{kind:5} {path}")
    return 0
