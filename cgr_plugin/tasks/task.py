"""``CGRTask``: the task class of every CGR task, packaged or in a user's own folder.

It declares the plugin scorers' metrics (mean, with their direction), so they appear in
lm-eval's results like the built-in ones. It also brings the packaged CGR defaults into any
task folder:

lm-eval's ``include:`` only reaches files by path, so a YAML in the user's own folder cannot
include ``_cgr_base.yaml`` portably. Naming this class instead gives the same settings::

    task: cgr_mydata
    class: !function cgr_plugin.tasks.CGRTask
    dataset_kwargs:
      data_files: mydata.jsonl

Few-shot: lm-eval draws ``num_fewshot`` examples per item (from ``fewshot_split``) into the
prompt text, which the ``cgr`` model never reads. This class hands the drawn examples to the
model with the document (``examples_json``), so they appear, solved, in the direct prompt.
"""

from __future__ import annotations

import json
from typing import Any

from lm_eval.api.metrics import mean
from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks._yaml_loader import load_yaml

from .. import plugins
from ..data.items import MCQAItem
from ..data.loader import TaskConfigError
from ..record import control_names
from .scoring import filter_list, metric_list
from .task_file import BASE_CONFIG, unknown_top_level_keys

__all__ = ["BASE_CONFIG", "CGRTask"]


class CGRTask(ConfigurableTask):
    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        own = {k: v for k, v in (config or {}).items() if k != "class"}
        source = (own.get("metadata") or {}).get("config_source")
        for key, message in unknown_top_level_keys(own)[:1]:  # TaskConfig would only say TypeError
            raise TaskConfigError(message, source=source, field=key)
        base = load_yaml(BASE_CONFIG, resolve_func=True)
        base.pop("class", None)
        base.pop("tag", None)  # tags come from the user's own file, where lm-eval indexes them
        merged = {**base, **own}
        merged["metadata"] = {**(base.get("metadata") or {}), **(own.get("metadata") or {})}
        # Defined once, from record.py's channels, statuses and audit flags (a task may override).
        # lm-eval hands a task the run's model_args as metadata: controls= adds their columns
        controls = control_names(str((merged["metadata"] or {}).get("controls") or ""))
        merged.setdefault("filter_list", filter_list(controls))
        merged.setdefault("metric_list", metric_list())
        self._drawn: tuple[int, list[dict[str, Any]]] | None = None
        super().__init__(config=merged, **kwargs)
        for scorer in plugins.registry().scorers:
            self._aggregation_list.setdefault(scorer.name, mean)
            self._higher_is_better.setdefault(scorer.name, scorer.higher_is_better)

    # -- few-shot ------------------------------------------------------------------------------
    def _check_fewshot(self, num_fewshot: int) -> None:
        cfg = self.config
        source = (cfg.metadata or {}).get("config_source")
        split = cfg.fewshot_split or cfg.training_split or cfg.validation_split
        if split is None or getattr(self, "sampler", None) is None:
            raise TaskConfigError(
                f"num_fewshot {num_fewshot} needs fewshot_split, the split whose solved items "
                "are shown before each question (e.g. data_files: {test: q.jsonl, train: "
                "shots.jsonl} and fewshot_split: train)", source=source, field="fewshot_split")
        pool = len(self.sampler.fewshot_docs()) - (1 if split == cfg.test_split else 0)
        if pool < num_fewshot:
            raise TaskConfigError(f"num_fewshot {num_fewshot} but split {split!r} has only "
                                  f"{max(pool, 0)} example{'s' if pool != 1 else ''} to show",
                                  source=source, field="fewshot_split")

    def fewshot_context(self, doc: dict, num_fewshot: int, **kwargs: Any) -> Any:
        self._drawn = None
        if not num_fewshot:
            return super().fewshot_context(doc, num_fewshot=num_fewshot, **kwargs)
        self._check_fewshot(num_fewshot)
        drawn: list[dict[str, Any]] = []
        sample = self.sampler.sample

        def recording_sample(*args: Any, **kw: Any) -> Any:
            shots = sample(*args, **kw)
            drawn.extend(shots)
            return shots

        self.sampler.sample = recording_sample  # type: ignore[method-assign]
        try:
            context = super().fewshot_context(doc, num_fewshot=num_fewshot, **kwargs)
        finally:
            del self.sampler.sample  # back to the class's method
        self._drawn = (id(doc), drawn)
        return context

    def construct_requests(self, doc: dict, ctx: Any, **kwargs: Any) -> Any:
        drawn, self._drawn = self._drawn, None
        if drawn is not None and drawn[0] == id(doc) and drawn[1]:
            examples = [MCQAItem.from_doc(shot).to_json() for shot in drawn[1]]
            doc = {**doc, "examples_json": json.dumps(examples, ensure_ascii=False)}
        return super().construct_requests(doc, ctx, **kwargs)
