"""``cgr compare``: paired difference of two lm-eval runs from their samples files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .subcommand import CGRError, add_subcommand

EXAMPLES = """\
    cgr compare base/samples_arc_easy_A.jsonl new/samples_arc_easy_B.jsonl
    cgr compare a.jsonl b.jsonl --metric exact_match --out diff.json
    cgr compare cgr_a.jsonl cgr_b.jsonl --filter assisted   # one cgr channel
    """


def add_to(subparsers: Any) -> None:
    parser = add_subcommand(
        subparsers, "compare", help="paired difference of two lm-eval samples files",
        examples=EXAMPLES, run=run,
        description="B - A on the documents both runs scored (any lm-eval task and model, run "
                    "with --log_samples): accuracies, the difference with a paired bootstrap "
                    "interval, exact McNemar p, and the documents each run alone got right. "
                    "See docs/statistics.md.")
    parser.add_argument("samples_a", help="samples_*.jsonl of run A (the baseline)")
    parser.add_argument("samples_b", help="samples_*.jsonl of run B")
    parser.add_argument("--metric", help="a 0/1 per-document metric (default: the first of "
                                         "acc, exact_match, acc_norm, pass@1 both files score)")
    parser.add_argument("--filter", dest="filter_name",
                        help="compare only this filter pipeline (default: every one in both)")
    parser.add_argument("--allow-hash-mismatch", action="store_true",
                        help="pair by doc_id even where the files' doc_hash differ")
    parser.add_argument("--out", help="also write the result as JSON here")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=20240519, help="bootstrap seed")


def run(args: argparse.Namespace) -> int:
    from ..analysis.compare import compare_samples, describe

    if args.resamples < 1:
        raise CGRError("--resamples must be at least 1")
    result = compare_samples(args.samples_a, args.samples_b, metric=args.metric,
                             filter_name=args.filter_name,
                             allow_hash_mismatch=args.allow_hash_mismatch,
                             resamples=args.resamples, seed=args.seed)
    print("\n".join(describe(result)))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n",
                                  encoding="utf-8")
        print(f"\njson  {args.out}")
    return 0
