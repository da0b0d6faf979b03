"""(e) Peak memory of the orchestrator for 1,000 items, model weights excluded.

The solver is an lm-eval model with no weights that answers at once (registered here as
``cgr-bench-instant`` and reached through cgr's lm-eval backend path), so the resident memory of
this process is cgr + lm-eval + their imports. Every item runs all channels: direct, a replayed
program (one judge per option) in the sandbox, and the generator-side answer. Sandboxed programs
are separate processes and are not counted. Prints the resident set after setup, its peak during
the run, and the growth.

Run: python benchmarks/orchestrator_memory.py [--items 1000] [--dataset mmlu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from _harness import JUDGE_PROGRAM, bundle_items, write_package

import cgr_plugin

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.stop = rss_mb(), threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())


def register_instant_model() -> None:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model

    @register_model("cgr-bench-instant")
    class InstantLM(LM):
        """Answers "A" to every prompt and scores every continuation alike: no weights."""

        def generate_until(self, requests, disable_tqdm=False):  # type: ignore[no-untyped-def]
            return ["A" for _ in requests]

        def loglikelihood(self, requests, disable_tqdm=False):  # type: ignore[no-untyped-def]
            return [(-0.7, False) for _ in requests]

        def loglikelihood_rolling(self, requests, disable_tqdm=False):  # type: ignore[no-untyped-def]
            return [-1.0 for _ in requests]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--dataset", default="mmlu", help="a bundled dataset")
    args = parser.parse_args()

    cgr_plugin.register()
    register_instant_model()
    from lm_eval.evaluator import evaluate
    from lm_eval.tasks import TaskManager

    from cgr_plugin.run.model import CGRLM

    with tempfile.TemporaryDirectory() as tmp:
        keys = [f"{i.dataset}/{i.id}" for i in bundle_items(args.dataset, args.items)]
        package = write_package(Path(tmp) / "pkg", keys, JUDGE_PROGRAM)
        lm = CGRLM(solver="cgr-bench-instant", programs=str(package), concurrency=4)
        tasks = TaskManager(include_path=str(cgr_plugin.TASKS_DIR),
                            include_defaults=False).load([f"cgr_{args.dataset}"])
        baseline = rss_mb()
        sampler = PeakSampler()
        sampler.start()
        started = time.perf_counter()
        results = evaluate(lm, tasks, limit=args.items, confirm_run_unsafe_code=True,
                           verbosity="WARNING")
        wall = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
    metrics = results["results"][f"cgr_{args.dataset}"]
    print(f"{args.items} items of {args.dataset}, all channels, programs replayed; {wall:.0f} s; "
          f"assisted ok {metrics['status_ok,assisted']:.2f}")
    print(f"resident memory after setup (imports, task loaded) {baseline:.0f} MB; "
          f"peak during the run {sampler.peak:.0f} MB; growth {sampler.peak - baseline:.0f} MB")
    print(f"peak {'<=' if sampler.peak <= 300 else '>'} 300 MB target "
          f"({'met' if sampler.peak <= 300 else 'NOT met'} for the whole process; growth "
          f"{'met' if sampler.peak - baseline <= 300 else 'NOT met'})")


if __name__ == "__main__":
    main()
