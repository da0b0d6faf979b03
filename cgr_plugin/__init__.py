"""Code-Guided Reasoning (CGR) for small language models, as an lm-evaluation-harness plugin.

``import cgr_plugin`` stays light: lm-eval, torch and llama.cpp load only when used.
"""

from __future__ import annotations

from ._paths import TASKS_DIR, TEMPLATES_DIR
from .hookspecs import hookimpl
from .items import ItemError, MCQAItem

__version__ = "0.1.0"
__all__ = ["TASKS_DIR", "TEMPLATES_DIR", "ItemError", "MCQAItem", "__version__", "hookimpl",
           "register"]

_registered = False


def register() -> None:
    """Make ``--model cgr`` and the ``cgr_*`` tasks known to lm-eval in this process.

    Built-in models, metrics and filters are imported first: lm-eval only loads its own table
    while a registry is empty, so registering into an empty one would hide ``hf`` and friends.
    """
    global _registered
    if _registered:
        return
    import lm_eval.api.metrics  # noqa: F401
    import lm_eval.filters  # noqa: F401
    import lm_eval.models  # noqa: F401
    import lm_eval.tasks
    from lm_eval.api.registry import model_registry

    from . import _lm_eval_hook

    _lm_eval_hook.register_model(model_registry)
    _lm_eval_hook.patch_task_manager(lm_eval.tasks.TaskManager)
    _registered = True
