"""(c) Batch fill and throughput of the solver broker at concurrency 1, 4 and 16.

Programs making 4 ask() calls each run through `run_assisted` (real sandbox, real pool, real
broker) against a backend whose every batch costs a fixed latency, like a GPU forward pass.
Prints, per concurrency: programs/s, mean batch size, and the ratios the targets name
(mean batch >= 0.8 x concurrency; throughput at 16 >= 8 x throughput at 1).

Run: python benchmarks/broker_batching.py [--latency 0.05] [--programs-per-slot 4]
"""

from __future__ import annotations

import argparse
import time

from _harness import ASK4_PROGRAM, FixedLatencyBackend, bundle_items

from cgr_plugin.run.assisted import AssistedSettings, run_assisted
from cgr_plugin.sandbox.runner import isolation_level


def measure(concurrency: int, latency: float, per_slot: int) -> dict[str, float]:
    items = bundle_items("arc_easy", concurrency * per_slot)
    programs = {f"{item.dataset}/{item.id}": ASK4_PROGRAM for item in items}
    backend = FixedLatencyBackend(latency)
    settings = AssistedSettings(budget=4, concurrency=concurrency, solver_batch=concurrency,
                                batch_wait_ms=max(latency * 1000, 5))
    started = time.perf_counter()
    results = run_assisted(items, solver=backend, generator=None, programs=programs,
                           settings=settings, direct_prompt=str, direct_max_tokens=8)
    wall = time.perf_counter() - started
    ok = sum(assisted.status == "ok" for assisted, _ in results)
    return {"programs/s": len(items) / wall, "mean batch": sum(backend.batches) / len(
        backend.batches), "ok": ok, "n": len(items), "wall": wall}


def broker_alone(concurrency: int, latency: float, per_slot: int) -> float:
    """The same call pattern straight into the broker: what batching can reach without the
    sandbox staggering program starts."""
    from concurrent.futures import ThreadPoolExecutor

    from cgr_plugin.models.backends import GenerationRequest
    from cgr_plugin.run.broker import SolverBroker

    backend = FixedLatencyBackend(latency)
    with SolverBroker(backend, max_batch=concurrency,
                      wait_seconds=max(latency, 0.005)) as broker:
        def program(i: int) -> None:
            with broker.program():
                for c in range(4):
                    broker.generate(GenerationRequest(f"{i}-{c}", 8))

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(program, range(concurrency * per_slot)))
    return broker.stats.mean_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per solver batch")
    parser.add_argument("--programs-per-slot", type=int, default=4,
                        help="programs per unit of concurrency")
    args = parser.parse_args()
    print(f"sandbox: {isolation_level()}; solver latency {1000 * args.latency:.0f} ms per batch")
    alone = broker_alone(16, args.latency, args.programs_per_slot)
    print(f"broker alone (16 threads calling it, no sandbox): mean batch {alone:.2f}")
    rows = {c: measure(c, args.latency, args.programs_per_slot) for c in (1, 4, 16)}
    for c, row in rows.items():
        print(f"concurrency {c:2}: {row['programs/s']:6.2f} programs/s   mean batch "
              f"{row['mean batch']:5.2f} ({row['mean batch'] / c:.2f} x concurrency)   "
              f"{row['ok']}/{row['n']} ok   {row['wall']:.1f} s")
    speedup = rows[16]["programs/s"] / rows[1]["programs/s"]
    fill = min(row["mean batch"] / c for c, row in rows.items())
    print(f"throughput 16 vs 1: {speedup:.1f}x (target >= 8x: "
          f"{'met' if speedup >= 8 else 'NOT met'})")
    print(f"lowest batch fill: {fill:.2f} x concurrency (target >= 0.8: "
          f"{'met' if fill >= 0.8 else 'NOT met'})")


if __name__ == "__main__":
    main()
