"""The embedded backend: a registry GGUF model run in this process by llama-cpp-python.

Offline and CPU-first (the default solver and generator); it offloads to a GPU when the
installed build can. Not thread-safe: the broker calls it from one thread only.

Greedy requests and yes/no questions take the lean path of ``llama_decode`` (same texts as
``create_chat_completion``, without its per-token Python work); a batch is answered in prompt
order, so prompts that share a prefix follow each other and reuse its KV state.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._paths import cache_dir
from .base import (
    BackendError,
    Generation,
    GenerationRequest,
    Judgement,
    Progress,
    p_yes_from_logprobs,
    prompt_too_long,
)
from .llama_decode import feed, greedy_generate, last_logits
from .ngram_drafts import CPU_BATCH_COSTS, LookupDrafter
from .prompt_cache import MIN_PREFIX, PromptCache
from .registry import ModelSpec, model_file

__all__ = ["LlamaCppBackend"]

log = logging.getLogger(__name__)

_SAVES = 2  # prompt-prefix states one backend writes (see _end)
YES, NO = ("Yes", "yes", " Yes", " yes", "YES"), ("No", "no", " No", " no", "NO")


def _with_progress(items: Sequence[Any], desc: str, progress: Progress) -> Iterator[Any]:
    if callable(progress):
        for entry in items:
            yield entry
            progress(1)
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, total=len(items), desc=desc, disable=not progress)


def _prefix_order(prompts: Sequence[str]) -> list[int]:
    """Indices of ``prompts`` sorted by text, so that prompts sharing a prefix are neighbours."""
    return sorted(range(len(prompts)), key=prompts.__getitem__)


@dataclass(frozen=True)
class _ChatPrompt:
    tokens: list[int]
    stop: list[str]


@dataclass
class LlamaCppBackend:
    """A registry GGUF model run in this process by llama-cpp-python."""

    spec: ModelSpec
    n_ctx: int | None = None
    n_threads: int | None = None
    seed: int = 0
    n_gpu_layers: int | None = None
    main_gpu: int = 0
    draft_tokens: int = 0  # lookup-decoding drafts for greedy requests that set none; 0: none
    draft_costs: str | Sequence[float] = CPU_BATCH_COSTS  # batch of 1, 2.. tokens over 1's: 1:1.7
    prompt_cache: str | None = "on"  # saved prefix states (prompt_cache.py): on, a folder, off
    _llm: Any = field(default=None, init=False, repr=False)
    _formatter: Any = field(default=None, init=False, repr=False)
    _reusable: int = field(default=0, init=False, repr=False)  # context positions fed as prompt
    _states: Any = field(default=None, init=False, repr=False)  # PromptCache, once opened
    _openings: set[str] = field(default_factory=set, init=False, repr=False)  # loaded or saved
    _saves: int = field(default=0, init=False, repr=False)
    _drafter: LookupDrafter = field(init=False, repr=False)  # one for all replies: see below

    def __post_init__(self) -> None:
        """Bad ``draft_costs`` fail here, before any model loads. The drafter is the backend's,
        so each reply's n-grams serve the replies after it."""
        costs = self.draft_costs
        try:
            if isinstance(costs, str):
                costs = [float(cost) for cost in re.split(r"[,:]", costs)]
            self._drafter = LookupDrafter(costs)
        except ValueError:
            raise BackendError(f"draft_costs={self.draft_costs!r}: give the relative costs of a "
                               "batch of 1, 2, ... tokens with every row's logits, e.g. "
                               "1:1.7:2.1 (benchmarks/decode_bounds.py measures them)") from None

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
        out: list[Generation | None] = [None] * len(requests)
        order = _prefix_order([req.prompt for req in requests])
        for index in _with_progress(order, self.name, progress):
            started = time.perf_counter()
            answer = self._overflow(llm, requests[index])
            if answer is None:
                try:
                    answer = self._generate_one(llm, requests[index])
                except Exception as err:  # e.g. a prompt llama.cpp refuses: recorded per item
                    answer = Generation(None, f"{type(err).__name__}: {err}")
            out[index] = replace(answer, seconds=time.perf_counter() - started)
        return [gen for gen in out if gen is not None]

    def _overflow(self, llm: Any, req: GenerationRequest) -> Generation | None:
        """The too-long answer when prompt and reply do not fit the context, else None.

        llama.cpp itself would refuse only a prompt longer than the context, and would quietly
        shorten the reply of one that leaves less room than ``max_tokens``.
        """
        try:
            prompt_tokens = len(self._chat(llm, req.prompt).tokens)
        except Exception:  # no chat template to count with: llama.cpp's own check remains
            return None
        context = llm.n_ctx()
        if prompt_tokens + req.max_tokens <= context:
            return None
        return prompt_too_long(self.name, prompt_tokens, req.max_tokens, context)

    def _generate_one(self, llm: Any, req: GenerationRequest) -> Generation:
        if req.temperature == 0 and llm.chat_format == "chat_template.default":
            chat = self._chat(llm, req.prompt)
            draft = self.draft_tokens if req.draft is None else req.draft
            decoded = greedy_generate(llm, chat.tokens, req.max_tokens, [*req.stop, *chat.stop],
                                      reusable=self._begin(llm, chat.tokens), draft=draft,
                                      stop_repeats=req.stop_repeats,
                                      drafter=self._drafter)
            self._end(llm, chat.tokens, decoded.reused)
            return Generation(decoded.text, tokens_in=decoded.tokens_in,
                              tokens_out=decoded.tokens_out, looped=decoded.looped)
        self._reusable = 0  # what create_chat_completion leaves is not ours to reuse
        reply = llm.create_chat_completion(
            messages=[{"role": "user", "content": req.prompt}],
            max_tokens=req.max_tokens, temperature=req.temperature,
            seed=self.seed if req.seed is None else req.seed, stop=list(req.stop) or None)
        usage = reply.get("usage") or {}
        return Generation(reply["choices"][0]["message"]["content"] or "",
                          tokens_in=usage.get("prompt_tokens"),
                          tokens_out=usage.get("completion_tokens"))

    def _begin(self, llm: Any, tokens: Sequence[int]) -> int:
        """The context positions this prompt may reuse (``feed``): those the last prompt left,
        or, in an empty context, those of a saved state that opens the same way."""
        reusable, self._reusable = self._reusable, 0  # until this prompt succeeds
        states = self._saved_states(llm)
        if reusable == 0 and states is not None:
            try:
                reusable = states.load(llm, tokens)
            except Exception as err:  # a saved state is a speed-up: never the item's failure
                log.warning("%s: prompt cache not read: %s", self.name, err)
                llm.reset()
                llm._ctx.kv_cache_clear()
            if reusable:
                self._openings.add(states.opening(tokens))
        return reusable

    def _end(self, llm: Any, tokens: Sequence[int], reused: int) -> None:
        """After a prompt succeeded: its positions are reusable, and the ``reused`` prefix it
        shared with the one before (``feed``'s) is saved when no state of this opening was
        loaded or saved yet.

        A run saves at most ``_SAVES`` states: the first prefixes its prompts share are the
        fixed texts worth keeping (the generator's); later ones tend to be one item's (the
        per-option questions of a long item), which no other run starts with.
        """
        self._reusable = len(tokens)
        states = self._saved_states(llm)
        if states is None or reused < MIN_PREFIX or self._saves >= _SAVES:
            return
        opening = states.opening(tokens)
        if opening in self._openings:
            return
        self._saves += 1
        self._openings.add(opening)
        try:
            states.save(llm, reused)
        except Exception as err:  # e.g. a read-only or full disk: the speed-up, not the reply
            log.warning("%s: prompt cache not written: %s", self.name, err)
        self._reusable = llm.n_tokens

    def _saved_states(self, llm: Any) -> PromptCache | None:
        if self._states is None and self.prompt_cache not in (None, "", "off"):
            root = (cache_dir() / "prompt-cache" if self.prompt_cache == "on"
                    else Path(self.prompt_cache))
            self._states = PromptCache.for_model(
                root, llm, self.spec.source.get("sha256"), llm.context_params.n_threads)
        return self._states

    def _chat(self, llm: Any, prompt: str) -> _ChatPrompt:
        """The user turn as the tokens and stop strings create_chat_completion would use."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            meta = llm.metadata
            template = meta.get("tokenizer.chat_template")
            if not template:
                raise BackendError(f"{self.name}: the GGUF has no chat template to judge with")
            vocab = {i: llm._model.token_get_text(i) for i in (llm.token_bos(), llm.token_eos())}
            self._formatter = Jinja2ChatFormatter(template, eos_token=vocab[llm.token_eos()],
                                                  bos_token=vocab[llm.token_bos()])
        result = self._formatter(messages=[{"role": "user", "content": prompt}])
        tokens = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                              special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        return _ChatPrompt(tokens, [s for s in stop if s])

    def _answer_ids(self, llm: Any, words: Sequence[str]) -> list[int]:
        ids = {llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in words}
        return sorted(ids)

    def judge(self, prompts: Sequence[str]) -> list[Judgement]:
        llm = self._model()
        yes_ids, no_ids = self._answer_ids(llm, YES), self._answer_ids(llm, NO)
        out: list[Judgement | None] = [None] * len(prompts)
        for index in _prefix_order(prompts):
            try:
                tokens = self._chat(llm, prompts[index]).tokens
                reused = feed(llm, tokens, self._begin(llm, tokens))
                logits = last_logits(llm)  # the softmax's normalizer cancels out of P(yes)
                yes = float(np.logaddexp.reduce(logits[yes_ids].astype(np.float64)))
                no = float(np.logaddexp.reduce(logits[no_ids].astype(np.float64)))
                self._end(llm, tokens, reused)  # after the logits: saving trims the context
                out[index] = Judgement(p_yes_from_logprobs(yes, no))
            except Exception as err:
                out[index] = Judgement.failed(f"{type(err).__name__}: {err}")
        return [judgement for judgement in out if judgement is not None]

    def describe(self) -> dict[str, Any]:
        return {"backend": "llama.cpp", "model": self.spec.name, "family": self.spec.family,
                "parameters": self.spec.parameters, "license": self.spec.license,
                "sha256": self.spec.source.get("sha256"),
                "n_ctx": self.n_ctx or self.spec.context_length, "seed": self.seed}
