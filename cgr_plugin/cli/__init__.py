"""The command line: ``cgr-eval`` (lm-eval with the plugin) and ``cgr`` (its subcommands).

``cgr_eval`` wraps lm-eval's own CLI; ``main`` assembles ``cgr`` from one module per
subcommand (``path``, ``report``, ...), each with runnable examples in its ``--help``.
"""

from __future__ import annotations

from .cgr_eval import cgr_eval_main
from .main import cgr_main

__all__ = ["cgr_eval_main", "cgr_main"]
