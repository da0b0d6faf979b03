"""Stage 2, tasks: CGR tasks as lm-eval sees them (CGRTask, task YAML, scoring, the hook).

``CGRTask`` is importable from here (``!function cgr_plugin.tasks.CGRTask``) without importing
lm-eval until it is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CGRTask", "load_mcqa_dataset"]


def __getattr__(name: str) -> Any:
    if name == "CGRTask":
        from .task import CGRTask

        return CGRTask
    if name == "load_mcqa_dataset":
        from .dataset import load_mcqa_dataset

        return load_mcqa_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
