"""Code-Guided Reasoning (CGR) for small language models, as an lm-evaluation-harness plugin.

``import cgr_plugin`` stays light: it loads no other module of the package until a name below
is used, and lm-eval, torch and llama.cpp load only when a run needs them. The pipeline's
stages are subpackages, in the order an item flows: ``data`` → ``tasks`` → ``run`` (with
``models``, ``programs``, ``sandbox``) → ``analysis``; see docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _compat
from ._version import __version__

if TYPE_CHECKING:
    from ._paths import TASKS_DIR, TEMPLATES_DIR
    from .data.items import ItemError, MCQAItem
    from .hookspecs import hookimpl

__all__ = ["TASKS_DIR", "TEMPLATES_DIR", "ItemError", "MCQAItem", "__version__", "hookimpl",
           "register"]

_compat.install()
_LAZY = {"TASKS_DIR": "._paths", "TEMPLATES_DIR": "._paths", "ItemError": ".data.items",
         "MCQAItem": ".data.items", "hookimpl": ".hookspecs"}
_registered = False


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    """Make ``--model cgr`` and the ``cgr_*`` tasks known to lm-eval in this process.

    The packaged tasks join every TaskManager that indexes lm-eval's own built-in tasks; one
    built with ``include_defaults=False`` lists only its include paths (name ``TASKS_DIR``
    there). Built-in models, metrics and filters are imported first: lm-eval only loads its own
    table while a registry is empty, so registering into an empty one would hide ``hf`` and
    friends.
    """
    global _registered
    if _registered:
        return
    import lm_eval.api.metrics  # noqa: F401
    import lm_eval.filters  # noqa: F401
    import lm_eval.models  # noqa: F401
    import lm_eval.tasks
    from lm_eval.api.registry import model_registry

    from .tasks import lm_eval_hook

    lm_eval_hook.register_model(model_registry)
    lm_eval_hook.patch_task_manager(lm_eval.tasks.TaskManager)
    _registered = True
