"""What every backend speaks: requests and answers as values, and the ``Backend`` protocol.

A backend never raises for one request that fails (a prompt too long, a server error): the
answer carries the error, so the item is recorded with it and the others go on. A prompt that
does not fit the model's context (with room for the reply) is never cut to fit: it is not sent,
and the answer says so (``Generation.too_long``) with both numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import CGRError

__all__ = ["Backend", "BackendError", "Generation", "GenerationRequest", "Judgement",
           "Progress", "judgements", "p_yes_from_logprobs", "prompt_too_long",
           "seconds_each"]


class BackendError(CGRError):
    """A model that cannot be set up (unknown name, missing package, bad arguments)."""


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str  # the user turn; backends apply the model's chat template
    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0  # 0: greedy; above 0: sampled (the budget-matched control)
    seed: int | None = None
    # greedy decoding may check up to this many prompt-lookup draft tokens in one batch
    # (faster; near-ties can go the other way, docs/performance.md); None: the backend's own
    draft: int | None = None
    # stop a greedy reply whose last block of >= 16 tokens has come this many times in a row
    # (a loop it would repeat to max_tokens); 0: never
    stop_repeats: int = 0


@dataclass(frozen=True)
class Generation:
    text: str | None
    error: str | None = None  # set when this request failed; text is then None
    tokens_in: int | None = None
    tokens_out: int | None = None
    too_long: bool = False  # the prompt did not fit the model's context: not sent (error says)
    looped: str | None = None  # why a reply was stopped as a loop (GenerationRequest.stop_repeats)
    # this request's own time where the backend answers one at a time (a cache hit: 0.0);
    # None: only the whole batch's time is known
    seconds: float | None = None


def seconds_each(generations: Sequence[Generation], batch_seconds: float) -> list[float]:
    """Each request's time in a batch that took ``batch_seconds``: its own where the backend
    measured it (a long program is not hidden in an average), else an even share of what the
    batch took beyond the measured ones."""
    measured = [g.seconds for g in generations if g.seconds is not None]
    unmeasured = len(generations) - len(measured)
    share = max(batch_seconds - sum(measured), 0.0) / unmeasured if unmeasured else 0.0
    return [share if g.seconds is None else g.seconds for g in generations]


def prompt_too_long(model: str, prompt_tokens: int, max_tokens: int, context: int
                    ) -> Generation:
    """The answer to a prompt that does not fit: it names the limit and the prompt's length."""
    return Generation(
        None, f"prompt too long for {model}: {prompt_tokens} prompt tokens + {max_tokens} for "
        f"the reply exceed its context of {context} tokens; the prompt was not sent (a larger "
        "n_ctx, where the model allows it, or a shorter prompt fits)",
        tokens_in=prompt_tokens, too_long=True)


@dataclass(frozen=True)
class Judgement:
    """The answer to one yes/no question: P(yes) from the model's scores, or why there is none."""

    p_yes: float | None
    error: str | None = None  # set when this question failed; p_yes is then None

    def __post_init__(self) -> None:
        if (self.p_yes is None) == (self.error is None):
            raise ValueError("a Judgement holds either p_yes or an error")

    @classmethod
    def failed(cls, error: str) -> Judgement:
        return cls(None, error)

    @classmethod
    def of(cls, value: Judgement | float | str) -> Judgement:
        """A backend's answer as a Judgement; plugin backends written for 0.1 return a float
        (P(yes)) or a string (the error), and keep working."""
        if isinstance(value, Judgement):
            return value
        if isinstance(value, str):
            return cls.failed(value)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return cls(float(value))
        raise TypeError(f"a judge() answer must be a Judgement, got {type(value).__name__}")


def judgements(values: Iterable[Judgement | float | str]) -> list[Judgement]:
    return [Judgement.of(value) for value in values]


def p_yes_from_logprobs(yes_logprob: float, no_logprob: float) -> float:
    """P(yes) from the two answers' log-probabilities, renormalized over just these two."""
    top = max(yes_logprob, no_logprob)
    if not math.isfinite(top):
        raise ValueError("the model gives neither Yes nor No any probability")
    yes, no = math.exp(yes_logprob - top), math.exp(no_logprob - top)
    return yes / (yes + no)


Progress = bool | Callable[[int], None]  # a tqdm bar of the backend's own, or a tick(n) callback


class Backend(Protocol):
    """A language model: chat turn in, text out; yes/no questions in, P(yes) out.

    Optional attribute ``retries_itself`` (default False): True when the backend's own client
    already retries failed calls (lm-eval's API models), so ``RetryingBackend`` adds none.
    """

    name: str

    def generate(self, requests: Sequence[GenerationRequest], *, progress: Progress = False
                 ) -> list[Generation]: ...

    def judge(self, prompts: Sequence[str]) -> list[Judgement]:
        """P(yes) for each yes/no question from the model's scores (an error on failure)."""
        ...

    def describe(self) -> dict[str, Any]: ...
