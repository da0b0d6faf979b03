"""(a) Orchestration overhead = (wall time - model time) / wall time, on a 50-item run.

The embedded solver (SmolLM2-135M on llama.cpp) answers every call; model time is the wall time
spent inside its backend calls, measured at the backend boundary. By default every item's program
is replayed from a package (one judge() per option, then pick(), as generators write them), so
the run exercises the broker, the pool and the sandbox without a generator; `--generator NAME`
writes programs with a registry model instead (its time counts as model time too).

Run: python benchmarks/orchestration_overhead.py [--limit 50] [--task cgr_arc_easy]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _harness import JUDGE_PROGRAM, TimedBackend, bundle_items, write_package

import cgr_plugin
from cgr_plugin.models.backends import GenerationRequest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--dataset", default="arc_easy", help="a bundled dataset")
    parser.add_argument("--generator", help="write programs with this model instead of replay")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    cgr_plugin.register()
    from lm_eval.evaluator import evaluate
    from lm_eval.tasks import TaskManager

    from cgr_plugin.run.model import CGRLM

    model_args = {"concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        if args.generator:
            model_args["generator"] = args.generator
        else:
            keys = [f"{i.dataset}/{i.id}" for i in bundle_items(args.dataset, args.limit)]
            model_args["programs"] = str(write_package(Path(tmp) / "pkg", keys, JUDGE_PROGRAM))
        lm = CGRLM(**model_args)
        lm.solver = TimedBackend(lm.solver)
        timed = [lm.solver]
        if args.generator and lm.generator is not lm.solver:  # one model in both roles: once
            lm._generator = TimedBackend(lm.generator)
            timed.append(lm._generator)
        # load the weights before the clock starts: loading is not orchestration
        lm.solver.generate([GenerationRequest("Hello", 1)])
        lm.solver.judge(["Is this a warm-up?"])
        if args.generator:
            lm.generator.generate([GenerationRequest("Hello", 1)])
        for backend in timed:
            backend.model_seconds = 0.0

        started = time.perf_counter()
        tasks = TaskManager(include_path=str(cgr_plugin.TASKS_DIR),
                            include_defaults=False).load([f"cgr_{args.dataset}"])
        loaded = time.perf_counter()
        results = evaluate(lm, tasks, limit=args.limit, confirm_run_unsafe_code=True,
                           verbosity="WARNING")
        done = time.perf_counter()

    model = sum(b.model_seconds for b in timed)
    evaluation, whole = done - loaded, done - started
    metrics = results["results"][f"cgr_{args.dataset}"]
    print(f"{args.limit} items of {args.dataset}; solver {lm.solver.name}; programs "
          f"{'by ' + args.generator if args.generator else 'replayed (judge per option)'}; "
          f"concurrency {args.concurrency}")
    print(f"direct acc {metrics.get('acc,direct', float('nan')):.2f}, assisted acc "
          f"{metrics.get('acc,assisted', float('nan')):.2f}, assisted ok "
          f"{metrics.get('status_ok,assisted', float('nan')):.2f}, solver calls/item "
          f"{metrics.get('solver_calls,assisted', float('nan')):.1f}")
    print(f"model time {model:.1f} s; evaluation wall {evaluation:.1f} s; "
          f"task loading {loaded - started:.1f} s")
    overhead = (evaluation - model) / evaluation
    print(f"orchestration overhead (evaluation): {100 * overhead:.1f}% "
          f"(target <= 5%: {'met' if overhead <= 0.05 else 'NOT met'})")
    print(f"including task loading: {100 * (whole - model) / whole:.1f}%")


if __name__ == "__main__":
    main()
