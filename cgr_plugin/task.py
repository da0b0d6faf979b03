"""``CGRTask``: the task class of every CGR task, packaged or in a user's own folder.

It declares the plugin scorers' metrics (mean, with their direction), so they appear in
lm-eval's results like the built-in ones. It also brings the packaged CGR defaults into any
task folder:

lm-eval's ``include:`` only reaches files by path, so a YAML in the user's own folder cannot
include ``_cgr_base.yaml`` portably. Naming this class instead gives the same settings::

    task: cgr_mydata
    class: !function cgr_plugin.task.CGRTask
    dataset_kwargs:
      data_files: mydata.jsonl
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.metrics import mean
from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks._yaml_loader import load_yaml

from . import plugins
from ._paths import TASKS_DIR

__all__ = ["BASE_CONFIG", "CGRTask"]

BASE_CONFIG = TASKS_DIR / "_cgr_base.yaml"


class CGRTask(ConfigurableTask):
    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        own = {k: v for k, v in (config or {}).items() if k != "class"}
        base = load_yaml(BASE_CONFIG, resolve_func=True)
        base.pop("class", None)
        base.pop("tag", None)  # tags come from the user's own file, where lm-eval indexes them
        merged = {**base, **own}
        merged["metadata"] = {**(base.get("metadata") or {}), **(own.get("metadata") or {})}
        super().__init__(config=merged, **kwargs)
        for scorer in plugins.registry().scorers:
            self._aggregation_list.setdefault(scorer.name, mean)
            self._higher_is_better.setdefault(scorer.name, scorer.higher_is_better)
