"""The command line: ``cgr-eval`` (lm-eval with the plugin) and ``cgr`` (its subcommands)."""

from __future__ import annotations

from .main import cgr_eval_main, cgr_main

__all__ = ["cgr_eval_main", "cgr_main"]
