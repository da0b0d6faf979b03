"""Retries of failed model calls, with exponential backoff, for backends that do not retry.

Servers time out and drop connections; a retry turns most of those into answers. What still
fails is returned as an error value and recorded with the item, never raised into the run.

Retries never stack: lm-eval's API models (local-*, openai-*) already retry each request inside
their client (``max_retries``, default 3), so a backend with ``retries_itself`` gets no retries
from cgr on top. And nobody waits while holding the model: on a thread inside
``single_attempts()`` (the solver broker's dispatcher) ``RetryingBackend`` makes one attempt and
leaves the backoff and the retry to its caller, who waits on its own thread.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from .base import (
    Backend,
    BackendError,
    Generation,
    GenerationRequest,
    Judgement,
    Progress,
    judgements,
)

__all__ = ["RetryPolicy", "RetryingBackend", "find_retrying", "single_attempts"]

log = logging.getLogger(__name__)

# A prompt longer than the model's context fails the same way every time.
_PERMANENT = re.compile(r"context (window|length)|maximum context|too long|exceeds? (the )?"
                        r"(context|max)", re.I)
_SINGLE_ATTEMPTS: ContextVar[bool] = ContextVar("cgr_single_attempts", default=False)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2  # attempts after the first
    backoff: float = 1.0  # seconds before the first retry; doubled for each one after

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, ...)."""
        return self.backoff * 2 ** (retry - 1)

    @staticmethod
    def retryable(reason: str) -> bool:
        return not _PERMANENT.search(reason)

    def gave_up(self, reason: str) -> str:
        """The recorded error of a call still failing after every retry."""
        return f"{reason} (after {self.retries} retries)" if self.retries else reason


@contextlib.contextmanager
def single_attempts() -> Iterator[None]:
    """Within (on this thread): ``RetryingBackend`` tries each request once, never sleeps."""
    token = _SINGLE_ATTEMPTS.set(True)
    try:
        yield
    finally:
        _SINGLE_ATTEMPTS.reset(token)


@dataclass(frozen=True)
class _Failed:
    reason: str


class RetryingBackend:
    """Retries failed requests (errors as values, or a raised call) with exponential backoff.

    What still fails after ``retries`` attempts is returned as an error value naming them
    (status ``error`` / ``generator_error``). A backend that cannot be set up (``BackendError``)
    is raised: that is the user's to fix, not a transient fault.
    """

    def __init__(self, backend: Backend, retries: int = 2, backoff: float = 1.0) -> None:
        self.backend = backend
        self.name = backend.name
        self.retried = 0  # retries made, by this backend or by the broker on its behalf
        self._asked = RetryPolicy(max(0, retries), max(0.0, backoff))
        self._policy: RetryPolicy | None = None
        self._lock = threading.Lock()

    @property
    def policy(self) -> RetryPolicy:
        """The retries cgr adds: none for a backend whose client retries by itself."""
        if self._policy is None:  # asked at first use: it may load the model's class
            itself = bool(getattr(self.backend, "retries_itself", False))
            self._policy = replace(self._asked, retries=0) if itself else self._asked
        return self._policy

    def count_retries(self, n: int) -> None:
        with self._lock:
            self.retried += n

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def _attempt(self, call: Callable[[list[Any]], list[Any]], todo: list[Any]) -> list[Any]:
        try:
            out = call(todo)
            if len(out) != len(todo):
                raise RuntimeError(f"{self.name} answered {len(out)} of {len(todo)} requests")
            return out
        except BackendError:
            raise
        except Exception as err:  # the whole call failed: every request of it did
            return [_Failed(f"{type(err).__name__}: {err}") for _ in todo]

    def _with_retries(self, requests: Sequence[Any], call: Callable[[list[Any]], list[Any]],
                      as_error: Callable[[str], Any]) -> list[Any]:
        single = _SINGLE_ATTEMPTS.get()
        policy = RetryPolicy(0, 0.0) if single else self.policy
        out: list[Any] = [None] * len(requests)
        todo = list(range(len(requests)))
        for attempt in range(policy.retries + 1):
            if attempt:
                self.count_retries(len(todo))
                time.sleep(policy.delay(attempt))
            answers = self._attempt(call, [requests[i] for i in todo])
            still = []
            for index, answer in zip(todo, answers, strict=True):
                reason = answer.reason if isinstance(answer, _Failed) else answer.error
                # a backend's own error answer is kept whole (a too-long prompt's numbers)
                out[index] = as_error(reason) if isinstance(answer, _Failed) else answer
                if reason is not None and policy.retryable(reason):
                    still.append(index)
            todo = still
            if not todo:
                break
        if todo and not single:
            if policy.retries:
                log.warning("%s: %d request(s) still failing after %d retries: %s", self.name,
                            len(todo), policy.retries, out[todo[0]].error)
            for index in todo:
                out[index] = as_error(policy.gave_up(out[index].error))
        return out

    def generate(self, requests: Sequence[GenerationRequest], *, progress: Progress = False
                 ) -> list[Generation]:
        return self._with_retries(
            requests, lambda todo: self.backend.generate(todo, progress=progress),
            as_error=lambda reason: Generation(None, reason))

    def judge(self, prompts: Sequence[str]) -> list[Judgement]:
        return self._with_retries(prompts, lambda todo: judgements(self.backend.judge(todo)),
                                  as_error=Judgement.failed)


def find_retrying(backend: object) -> RetryingBackend | None:
    """The ``RetryingBackend`` in a chain of wrappers (each holding the next as ``.backend``)."""
    for _ in range(16):
        if isinstance(backend, RetryingBackend):
            return backend
        backend = getattr(backend, "backend", None)
        if backend is None:
            return None
    return None
