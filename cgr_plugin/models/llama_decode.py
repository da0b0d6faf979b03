"""Greedy decoding and yes/no scores on a llama-cpp-python ``Llama``, at the model's own speed.

``Llama.create_chat_completion`` costs about as much per token in Python as the model does on
a 2-core CPU. With greedy decoding the next token is just the argmax of the last logits row,
so this module reads that row through numpy and keeps everything else
``create_chat_completion`` does (stop strings, end-of-generation tokens, the multi-byte rule,
``max_tokens`` capped by the context), which makes its texts the same token for token.

Every prompt starts from the KV state the previous one left: the longest common token prefix is
kept and only the rest is evaluated, so prompts that share their fixed text (templates put the
item last) pay for it once. Optional lookup decoding (``draft=N``) drafts up to N tokens from
n-gram counts of the prompt, the reply and the replies before it (``ngram_drafts``), checks
them in one batch and keeps those the model would have chosen itself. ``stop_repeats=N`` ends a
reply whose last lines repeat one block of at least 16 tokens N times in a row, or whose last
comment lines do so with only their numbers changing (``# ... is 0.7 + 0.1 = 0.8.``, then
``0.8 + 0.1``): greedy decoding that has entered such a loop goes on with it to ``max_tokens``
(measured: 9 of 200 programs in docs/findings.md's grid and 3 of README's 20, each a comment
line or two repeated to the 768-token cap).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ngram_drafts import LookupDrafter

__all__ = ["Decoded", "Reply", "feed", "greedy_generate", "last_logits",
           "repeated_block", "repeated_comments", "reply_budget",
           "shared_prefix"]

_ALIGN = 16  # a reused prefix ends on this boundary (see feed)
_MIN_BLOCK = 16  # the shortest block of tokens whose repeats count as a loop
_MIN_COMMENT = 40  # the fewest characters of a block of comment lines whose repeats count
_MAX_LINES = 8  # the most lines one repeated block of comments may have
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Decoded:
    text: str
    tokens_in: int
    tokens_out: int
    prefill_s: float = 0.0  # evaluating the prompt (what the shared prefix did not cover)
    drafted: int = 0  # draft tokens proposed
    accepted: int = 0  # draft tokens the model agreed with
    looped: str | None = None  # why the reply was stopped as a loop (stop_repeats)
    reused: int = 0  # prompt positions kept from the context (feed)


def shared_prefix(held: Sequence[int], tokens: Sequence[int]) -> int:
    """How many first tokens the two share."""
    size = min(len(held), len(tokens))
    differ = np.flatnonzero(np.asarray(held[:size]) != np.asarray(tokens[:size]))
    return int(differ[0]) if differ.size else size


def feed(llm: Any, tokens: Sequence[int], reusable: int) -> int:
    """Bring the context to ``tokens``, keeping the longest prefix it already holds among its
    first ``reusable`` positions (those a previous ``feed`` computed); how many it kept.

    llama.cpp's CPU kernels work on tiles of rows, so a position's logits can differ in the
    last bits with the shape of the batch that computed it (measured: Q4_K weights give equal
    logits only when the kept prefix is a multiple of 8 tokens and at least 8 are evaluated).
    The kept prefix is therefore cut to a multiple of ``_ALIGN`` with at least ``_ALIGN``
    tokens evaluated, which makes every prompt's scores those of a fresh context, whatever
    came before it.
    """
    import llama_cpp

    keep = max(min(len(tokens) - _ALIGN, llm.n_tokens, reusable), 0)
    if keep > 0 and not (llama_cpp.llama_model_is_recurrent(llm.model)
                         or llama_cpp.llama_model_is_hybrid(llm.model)):
        keep = shared_prefix(llm.input_ids[:keep], tokens[:keep])
        keep -= keep % _ALIGN
    else:
        keep = 0
        llm.reset()
    llm.n_tokens = keep  # eval() drops the KV cells from here on
    llm.eval(tokens[keep:])
    return keep


def last_logits(llm: Any, row: int = -1) -> np.ndarray:
    """The logits of one position of the last batch (no copy)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(row), shape=(llm.n_vocab(),))


