"""One queue between every running program and the solver: pending calls go out as batches.

Programs run concurrently in a thread pool; each solver call blocks its program's thread on a
future while one dispatcher thread owns the backend. A batch leaves when it is full
(``max_batch``), when every registered program is waiting on a call (nothing more can arrive),
or when the oldest call has waited ``wait_seconds`` (counted from when the backend was last
free, so calls made during a batch still wait for the callers that batch is about to release).
Backends are only ever called from the dispatcher, so llama.cpp (not thread-safe) and lm-eval's
batching backends both work; the same batch shape pays off with hf and vllm on GPUs.

The dispatcher never sleeps: it makes one attempt per call, and a failed call is retried
(``RetryingBackend``'s policy, with its backoff) from its program's own thread, so one program's
backoff never holds back another's batch. If the dispatcher dies (a bug, or a backend raising
past ``Exception``), every waiting call and every later one fails with ``BrokerError`` at once:
recorded in that call's trace, never a program blocked forever.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..models.base import Backend, Generation, GenerationRequest, Judgement, judgements
from ..models.retry import RetryPolicy, find_retrying, single_attempts

__all__ = ["BrokerError", "BrokerStats", "SolverBroker"]

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker cannot answer: it is closed, or its dispatcher thread died (named here)."""


@dataclass
class BrokerStats:
    batches: int = 0
    calls: int = 0
    model_seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)

    @property
    def mean_batch(self) -> float:
        return self.calls / self.batches if self.batches else 0.0


@dataclass
class _Pending:
    kind: str  # "generate" or "judge"
    payload: GenerationRequest | str
    future: Future = field(default_factory=Future)
    since: float = field(default_factory=time.perf_counter)
    final: bool = False  # the backend raised: an error not worth retrying (e.g. BackendError)


class SolverBroker:
    """Batches the solver calls of concurrently running programs (see the module docstring)."""

    def __init__(self, backend: Backend, *, max_batch: int = 16,
                 wait_seconds: float = 0.005) -> None:
        self.backend, self.max_batch, self.wait_seconds = backend, max(1, max_batch), wait_seconds
        self.stats = BrokerStats()
        self._pending: list[_Pending] = []
        self._active = 0
        self._closed = False
        self._dead: str | None = None  # why the dispatcher stopped, once it has
        self._retrying = find_retrying(backend)
        self._free_since = time.perf_counter()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._dispatch, name="cgr-broker", daemon=True)
        self._thread.start()

    # -- program side ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def program(self) -> Iterator[None]:
        """Count a running program: when all of them wait on calls, the batch goes at once."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        """Inside ``program()``: a stretch in which this program makes no solver calls (its
        provenance re-runs), so batches do not wait for it."""
        with self._cond:
            self._active -= 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._active += 1

    def generate(self, request: GenerationRequest) -> Generation:
        return self._call("generate", request)  # type: ignore[return-value]

    def judge(self, prompt: str) -> Judgement:
        return self._call("judge", prompt)  # type: ignore[return-value]

    def _call(self, kind: str, payload: GenerationRequest | str) -> Generation | Judgement:
        """One call's answer, retried here, on the caller's thread, as its policy says."""
        answer, final = self._submit(kind, payload)
        if answer.error is None or final or self._retrying is None:
            return answer
        policy: RetryPolicy = self._retrying.policy
        for retry in range(1, policy.retries + 1):
            if not policy.retryable(answer.error):
                return answer
            time.sleep(policy.delay(retry))  # this program waits; the others' batches go on
            self._retrying.count_retries(1)
            answer, final = self._submit(kind, payload)
            if answer.error is None or final:
                return answer
        if not policy.retryable(answer.error):
            return answer
        message = policy.gave_up(answer.error)
        return Generation(None, message) if kind == "generate" else Judgement.failed(message)

    def _submit(self, kind: str, payload: GenerationRequest | str
                ) -> tuple[Generation | Judgement, bool]:
        pending = _Pending(kind, payload)
        with self._cond:
            if self._dead is not None:
                raise BrokerError(self._dead)
            if self._closed:
                raise BrokerError("the solver broker is closed")
            self._pending.append(pending)
            self._cond.notify_all()
        return pending.future.result(), pending.final

    # -- dispatcher ------------------------------------------------------------------------------
    def _deadline(self) -> float:
        return max(self._pending[0].since, self._free_since) + self.wait_seconds

    def _ready(self) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self.max_batch or len(self._pending) >= self._active:
            return True
        return time.perf_counter() >= self._deadline()

    def _dispatch(self) -> None:
        batch: list[_Pending] = []
        try:
            with single_attempts():  # retries wait on the callers' threads, never here
                while True:
                    with self._cond:
                        while not self._ready():
                            if self._closed and not self._pending:
                                return
                            timeout = None
                            if self._pending:
                                timeout = max(self._deadline() - time.perf_counter(), 0.0005)
                            self._cond.wait(timeout)
                        batch, self._pending = (self._pending[:self.max_batch],
                                                self._pending[self.max_batch:])
                    self._answer(batch)
                    batch = []
                    with self._cond:
                        self._free_since = time.perf_counter()
        except BaseException as err:  # whatever killed it, no program may wait forever
            log.exception("cgr: the solver broker stopped; its calls fail from now on")
            self._fail_all(f"the solver broker stopped: {type(err).__name__}: {err}", batch)

    def _fail_all(self, reason: str, in_flight: Sequence[_Pending]) -> None:
        with self._cond:
            self._dead = reason
            waiting, self._pending = [*in_flight, *self._pending], []
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(BrokerError(reason))

    def _answer(self, batch: Sequence[_Pending]) -> None:
        started = time.perf_counter()
        for kind in ("generate", "judge"):
            group = [p for p in batch if p.kind == kind]
            if not group:
                continue
            try:
                if kind == "generate":
                    answers: Sequence[Generation | Judgement] = self.backend.generate(
                        [p.payload for p in group])  # type: ignore[misc]
                else:
                    answers = judgements(self.backend.judge([str(p.payload) for p in group]))
                if len(answers) != len(group):
                    raise RuntimeError(f"backend answered {len(answers)} of {len(group)} calls")
            except Exception as err:  # one failed batch answers each of its calls with an error
                message = f"{type(err).__name__}: {err}"
                answers = [Generation(None, message) if kind == "generate"
                           else Judgement.failed(message) for _ in group]
                for pending in group:
                    pending.final = True
            for pending, answer in zip(group, answers, strict=True):
                pending.future.set_result(answer)
        self.stats.batches += 1
        self.stats.calls += len(batch)
        self.stats.sizes.append(len(batch))
        self.stats.model_seconds += time.perf_counter() - started

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> SolverBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
