"""One progress bar per stage (direct, generation, execution), alive across chunks.

Each bar counts items and shows items/s (tqdm's rate) and the stage's solver calls/s, computed
over the time the stage was actually running, so a bar is comparable between chunks and runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["STAGES", "StageBars"]

STAGES = {"direct": "direct", "generation": "programs written", "execution": "programs run",
          "control": "budget-matched control", "cot": "chain-of-thought control"}


class StageBars:
    def __init__(self, total: int, stages: tuple[str, ...], *, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self._lock = threading.Lock()
        self.calls = dict.fromkeys(stages, 0)
        self.busy = dict.fromkeys(stages, 0.0)
        self._since: dict[str, float] = {}
        self.bars: dict[str, Any] = {
            stage: tqdm(total=total, desc=f"cgr {STAGES.get(stage, stage)}", unit="item",
                        position=i, disable=not enabled, dynamic_ncols=True)
            for i, stage in enumerate(stages)}

    @contextmanager
    def stage(self, name: str, calls_per_item: int = 0) -> Iterator[Callable[[int], None]]:
        """Time one chunk of a stage; yields ``tick(n)`` for items finished in it."""
        self._since[name] = time.perf_counter()
        try:
            yield lambda n=1: self.advance(name, n, n * calls_per_item)
        finally:
            with self._lock:
                self.busy[name] += time.perf_counter() - self._since.pop(name)

    def advance(self, name: str, items: int = 1, calls: int = 0) -> None:
        """``items`` finished in stage ``name`` after ``calls`` solver calls."""
        with self._lock:
            self.calls[name] += calls
            bar = self.bars[name]
            running = time.perf_counter() - self._since.get(name, time.perf_counter())
            if self.calls[name]:
                bar.set_postfix_str(
                    f"solver calls/s={self.calls[name] / max(self.busy[name] + running, 1e-9):.2f}",
                    refresh=False)
            bar.update(items)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
