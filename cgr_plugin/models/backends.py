"""Language-model handles the ``cgr`` model talks to: chat turn in, text out, greedy.

Two kinds: an in-process llama.cpp model from the registry (the embedded offline default), and
any lm-eval registered backend (hf, vllm, local-chat-completions, ...) with its own arguments,
so GPU users reuse lm-eval's batching, device placement and chat templates.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import CGRError
from .registry import ModelSpec, RegistryError, load_registry, model_file

__all__ = ["Backend", "BackendError", "Generation", "GenerationRequest", "LlamaCppBackend",
           "LmEvalBackend", "Progress", "RetryingBackend", "make_backend"]

log = logging.getLogger(__name__)


class BackendError(CGRError):
    """A model that cannot be set up (unknown name, missing package, bad arguments)."""


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str  # the user turn; backends apply the model's chat template
    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0  # 0: greedy; above 0: sampled (the budget-matched control)
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    text: str | None
    error: str | None = None  # set when this request failed; text is then None
    tokens_in: int | None = None
    tokens_out: int | None = None


YES, NO = ("Yes", "yes", " Yes", " yes", "YES"), ("No", "no", " No", " no", "NO")


def _p_yes(yes_logprob: float, no_logprob: float) -> float:
    """P(yes) from the two answers' log-probabilities, renormalized over just these two."""
    top = max(yes_logprob, no_logprob)
    if not math.isfinite(top):
        raise ValueError("the model gives neither Yes nor No any probability")
    yes, no = math.exp(yes_logprob - top), math.exp(no_logprob - top)
    return yes / (yes + no)


Progress = bool | Callable[[int], None]  # a tqdm bar of the backend's own, or a tick(n) callback


class Backend(Protocol):
    name: str

    def generate(self, requests: Sequence[GenerationRequest], *, progress: Progress = False
                 ) -> list[Generation]: ...

    def judge(self, prompts: Sequence[str]) -> list[float | str]:
        """P(yes) for each yes/no question from the model's scores (an error string on failure)."""
        ...

    def describe(self) -> dict[str, Any]: ...


def _progress(items: Sequence[Any], desc: str, progress: Progress) -> Any:
    if callable(progress):
        for entry in items:
            yield entry
            progress(1)
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, total=len(items), desc=desc, disable=not progress)


@dataclass
class LlamaCppBackend:
    """A registry GGUF model run in this process by llama-cpp-python."""

    spec: ModelSpec
    n_ctx: int | None = None
    n_threads: int | None = None
    seed: int = 0
    n_gpu_layers: int | None = None
    main_gpu: int = 0
    _llm: Any = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def _model(self) -> Any:
        if self._llm is None:
            try:
                import llama_cpp
            except ImportError:
                raise BackendError(
                    f"model {self.spec.name!r} runs on llama-cpp-python, which is not installed; "
                    "install it with: pip install 'cgr-plugin[embedded]'") from None
            path = model_file(self.spec)
            gpu_layers = self.n_gpu_layers
            if gpu_layers is None:  # offload everything when this build can use a GPU
                gpu_layers = -1 if llama_cpp.llama_supports_gpu_offload() else 0
            self._llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=self.n_ctx or self.spec.context_length,
                n_threads=self.n_threads or min(os.cpu_count() or 1, 8), seed=self.seed,
                n_gpu_layers=gpu_layers, main_gpu=self.main_gpu, verbose=False)
        return self._llm

    def generate(self, requests: Sequence[GenerationRequest], *, progress: Progress = False
                 ) -> list[Generation]:
        llm = self._model()
        out = []
        for req in _progress(requests, self.name, progress):
            try:
                reply = llm.create_chat_completion(
                    messages=[{"role": "user", "content": req.prompt}],
                    max_tokens=req.max_tokens, temperature=req.temperature,
                    seed=self.seed if req.seed is None else req.seed,
                    stop=list(req.stop) or None)
                usage = reply.get("usage") or {}
                out.append(Generation(reply["choices"][0]["message"]["content"] or "",
                                      tokens_in=usage.get("prompt_tokens"),
                                      tokens_out=usage.get("completion_tokens")))
            except Exception as err:  # e.g. prompt longer than the context: recorded per item
                out.append(Generation(None, f"{type(err).__name__}: {err}"))
        return out

    def _chat_prompt(self, llm: Any, prompt: str) -> str:
        if getattr(self, "_formatter", None) is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            meta = llm.metadata
            template = meta.get("tokenizer.chat_template")
            if not template:
                raise BackendError(f"{self.name}: the GGUF has no chat template to judge with")
            vocab = {i: llm._model.token_get_text(i) for i in (llm.token_bos(), llm.token_eos())}
            self._formatter = Jinja2ChatFormatter(template, eos_token=vocab[llm.token_eos()],
                                                  bos_token=vocab[llm.token_bos()])
        return self._formatter(messages=[{"role": "user", "content": prompt}]).prompt

    def _answer_ids(self, llm: Any, words: Sequence[str]) -> list[int]:
        ids = {llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in words}
        return sorted(ids)

    def judge(self, prompts: Sequence[str]) -> list[float | str]:
        import numpy as np

        llm = self._model()
        yes_ids, no_ids = self._answer_ids(llm, YES), self._answer_ids(llm, NO)
        out: list[float | str] = []
        for prompt in prompts:
            try:
                tokens = llm.tokenize(self._chat_prompt(llm, prompt).encode(), add_bos=False,
                                      special=True)
                llm.reset()
                llm.eval(tokens)
                logits = np.ctypeslib.as_array(llm._ctx.get_logits(),
                                               shape=(llm.n_vocab(),)).astype(np.float64)
                top = logits.max()
                logprobs = logits - top - math.log(np.exp(logits - top).sum())
                yes = float(np.logaddexp.reduce(logprobs[yes_ids]))
                no = float(np.logaddexp.reduce(logprobs[no_ids]))
                out.append(_p_yes(yes, no))
            except Exception as err:
                out.append(f"{type(err).__name__}: {err}")
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": "llama.cpp", "model": self.spec.name, "family": self.spec.family,
                "parameters": self.spec.parameters, "license": self.spec.license,
                "sha256": self.spec.source.get("sha256"),
                "n_ctx": self.n_ctx or self.spec.context_length, "seed": self.seed}


