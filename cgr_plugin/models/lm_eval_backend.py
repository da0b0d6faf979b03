"""Any lm-eval registered model (hf, vllm, local-chat-completions, ...) as a cgr backend.

GPU users reuse lm-eval's batching, device placement and chat templates: generations go through
the model's own ``generate_until``, judgements through ``loglikelihood`` of "Yes" and "No".
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import (
    BackendError,
    Generation,
    GenerationRequest,
    Judgement,
    Progress,
    p_yes_from_logprobs,
    prompt_too_long,
)

__all__ = ["LmEvalBackend"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _one_client_attempt(lm: Any) -> Iterator[None]:
    """Within: an lm-eval API model tries each request once (it has just retried them all)."""
    saved = getattr(lm, "max_retries", None)
    if saved is None:
        yield
        return
    lm.max_retries = 1
    try:
        yield
    finally:
        lm.max_retries = saved


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

    def _model_class(self) -> Any:
        from lm_eval.api.registry import get_model

        try:
            return get_model(self.model)
        except (KeyError, ValueError) as err:
            raise BackendError(f"{self.model!r} is neither a cgr registry model nor an "
                               f"lm-eval model: {err}") from None

    @property
    def retries_itself(self) -> bool:
        """lm-eval's API models (local-*, openai-*) retry each request ``max_retries`` times
        (solver.max_retries / generator.max_retries, lm-eval's default 3) with backoff."""
        try:
            from lm_eval.models.api_models import TemplateAPI

            return issubclass(self._model_class(), TemplateAPI)
        except Exception:  # the class cannot load: the first call says why
            return False

    def _model(self) -> Any:
        if self._lm is None:
            cls = self._model_class()
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
        rendered = [self._render(lm, r.prompt) for r in requests]
        too_long = [self._overflow(lm, text, r) for text, r in zip(rendered, requests,
                                                                   strict=True)]
        if any(too_long):
            fits = [i for i, answer in enumerate(too_long) if answer is None]
            answers = self.generate([requests[i] for i in fits], progress=progress) if fits else []
            out = list(too_long)
            for i, answer in zip(fits, answers, strict=True):
                out[i] = answer
            return out  # type: ignore[return-value]
        instances = [
            Instance(request_type="generate_until", doc={}, idx=i,
                     arguments=(text,
                                {"until": list(r.stop), "max_gen_toks": r.max_tokens,
                                 "do_sample": r.temperature > 0,
                                 "temperature": r.temperature}))
            for i, (text, r) in enumerate(zip(rendered, requests, strict=True))]
        try:
            texts = lm.generate_until(instances, disable_tqdm=progress is not True)
            if callable(progress):
                progress(len(texts))
            return [Generation(t) for t in texts]
        except Exception as err:
            if len(instances) == 1:
                return [Generation(None, f"{type(err).__name__}: {err}")]
            # one bad request fails the whole call: find it by asking one at a time, once each
            # where the client has just retried every request already
            log.warning("%s: batch of %d failed (%s); retrying one by one", self.name,
                        len(instances), err)
            with _one_client_attempt(lm) if self.retries_itself else contextlib.nullcontext():
                return [self.generate([r], progress=progress)[0] for r in requests]

    def _overflow(self, lm: Any, text: str, req: GenerationRequest) -> Generation | None:
        """The too-long answer for a local model (hf, vllm) whose prompt and reply exceed its
        ``max_length``: lm-eval would cut the prompt's start to fit. API models are left to
        their server, which knows its own limit."""
        if self.retries_itself or not hasattr(lm, "tok_encode"):
            return None
        try:
            prompt_tokens, context = len(lm.tok_encode(text)), int(lm.max_length)
        except Exception:  # a model without a tokenizer or a known length
            return None
        if prompt_tokens + req.max_tokens <= context:
            return None
        return prompt_too_long(self.name, prompt_tokens, req.max_tokens, context)

    def judge(self, prompts: Sequence[str]) -> list[Judgement]:
        from lm_eval.api.instance import Instance

        lm = self._model()
        instances = [Instance(request_type="loglikelihood", doc={}, idx=2 * i + j,
                              arguments=(self._render(lm, prompt), answer))
                     for i, prompt in enumerate(prompts) for j, answer in enumerate(("Yes", "No"))]
        try:
            scores = lm.loglikelihood(instances, disable_tqdm=True)
        except Exception as err:
            return [Judgement.failed(f"{type(err).__name__}: {err}")] * len(prompts)
        out: list[Judgement] = []
        for i in range(len(prompts)):
            try:
                out.append(Judgement(p_yes_from_logprobs(scores[2 * i][0], scores[2 * i + 1][0])))
            except ValueError as err:
                out.append(Judgement.failed(f"ValueError: {err}"))
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": f"lm-eval:{self.model}", "model_args": dict(self.args),
                "chat_template": self.chat_template}
