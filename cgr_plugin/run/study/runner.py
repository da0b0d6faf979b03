"""``cgr study``: run a study's cells one after another, then one report over all of them.

Each cell is a cgr-eval child (:mod:`.child`) with its own journal; a write cell's programs are
exported with ``cgr export`` right after it ends. A cell that fails is recorded (exit code, the
last lines of its stderr) and the study goes on; the replays of a failed write cell are
recorded as skipped. Ctrl-C stops the running cell (its journal keeps what it finished) and the
study; the same command later skips every finished cell and resumes the interrupted one. The
end is ``cgr report`` over the finished cells (one report per seed) and a summary of what was
reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cells import Cell
from .child import CGR, CGR_EVAL, Step, read_counters, stderr_tail
from .plan import Plan, duration, make_plan
from .spec import StudyError, StudySpec
from .speeds import machine_key
from .state import (
    CellState,
    StudyState,
    cell_finished,
    code_revision,
    journal_records,
    log_run,
    package_sha256,
    read_done,
    write_done,
)

__all__ = ["run_study"]

Say = Callable[[str], None]
LOCK_NAME = ".cgr-study.lock"
EXPORTING = ".exporting"  # a package being exported, beside the one it may replace


def _say(line: str) -> None:
    print(f"cgr study: {line}", flush=True)


def _lock(out: Path) -> Any:
    """Hold the study folder for this run: two studies writing one folder would mix cells."""
    handle = open(out / LOCK_NAME, "a+")  # noqa: SIM115 - held for the run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise StudyError(f"another cgr study is running in {out}; wait for it or give this "
                         "one another --out") from None
    return handle


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def run_study(spec: StudySpec, out: Path, *, say: Say = _say) -> int:
    """Run (or resume) the study into ``out``; 0 when every cell and the report finished."""
    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)  # noqa: F841 - held until the study ends
    plan = make_plan(spec, measure=False, say=say)
    last_report = _last_report(out / "study.json")
    state = StudyState(out / "study.json", spec.name, str(spec.source), spec.sha256)
    state.cells = {cell.name: CellState(cell.name, cell.kind, settings_hash=cell.settings_hash,
                                        command=f"cd {out} && {' '.join(cell.command)}",
                                        depends_on=cell.depends_on, items=plan.items,
                                        package=cell.package)
                   for cell in plan.cells}
    state.save()
    clock = _Clock(plan, [c for c in plan.cells if not cell_finished(out, c)], say)
    try:  # SIGTERM stops the running cell as Ctrl-C does (only the main thread may ask)
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:
        previous = None
    try:
        for number, cell in enumerate(plan.cells, 1):
            _run_cell(cell, f"cell {number}/{len(plan.cells)} {cell.name}", state, out, clock)
    except KeyboardInterrupt:
        state.save()
        say("interrupted; the same command resumes: finished cells are skipped, the "
            "interrupted one continues from its journal")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    reported = _report(plan, state, out, last_report, say)
    _summary(state, out, say)
    failed = [c for c in state.cells.values() if c.status != "done"]
    return 1 if failed or not reported else 0


def _run_cell(cell: Cell, title: str, state: StudyState, out: Path, clock: _Clock) -> None:
    record = state.cells[cell.name]
    upstream = state.cells.get(cell.depends_on) if cell.depends_on else None
    if upstream is not None and upstream.status != "done":
        record.status, record.reason = "skipped", (f"replays the programs of {upstream.name}, "
                                                   f"which {upstream.status}")
        clock.say(f"{title}: skipped ({record.reason})")
        state.save()
        return
    marker = read_done(out / cell.folder)
    if cell_finished(out, cell) and marker is not None:
        record.status, record.seconds = "done", marker.get("seconds")
        record.finished_at = marker.get("finished_at")
        record.journal_records = journal_records(out / cell.journal)
        record.package_sha256 = marker.get("package_sha256")
        record.machine, record.code = marker.get("machine"), marker.get("code")
        record.count_runs(out / cell.folder)
        clock.say(f"{title}: finished before, settings unchanged: skipped "
                  f"({record.journal_records} records in its journal)")
        state.save()
        return
    shutil.rmtree(out / cell.output, ignore_errors=True)  # this run's output only; journal kept
    record.status, record.ran_now = "running", True
    record.machine, record.code = machine_key(), code_revision()
    estimate = clock.estimate(cell)
    clock.say(f"{title}: start ({_reason_to_run(marker, cell)}; "
              + (f"estimate {duration(estimate)}" if estimate is not None else
                 "no estimate: no cached model speed") + ")" + clock.overall())
    started = time.monotonic()
    step = Step(CGR_EVAL, cell.argv, cwd=out, logs=out / cell.folder)
    step.start()
    record.pid = step.pid
    log_run(out / cell.folder, record, "start", pid=step.pid, machine=record.machine,
            code=record.code)
    state.save()
    try:
        result = step.wait()
        record.pid, record.exit_code = None, result.exit_code
        for counter, value in read_counters(out / cell.folder).items():
            setattr(record, counter, value)
        if result.interrupted:
            record.status = "interrupted"
            raise KeyboardInterrupt
        if result.exit_code == 0 and cell.kind == "write":
            _export(cell, record, out)
        elif result.exit_code != 0:
            record.status = "failed"
            record.reason = f"cgr-eval exited with status {result.exit_code}"
            record.stderr_tail = stderr_tail(out / cell.folder)
    except BaseException:
        if record.status == "running":
            record.status = "interrupted"
        raise
    finally:
        record.seconds = round(time.monotonic() - started, 1)
        log_run(out / cell.folder, record, "end", seconds=record.seconds,
                status="done" if record.status == "running" else record.status,
                exit_code=record.exit_code, journal_hits=record.journal_hits)
    if record.status == "running":
        record.status, record.finished_at = "done", time.strftime("%Y-%m-%d %H:%M:%S")
        if cell.kind == "write":
            record.package_sha256 = package_sha256(out / str(cell.package))
        write_done(out / cell.folder, record, package_sha256=record.package_sha256)
    computed = 1 - min(record.journal_hits / record.items, 1) if record.items else 1.0
    clock.finished(cell, record.seconds if record.status == "done" else None, computed)
    clock.say(f"{title}: {record.status} in {duration(record.seconds)}"
              + (f" ({record.reason})" if record.reason else "")
              + f"; {record.journal_hits} items from its journal, cache {record.cache_hits} "
              f"hits / {record.cache_misses} misses" + clock.overall())
    state.save()


def _reason_to_run(marker: dict[str, Any] | None, cell: Cell) -> str:
    if marker is None:
        return "not finished before"
    if marker.get("settings_hash") != cell.settings_hash:
        return "its settings changed since it finished"
    return "its outputs are incomplete"


def _export(cell: Cell, record: CellState, out: Path) -> None:
    """The write cell's programs as a package; a failed export fails the cell.

    A package whose manifest is the new one's but for the results files it names (a finished
    cell rewritten from its journal, as on a fresh clone of a study whose lm-eval outputs are
    not kept) stays as it was: it still names the run that wrote the programs, and a shipped
    package does not change by being resumed."""
    logs = out / cell.folder / "export"
    package = out / str(cell.package)
    fresh = package.with_name(package.name + EXPORTING)
    shutil.rmtree(fresh, ignore_errors=True)
    try:
        result = Step(CGR, ["export", cell.output, "--out", str(fresh.relative_to(out))],
                      cwd=out, logs=logs, echo=False).run()
        if result.interrupted:
            record.status = "interrupted"
            raise KeyboardInterrupt
        if result.exit_code != 0:
            record.status, record.exit_code = "failed", result.exit_code
            record.reason = f"cgr export exited with status {result.exit_code}"
            record.stderr_tail = stderr_tail(logs)
        elif not _same_package(fresh, package):
            shutil.rmtree(package, ignore_errors=True)
            fresh.rename(package)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)  # what was not moved into place


def _same_package(fresh: Path, package: Path) -> bool:
    """Whether two packages differ only in the lm-eval results files they name (``model_config``:
    file names carry the time of the run)."""
    def manifest(folder: Path) -> dict[str, Any] | None:
        try:
            body = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(body, dict) or not body.get("programs_sha256"):
            return None
        body.pop("model_config", None)
        return body
    old = manifest(package)
    return old is not None and old == manifest(fresh)


class _Clock:
    """Elapsed time and the ETA of what is left: the plan's estimates scaled by how long the
    cells run so far took against theirs, else their mean time per cell."""

    def __init__(self, plan: Plan, todo: list[Cell], say: Say) -> None:
        self.plan, self.say = plan, say
        self.started = time.monotonic()
        self.left = {cell.name for cell in todo}
        self.taken: list[tuple[float | None, float]] = []  # (estimate, seconds) of cells run

    def estimate(self, cell: Cell) -> float | None:
        return self.plan.costs[cell.name].seconds

    def finished(self, cell: Cell, seconds: float | None, computed: float = 1.0) -> None:
        """``computed``: the share of its items the cell computed now (the rest came from its
        journal), which scales its estimate before it is set against its time."""
        self.left.discard(cell.name)
        estimate = self.estimate(cell)
        if seconds is not None:
            self.taken.append((None if estimate is None else estimate * computed, seconds))

    def eta(self) -> float | None:
        if not self.left:
            return 0.0
        estimates = [self.plan.costs[name].seconds for name in self.left]
        if all(e is not None for e in estimates):
            known = [(e, s) for e, s in self.taken if e]
            ratio = (sum(s for _, s in known) / sum(e for e, _ in known)) if known else 1.0
            return ratio * sum(e for e in estimates if e is not None)
        if self.taken:
            return sum(s for _, s in self.taken) / len(self.taken) * len(self.left)
        return None

    def overall(self) -> str:
        return (f" [elapsed {duration(time.monotonic() - self.started)}, ETA "
                f"{duration(self.eta()) if self.eta() is not None else 'unknown yet'}]")


def _report_args(spec: StudySpec) -> list[str]:
    options = spec.report
    flags = [f"--{key}={options[key]}" for key in ("gate", "resamples", "seed", "partitions")
             if options.get(key) is not None]
    return flags + (["--no-explorer"] if options.get("explorer") is False else [])


def _report(plan: Plan, state: StudyState, out: Path, last: dict[str, Any], say: Say) -> bool:
    """``cgr report`` over the finished cells, one report per seed; skipped where its inputs
    (the finished cells' settings and the report options) are those of the last report."""
    ok = True
    seeds = plan.spec.seeds
    for seed in seeds:
        folder = "report" if len(seeds) == 1 else f"report-seed{seed}"
        cells = [c for c in plan.cells if c.seed == seed and state.cells[c.name].status == "done"]
        if not cells:
            say(f"{folder}: no finished cell to report on")
            state.report[folder] = {"status": "none", "cells": []}
            ok = False
            continue
        args = [c.output for c in cells]
        inputs = hashlib.sha256(json.dumps([[c.settings_hash for c in cells], _report_args(
            plan.spec)]).encode()).hexdigest()
        previous = last.get(folder, {})
        if previous.get("inputs") == inputs and (out / folder / "summary.json").is_file():
            say(f"{folder}: unchanged since the last run (same finished cells): kept")
            state.report[folder] = previous
            continue
        result = Step(CGR, ["report", *args, "--out", folder, *_report_args(plan.spec)],
                      cwd=out, logs=out / "logs" / folder, echo=False).run()
        status = "done" if result.exit_code == 0 else "failed"
        state.report[folder] = {"status": status, "cells": [c.name for c in cells],
                                "inputs": inputs if status == "done" else None}
        if status == "failed":
            state.report[folder]["stderr_tail"] = stderr_tail(out / "logs" / folder)
            ok = False
        say(f"{folder}: {status}: " + (", ".join(f"{folder}/{name}" for name in (
            "report.md", "summary.json", "report.html")) if status == "done" else
            state.report[folder]["stderr_tail"]))
    state.save()
    return ok


def _last_report(path: Path) -> dict[str, Any]:
    """The report section of the state file as the last run left it ({} for none)."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("report") or {})
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _summary(state: StudyState, out: Path, say: Say) -> None:
    cells = list(state.cells.values())
    say(f"{state.name}: {len(cells)} cells in {out}")
    width = max(len(c.name) for c in cells)
    print(f"  {'cell':{width}}  {'status':11} {'time':>7}  {'items':>5}  {'journal':>7}  "
          "cache hits/misses", flush=True)
    for c in cells:
        when = "earlier" if c.status == "done" and not c.ran_now else duration(c.seconds)
        journal = c.journal_hits if c.ran_now else (
            f"{c.journal_records} kept" if c.journal_records is not None else "-")
        print(f"  {c.name:{width}}  {c.status:11} {when:>7}  {c.items:>5}  {journal:>7}  "
              f"{f'{c.cache_hits}/{c.cache_misses}' if c.ran_now else '-'}", flush=True)
    for c in cells:
        if c.status in ("failed", "skipped"):
            say(f"{c.name} {c.status}: {c.reason}" + (f"\n{c.stderr_tail}" if c.stderr_tail
                                                        else ""))
    ran = [c for c in cells if c.ran_now]
    recomputed = sum(max(c.items - c.journal_hits, 0) for c in ran)
    misses = sum(c.cache_misses for c in ran)
    kept = sum(c.journal_records or 0 for c in cells if not c.ran_now)
    before = (_count(len(cells) - len(ran), "cell") + " finished before (skipped by their done "
              f"markers; {_count(kept, 'record')} in their journals)")
    if not recomputed and not misses and all(c.status == "done" for c in cells):
        say(f"recomputed nothing: {before}" + (
            f"; the {_count(len(ran), 'cell')} run now took "
            f"{_count(sum(c.journal_hits for c in ran), 'item')} from their journals and "
            f"{_count(sum(c.cache_hits for c in ran), 'model call')} from the cache"
            if ran else ""))
    else:
        say(f"computed {_count(recomputed, 'item')} in {_count(len(ran), 'cell')} "
            f"({_count(misses, 'model call')} not in the cache); {before}")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
