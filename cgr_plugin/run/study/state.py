"""What a study has done, on disk: ``OUT/study.json``, each finished cell's done marker and
each cell's run log.

``study.json`` is rewritten (atomically) whenever a cell starts or ends: every cell's status
(``pending``, ``running`` with the child's pid, ``done``, ``failed`` with its exit code and the
last lines of its stderr, ``skipped`` with the reason, ``interrupted``), its command, time and
what it reused. A cell is finished when ``cells/NAME/done.json`` records its settings hash: the
same command again skips it, a changed hash runs it again (its journal still answers the items
whose records would not change). ``cells/NAME/runs.jsonl`` gets a line when a run of the cell
starts and one when it ends, with the machine and the code, so a study spread over sessions
keeps its true time per cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..._version import __version__
from ..journal import Journal
from .cells import Cell

__all__ = ["CellState", "RunTotals", "StudyState", "cell_finished", "code_revision",
           "journal_records", "log_run", "package_sha256", "read_done", "read_runs", "write_done"]

SCHEMA = "cgr.study/1"
DONE = "done.json"
RUNS = "runs.jsonl"


@dataclass
class CellState:
    name: str
    kind: str
    status: str = "pending"
    settings_hash: str = ""
    command: str = ""
    depends_on: str | None = None
    seconds: float | None = None
    ran_now: bool = False  # run by this invocation (not finished by an earlier one)
    items: int = 0
    journal_records: int | None = None  # records its journal holds (a cell finished before)
    journal_hits: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    exit_code: int | None = None
    reason: str | None = None  # why it failed or was skipped
    stderr_tail: str | None = None
    pid: int | None = None
    finished_at: str | None = None
    package: str | None = None  # a write cell's program package, and its programs' sha256
    package_sha256: str | None = None
    # where and with what it ran (a study resumed on another day or machine says so per cell)
    machine: str | None = None
    code: dict[str, Any] | None = None
    # every run of the cell (cells/NAME/runs.jsonl): seconds summed over the runs that ended,
    # and how many were killed before they could say how long they took
    total_seconds: float | None = None
    runs: int = 0
    runs_unended: int = 0

    def count_runs(self, folder: Path) -> None:
        totals = read_runs(folder)
        self.runs, self.runs_unended = totals.runs, totals.runs_unended
        self.total_seconds = totals.total_seconds


@dataclass(frozen=True)
class RunTotals:
    """A cell's runs from its run log: how many started, how many of them never said they
    ended (killed with -9, or running now), and the seconds of those that ended (None: none)."""

    runs: int = 0
    runs_unended: int = 0
    total_seconds: float | None = None


@dataclass
class StudyState:
    path: Path
    name: str
    study_file: str
    study_sha256: str
    cells: dict[str, CellState] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))

    def save(self) -> None:
        body = {"schema": SCHEMA, "name": self.name, "study_file": self.study_file,
                "study_sha256": self.study_sha256, "started_at": self.started_at,
                "updated_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                "cells": [asdict(cell) for cell in self.cells.values()],
                "report": self.report}
        _write_json(self.path, body)


def _write_json(path: Path, body: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".part",
                                     encoding="utf-8") as tmp:
        json.dump(body, tmp, indent=2, sort_keys=True)
        tmp.write("\n")
    os.replace(tmp.name, path)


def read_done(folder: Path) -> dict[str, Any] | None:
    """A cell folder's done marker, or None (no marker, or one that cannot be read)."""
    try:
        marker = json.loads((folder / DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def write_done(folder: Path, cell: CellState, **extra: Any) -> None:
    _write_json(folder / DONE, {"settings_hash": cell.settings_hash, "seconds": cell.seconds,
                                "items": cell.items, "finished_at": cell.finished_at,
                                "machine": cell.machine, "code": cell.code,
                                "total_seconds": cell.total_seconds, "runs": cell.runs,
                                "runs_unended": cell.runs_unended, **extra})


def log_run(folder: Path, cell: CellState, event: str, **fields: Any) -> None:
    """Append one line to the cell's run log: ``start`` when its child starts (with the
    machine and code), ``end`` when it stops for any reason but kill -9 (status, seconds);
    then refresh the cell's run totals from the log. A study that runs over several sessions
    or machines gets its true time per cell from it, interrupted runs included."""
    folder.mkdir(parents=True, exist_ok=True)
    line = {"event": event, "at": time.strftime("%Y-%m-%d %H:%M:%S"), **fields}
    with (folder / RUNS).open("a", encoding="utf-8") as log:
        log.write(json.dumps(line, sort_keys=True) + "\n")
    cell.count_runs(folder)


def read_runs(folder: Path) -> RunTotals:
    """A cell folder's run totals from its run log (lines that cannot be read are left out)."""
    starts = ends = 0
    seconds = 0.0
    try:
        lines = (folder / RUNS).read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for text in lines:
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if not isinstance(line, dict):
            continue
        if line.get("event") == "start":
            starts += 1
        elif line.get("event") == "end" and isinstance(line.get("seconds"), int | float):
            ends += 1
            seconds += float(line["seconds"])
    return RunTotals(starts, max(starts - ends, 0), round(seconds, 1) if ends else None)


def code_revision() -> dict[str, Any]:
    """The cgr-plugin that runs now: its version, folder and, when that folder is tracked in a
    git checkout, the commit and whether its files differ from it. (lm-eval's own
    ``git_hash`` is the working directory's repository: for a study folder inside another
    checkout, not the code that ran.)"""
    package = Path(__file__).resolve().parents[2]
    revision: dict[str, Any] = {"cgr_plugin": __version__, "source": str(package)}

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(package.parent), *args], text=True,
                              capture_output=True, timeout=10)

    try:
        tracked = git("ls-files", "--error-unmatch", f"{package.name}/__init__.py")
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no", "--", package.name,
                     "templates", "task_configs")
    except (OSError, subprocess.SubprocessError):
        return revision
    if all(r.returncode == 0 for r in (tracked, commit, status)):
        revision.update(commit=commit.stdout.strip(), modified=bool(status.stdout.strip()))
    return revision


def cell_finished(out: Path, cell: Cell) -> bool:
    """Whether the cell's done marker matches its settings and its outputs are there."""
    marker = read_done(out / cell.folder)
    if not marker or marker.get("settings_hash") != cell.settings_hash:
        return False
    if not any((out / cell.output).rglob("samples_*.jsonl")):
        return False
    if cell.kind == "write":
        return marker.get("package_sha256") == package_sha256(out / str(cell.package))
    return True


def package_sha256(package: Path) -> str | None:
    try:
        return json.loads((package / "manifest.json").read_text())["programs_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def journal_records(path: Path) -> int:
    """Records a cell's journal holds (0 when it has none)."""
    return Journal.count(path) if path.is_file() else 0
