"""The ``cgr`` lm-eval model: answers every request with a three-channel record.

lm-eval hands over all ``generate_until`` requests at once, so each channel is computed as one
batch across items: every direct prompt goes to the solver in a single call to its backend.
Records stay :class:`CGRRecord` objects inside the run and become JSON once, where lm-eval, its
cache hook and the journal take them. The model_args are declared in ``settings.RunSettings``
(README's table is generated from it); ``direct``, ``assisted`` and ``control`` compute the
channels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM

from .. import plugins
from .._paths import user_template_dirs
from ..data.items import ItemError, MCQAItem
from ..models.backends import Backend, RetryingBackend, make_backend
from ..models.cache import CachedBackend, ResponseCache
from ..models.registry import DirectSettings, ModelSpec, load_registry
from ..programs.library import fixed_source
from ..programs.packages import ProgramPackage, load_package
from ..prompts import generator_families, generator_template, template_hash
from ..record import PROGRAM_CONTROL, CGRRecord, ChannelResult
from .assisted import run_assisted, run_fixed_program
from .control import run_budget_matched
from .direct import direct_prompt, direct_settings, recorded_direct_answers, run_direct
from .journal import Journal, identity_hash
from .progress import StageBars
from .settings import CHANNEL_SETS, DEFAULT_GENERATOR, DEFAULT_SOLVER, RunSettings, SettingsError

__all__ = ["CGRLM", "CHANNEL_SETS", "DEFAULT_GENERATOR", "DEFAULT_SOLVER"]

log = logging.getLogger(__name__)
COT_MAX_TOKENS = 256  # the chain-of-thought control's reply: a few sentences and the answer


def _backend_failed(record: CGRRecord) -> bool:
    """A model failed (timeout, HTTP error, OOM): worth retrying on resume, not journaling."""
    return (record.direct.status == "error" or record.assisted.status == "generator_error"
            or record.budget_matched.status == "error"
            or any(control.status == "error" for control in record.controls.values()))


@dataclass
class _Batch:
    """lm-eval's requests grouped by item: repeats and data-parallel padding share one record."""

    keys: list[str] = field(default_factory=list)  # one per request, in lm-eval's order
    items: dict[str, MCQAItem] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # docs that are not cgr items
    requests_of: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, requests: Sequence[Any]) -> _Batch:
        batch = cls()
        for req in requests:
            key = f"{req.task_name}/{req.doc_id}"
            batch.keys.append(key)
            batch.requests_of.setdefault(key, []).append(req)
            if key in batch.items or key in batch.failures:
                continue
            try:
                batch.items[key] = MCQAItem.from_doc(req.doc)
            except (KeyError, TypeError, ValueError, ItemError) as err:
                batch.failures[key] = (f"not a cgr item ({type(err).__name__}: {err}); use a "
                                       "cgr_* task or a task YAML that loads its data with "
                                       "cgr-plugin")
        return batch


