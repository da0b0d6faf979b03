"""Drafts for lookup decoding from n-gram counts: the tokens a greedy reply is likely to copy.

llama.cpp's lookup decoding (``common/ngram-cache``) counts, for every short n-gram, the tokens
that followed it in this prompt and reply (a context cache) and in the replies written before
(a dynamic cache), and drafts the most frequent follower while its share passes fixed
thresholds. Programs written for one run share much of their text with each other (helper
calls, loops over ``item.options``), which the prompt alone does not hold: replayed over the
published study's 250 programs, the earlier replies are what makes drafts pay
(``benchmarks/lookup_drafts_replay.py``). On CPUs, though, a check of k + 1 tokens costs far
more than one step (2 cores: 1.7x for 2 tokens, 2.6x for 4), so fixed thresholds draft too
eagerly there; here each drafted token's chance is its follower's smoothed share, and a draft
is cut to the length that gives the most expected tokens per unit of batch cost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

__all__ = ["CPU_BATCH_COSTS", "LookupDrafter", "NgramCounts", "best_length"]

# A batch of 1, 2, ... 5 tokens with every row's logits, over one token's: Qwen2.5-Coder-1.5B
# Q4_K_M on 2 AVX2 cores (benchmarks/decode_bounds.py, 2026-12-03: 34.9, 59.1, 74.5, 91.7,
# 125.2 ms). On a GPU a batch costs about one step: pass costs near 1 there.
CPU_BATCH_COSTS = (1.0, 1.69, 2.13, 2.63, 3.59)
_SIZES = (4, 3, 2)  # n-gram lengths, the longest with counts decides
_SMOOTHING = 0.5  # a follower seen v times of t has the chance v / (t + this)
_REPLIES = 256  # the earlier replies whose counts the dynamic cache keeps


class NgramCounts:
    """For each n-gram of ``sizes`` tokens, how often each token followed it."""

    def __init__(self, sizes: Sequence[int] = _SIZES) -> None:
        self.sizes = tuple(sizes)
        self._next: dict[tuple[int, ...], dict[int, int]] = {}

    def add(self, tokens: Sequence[int], start: int = 0, times: int = 1) -> None:
        """Count the followers at positions ``start`` and after (``times=-1`` takes back)."""
        for end in range(max(start, 1), len(tokens)):
            token = tokens[end]
            for size in self.sizes:
                if end < size:
                    continue
                key = tuple(tokens[end - size:end])
                followers = self._next.setdefault(key, {})
                count = followers.get(token, 0) + times
                if count > 0:
                    followers[token] = count
                else:
                    followers.pop(token, None)
                    if not followers:
                        del self._next[key]

    def followers(self, key: tuple[int, ...]) -> dict[int, int]:
        return self._next.get(key, {})

    def __len__(self) -> int:
        return len(self._next)


def best_length(chances: Sequence[float], costs: Sequence[float]) -> int:
    """How many of the drafted tokens to check: the length whose expected tokens per batch
    (the model's own next token, plus each draft kept while all before it were) over the
    batch's cost is highest; 0 when plain steps are best."""
    best, best_rate = 0, 1.0 / costs[0]
    expected = kept_so_far = 1.0
    for size, chance in enumerate(chances[:len(costs) - 1], start=1):
        kept_so_far *= chance
        expected += kept_so_far
        if expected / costs[size] > best_rate:
            best, best_rate = size, expected / costs[size]
    return best


class LookupDrafter:
    """Lookup-decoding drafts for the replies of one backend, in the order it writes them.

    ``start`` each prompt, ``draft`` as its reply grows, ``finish`` with the reply: its counts
    then serve the replies after it (the latest ``_REPLIES`` of them).
    """

    def __init__(self, costs: Sequence[float] = CPU_BATCH_COSTS,
                 sizes: Sequence[int] = _SIZES) -> None:
        if len(costs) < 2 or any(c <= 0 for c in costs):
            raise ValueError(f"draft costs must be 2 or more positive numbers, not {costs!r}")
        self.costs = tuple(float(c) for c in costs)
        self.sizes = tuple(sorted(sizes, reverse=True))  # the longest n-gram first
        self._earlier = NgramCounts(self.sizes)
        self._replies: deque[list[int]] = deque()
        self._context = NgramCounts(self.sizes)
        self._counted = 0

    def start(self, prompt: Sequence[int]) -> None:
        self._context = NgramCounts(self.sizes)
        self._context.add(prompt)
        self._counted = len(prompt)

    def draft(self, text: Sequence[int], limit: int) -> list[int]:
        """Up to ``limit`` tokens to check after ``text`` (the prompt and the reply so far)."""
        self._context.add(text, start=self._counted)
        self._counted = len(text)
        limit = min(limit, len(self.costs) - 1)
        tokens, chances = list(text[-self.sizes[0]:]), []
        while len(chances) < limit:
            guess = self._guess(tokens)
            if guess is None:
                break
            tokens.append(guess[0])
            chances.append(guess[1])
        return tokens[len(tokens) - len(chances):][:best_length(chances, self.costs)]

    def _guess(self, tokens: Sequence[int]) -> tuple[int, float] | None:
        """The likeliest next token and its chance, from the longest n-gram with counts."""
        for key in self._keys(tokens):
            here, before = self._context.followers(key), self._earlier.followers(key)
            if not here and not before:
                continue
            counts = dict(before)
            for token, count in here.items():
                counts[token] = counts.get(token, 0) + count
            token = max(counts, key=lambda t: (counts[t], -t))  # ties: the lower id, stably
            return token, counts[token] / (sum(counts.values()) + _SMOOTHING)
        return None

    def _keys(self, tokens: Sequence[int]) -> list[tuple[int, ...]]:
        """The n-grams that end ``tokens``, the longest first."""
        return [tuple(tokens[-size:]) for size in self.sizes if len(tokens) >= size]

    def finish(self, reply: Sequence[int]) -> None:
        reply = list(reply)
        self._earlier.add(reply)
        self._replies.append(reply)
        if len(self._replies) > _REPLIES:
            self._earlier.add(self._replies.popleft(), times=-1)
