"""``CGRTask``: a task class that brings the packaged CGR defaults into any task folder.

lm-eval's ``include:`` only reaches files by path, so a YAML in the user's own folder cannot
include ``_cgr_base.yaml`` portably. Naming this class instead gives the same settings::

    task: cgr_mydata
    class: !function cgr_plugin.task.CGRTask
    dataset_kwargs:
      data_files: mydata.jsonl
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks._yaml_loader import load_yaml

from ._paths import TASKS_DIR

__all__ = ["BASE_CONFIG", "CGRTask"]

BASE_CONFIG = TASKS_DIR / "_cgr_base.yaml"


class CGRTask(ConfigurableTask):
    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        own = {k: v for k, v in (config or {}).items() if k != "class"}
        base = load_yaml(BASE_CONFIG, resolve_func=True)
        base.pop("tag", None)  # tags come from the user's own file, where lm-eval indexes them
        merged = {**base, **own}
        merged["metadata"] = {**(base.get("metadata") or {}), **(own.get("metadata") or {})}
        super().__init__(config=merged, **kwargs)
