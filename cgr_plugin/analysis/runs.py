"""Read lm-eval output folders of cgr runs back into one outcome per item."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CGRError
from ..programs.packages import output_sha256
from ..record import HARD_CODED, SCORED_CHANNELS, CGRRecord, control_problem

__all__ = ["ItemOutcome", "LoggedItem", "RunError", "item_outcome", "iter_logged", "iter_records",
           "load_runs"]

_SAMPLES = re.compile(r"^samples_(?P<task>.+?)_\d{4}-\d{2}-\d{2}T[\d\-.]+\.jsonl$")


class RunError(CGRError):
    """A run folder without cgr samples, or with lines that are not cgr records."""


@dataclass(frozen=True)
class ItemOutcome:
    run: str
    task: str
    solver: str
    generator: str
    item_id: str
    gold: str
    direct: str | None  # the channel's letter, None when it gave none
    assisted: str | None
    generator_letter: str | None
    fallback: str | None
    control: str | None  # the budget-matched control's letter
    direct_status: str
    assisted_status: str
    generator_status: str
    control_status: str
    direct_calls: int
    assisted_calls: int
    audits: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # channel -> scorer -> value
    family: str | None = None  # the generator prompt family (None: replayed or no programs)
    # the other controls (cot, fixed:NAME) by name: (letter, status, solver calls)
    controls: dict[str, tuple[str | None, str, int]] = field(default_factory=dict)
    provenance: str | None = None  # the program's provenance class (None: not re-run)
    output_sha256: str | None = None  # of the generator's output (None: no program ran)

    @property
    def model(self) -> str:
        """The generator and its prompt family, as the report's groups name them."""
        return f"{self.generator} [{self.family}]" if self.family else self.generator

    @property
    def direct_ok(self) -> bool:
        return self.direct == self.gold

    @property
    def assisted_ok(self) -> bool:
        return self.assisted == self.gold

    @property
    def generator_ok(self) -> bool:
        return self.generator_letter == self.gold

    @property
    def control_ok(self) -> bool:
        return self.control == self.gold

    @property
    def fallback_ok(self) -> bool:
        return (self.assisted or self.fallback) == self.gold

    @property
    def flagged(self) -> bool:
        """A program whose answer may not come from the solver (hard-coding audit)."""
        return bool(self.audits.get(HARD_CODED))


def _outcome(run: str, task: str, record: CGRRecord,
             scores: dict[str, dict[str, float]]) -> ItemOutcome:
    direct, assisted, own = record.direct, record.assisted, record.generator_side
    return ItemOutcome(
        run=run, task=task, solver=record.solver, generator=record.generator or "-",
        item_id=record.item_id, gold=str(record.gold), direct=direct.answer,
        assisted=assisted.answer, generator_letter=own.answer,
        fallback=(assisted.fallback or {}).get("answer"), control=record.budget_matched.answer,
        direct_status=direct.status, assisted_status=assisted.status,
        generator_status=own.status, control_status=record.budget_matched.status,
        direct_calls=direct.solver_calls, assisted_calls=assisted.solver_calls,
        audits=dict(assisted.audits), scores=scores,
        family=(record.generator_prompt or {}).get("name"),
        controls={name: (result.answer, result.status, result.solver_calls)
                  for name, result in record.controls.items()},
        provenance=_provenance_class(assisted.provenance),
        output_sha256=None if own.raw is None else output_sha256(own.raw))


def _provenance_class(provenance: Any) -> str | None:
    """The class of a record's provenance; a value that is not a mapping (a record written by
    hand or by another tool) is ``unknown`` rather than a crash."""
    if provenance is None:
        return None
    return str(provenance.get("class")) if isinstance(provenance, dict) else "unknown"


@dataclass(frozen=True)
class LoggedItem:
    """One item of a run as lm-eval logged it: the cgr record, and the plugin scores each
    channel filter recorded at run time (``{view: {scorer: value}}``)."""

    folder: Path
    task: str
    record: CGRRecord
    scores: dict[str, dict[str, float]]


def _line_error(path: Path, number: int, why: str) -> RunError:
    return RunError(f"{path}: line {number} {why}; rerun the task into a fresh --output_path, "
                    "or move this file out of the run folder")


