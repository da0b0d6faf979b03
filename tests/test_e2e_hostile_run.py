"""Issue 12 acceptance: a full ``cgr-eval`` run with ``journal=`` in which one program prints a
lone surrogate and another tries the pipe hang (F_SETPIPE_SZ, then never reads) completes, with
every item recorded and every later sample present; a rerun resumes from the journal.

Programs are replayed from a package (no generator model); the solver is SmolLM2-135M. The
parent writes replies without blocking, so the hang ends as protocol_error (issue 12, item 3).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cgr_plugin.programs.packages import write_programs
from cgr_plugin.record import CGRRecord

from .conftest import needs_llama, run_cli
from .test_e2e_cli import _samples

pytestmark = [pytest.mark.slow, needs_llama]
LIMIT = 6
PROGRAM_TIMEOUT = 3
SURROGATE = """```python
def solve(item, solver):
    print("lone \\ud800 high and \\udcff escaped byte")
    raise ValueError("\\ud800" + item.question[:20])
```"""
# Shrink the reply pipe to one page, queue the budget's worth of long asks, then never read:
# a parent that writes replies blocking stays stuck forever (the program clock is paused while
# the parent answers, so the program limit alone never ends it).
PIPE_HANG = """```python
import fcntl, json, sys, time

def solve(item, solver):
    worker = next(m for m in list(sys.modules.values())
                  if getattr(m, "_in", None) is not None and getattr(m, "_out", None) is not None)
    fcntl.fcntl(worker._in.fileno(), 1031, 4096)  # F_SETPIPE_SZ
    for i in range(8):
        worker._out.write(json.dumps({"type": "call", "kind": "ask", "max_tokens": 1024,
                                      "prompt": "Write a very long story about a dragon, "
                                                "in many long paragraphs."}) + "\\n")
    worker._out.flush()
    time.sleep(3600)
```"""
HONEST = """```python
def solve(item, solver):
    return solver.choose()
```"""


def _items() -> list[str]:
    from cgr_plugin._paths import DATA_DIR
    from cgr_plugin.data.loader import read_items

    items = read_items(DATA_DIR / "arc_easy" / "test.jsonl")[:LIMIT]
    return [f"{i.dataset}/{i.id}" for i in items]


def _run(tmp_path: Path, package: Path, out: str, journal: Path):
    args = ",".join([f"programs={package}", f"journal={journal}", "solver=smollm2-135m",
                     f"program_timeout={PROGRAM_TIMEOUT}", "chunk_size=2"])
    return run_cli("cgr-eval", "--model", "cgr", "--model_args", args, "--tasks", "cgr_arc_easy",
                   "--limit", str(LIMIT), "--output_path", out, "--log_samples",
                   "--confirm_run_unsafe_code", cwd=tmp_path, timeout=300)


def _assisted(out: Path) -> dict[str, object]:
    records = [CGRRecord.from_json(s["resps"][0][0]) for s in _samples(out, "cgr_arc_easy")]
    return {r.item_id: r.assisted for r in records}


def test_a_run_with_a_lone_surrogate_and_a_pipe_hang_completes_and_resumes(tmp_path):
    keys = _items()
    programs = dict.fromkeys(keys, HONEST)
    programs[keys[0]], programs[keys[1]] = SURROGATE, PIPE_HANG
    package = write_programs(tmp_path / "pkg", programs)
    journal = tmp_path / "journal.db"
    done = _run(tmp_path, package, "first", journal)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assisted = _assisted(tmp_path / "first")
    ids = [key.split("/", 1)[1] for key in keys]
    assert sorted(assisted) == sorted(ids)  # every item recorded, every later sample present
    surrogate, hang = assisted[ids[0]], assisted[ids[1]]
    assert surrogate.status == "runtime_error" and "\ufffd" in surrogate.output
    assert hang.status in {"protocol_error", "timeout"}, (hang.status, hang.error)
    assert all(assisted[i].status in {"ok", "invalid_answer", "uninformative"}
               for i in ids[2:]), {i: assisted[i].status for i in ids[2:]}
    samples = _samples(tmp_path / "first", "cgr_arc_easy", None)
    assert len(samples) == LIMIT * 5  # one sample per item and filter pipeline

    again = _run(tmp_path, package, "again", journal)  # every record comes from the journal
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{LIMIT} of {LIMIT} items taken from the journal" in again.stderr
    assert _assisted(tmp_path / "again").keys() == assisted.keys()
