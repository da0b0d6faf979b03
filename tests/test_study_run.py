"""``cgr study`` runs its cells through real cgr-eval, real sandboxes, ``cgr export`` and
``cgr report``, with scripted models instead of real ones (tests/data/study_site, an installed
plugin package: it answers at once, so each cell costs only cgr-eval's start-up): kill -9
mid-cell and rerun, nothing finished is recomputed; a failing cell is recorded and the study
goes on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cgr_plugin._version import __version__
from cgr_plugin.run.study.speeds import machine_key

from .conftest import REPO

SITE = REPO / "tests" / "data" / "study_site"
GRID = """\
name: tiny
tasks: [cgr_arc_easy]
limit: 3
solvers: [study-solver, study-solver-c]
generators: [study-writer]
controls: [cot, budget_matched]
model_args: {provenance_seeds: 0, chunk_size: 1}
report: {resamples: 200}
"""


def _env(delay: float = 0) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(SITE)]),
            "CGR_STUDY_FAKE_DELAY": str(delay)}


def _study(tmp_path: Path, text: str, *, delay: float = 0, wait: bool = True):
    (tmp_path / "study.yaml").write_text(text)
    command = [sys.executable, "-m", "cgr_plugin", "study", "study.yaml", "--out", "out"]
    if not wait:
        return subprocess.Popen(command, cwd=tmp_path, env=_env(delay), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return subprocess.run(command, cwd=tmp_path, env=_env(delay), text=True,
                          capture_output=True, timeout=600)


def _state(out: Path) -> dict:
    return {cell["name"]: cell for cell in json.loads((out / "study.json").read_text())["cells"]}


def _journaled(out: Path, cell: str) -> int:
    try:
        db = sqlite3.connect(out / "cells" / cell / "journal.sqlite")
        return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.Error:
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text(
        ).split()[2]


def _kill_during_the_replay(tmp_path: Path) -> int:
    """Start the study with slow models, kill -9 it once the replay cell has journaled an
    item; the replay's cgr-eval pid."""
    out = tmp_path / "out"
    study = _study(tmp_path, GRID, delay=0.5, wait=False)
    replay = "replay-study-writer.cgr-study-solver-c"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                cell = _state(out)[replay]
            except (OSError, ValueError, KeyError):
                continue
            if cell["status"] == "running" and cell["pid"] and _journaled(out, replay) >= 1:
                break
        else:
            raise AssertionError("the replay cell never journaled an item")
        assert _state(out)["write-study-writer.cgr"]["status"] == "done"
        study.send_signal(signal.SIGKILL)
        study.wait(timeout=30)
    finally:
        study.kill()
    return cell["pid"]