class CGRLM(LM):
    """Solver + generator pair evaluated channel by channel on normalized MCQA items."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.settings = settings = RunSettings.from_model_args(kwargs)
        self.channels = settings.channel_names
        self.budget_matched = settings.matches_budget
        self.chunk_size = settings.chunk_size
        self.assisted_settings = settings.assisted()
        self.extract = plugins.extractor(settings.extractor)
        plugins.sandbox(settings.sandbox)  # an unknown name fails here, before models load
        self.template_dirs = [settings.template_dir] if settings.template_dir else []
        self.generator_prompt = self._generator_family()
        self.fixed = {f"{PROGRAM_CONTROL}{name}": fixed_source(name, settings.fixed_programs)
                      for name in settings.fixed_program_names}
        self.controls = tuple(name for name in settings.control_names
                              if name != "budget_matched")
        self.registry: dict[str, ModelSpec] = load_registry(
            [settings.registry] if settings.registry else [])
        package: ProgramPackage | None = (
            load_package(settings.programs) if settings.programs else None)
        self.programs = package.programs if package else None
        # a replay's records name the family its programs were written with
        self.programs_prompt = package.generator_prompt if package else None
        self._defaults = settings.backend_defaults()
        self._setup_distributed(self._defaults)
        self.cache = ResponseCache(settings.cache_path) if settings.cache_path else None
        self._retry = {"retries": settings.retries, "backoff": settings.retry_backoff}
        self._build_models()
        info = self.get_model_info()
        self._seed_cache(settings.cache_from_paths, info)
        self.journal: Journal | None = None
        if settings.journal:
            self.journal = Journal(settings.journal, identity_hash(info, self.template_dirs),
                                   info)

    def _build_models(self) -> None:
        """The solver now; the generator when the assisted channel first runs."""
        settings = self.settings
        self.solver_name = settings.solver
        self.solver, self.solver_spec = make_backend(
            self.solver_name, settings.solver_args, registry=self.registry,
            defaults=self._defaults)
        self.solver = self._resilient(self.solver)
        self.direct_settings = direct_settings(self.solver_spec, style=settings.direct_style,
                                               max_tokens=settings.direct_max_tokens)
        # the chain-of-thought control: the direct prompt in its reasoning style, room to reason
        self.cot_settings = DirectSettings(style="reasoning", max_tokens=max(
            COT_MAX_TOKENS, self.direct_settings.max_tokens))
        self._generator_model = settings.generator
        self.generator_args = dict(settings.generator_args)
        self._generator: Backend | None = None
        self.generator_name = self._generator_label()

    def _seed_cache(self, journals: Sequence[str], info: Mapping[str, Any]) -> None:
        """``cache_from=``: other runs' direct answers of this solver into the response cache,
        from journals whose runs had this run's solver and direct settings (``info``)."""
        if not journals:
            return
        if not isinstance(self.solver, CachedBackend):
            raise SettingsError("cgr: cache_from= puts answers in the response cache, and this "
                                "run has none (cache=off); give cache=PATH or journal=PATH")
        made_with = {key: info[key] for key in ("cgr_solver", "cgr_direct")}
        added = self.solver.seed(recorded_direct_answers(journals, self.solver_name, made_with,
                                                          self.direct_settings))
        log.info("cgr: cache_from: %d of them new to the response cache %s", added,
                 self.solver.cache.path)

    def _generator_family(self) -> dict[str, str]:
        """The generator prompt family as records name it: its name and its templates' hash."""
        name = self.settings.generator_prompt
        known = generator_families(self.template_dirs)
        if name not in known:
            raise SettingsError(f"cgr: generator_prompt={name!r}: no template "
                                f"{generator_template(name)}; families here: {', '.join(known)}")
        for folder in [*self.template_dirs, *map(str, user_template_dirs())]:
            if (Path(folder) / "generator.j2").exists():
                log.warning("cgr: %s/generator.j2 is no longer read: generator prompts are "
                            "families now; save it as generator_NAME.j2 and run with "
                            "generator_prompt=NAME (docs/prompts.md)", folder)
        return {"name": name, "sha256": template_hash(generator_template(name),
                                                      self.template_dirs)}

    def _generator_label(self) -> str:
        """The generator as records name it: "hf" alone would merge different models."""
        if self.settings.programs:
            return f"replay:{self.settings.programs}"
        target = self.generator_args.get("pretrained") or self.generator_args.get("model")
        return f"{self._generator_model}:{target}" if target else self._generator_model

    # -- distributed (accelerate launch / torchrun): one data-parallel rank per process --------
    def _setup_distributed(self, defaults: dict[str, Any]) -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return
        from accelerate import Accelerator

        self.accelerator = Accelerator()
        self._rank = self.accelerator.process_index
        self._world_size = self.accelerator.num_processes
        self._device = self.accelerator.device
        defaults.setdefault("main_gpu", self.accelerator.local_process_index)
        defaults["device"] = str(self.accelerator.device)

    @property
    def device(self) -> Any:
        return getattr(self, "_device", "cpu")

    def all_gather(self, tensor: Any) -> Any:
        return self.accelerator.gather(tensor) if self.world_size > 1 else tensor

    def gather_object(self, obj: Any, dst: int = 0) -> Any:
        if self.world_size <= 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, out, dst=dst)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            self.accelerator.wait_for_everyone()

    def _resilient(self, backend: Backend) -> Backend:
        """Retries inside, the cache outside: only final answers are cached."""
        backend = RetryingBackend(backend, **self._retry)
        return backend if self.cache is None else CachedBackend(backend, self.cache)

    @property
    def generator(self) -> Backend:
        if self._generator is None:
            name = str(self._generator_model)
            if name == self.solver_name and self.generator_args == {}:
                self._generator = self.solver  # one model in both roles is loaded once
            else:
                self._generator, _ = make_backend(name, self.generator_args,
                                                  registry=self.registry, defaults=self._defaults)
                self._generator = self._resilient(self._generator)
        return self._generator

    # -- channels ------------------------------------------------------------------------------
    def _direct_prompt(self, item: MCQAItem) -> str:
        return direct_prompt(item, self.direct_settings, self.template_dirs)

    def _stages(self) -> tuple[str, ...]:
        stages = ("direct",)
        if "assisted" in self.channels:
            stages += ("generation", "execution") + (("control",) if self.budget_matched else ())
        return stages + self.controls

    def _run_items(self, items: list[MCQAItem], bars: StageBars | None = None
                   ) -> list[CGRRecord]:
        """Every channel for a batch of items, one stage after another; one record per item."""
        direct = run_direct(items, solver=self.solver, settings=self.direct_settings,
                            extract=self.extract, template_dirs=self.template_dirs, bars=bars)
        assisted: list[tuple[ChannelResult, ChannelResult]] = [
            (ChannelResult(), ChannelResult()) for _ in items]
        control = [ChannelResult() for _ in items]
        if "assisted" in self.channels:
            assisted = self._run_assisted(items, direct, bars)
            if self.budget_matched:
                control = self._run_control(items, [program for program, _ in assisted], bars)
        controls = self._run_controls(items, bars)
        generator = self.generator_name if "assisted" in self.channels else None
        family = None
        if "assisted" in self.channels:
            family = self.generator_prompt if self.programs is None else self.programs_prompt
        return [CGRRecord(item=item.to_json(), solver=self.solver.name, generator=generator,
                          direct=result, assisted=program, generator_side=own,
                          budget_matched=matched, controls=others, generator_prompt=family)
                for item, result, (program, own), matched, others in zip(
                    items, direct, assisted, control, controls, strict=True)]

    def _run_controls(self, items: list[MCQAItem], bars: StageBars | None
                      ) -> list[dict[str, ChannelResult]]:
        """The controls of ``controls=`` other than budget_matched, by name, per item."""
        per_item: list[dict[str, ChannelResult]] = [{} for _ in items]
        for name in self.controls:
            if name == "cot":
                results = run_direct(items, solver=self.solver, settings=self.cot_settings,
                                     extract=self.extract, template_dirs=self.template_dirs,
                                     bars=bars, stage="cot")
            else:
                results = run_fixed_program(
                    self.fixed[name], items, solver=self.solver, settings=self.assisted_settings,
                    direct_prompt=self._direct_prompt,
                    direct_max_tokens=self.direct_settings.max_tokens, stage=name, bars=bars)
            for outcome, result in zip(per_item, results, strict=True):
                outcome[name] = result
        return per_item

    def _run_assisted(self, items: list[MCQAItem], direct: list[ChannelResult],
                      bars: StageBars | None) -> list[tuple[ChannelResult, ChannelResult]]:
        """(assisted, generator) per item: programs written (or replayed), then run."""
        return run_assisted(
            items, solver=self.solver,
            generator=None if self.programs is not None else self.generator,
            programs=self.programs, settings=self.assisted_settings,
            direct_prompt=self._direct_prompt, direct_max_tokens=self.direct_settings.max_tokens,
            template_dirs=self.template_dirs, direct=direct, bars=bars,
            generator_prompt=self.generator_prompt["name"])

    def _run_control(self, items: list[MCQAItem], programs: list[ChannelResult],
                     bars: StageBars | None) -> list[ChannelResult]:
        """The budget-matched control: as many direct samples as each program's solver calls."""
        with bars.stage("control") if bars else nullcontext():
            control = run_budget_matched(
                items, [program.solver_calls for program in programs], solver=self.solver,
                prompt=self._direct_prompt, max_tokens=self.direct_settings.max_tokens,
                seed=self.assisted_settings.seed, extractor=self.assisted_settings.extractor)
            if bars:
                bars.advance("control", len(items), sum(c.solver_calls for c in control))
        return control

    # -- lm-eval interface ---------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Items run in chunks; each finished record goes to the journal and lm-eval's cache
        hook at once, so an interrupted run loses at most the chunk in flight."""
        batch = _Batch.of(requests)
        journal_keys = self._journal_keys(batch.items)
        records = self._from_journal(journal_keys)
        todo = [key for key in batch.items if key not in records]
        bars = StageBars(len(todo), self._stages(), enabled=not disable_tqdm)
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start:start + self.chunk_size]
            for key, record in zip(chunk, self._run_items([batch.items[k] for k in chunk], bars),
                                   strict=True):
                records[key] = text = record.to_json()  # the one serialisation of a record
                if self.journal is not None and not _backend_failed(record):
                    self.journal.put(journal_keys[key], text)  # failures are retried
                for req in batch.requests_of[key]:
                    self.cache_hook.add_partial("generate_until", req.args, text)
        bars.close()
        self._log_cache_use()
        for key, message in batch.failures.items():
            records[key] = CGRRecord(
                item={"id": key}, solver=self.solver.name,
                direct=ChannelResult(status="error", error=message)).to_json()
        return [records[key] for key in batch.keys]

    def _journal_keys(self, items: Mapping[str, MCQAItem]) -> dict[str, str]:
        """Each item's journal key: identity, task and the item (no journal: none)."""
        if self.journal is None:
            return {}
        return {key: self.journal.key(key.rsplit("/", 1)[0], item.to_json())
                for key, item in items.items()}

    def _from_journal(self, journal_keys: Mapping[str, str]) -> dict[str, str]:
        """The records a previous run finished, as the journal keeps them (JSON)."""
        if self.journal is None:
            return {}
        saved = {key: self.journal.get(journal_key) for key, journal_key in journal_keys.items()}
        found = {key: record for key, record in saved.items() if record is not None}
        if found:
            log.info("cgr: %d of %d items taken from the journal %s", len(found),
                     len(journal_keys), self.journal.path)
        return found

    def _log_cache_use(self) -> None:
        shared = self._generator is self.solver
        for role, backend in (("solver and generator" if shared else "solver", self.solver),
                              ("generator", None if shared else self._generator)):
            if isinstance(backend, CachedBackend):
                log.info("cgr: response cache (%s), %s: %d hits, %d misses", backend.cache.path,
                         role, backend.stats.hits, backend.stats.misses)

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        raise NotImplementedError("cgr answers generate_until requests only; run it on cgr_* "
                                  "tasks (cgr-eval ls tasks)")

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False
                              ) -> list[Any]:
        raise NotImplementedError("cgr answers generate_until requests only")

    def get_model_info(self) -> dict[str, Any]:
        settings = self.assisted_settings
        return {"cgr_solver": self.solver.describe(), "cgr_generator": self.generator_name,
                "cgr_generator_args": dict(self.generator_args),
                "cgr_seed": settings.seed,
                "cgr_program_memory_mb": settings.limits.memory_bytes >> 20,
                "cgr_channels": list(self.channels) + (["budget_matched"]
                                                       if self.budget_matched else []),
                "cgr_controls": list(self.controls),
                "cgr_generator_prompt": self.generator_prompt,
                "cgr_fixed_programs": {name: hashlib.sha256(source.encode()).hexdigest()
                                       for name, source in self.fixed.items()},
                "cgr_direct": {"style": self.direct_settings.style,
                               "max_tokens": self.direct_settings.max_tokens},
                "cgr_programs": None if self.programs is None else hashlib.sha256(
                    json.dumps(self.programs, sort_keys=True).encode()).hexdigest(),
                "cgr_extractor": settings.extractor, "cgr_sandbox": settings.sandbox,
                "cgr_assisted": {"budget": settings.budget, "fallback": settings.fallback,
                                 "program_timeout": settings.limits.wall_seconds,
                                 "generator_max_tokens": settings.generator_max_tokens,
                                 "generator_draft_tokens": settings.generator_draft_tokens,
                                 "generator_stop_repeats": settings.generator_stop_repeats,
                                 "provenance_seeds": settings.provenance_seeds}}

