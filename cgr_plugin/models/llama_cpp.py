"""The embedded backend: a registry GGUF model run in this process by llama-cpp-python.

Offline and CPU-first (the default solver and generator); it offloads to a GPU when the
installed build can. Not thread-safe: the broker calls it from one thread only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
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
from .registry import ModelSpec, model_file

__all__ = ["LlamaCppBackend"]

YES, NO = ("Yes", "yes", " Yes", " yes", "YES"), ("No", "no", " No", " no", "NO")


def _with_progress(items: Sequence[Any], desc: str, progress: Progress) -> Iterator[Any]:
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
    _formatter: Any = field(default=None, init=False, repr=False)

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
        for req in _with_progress(requests, self.name, progress):
            overflow = self._overflow(llm, req)
            if overflow is not None:
                out.append(overflow)
                continue
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

    def _overflow(self, llm: Any, req: GenerationRequest) -> Generation | None:
        """The too-long answer when prompt and reply do not fit the context, else None.

        llama.cpp itself would refuse only a prompt longer than the context, and would quietly
        shorten the reply of one that leaves less room than ``max_tokens``.
        """
        try:
            prompt_tokens = len(llm.tokenize(self._chat_prompt(llm, req.prompt).encode(),
                                             add_bos=False, special=True))
        except Exception:  # no chat template to count with: llama.cpp's own check remains
            return None
        context = llm.n_ctx()
        if prompt_tokens + req.max_tokens <= context:
            return None
        return prompt_too_long(self.name, prompt_tokens, req.max_tokens, context)

    def _chat_prompt(self, llm: Any, prompt: str) -> str:
        if self._formatter is None:
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

    def judge(self, prompts: Sequence[str]) -> list[Judgement]:
        import numpy as np

        llm = self._model()
        yes_ids, no_ids = self._answer_ids(llm, YES), self._answer_ids(llm, NO)
        out: list[Judgement] = []
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
                out.append(Judgement(p_yes_from_logprobs(yes, no)))
            except Exception as err:
                out.append(Judgement.failed(f"{type(err).__name__}: {err}"))
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": "llama.cpp", "model": self.spec.name, "family": self.spec.family,
                "parameters": self.spec.parameters, "license": self.spec.license,
                "sha256": self.spec.source.get("sha256"),
                "n_ctx": self.n_ctx or self.spec.context_length, "seed": self.seed}
