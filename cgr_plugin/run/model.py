"""The ``cgr`` lm-eval model: answers every request with a three-channel record.

lm-eval hands over all ``generate_until`` requests at once, so each channel is computed as one
batch across items: every direct prompt goes to the solver in a single call to its backend.

model_args (``--model_args k=v,...``)::

    solver=NAME            registry model (models.yaml) or lm-eval model name (hf, vllm, ...)
    solver.KEY=VALUE       arguments for that backend (solver.pretrained=..., solver.n_ctx=...)
    generator=NAME         the program writer, same forms; generator.KEY=VALUE its arguments
    channels=direct|direct+assisted   which channels run (default both; generator comes along)
    budget=N               solver calls per program (default 8)
    fallback=none|direct|generator   recorded beside an assisted failure, never inside it
    program_timeout=S, program_memory_mb=M, generator_max_tokens=N
    programs=PKG           replay the programs of a `cgr export` package; no generator is loaded
    budget_matched=True    add the control channel: direct prompt sampled as often as the
                           program called the solver, majority vote
    journal=PATH           SQLite journal of finished records: rerun the command to resume
    cache=PATH|off         SQLite cache of model responses (default: the journal's file when
                           journal= is set, else off); keyed by model identity and request
    chunk_size=N           items per batch (default 16): the most an interruption loses
    concurrency=N          programs running at once (default 4)
    solver_batch=N, batch_wait_ms=M   the broker's largest batch of solver calls (default 16)
                           and longest wait for a batch to fill (default 5 ms)
    direct_style=letter|reasoning, direct_max_tokens=N   override the registry's direct settings
    retries=N, retry_backoff=S   failed model calls retried N times (default 2), waiting S, 2S,
                           ... seconds (default 1); then recorded as the item's error
    extractor=NAME, sandbox=NAME   plugin answer extractor / sandbox backend (`cgr plugins`)
    registry=PATH          extra model registry YAML; template_dir=PATH  extra template folder
    seed=N, n_threads=N    llama.cpp defaults for every registry model
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from lm_eval.api.model import LM

from .. import plugins
from ..data.items import ItemError, MCQAItem
from ..models.backends import Backend, GenerationRequest, RetryingBackend, make_backend
from ..models.cache import CachedBackend, ResponseCache
from ..models.registry import DIRECT_STYLES, DirectSettings, ModelSpec, load_registry
from ..programs.packages import load_programs
from ..prompts import render
from ..record import CGRRecord, ChannelResult
from ..sandbox.runner import SandboxLimits
from .assisted import AssistedSettings, run_assisted
from .control import run_budget_matched
from .journal import Journal, identity_hash
from .progress import StageBars

__all__ = ["CGRLM", "DEFAULT_GENERATOR", "DEFAULT_SOLVER"]

log = logging.getLogger(__name__)

DEFAULT_SOLVER = "smollm2-135m"
DEFAULT_GENERATOR = "qwen2.5-coder-1.5b"
_OWN_ARGS = {"solver", "generator", "direct_style", "direct_max_tokens", "registry",
             "template_dir", "seed", "n_threads", "n_ctx", "channels", "budget", "fallback",
             "program_timeout", "program_memory_mb", "generator_max_tokens", "programs",
             "budget_matched", "journal", "chunk_size", "cache", "concurrency",
             "solver_batch", "batch_wait_ms", "extractor", "sandbox", "retries", "retry_backoff"}
CHANNEL_SETS = {"direct": ("direct",), "direct+assisted": ("direct", "assisted"),
                "all": ("direct", "assisted")}
_LM_EVAL_ARGS = {"batch_size", "max_batch_size", "device"}  # the CLI always passes these


def _split_args(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    own: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {"solver": {}, "generator": {}}
    for key, value in kwargs.items():
        role, dot, sub = key.partition(".")
        if dot and role in scoped and sub:
            scoped[role][sub] = value
        elif key in _OWN_ARGS or key in _LM_EVAL_ARGS:
            own[key] = value
        else:
            raise ValueError(
                f"cgr: unknown model_args key {key!r}; known: {', '.join(sorted(_OWN_ARGS))}, "
                "and solver.KEY / generator.KEY for the backends' own arguments")
    return own, scoped


def _backend_failed(record: str) -> bool:
    """A model failed (timeout, HTTP error, OOM): worth retrying on resume, not journaling."""
    parsed = CGRRecord.from_json(record)
    return (parsed.direct.status == "error" or parsed.assisted.status == "generator_error"
            or parsed.budget_matched.status == "error")


class CGRLM(LM):
    """Solver + generator pair evaluated channel by channel on normalized MCQA items."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        own, scoped = _split_args(kwargs)
        self.solver_name = str(own.get("solver") or DEFAULT_SOLVER)
        self.generator_name = str(own.get("generator") or DEFAULT_GENERATOR)
        self._generator_model = self.generator_name
        self.template_dirs = [own["template_dir"]] if own.get("template_dir") else []
        registry_files = [own["registry"]] if own.get("registry") else []
        self.registry: dict[str, ModelSpec] = load_registry(registry_files)
        style = own.get("direct_style")
        if style is not None and style not in DIRECT_STYLES:
            raise ValueError(f"cgr: direct_style must be one of {DIRECT_STYLES}, got {style!r}")
        self._direct_override = {k: v for k, v in (("style", style), (
            "max_tokens", own.get("direct_max_tokens"))) if v is not None}
        defaults = {k: own[k] for k in ("seed", "n_threads", "n_ctx") if k in own}
        defaults |= {k: own[k] for k in ("device", "batch_size") if own.get(k) is not None}
        self._setup_distributed(defaults)
        self.solver, self.solver_spec = make_backend(
            self.solver_name, scoped["solver"], registry=self.registry, defaults=defaults)
        cache = own.get("cache") or own.get("journal")
        self.cache = None if not cache or str(cache) == "off" else ResponseCache(cache)
        self._retry = {"retries": int(own.get("retries", 2)),
                       "backoff": float(own.get("retry_backoff", 1.0))}
        self.solver = self._resilient(self.solver)
        self.generator_args = scoped["generator"]
        target = self.generator_args.get("pretrained") or self.generator_args.get("model")
        if target:  # "hf" alone would merge different generator models in reports
            self.generator_name = f"{self.generator_name}:{target}"
        self.programs: dict[str, str] | None = None
        if own.get("programs"):
            self.programs = load_programs(own["programs"])
            self.generator_name = f"replay:{own['programs']}"
        self._defaults = defaults
        self._generator: Backend | None = None  # built when the assisted channel first runs
        self.direct_settings = self._direct_settings()
        channels = str(own.get("channels", "all"))
        if channels not in CHANNEL_SETS:
            raise ValueError(f"cgr: channels must be one of {', '.join(CHANNEL_SETS)}, "
                             f"got {channels!r}")
        self.channels = CHANNEL_SETS[channels]
        self.budget_matched = bool(own.get("budget_matched", False))
        if self.budget_matched and "assisted" not in self.channels:
            raise ValueError("cgr: budget_matched=True needs the assisted channel (it matches "
                             "each program's solver calls); drop channels=direct")
        self.chunk_size = max(1, int(own.get("chunk_size", 16)))
        timeout = float(own.get("program_timeout", 20))
        self.assisted_settings = AssistedSettings(
            budget=int(own.get("budget", 8)), fallback=str(own.get("fallback", "none")),
            generator_max_tokens=int(own.get("generator_max_tokens", 768)),
            seed=int(own.get("seed", 0)), concurrency=int(own.get("concurrency", 4)),
            solver_batch=int(own.get("solver_batch", 16)),
            batch_wait_ms=float(own.get("batch_wait_ms", 5)),
            extractor=str(own.get("extractor", "cgr")), sandbox=str(own.get("sandbox", "bwrap")),
            limits=SandboxLimits.for_timeout(timeout, int(own.get("program_memory_mb", 1024))))
        self.extract = plugins.extractor(self.assisted_settings.extractor)
        plugins.sandbox(self.assisted_settings.sandbox)  # an unknown name fails here, not later
        self.journal: Journal | None = None
        if own.get("journal"):
            self.journal = Journal(own["journal"],
                                   identity_hash(self.get_model_info(), self.template_dirs))

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
    def _direct_settings(self) -> DirectSettings:
        base = self.solver_spec.direct if self.solver_spec else DirectSettings()
        merged = {"style": base.style, "max_tokens": base.max_tokens} | self._direct_override
        return DirectSettings(style=merged["style"], max_tokens=int(merged["max_tokens"]))

    def _direct_prompt(self, item: MCQAItem) -> str:
        return render("direct.j2", self.template_dirs, item=item,
                      style=self.direct_settings.style)

    def _run_direct(self, items: list[MCQAItem], bars: StageBars | None) -> list[ChannelResult]:
        prompts = [self._direct_prompt(item) for item in items]
        requests = [GenerationRequest(p, self.direct_settings.max_tokens) for p in prompts]
        started = time.perf_counter()
        with bars.stage("direct", calls_per_item=1) if bars else nullcontext(False) as tick:
            generations = self.solver.generate(requests, progress=tick)
        per_item = (time.perf_counter() - started) / max(len(items), 1)
        results = []
        for item, prompt, gen in zip(items, prompts, generations, strict=True):
            if gen.error is not None:
                results.append(ChannelResult(status="error", prompt=prompt, error=gen.error,
                                             solver_calls=1, seconds=per_item))
                continue
            found = self.extract(gen.text, item.letters, item.choices)
            results.append(ChannelResult(
                status="ok" if found.letter else "invalid", answer=found.letter, raw=gen.text,
                prompt=prompt, extraction_rule=found.rule, solver_calls=1, seconds=per_item,
                model_seconds=per_item, tokens_in=gen.tokens_in or 0,
                tokens_out=gen.tokens_out or 0))
        return results

    def _stages(self) -> tuple[str, ...]:
        if "assisted" not in self.channels:
            return ("direct",)
        return ("direct", "generation", "execution") + (
            ("control",) if self.budget_matched else ())

    def _run_items(self, items: list[MCQAItem], bars: StageBars | None = None) -> list[str]:
        """Every channel for a batch of items; one record (JSON) per item."""
        direct = self._run_direct(items, bars)
        assisted: list[tuple[ChannelResult, ChannelResult]] = [
            (ChannelResult(), ChannelResult()) for _ in items]
        if "assisted" in self.channels:
            assisted = run_assisted(
                items, solver=self.solver,
                generator=None if self.programs is not None else self.generator,
                programs=self.programs,
                settings=self.assisted_settings, direct_prompt=self._direct_prompt,
                direct_max_tokens=self.direct_settings.max_tokens,
                template_dirs=self.template_dirs, direct=direct, bars=bars)
        control = [ChannelResult() for _ in items]
        if self.budget_matched and "assisted" in self.channels:
            with bars.stage("control") if bars else nullcontext():
                control = run_budget_matched(
                    items, [program.solver_calls for program, _ in assisted],
                    solver=self.solver, prompt=self._direct_prompt,
                    max_tokens=self.direct_settings.max_tokens,
                    seed=self.assisted_settings.seed,
                    extractor=self.assisted_settings.extractor)
                if bars:
                    bars.advance("control", len(items), sum(c.solver_calls for c in control))
        return [CGRRecord(item=item.to_json(), solver=self.solver.name,
                          generator=self.generator_name if "assisted" in self.channels else None,
                          direct=result, assisted=program, generator_side=own,
                          budget_matched=matched).to_json()
                for item, result, (program, own), matched in zip(items, direct, assisted,
                                                                 control, strict=True)]

    # -- lm-eval interface ---------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Items run in chunks; each finished record goes to the journal and lm-eval's cache
        hook at once, so an interrupted run loses at most the chunk in flight."""

        items: dict[str, MCQAItem] = {}
        keys: list[str] = []
        failures: dict[str, str] = {}
        requests_of: dict[str, list[Any]] = {}
        for req in requests:
            key = f"{req.task_name}/{req.doc_id}"
            keys.append(key)
            requests_of.setdefault(key, []).append(req)
            if key in items or key in failures:
                continue  # repeats and data-parallel padding reuse one record
            try:
                items[key] = MCQAItem.from_doc(req.doc)
            except (KeyError, TypeError, ValueError, ItemError) as err:
                failures[key] = (f"not a cgr item ({type(err).__name__}: {err}); use a cgr_* "
                                 "task or a task YAML that loads its data with cgr-plugin")
        records: dict[str, str] = {}
        journal_key = {}
        if self.journal is not None:
            for key, item in items.items():
                journal_key[key] = self.journal.key(key.rsplit("/", 1)[0], item.to_json())
                saved = self.journal.get(journal_key[key])
                if saved is not None:
                    records[key] = saved
            if records:
                log.info("cgr: %d of %d items taken from the journal %s", len(records),
                         len(items), self.journal.path)
        todo = [key for key in items if key not in records]
        bars = StageBars(len(todo), self._stages(), enabled=not disable_tqdm)
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start:start + self.chunk_size]
            records_of_chunk = self._run_items([items[k] for k in chunk], bars)
            for key, record in zip(chunk, records_of_chunk, strict=True):
                records[key] = record
                if self.journal is not None and not _backend_failed(record):
                    self.journal.put(journal_key[key], record)  # failures are retried
                for req in requests_of[key]:
                    self.cache_hook.add_partial("generate_until", req.args, record)
        bars.close()
        self._log_cache_use()
        for key, message in failures.items():
            records[key] = CGRRecord(
                item={"id": key}, solver=self.solver.name,
                direct=ChannelResult(status="error", error=message)).to_json()
        return [records[key] for key in keys]

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
                "cgr_direct": {"style": self.direct_settings.style,
                               "max_tokens": self.direct_settings.max_tokens},
                "cgr_programs": None if self.programs is None else hashlib.sha256(
                    json.dumps(self.programs, sort_keys=True).encode()).hexdigest(),
                "cgr_extractor": settings.extractor, "cgr_sandbox": settings.sandbox,
                "cgr_assisted": {"budget": settings.budget, "fallback": settings.fallback,
                                 "program_timeout": settings.limits.wall_seconds,
                                 "generator_max_tokens": settings.generator_max_tokens}}