@dataclass
class LmEvalBackend:
    """Any lm-eval registered model, called through its own ``generate_until``."""

    model: str
    args: Mapping[str, Any]
    chat_template: bool | None = None  # None: use the tokenizer's template when it has one
    _lm: Any = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.model}:{self.args.get('pretrained', self.args.get('model', ''))}"

    def _model(self) -> Any:
        if self._lm is None:
            from lm_eval.api.registry import get_model

            try:
                cls = get_model(self.model)
            except (KeyError, ValueError) as err:
                raise BackendError(f"{self.model!r} is neither a cgr registry model nor an "
                                   f"lm-eval model: {err}") from None
            try:
                self._lm = cls.create_from_arg_obj(dict(self.args))
            except ImportError as err:  # e.g. an API model without lm-eval[api]
                raise BackendError(f"{self.name}: a package it needs is missing: {err} "
                                   "(servers: pip install 'cgr-plugin[api]')") from None
        return self._lm

    def _render(self, lm: Any, prompt: str) -> str:
        use = self.chat_template
        if use is False or not hasattr(lm, "apply_chat_template"):
            return prompt
        try:
            return lm.apply_chat_template([{"role": "user", "content": prompt}],
                                          add_generation_prompt=True)
        except Exception as err:  # no template on this tokenizer
            if use:
                raise BackendError(f"{self.name}: chat_template=True but applying it failed: "
                                   f"{err}") from None
            return prompt

    def generate(self, requests: Sequence[GenerationRequest], *, progress: Progress = False
                 ) -> list[Generation]:
        from lm_eval.api.instance import Instance

        lm = self._model()
        instances = [
            Instance(request_type="generate_until", doc={}, idx=i,
                     arguments=(self._render(lm, r.prompt),
                                {"until": list(r.stop), "max_gen_toks": r.max_tokens,
                                 "do_sample": r.temperature > 0,
                                 "temperature": r.temperature}))
            for i, r in enumerate(requests)]
        try:
            texts = lm.generate_until(instances, disable_tqdm=progress is not True)
            if callable(progress):
                progress(len(texts))
            return [Generation(t) for t in texts]
        except Exception as err:
            if len(instances) == 1:
                return [Generation(None, f"{type(err).__name__}: {err}")]
            log.warning("%s: batch of %d failed (%s); retrying one by one", self.name,
                        len(instances), err)
            return [self.generate([r], progress=progress)[0] for r in requests]

    def judge(self, prompts: Sequence[str]) -> list[float | str]:
        from lm_eval.api.instance import Instance

        lm = self._model()
        instances = [Instance(request_type="loglikelihood", doc={}, idx=2 * i + j,
                              arguments=(self._render(lm, prompt), answer))
                     for i, prompt in enumerate(prompts) for j, answer in enumerate(("Yes", "No"))]
        try:
            scores = lm.loglikelihood(instances, disable_tqdm=True)
        except Exception as err:
            return [f"{type(err).__name__}: {err}"] * len(prompts)
        out: list[float | str] = []
        for i in range(len(prompts)):
            try:
                out.append(_p_yes(scores[2 * i][0], scores[2 * i + 1][0]))
            except ValueError as err:
                out.append(f"ValueError: {err}")
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": f"lm-eval:{self.model}", "model_args": dict(self.args),
                "chat_template": self.chat_template}