def test_after_kill_9_the_same_command_recomputes_nothing_finished(tmp_path):
    child = _kill_during_the_replay(tmp_path)
    deadline = time.monotonic() + 20
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(child), "cgr-eval outlived the study killed with kill -9"
    out = tmp_path / "out"
    journaled = _journaled(out, "replay-study-writer.cgr-study-solver-c")

    plan = subprocess.run([sys.executable, "-m", "cgr_plugin", "study", "study.yaml", "--out",
                           "out", "--dry-run", "--no-measure"], cwd=tmp_path, env=_env(),
                          text=True, capture_output=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    states = [line.strip() for line in plan.stdout.splitlines() if "in out: " in line]
    assert len(states) == 2  # the controls cells had not started
    assert states[0].startswith("in out: finished (") and "in 1 run)" in states[0]
    assert states[1] == (f"in out: {journaled} of 3 items in its journal (1 more started and "
                         "did not end: running now, or killed)")

    resumed = _study(tmp_path, GRID)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "cell 1/4 write-study-writer.cgr: finished before, settings unchanged: skipped" \
        in resumed.stdout
    assert ("replay-study-writer.cgr-study-solver-c: done in" in resumed.stdout
            and f"; {journaled} items from its journal" in resumed.stdout)
    assert journaled >= 1
    state = _state(out)
    # the killed run left only its start in the cell's run log; the time counts the runs
    # that ended, here the resumed one
    replayed = state["replay-study-writer.cgr-study-solver-c"]
    assert (replayed["runs"], replayed["runs_unended"]) == (2, 1)
    assert replayed["total_seconds"] == replayed["seconds"]
    assert all(cell["status"] == "done" for cell in state.values())
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert sorted(summary["settings"]["runs"]) == sorted(f"cells/{name}/out" for name in state)
    group = next(g for g in summary["groups"] if g["generator"] == "study-writer [cgr]")
    assert group["controls"]["cot"]["assisted_minus_control"] is not None  # paired across cells
    replayed = next(g for g in summary["groups"]  # named by package, then the family it names
                    if g["generator"] == "replay:programs/study-writer.cgr [cgr]")
    assert (group["family"], replayed["family"]) == ("cgr", "cgr")  # the package names it
    package = json.loads((out / "programs" / "study-writer.cgr" / "manifest.json").read_text())
    assert package["programs"] == 3
    write = state["write-study-writer.cgr"]
    assert write["package"] == "programs/study-writer.cgr"
    # where and with which code each cell ran, also for the cell finished before the kill
    assert write["machine"] == machine_key() and write["code"]["cgr_plugin"] == __version__
    assert write["code"]["source"] == str(REPO / "cgr_plugin")
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], text=True,
                              capture_output=True).stdout.strip()
        assert write["code"]["commit"] == head
    assert write["package_sha256"] == package["programs_sha256"]

    again = _study(tmp_path, GRID)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "recomputed nothing: 4 cells finished before (skipped by their done markers; 12 " \
        "records in their journals)" in again.stdout
    assert "cgr-eval" not in again.stderr  # no cell started
    assert json.loads((out / "report" / "summary.json").read_text()) == summary

    # a fresh clone of a study folder whose lm-eval outputs are not kept (docs/results/):
    # every cell is rewritten from its journal, and the package stays byte for byte
    manifest = (out / "programs" / "study-writer.cgr" / "manifest.json").read_bytes()
    for cell in state:
        shutil.rmtree(out / "cells" / cell / "out")
    cloned = _study(tmp_path, GRID)
    assert cloned.returncode == 0, cloned.stdout[-3000:] + cloned.stderr[-3000:]
    for cell in state:
        assert f"{cell}: done in" in cloned.stdout
    assert cloned.stdout.count("; 3 items from its journal, cache 0 hits / 0 misses") == 4
    assert (out / "programs" / "study-writer.cgr" / "manifest.json").read_bytes() == manifest
    assert not list((out / "programs").glob("*.exporting"))
    assert json.loads((out / "report" / "summary.json").read_text()) == summary


def test_a_failing_cell_is_recorded_and_the_study_goes_on(tmp_path):
    run = _study(tmp_path, GRID.replace("solvers: [study-solver, study-solver-c]",
                                        "solvers: [study-broken, study-solver]")
                 .replace("controls: [cot, budget_matched]", "controls: [cot]"))
    assert run.returncode == 1, run.stdout[-3000:]
    state = _state(tmp_path / "out")
    write, replay = state["write-study-writer.cgr"], state["replay-study-writer.cgr-study-solver"]
    assert (write["status"], write["exit_code"]) == ("failed", 1)
    (start, end) = [json.loads(line) for line in (tmp_path / "out" / "cells" / write["name"]
                                                  / "runs.jsonl").read_text().splitlines()]
    assert (start["event"], end["event"], end["status"]) == ("start", "end", "failed")
    assert (write["runs"], write["runs_unended"], write["total_seconds"]) == (
        1, 0, end["seconds"])
    assert "study-broken: this model always fails to load" in write["stderr_tail"]
    assert replay["status"] == "skipped"
    assert replay["reason"] == "replays the programs of write-study-writer.cgr, which failed"
    assert state["controls-study-broken"]["status"] == "failed"
    assert state["controls-study-solver"]["status"] == "done"  # the study went on
    summary = json.loads((tmp_path / "out" / "report" / "summary.json").read_text())
    assert summary["settings"]["runs"] == ["cells/controls-study-solver/out"]
    assert "write-study-writer.cgr failed: cgr-eval exited with status 1" in run.stdout
