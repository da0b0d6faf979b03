"""One queue between every running program and the solver: pending calls go out as batches.

Programs run concurrently in a thread pool; each solver call blocks its program's thread on a
future while one dispatcher thread owns the backend. A batch leaves when it is full
(``max_batch``), when every registered program is waiting on a call (nothing more can arrive),
or when the oldest call has waited ``wait_seconds`` (counted from when the backend was last
free, so calls made during a batch still wait for the callers that batch is about to release).
Backends are only ever called from the dispatcher, so llama.cpp (not thread-safe) and lm-eval's
batching backends both work; the same batch shape pays off with hf and vllm on GPUs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..models.backends import Backend, Generation, GenerationRequest

__all__ = ["BrokerStats", "SolverBroker"]


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


class SolverBroker:
    """Batches the solver calls of concurrently running programs (see the module docstring)."""

    def __init__(self, backend: Backend, *, max_batch: int = 16,
                 wait_seconds: float = 0.005) -> None:
        self.backend, self.max_batch, self.wait_seconds = backend, max(1, max_batch), wait_seconds
        self.stats = BrokerStats()
        self._pending: list[_Pending] = []
        self._active = 0
        self._closed = False
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

    def generate(self, request: GenerationRequest) -> Generation:
        return self._submit("generate", request)

    def judge(self, prompt: str) -> float | str:
        return self._submit("judge", prompt)

    def _submit(self, kind: str, payload: GenerationRequest | str):  # type: ignore[no-untyped-def]
        pending = _Pending(kind, payload)
        with self._cond:
            if self._closed:
                raise RuntimeError("the solver broker is closed")
            self._pending.append(pending)
            self._cond.notify_all()
        return pending.future.result()

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
            with self._cond:
                self._free_since = time.perf_counter()

    def _answer(self, batch: Sequence[_Pending]) -> None:
        started = time.perf_counter()
        for kind in ("generate", "judge"):
            group = [p for p in batch if p.kind == kind]
            if not group:
                continue
            try:
                if kind == "generate":
                    answers: Sequence[object] = self.backend.generate(
                        [p.payload for p in group])  # type: ignore[misc]
                else:
                    answers = self.backend.judge([str(p.payload) for p in group])
                if len(answers) != len(group):
                    raise RuntimeError(f"backend answered {len(answers)} of {len(group)} calls")
            except Exception as err:  # one failed batch answers each of its calls with an error
                message = f"{type(err).__name__}: {err}"
                answers = [Generation(None, message) if kind == "generate" else message
                           for _ in group]
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
