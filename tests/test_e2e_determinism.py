"""With deterministic models, records do not depend on repetition, concurrency, rank count or
interruptions: the same items give the same three-channel records every way they are run."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgr_plugin.programs.packages import write_programs
from cgr_plugin.record import CGRRecord

from .conftest import needs_llama, run_cli
from .test_e2e_cli import _samples

pytestmark = [pytest.mark.slow, needs_llama]
BIN = Path(sys.executable).parent
LIMIT = 6
# A program as generators write them: one judge per option, one choose(), then a decision.
PROGRAM = """```python
def solve(item, solver):
    scores = {k: solver.judge(f"{item.question} Answer: {v}") for k, v in item.options.items()}
    direct = solver.choose()
    if direct is not None and scores.get(direct, 0.0) >= 0.5:
        return direct
    return solver.pick(scores)
```"""


def _items() -> list[str]:
    from cgr_plugin._paths import DATA_DIR
    from cgr_plugin.data.loader import read_items

    return [f"{i.dataset}/{i.id}" for i in read_items(DATA_DIR / "arc_easy" / "test.jsonl")[:12]]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return write_programs(tmp_path_factory.mktemp("pkg"), dict.fromkeys(_items(), PROGRAM))


def _stable(record: CGRRecord) -> dict:
    """The record without wall-clock fields."""
    data = record.to_dict()
    for channel in [*data["channels"].values(), *data["controls"].values()]:
        channel.pop("seconds", None)
        channel.pop("model_seconds", None)
        for call in channel.get("trace") or []:
            call.pop("seconds", None)
        if channel.get("provenance"):  # the re-runs' wall time; their answers must agree
            (channel["provenance"].get("evidence") or {}).pop("seconds", None)
    return data


def _records(out: Path) -> dict[str, dict]:
    return {r.item_id: _stable(r) for r in (CGRRecord.from_json(s["resps"][0][0])
                                            for s in _samples(out, "cgr_arc_easy"))}


def _command(package: Path, out: str, *extra: str, limit: int = LIMIT) -> list[str]:
    args = ",".join([f"programs={package}", *extra])
    return ["cgr-eval", "--model", "cgr", "--model_args", args, "--tasks", "cgr_arc_easy",
            "--limit", str(limit), "--output_path", out, "--log_samples",
            "--confirm_run_unsafe_code"]


def _run(tmp_path: Path, command: list[str]) -> dict[str, dict]:
    done = run_cli(*command, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return _records(tmp_path / command[command.index("--output_path") + 1])


def test_repeats_and_concurrency_levels_give_identical_records(tmp_path, package):
    one = _run(tmp_path, _command(package, "c1", "concurrency=1"))
    assert len(one) == LIMIT
    assert {r["channels"]["assisted"]["status"] for r in one.values()} == {"ok"}
    assert all(r["channels"]["assisted"]["solver_calls"] >= 3 for r in one.values())
    assert _run(tmp_path, _command(package, "c8", "concurrency=8")) == one
    assert _run(tmp_path, _command(package, "c8_again", "concurrency=8")) == one


@pytest.mark.skipif(not (BIN / "torchrun").exists(), reason="needs torch's torchrun")
def test_two_ranks_give_the_records_of_one(tmp_path, package):
    one = _run(tmp_path, _command(package, "one"))
    command = _command(package, "two")
    ranks = run_cli(str(BIN / "torchrun"), "--nproc_per_node", "2", str(BIN / "cgr-eval"),
                    *command[1:], cwd=tmp_path)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert _records(tmp_path / "two") == one


def _rows(journal: Path) -> int:
    try:
        return sqlite3.connect(journal).execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_records(tmp_path, package):
    limit = 10
    journal = tmp_path / "journal.db"
    settings = (f"journal={journal}", "chunk_size=2")
    command = _command(package, "resumed", *settings, limit=limit)
    # The killed runs write elsewhere: one that finishes before its kill leaves a samples file
    # of its own, and the resumed run's folder must hold only the resumed run's.
    killed = _command(package, "killed", *settings, limit=limit)
    rng, kills = random.Random(7), 0
    for _ in range(3):  # three kills, each a random time into a (resumed) run
        proc = subprocess.Popen([str(BIN / "cgr-eval"), *killed[1:]], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        before = _rows(journal)
        deadline = time.time() + rng.uniform(1, 8)  # start-up included: a run takes ~10 s
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        if proc.poll() is None:  # a resumed run can finish before its kill: nothing to kill
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert _rows(journal) >= before  # nothing finished is ever lost
    assert kills, "no run was still running at its kill time"
    resumed = _run(tmp_path, command)
    fresh = _run(tmp_path, _command(package, "fresh", limit=limit))
    assert len(fresh) == limit and resumed == fresh
