"""Per-program sandbox overhead against a fresh-interpreter baseline, measured side by side.

A program makes 4 ask() calls against an instant solver. Prints the median and p90 wall time per
program for: the cgr sandbox (bubblewrap, cgroup, nobody), and a bare `python3 -I -S -c` that
runs the same program with no isolation and no solver channel.

Run: python benchmarks/sandbox_overhead.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from cgr_plugin.sandbox import isolation_level, run_program

PROGRAM = """
def solve(item, solver):
    replies = [solver.ask(f"{item.question} #{i}") for i in range(4)]
    return "B" if all(replies) else None
"""
BARE = PROGRAM + """
class S:
    def ask(self, prompt):
        return "B"
class I:
    question = "2 + 2?"
print(solve(I(), S()))
"""
ITEM = {"id": "q", "question": "2 + 2?", "letters": ["A", "B"], "choices": ["3", "4"]}


def timed(fn, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def sandboxed() -> None:
    result = run_program(PROGRAM, ITEM, handle_call=lambda call: {"value": "B"})
    assert result.status == "ok", result


def bare() -> None:
    subprocess.run([sys.executable, "-I", "-S", "-c", BARE], check=True, capture_output=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    sandboxed(), bare()  # warm caches
    rows = {"sandbox (" + isolation_level() + ")": timed(sandboxed, n),
            "fresh interpreter, no isolation": timed(bare, n)}
    for name, times in rows.items():
        times.sort()
        print(f"{name:38} median {1000 * statistics.median(times):7.1f} ms   "
              f"p90 {1000 * times[int(0.9 * (len(times) - 1))]:7.1f} ms   (n={n})")
    ratio = statistics.median(rows[next(iter(rows))]) / statistics.median(
        rows["fresh interpreter, no isolation"])
    print(f"sandbox / fresh interpreter: {ratio:.2f}x")


if __name__ == "__main__":
    main()
