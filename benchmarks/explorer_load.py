"""Load time of the report's item explorer at 10,000 items, in headless Chromium (no model).

Writes a report over N synthetic items (each with a 12-line program, four solver calls with
prompts and replies, captured output and audits: about the weight of a real run's records)
and opens report.html from file:// three times:

- ready: milliseconds from navigation until the first page of rows is on screen (the page
  records it as ``data-ready-ms``; it parses the rows block, builds the filters and renders);
- open: milliseconds to open one item's detail the first time (this parses the details block);
- process: wall seconds of the whole ``chromium --dump-dom`` run, start-up included.

It prints the page size and the median of each. Run: python benchmarks/explorer_load.py [N]
"""

from __future__ import annotations

import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cgr_plugin.analysis.explorer import explorer_data
from cgr_plugin.analysis.render import write_report
from cgr_plugin.analysis.runs import LoggedItem, item_outcome
from cgr_plugin.analysis.summary import build_summary
from cgr_plugin.record import CGRRecord, ChannelResult

LETTERS = "ABCD"
PROGRAM = "\n".join(["def solve(item, solver):", "    scores = {}",
                     "    for letter, option in item.options.items():",
                     "        # judge each option on its own",
                     '        prompt = f"{item.question}\\nAnswer: {option}\\nIs this right?"',
                     "        scores[letter] = solver.judge(prompt)",
                     "    best = max(scores, key=scores.get)",
                     "    if scores[best] < 0.5:",
                     '        return solver.choose()',
                     "    print(scores)",
                     "    return best", ""])


def _record(number: int, rng: random.Random) -> CGRRecord:
    gold = rng.choice(LETTERS)
    question = f"Synthetic question {number}: " + "which option is right? " * 6
    item = {"id": f"synthetic/test/{number}", "dataset": "synthetic", "question": question,
            "choices": [f"option {c} of item {number}" for c in LETTERS], "answer": gold}
    direct, assisted = rng.choice(LETTERS), rng.choice(LETTERS)
    trace = [{"kind": "judge", "prompt": f"{question}\nAnswer: option {c}\nIs this right?",
              "p_yes": rng.random(), "seconds": 0.02} for c in LETTERS]
    return CGRRecord(
        item=item, solver="solver-s", generator="gen-g",
        direct=ChannelResult(status="ok", answer=direct, raw=f"The answer is {direct}.",
                             prompt=question, solver_calls=1),
        assisted=ChannelResult(status="ok", answer=assisted, program=PROGRAM, trace=trace,
                               solver_calls=4, raw=f"```python\n{PROGRAM}```",
                               output="{'A': 0.1, 'B': 0.7, 'C': 0.1, 'D': 0.1}\n",
                               audits={"hard_coded": False, "program_shape": "judge-each"}),
        generator_side=ChannelResult(status="ok", answer=rng.choice(LETTERS)))


def _write(folder: Path, n: int) -> Path:
    rng = random.Random(0)
    logged = [LoggedItem(folder, f"cgr_synthetic_{k % 4}", _record(k, rng), {})
              for k in range(n)]
    outcomes = [item_outcome(item) for item in logged]
    summary = build_summary(outcomes, runs=[str(folder)], resamples=200)
    return write_report(summary, folder / "rep", explorer_data(logged, outcomes))["html"]


def _open(page: Path, fragment: str, profile: Path) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--dump-dom",
         page.as_uri() + fragment], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout, time.perf_counter() - started


def main(n: int) -> None:
    if shutil.which("chromium") is None:
        sys.exit("needs chromium (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        page = _write(Path(tmp), n)
        print(f"{n} items: report.html {page.stat().st_size / 1e6:.1f} MB")
        ready, opened, wall = [], [], []
        for attempt in range(3):
            dom, seconds = _open(page, "#open=0", Path(tmp) / f"profile{attempt}")
            ready.append(float(re.search(r'data-ready-ms="([\d.]+)"', dom).group(1)))
            opened.append(float(re.search(r'data-open-ms="([\d.]+)"', dom).group(1)))
            wall.append(seconds)
            shown = len(re.findall(r"<tr data-i=", dom))
            assert shown == min(n, 100), shown  # one page of rows, not all of them
        print(f"ready (rows on screen): median {statistics.median(ready):.0f} ms")
        print(f"open (first detail):    median {statistics.median(opened):.0f} ms")
        print(f"process (with start-up): median {statistics.median(wall):.1f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