def make_backend(name: str, args: Mapping[str, Any], *,
                 registry: Mapping[str, ModelSpec] | None = None,
                 defaults: Mapping[str, Any] | None = None) -> tuple[Backend, ModelSpec | None]:
    """Resolve ``name``: a registry model first, then any lm-eval registered model."""
    registry = registry if registry is not None else load_registry()
    args = dict(args)
    defaults = dict(defaults or {})
    spec = registry.get(name)
    if spec is not None and spec.format == "gguf":
        allowed = {"n_ctx", "n_threads", "seed", "n_gpu_layers", "main_gpu"}
        unknown = set(args) - allowed
        if unknown:
            raise BackendError(f"unknown argument {sorted(unknown)[0]!r} for llama.cpp model "
                               f"{name!r} (allowed: {', '.join(sorted(allowed))})")
        merged = {k: v for k, v in defaults.items() if k in allowed} | args
        return LlamaCppBackend(spec, **merged), spec
    from .. import plugins

    factory = plugins.registry().entries["models"].get(name)
    if factory is not None and spec is None:  # a plugin's backend
        return factory({**defaults, **args}), None
    chat = args.pop("chat_template", None)
    if spec is not None:  # format: hf -> lm-eval's own hf backend
        pretrained = spec.source.get("pretrained") or spec.hf_hub_id
        return LmEvalBackend("hf", {"pretrained": pretrained, **args}, chat), spec
    from lm_eval.api.registry import model_registry

    if name not in model_registry:
        raise BackendError(
            f"unknown model {name!r}: not in the cgr registry ({', '.join(sorted(registry))}) "
            "and not an lm-eval model (see `lm-eval ls models`)")
    if name == "cgr":
        raise RegistryError("the cgr model cannot be its own solver or generator")
    forwarded = {k: v for k, v in defaults.items() if k in ("device", "batch_size")} | args
    return LmEvalBackend(name, forwarded, chat), None


class RetryingBackend:
    """Retries failed requests (errors as values, or a raised call) with exponential backoff.

    Servers time out and drop connections; a retry turns most of those into answers. What
    still fails after ``retries`` attempts is returned as an error value and recorded with the
    item (status ``error`` / ``generator_error``), never raised into the run. A prompt longer
    than the model's context fails the same way every time and is not retried.
    """

    def __init__(self, backend: Backend, retries: int = 2, backoff: float = 1.0) -> None:
        self.backend, self.retries, self.backoff = backend, max(0, retries), max(0.0, backoff)
        self.name = backend.name
        self.retried = 0

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def _attempt(self, call: Callable[[list[Any]], list[Any]], todo: list[Any]) -> list[Any]:
        try:
            out = call(todo)
            if len(out) != len(todo):
                raise RuntimeError(f"{self.name} answered {len(out)} of {len(todo)} requests")
            return out
        except BackendError:
            raise  # a model that cannot be set up is the user's to fix, not a transient fault
        except Exception as err:  # the whole call failed: every request of it did
            return [_Failed(f"{type(err).__name__}: {err}") for _ in todo]

    def _with_retries(self, requests: Sequence[Any], call: Callable[[list[Any]], list[Any]],
                      failed: Callable[[Any], str | None], as_error: Callable[[str], Any]
                      ) -> list[Any]:
        import time

        out: list[Any] = [None] * len(requests)
        todo = list(range(len(requests)))
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += len(todo)
                time.sleep(self.backoff * 2 ** (attempt - 1))
            answers = self._attempt(call, [requests[i] for i in todo])
            still = []
            for index, answer in zip(todo, answers, strict=True):
                reason = answer.reason if isinstance(answer, _Failed) else failed(answer)
                out[index] = as_error(reason) if reason is not None else answer
                if reason is not None and not _PERMANENT.search(reason):
                    still.append(index)
            todo = still
            if not todo:
                break
        if todo:
            log.warning("%s: %d request(s) still failing after %d retries: %s", self.name,
                        len(todo), self.retries, _reason(out[todo[0]]))
            for index in todo:
                out[index] = as_error(f"{_reason(out[index])} (after {self.retries} retries)")
        return out

    def generate(self, requests: Sequence[GenerationRequest], *, progress: Progress = False
                 ) -> list[Generation]:
        return self._with_retries(
            requests, lambda todo: self.backend.generate(todo, progress=progress),
            failed=lambda g: g.error, as_error=lambda reason: Generation(None, reason))

    def judge(self, prompts: Sequence[str]) -> list[float | str]:
        return self._with_retries(prompts, self.backend.judge,
                                  failed=lambda s: s if isinstance(s, str) else None,
                                  as_error=lambda reason: reason)


_PERMANENT = re.compile(r"context (window|length)|maximum context|too long|exceeds? (the )?"
                        r"(context|max)", re.I)


@dataclass(frozen=True)
class _Failed:
    reason: str


def _reason(answer: Any) -> str:
    return answer.error if isinstance(answer, Generation) else str(answer)
