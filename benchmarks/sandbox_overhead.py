"""Per-program sandbox overhead: warm, cold and a bare interpreter, measured side by side.

A program makes 4 ask() calls against an instant solver. One run measures three ways of
running it, interleaved in blocks of 5 back-to-back programs (warm, cold, bare, warm, ...) so
that all three see the same machine load (machines here are shared):

- warm: ``run_program`` with warm sandboxes (the default): a program takes a sandbox that a
  zygote forked and set up ahead of time (own user, PID, mount, network, IPC, UTS and cgroup
  namespaces, fresh /proc and /tmp, no capabilities, its own cgroup), so its cost is the
  protocol plus killing the sandbox afterwards. Refilling the pool runs in the background,
  during the next programs: on a loaded machine it competes with them for the CPU, which is
  part of what is measured;
- cold: ``run_program`` with ``CGR_SANDBOX_WARM=0``: a fresh sh -> setpriv -> bwrap -> python
  per program, with a fresh cgroup, as before warm sandboxes existed;
- bare: ``python3 -I -S -c`` running the same program with no isolation and no solver channel.

and prints the median and p90 wall time per program of each, the ratios, and whether the
targets hold (warm median <= 10 ms, and <= half the bare interpreter's median). Both sandboxes
include the seccomp deny-list each worker installs before its program; its own cost is
measured apart, in forked children of one bare interpreter: installing it, and the extra time
of a cheap syscall (getppid) under it.

Run: python benchmarks/sandbox_overhead.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from cgr_plugin.sandbox.bwrap import WORKER
from cgr_plugin.sandbox.runner import WARM_ENV, isolation_level, run_program

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
TARGET_MS = 10.0


BLOCK = 5


def timed(fn, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def sandboxed(warm: bool) -> None:
    os.environ[WARM_ENV] = "1" if warm else "0"
    result = run_program(PROGRAM, ITEM, handle_call=lambda call: {"value": "B"})
    assert result.status == "ok", result
    assert result.start == ("warm" if warm else "cold"), result


def bare() -> None:
    subprocess.run([sys.executable, "-I", "-S", "-c", BARE], check=True, capture_output=True)


SECCOMP_COST = """
import os, time
def syscalls(n=20000):
    started = time.perf_counter()
    for _ in range(n):
        os.getppid()
    return (time.perf_counter() - started) / n
rows = []
for _ in range({n}):
    read, write = os.pipe()
    if os.fork() == 0:
        before = syscalls()
        started = time.perf_counter()
        _seccomp()
        installed = time.perf_counter() - started
        os.write(write, f"{{installed}} {{syscalls() - before}}".encode())
        os._exit(0)
    os.close(write)
    rows.append([float(x) for x in os.read(read, 100).split()])
    os.wait()
rows.sort()
print(rows[len(rows) // 2][0], sorted(r[1] for r in rows)[len(rows) // 2])
"""


def seccomp_cost(n: int) -> tuple[float, float]:
    """Median seconds to install the worker's seccomp filter, and per filtered syscall."""
    worker = WORKER.read_text(encoding="utf-8").split("\ndef main():")[0]
    shown = subprocess.run([sys.executable, "-I", "-S", "-c",
                            worker + SECCOMP_COST.format(n=n)],
                           check=True, capture_output=True, text=True).stdout.split()
    return float(shown[0]), float(shown[1])


def p90(times: list[float]) -> float:
    return times[int(0.9 * (len(times) - 1))]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    for _ in range(3):  # start the warm pool, warm the caches
        sandboxed(True), sandboxed(False), bare()
    level = isolation_level()
    runs = {f"warm sandbox ({level})": lambda: sandboxed(True),
            f"cold sandbox ({level})": lambda: sandboxed(False),
            "bare interpreter, no isolation": bare}
    rows: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(max(n // BLOCK, 1)):
        for name, fn in runs.items():
            time.sleep(0.1)  # the warm pool refills; nothing of one block spills into the next
            rows[name] += timed(fn, BLOCK)
    n = len(rows[next(iter(rows))])
    for name, times in rows.items():
        times.sort()
        print(f"{name:34} median {1000 * statistics.median(times):7.1f} ms   "
              f"p90 {1000 * p90(times):7.1f} ms   (n={n})")
    warm, cold, fresh = (statistics.median(times) for times in rows.values())
    print(f"warm / bare: {warm / fresh:.2f}x   cold / bare: {cold / fresh:.2f}x   "
          f"cold / warm: {cold / warm:.1f}x")
    print(f"target warm median <= {TARGET_MS:g} ms: "
          f"{'met' if 1000 * warm <= TARGET_MS else 'NOT met'} ({1000 * warm:.1f} ms)")
    print(f"target warm median <= half the bare interpreter's: "
          f"{'met' if warm <= fresh / 2 else 'NOT met'} ({warm / fresh:.2f}x)")
    install, per_call = seccomp_cost(max(n, 20))
    print(f"seccomp deny-list: {1e6 * install:.0f} us to install per program, "
          f"{1e9 * per_call:+.0f} ns per syscall under it")


if __name__ == "__main__":
    main()
