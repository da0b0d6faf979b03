"""Shared pieces of the benchmarks: stand-in solvers with known costs, program packages, timing.

The stand-ins are backends with a fixed, known cost (no weights), so what a benchmark measures
is cgr's own work: the broker, the pool, the sandbox and lm-eval's plumbing.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cgr_plugin.models.backends import Generation, GenerationRequest
from cgr_plugin.programs.packages import write_programs

# A program shaped like the ones generators write: one judge per option, then pick.
JUDGE_PROGRAM = '''```python
def solve(item, solver):
    scores = {k: solver.judge(f"{item.question} Answer: {v}") for k, v in item.options.items()}
    return solver.pick(scores)
```'''
# Four free-text calls, as in benchmark (b) and (c).
ASK4_PROGRAM = '''```python
def solve(item, solver):
    replies = [solver.ask(f"{item.question} #{i}") for i in range(4)]
    return item.letters[0] if all(replies) else None
```'''


class FixedLatencyBackend:
    """Every batch costs ``latency`` seconds, whatever its size (a GPU's batched forward pass)."""

    name = "fixed-latency"

    def __init__(self, latency: float = 0.0, answer: str = "A") -> None:
        self.latency, self.answer = latency, answer
        self.batches: list[int] = []
        self.model_seconds = 0.0

    def _spend(self, n: int) -> None:
        started = time.perf_counter()
        self.batches.append(n)
        if self.latency:
            time.sleep(self.latency)
        self.model_seconds += time.perf_counter() - started

    def generate(self, requests: Sequence[GenerationRequest], *, progress: Any = False
                 ) -> list[Generation]:
        self._spend(len(requests))
        if callable(progress):
            progress(len(requests))
        return [Generation(self.answer, tokens_in=1, tokens_out=1) for _ in requests]

    def judge(self, prompts: Sequence[str]) -> list[float | str]:
        self._spend(len(prompts))
        return [0.5 for _ in prompts]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "latency": self.latency}


class TimedBackend:
    """Wraps a real backend and adds up the wall time spent inside it (the model time)."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.name = backend, backend.name
        self.model_seconds = 0.0
        self._lock = threading.Lock()

    def _timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self.model_seconds += time.perf_counter() - started

    def generate(self, requests: Sequence[GenerationRequest], *, progress: Any = False
                 ) -> list[Generation]:
        return self._timed(self.backend.generate, requests, progress=progress)

    def judge(self, prompts: Sequence[str]) -> list[float | str]:
        return self._timed(self.backend.judge, prompts)

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()


def write_package(folder: Path, keys: Iterable[str], program: str) -> Path:
    """A replayable package giving every item key the same program."""
    return write_programs(folder, dict.fromkeys(keys, program), generator="benchmark")


def bundle_items(dataset: str, limit: int) -> list[Any]:
    """The first ``limit`` test items of a bundled dataset, in the task's order."""
    from cgr_plugin._paths import DATA_DIR
    from cgr_plugin.data.loader import read_items

    return read_items(DATA_DIR / dataset / "test.jsonl")[:limit]


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    return (f"median {1000 * statistics.median(ordered):7.1f} ms   "
            f"p90 {1000 * ordered[int(0.9 * (len(ordered) - 1))]:7.1f} ms   (n={len(ordered)})")