def repeated_block(tokens: Sequence[int], repeats: int, shortest: int = _MIN_BLOCK) -> int:
    """The length of the shortest block of at least ``shortest`` tokens that the end of
    ``tokens`` repeats ``repeats`` times in a row; 0 when there is none."""
    if repeats < 2 or len(tokens) < shortest * repeats:
        return 0
    ids = np.asarray(tokens)
    for size in range(shortest, len(ids) // repeats + 1):
        tail = ids[-size * repeats:]
        if np.array_equal(tail[size:], tail[:-size]):
            return size
    return 0


def repeated_comments(text: str, repeats: int) -> int:
    """How many comment lines make the block that the last complete lines of ``text`` repeat
    ``repeats`` times in a row, numbers aside (at least 40 characters a block); 0: none."""
    if repeats < 2:
        return 0
    lines = text.split("\n")[:-1][-_MAX_LINES * repeats:]
    for size in range(1, _MAX_LINES + 1):
        tail = lines[-size * repeats:]
        if len(tail) < size * repeats or not all(line.lstrip().startswith("#") for line in tail):
            return 0
        bare = [_NUMBER.sub("0", line.strip()) for line in tail]
        if bare[size:] == bare[:-size] and sum(map(len, bare[:size])) >= _MIN_COMMENT:
            return size
    return 0


def _loop(completion: Sequence[int], text: bytes, repeats: int) -> str | None:
    """Why the reply so far is a loop to stop, or None."""
    block = repeated_block(completion, repeats)
    if block:
        return (f"stopped after {len(completion)} tokens: the last {block} tokens came "
                f"{repeats} times in a row (a greedy loop)")
    lines = repeated_comments(text.decode("utf-8", errors="ignore"), repeats)
    if lines:
        return (f"stopped after {len(completion)} tokens: the last {lines} comment line(s) came "
                f"{repeats} times in a row, numbers aside (a greedy loop)")
    return None


def _verify(llm: Any, pending: int, draft: list[int]) -> list[int]:
    """Evaluate ``pending`` and the draft in one batch; return the draft tokens the model
    agrees with, then the model's own next token. The KV cache keeps only agreed positions."""
    n_past = llm.n_tokens
    batch = [pending, *draft]
    llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
    llm._ctx.decode(llm._batch)
    llm.input_ids[n_past:n_past + len(batch)] = batch
    chosen = [int(np.argmax(last_logits(llm, i))) for i in range(len(batch))]
    agreed = 0
    while agreed < len(draft) and draft[agreed] == chosen[agreed]:
        agreed += 1
    llm.n_tokens = n_past + 1 + agreed
    llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
    llm._requires_eval = True  # the context's last logits may be a rejected position's
    return [*draft[:agreed], chosen[agreed]]


def _incomplete_utf8(text: bytes) -> int:
    """How many more tokens create_completion waits for before it checks stop strings."""
    wait = 0
    for k, char in enumerate(text[-3:]):
        k = 3 - k
        for num, pattern in ((2, 192), (3, 224), (4, 240)):
            if num > k and pattern & char == pattern:
                wait = num - k
    return wait


class Reply:
    """One greedy reply as its tokens arrive, ended by ``create_completion``'s rules (an
    end-of-generation token, a stop string once the text is whole UTF-8, ``max_tokens``) and,
    with ``stop_repeats``, by a loop."""

    def __init__(self, llm: Any, max_tokens: int, stops: Sequence[str], stop_repeats: int = 0
                 ) -> None:
        import llama_cpp

        self._model, self._bos = llm._model, llm.token_bos()
        self._vocab, self._is_eog = llm._model.vocab, llama_cpp.llama_vocab_is_eog
        self._stops = [s.encode("utf-8") for s in stops]
        self.max_tokens, self.stop_repeats = max_tokens, stop_repeats
        self.completion: list[int] = []
        self.text, self.looped = b"", None
        self._wait = 0

    def add(self, token: int) -> bool:
        """Take the model's next token; True when the reply ends here."""
        if self._is_eog(self._vocab, token):
            return True
        self.completion.append(token)
        if self.completion[0] == self._bos:  # detokenize() then drops a leading space: do so
            self.text = self._model.detokenize(self.completion)
        else:
            self.text += self._model.detokenize([token])
        self._wait = _incomplete_utf8(self.text) or self._wait
        if self._wait > 0:
            self._wait -= 1
            return False
        hits = [s for s in self._stops if s in self.text]
        if hits:
            self.text = self.text[:self.text.index(hits[0])]
            return True
        if len(self.completion) >= self.max_tokens:
            return True
        if self.stop_repeats and self.text.endswith(b"\n"):
            self.looped = _loop(self.completion, self.text, self.stop_repeats)
        return self.looped is not None

    def decoded(self, tokens_in: int, prefill_s: float = 0.0, drafted: int = 0,
                accepted: int = 0, reused: int = 0) -> Decoded:
        return Decoded(self.text.decode("utf-8", errors="ignore"), tokens_in,
                       len(self.completion), prefill_s, drafted, accepted, self.looped, reused)


def reply_budget(llm: Any, prompt_tokens: int, max_tokens: int | None) -> int:
    """``max_tokens`` as ``create_completion`` caps it by the context (None or <= 0: the rest
    of the context); a prompt that does not fit is refused as llama.cpp refuses it."""
    n_ctx = llm.n_ctx()
    if prompt_tokens >= n_ctx:
        raise ValueError(f"Requested tokens ({prompt_tokens}) exceed context window of {n_ctx}")
    if max_tokens is None or max_tokens <= 0:
        return n_ctx - prompt_tokens
    return min(max_tokens, n_ctx - prompt_tokens)


def greedy_generate(llm: Any, prompt: Sequence[int], max_tokens: int | None,
                    stops: Sequence[str], *, reusable: int, draft: int = 0,
                    stop_repeats: int = 0, drafter: LookupDrafter | None = None) -> Decoded:
    """What ``create_completion(prompt, temperature=0, stop=stops)`` returns, token for token
    (with ``draft=0``; and with ``stop_repeats`` until a loop is cut). With ``draft``, the
    ``drafter`` (a fresh one if None) drafts and learns this reply for the ones after it."""
    drafter = (drafter if drafter is not None else LookupDrafter()) if draft > 0 else None
    reply = Reply(llm, reply_budget(llm, len(prompt), max_tokens), stops, stop_repeats)
    n_ctx = llm.n_ctx()
    started = time.perf_counter()
    reused = feed(llm, prompt, reusable)
    prefill_s = time.perf_counter() - started
    if drafter is not None:
        drafter.start(prompt)
    queue = [int(np.argmax(last_logits(llm)))]
    drafted = accepted = 0
    while True:
        token = queue.pop(0)
        if reply.add(token):
            break
        if not queue:
            room = min(draft, n_ctx - llm.n_tokens - 2)
            proposal = (drafter.draft([*prompt, *reply.completion], room)
                        if drafter is not None and room > 0 else [])
            if proposal:
                queue = _verify(llm, token, proposal)
                drafted, accepted = drafted + len(proposal), accepted + len(queue) - 1
            else:
                llm.eval([token])
                queue = [int(np.argmax(last_logits(llm)))]
    if drafter is not None:
        drafter.finish(reply.completion)
    return reply.decoded(len(prompt), prefill_s, drafted, accepted, reused)
