"""``cgr enable-lm-eval``: the opt-in that lets plain ``lm_eval`` find ``--model cgr``."""

from __future__ import annotations

import argparse
from typing import Any

from ..tasks import lm_eval_hook
from .subcommand import add_subcommand

EXAMPLES = """\
    cgr enable-lm-eval
    lm_eval --model cgr --tasks 'cgr_*' --limit 2 --confirm_run_unsafe_code
    cgr disable-lm-eval   # undo
    """


def add_to(subparsers: Any) -> None:
    add_subcommand(subparsers, "enable-lm-eval",
                   help="let plain `lm_eval` find --model cgr and cgr_* tasks",
                   description="Write one .pth file into this environment's site-packages. "
                               "It loads nothing until a program imports lm-eval; then it "
                               "registers --model cgr and the packaged cgr_* tasks.",
                   examples=EXAMPLES, run=run)


def run(args: argparse.Namespace) -> int:
    path = lm_eval_hook.enable()
    print(f"installed {path}\nplain `lm_eval --model cgr --tasks 'cgr_*'` now works in this "
          "environment; undo with `cgr disable-lm-eval`")
    return 0