def _parse_line(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    """The JSON sample on one line, or a RunError saying what is wrong with the line."""
    try:
        sample = json.loads(raw.decode("utf-8"))
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError both
        if not raw.endswith(b"\n"):
            why = ("is cut short: the file ends inside it (was the run interrupted while "
                   "lm-eval wrote it?)")
        elif isinstance(err, json.JSONDecodeError):
            why = f"is not JSON ({err.msg} at column {err.colno})"
        else:
            why = f"is not UTF-8 text ({err})"
        raise _line_error(path, number, why) from None
    if not isinstance(sample, dict):
        raise _line_error(path, number, f"is JSON but not an lm-eval sample (a "
                                        f"{type(sample).__name__}, not an object)")
    return sample


def _record(path: Path, number: int, sample: dict[str, Any]) -> CGRRecord:
    try:
        return CGRRecord.from_json(sample["resps"][0][0])
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise _line_error(path, number, f"is not a cgr record ({type(err).__name__}: {err})"
                          ) from None


def _recorded_scores(path: Path, number: int, sample: dict[str, Any]
                     ) -> tuple[str, dict[str, float]] | None:
    """(view, scorer -> value) that this line's cgr channel filter recorded when the run
    scored it; None for a line of another filter pipeline (nothing recorded there)."""
    filtered = sample.get("filtered_resps")
    while isinstance(filtered, list) and filtered:  # take_first leaves a string per request
        filtered = filtered[0]
    if not isinstance(filtered, str):
        return None
    try:
        outcome = json.loads(filtered)
    except ValueError:
        return None  # e.g. a plain letter from the user's own filter pipeline
    if not isinstance(outcome, dict) or (outcome.get("channel") not in SCORED_CHANNELS
                                         and control_problem(str(outcome.get("channel")))):
        return None
    scores = outcome.get("scores") or {}
    if not (isinstance(scores, dict) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in scores.values())):
        raise _line_error(path, number, f"has plugin scores that are not numbers: {scores!r:.200}")
    return outcome["channel"], {str(name): float(value) for name, value in scores.items()}


def _read_samples(path: Path) -> dict[tuple, tuple[CGRRecord, dict[str, dict[str, float]]]]:
    """Every item of one samples file, keyed (solver, generator, item id), with its record
    and the plugin scores of each of its lines (one line per item and filter pipeline)."""
    items: dict[tuple, tuple[CGRRecord, dict[str, dict[str, float]]]] = {}
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            sample = _parse_line(path, number, raw)
            record = _record(path, number, sample)
            family = (record.generator_prompt or {}).get("name")
            key = (record.solver, record.generator, family, record.item_id)
            _, scores = items.setdefault(key, (record, {}))
            recorded = _recorded_scores(path, number, sample)
            if recorded is not None:
                scores[recorded[0]] = recorded[1]
    return items


def iter_logged(folders: Iterable[str | Path]) -> Iterator[LoggedItem]:
    """Every item of every ``samples_*.jsonl`` below the folders.

    lm-eval writes one line per item and filter pipeline, and a rerun into the same folder
    adds a newer file: each (task, solver, generator, generator prompt family, item) is
    yielded once, from the newest file that has it. A line that is cut short, not JSON or not
    a cgr record is a RunError naming the file and the line.
    """
    latest: dict[tuple, LoggedItem] = {}
    for folder in map(Path, folders):
        files = sorted(folder.rglob("samples_*.jsonl")) if folder.is_dir() else []
        if not files:
            raise RunError(f"{folder}: no samples_*.jsonl files (run cgr-eval with "
                           "--output_path and --log_samples)")
        # names end in a sortable timestamp: a rerun into the same folder replaces older items
        for path in sorted(files, key=lambda p: p.name):
            match = _SAMPLES.match(path.name)
            task = match.group("task") if match else path.stem
            for key, (record, scores) in _read_samples(path).items():
                latest[(task, *key)] = LoggedItem(folder, task, record, scores)
    yield from latest.values()


def iter_records(folders: Iterable[str | Path]) -> Iterator[tuple[Path, str, CGRRecord]]:
    """(folder, task, record) for every item of the run folders (see ``iter_logged``)."""
    for item in iter_logged(folders):
        yield item.folder, item.task, item.record


def item_outcome(item: LoggedItem) -> ItemOutcome:
    """The outcome of one logged item, with the plugin scores recorded at run time (not
    recomputed: the report gives the same numbers whatever plugins are installed now)."""
    return _outcome(str(item.folder), item.task, item.record, item.scores)


def load_runs(folders: list[str | Path]) -> list[ItemOutcome]:
    """One outcome per item of every run folder (see ``item_outcome``)."""
    return [item_outcome(item) for item in iter_logged(folders)]
