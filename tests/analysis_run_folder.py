"""A hand-made cgr run folder, written the way lm-eval 0.4.13 writes one, for report tests.

Records are ``CGRRecord`` objects; each sample line goes through the real channel filter and
``process_results`` (so plugin scores are recorded as a run records them), then is dumped as
lm-eval's ``EvaluationTracker`` dumps it. No model is loaded.

The folder (``write_run_folder``), as a report sees it:

- ``cgr_arc_easy`` x ``solver-s`` (10 items): direct 6 right (one reply unreadable), assisted
  7 right: rescued 3, harmed 2; one program hard-coded its letter (a rescued item), one timed out,
  one did not parse; budget-matched control on every item.
- ``cgr_arc_easy`` x ``solver-t`` (5 items): direct 1 right (20%: under the 30% gate).
- ``cgr_sciq`` x ``solver-s`` (4 items, a second run in the same folder, no control): direct
  0 right (zero baseline), assisted 2 right; a newer rerun file replaces item 3 (a runtime error
  first, then right). Item 1's question carries a ``<script>`` tag.
- A plugin scorer ``agrees_with_direct`` was installed during the run: its values are in the
  samples (``SCORER``; register it with ``scorer_plugin()``).

``python -m tests.analysis_run_folder DIR`` writes it to ``DIR/run`` (how the pinned
``tests/data/analysis_report_summary.json`` was made from it; see tests/test_analysis_report.py).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from cgr_plugin import hookimpl, plugins
from cgr_plugin.data.items import MCQAItem
from cgr_plugin.record import CGRRecord, ChannelResult, hard_coded
from cgr_plugin.tasks.scoring import DIVERSITY, ChannelFilter, distinct_share, process_results

SCORER = "agrees_with_direct"
SCORER_CHANNELS = ("assisted", "assisted_fallback", "generator", "budget_matched")
FILTERS = (("direct", "direct", False), ("assisted", "assisted", False),
           ("assisted_fallback", "assisted", True), ("generator", "generator", False),
           ("budget_matched", "budget_matched", False))
GENERATION_KWARGS = {"until": [], "max_gen_toks": 256, "do_sample": False}
LETTERS = ("A", "B", "C", "D")
HOSTILE_QUESTION = "Which tag runs code in a page? <script>alert('cgr')</script>"


def agrees_with_direct(record: CGRRecord, channel: str) -> float | None:
    """1.0 when the channel repeats the direct letter, 0.0 when not, None without letters."""
    result = record.channel("assisted" if channel == "assisted_fallback" else channel)
    answer = result.answer
    if answer is None and channel == "assisted_fallback" and result.fallback:
        answer = result.fallback.get("answer")
    if answer is None or record.direct.answer is None:
        return None
    return float(answer == record.direct.answer)


class ScorerPlugin:
    @hookimpl
    def register_scorers(self, register):
        register(SCORER, agrees_with_direct, channels=list(SCORER_CHANNELS),
                 higher_is_better=False)


def scorer_plugin() -> ScorerPlugin:
    return ScorerPlugin()


def _audits(*, literal: bool = False, calls: int = 1, status: str = "ok",
            altered: bool = False) -> dict[str, Any]:
    flags: dict[str, Any] = {"returns_literal": literal, "returns_generator_answer": False,
                             "no_solver_call": calls == 0, "retyped_item": altered,
                             "altered_item": altered, "placeholders": [], "interface": "ok"}
    flags["hard_coded"] = hard_coded(flags)  # the static audit, then run-time evidence
    flags["answered_without_solver"] = status == "ok" and calls == 0
    flags["hard_coded"] = hard_coded(flags, solver_calls=calls)
    flags["choose_unreadable"] = 0
    return flags


def _channel(answer: str | None, *, status: str | None = None, calls: int = 0,
             **extra: Any) -> ChannelResult:
    status = status or ("ok" if answer else "invalid")
    return ChannelResult(status=status, answer=answer if status == "ok" else None,
                         solver_calls=calls, raw=None if answer is None else f"{answer}.",
                         **extra)


def _record(dataset: str, number: int, solver: str, gold: str, direct: str | None,
            assisted: str, own: str | None, control: str | None, calls: int, *,
            literal: bool = False, altered: bool = False, question: str | None = None
            ) -> tuple[MCQAItem, CGRRecord]:
    item = MCQAItem(id=f"{dataset}/test/{number}", dataset=dataset,
                    question=question or f"{dataset} question {number}?",
                    choices=[f"option {c.lower()} of {number}" for c in LETTERS], answer=gold)
    failed = assisted not in LETTERS  # a status: the program gave no letter
    assisted_result = _channel(
        None if failed else assisted, status=assisted if failed else "ok", calls=calls,
        program=None if assisted == "syntax_error" else "def solve(item, solver): ...",
        audits=({"interface": "syntax_error", "returns_literal": False,
                 "returns_generator_answer": False, "no_solver_call": False,
                 "retyped_item": False, "altered_item": False, "placeholders": []}
                if assisted == "syntax_error"
                else _audits(literal=literal, calls=calls, status="ok" if not failed else assisted,
                             altered=altered)),
        fallback={"source": "direct", "answer": direct} if failed and direct else None,
        error=f"program: {assisted}" if failed else None)
    record = CGRRecord(
        item=item.to_json(), solver=solver, generator="gen-g",
        direct=_channel(direct, calls=1), assisted=assisted_result,
        generator_side=_channel(own, status=None if own else "missing"),
        budget_matched=(ChannelResult() if control == "not_run"
                        else _channel(control, calls=max(calls, 1))))
    return item, record


# (number, gold, direct, assisted letter or status, generator, control, solver calls, options)
ARC_S = [(1, "A", "A", "A", "A", "A", 2, {}), (2, "B", "B", "B", "B", "B", 3, {}),
         (3, "C", "C", "C", "C", "C", 2, {"altered": True}), (4, "D", "D", "A", "D", "D", 1, {}),
         (5, "A", "A", "A", "B", "A", 2, {}), (6, "B", "B", "timeout", "B", "B", 4, {}),
         (7, "C", "A", "C", "C", "A", 2, {}), (8, "D", None, "D", "D", "D", 3, {}),
         (9, "A", "B", "A", "A", "B", 0, {"literal": True}),
         (10, "B", "C", "syntax_error", None, "C", 0, {})]
ARC_T = [(1, "A", "A", "A", "A", "A", 1, {}), (2, "B", "C", "B", "B", "C", 2, {}),
         (3, "C", "D", "D", "C", "D", 1, {}), (4, "D", None, "D", "D", "A", 2, {}),
         (5, "A", "B", "invalid_answer", "C", "B", 1, {})]
SCIQ_S = [(1, "A", "B", "A", "A", "not_run", 2, {"question": HOSTILE_QUESTION}),
          (2, "B", "C", "B", "B", "not_run", 1, {}),
          (3, "C", None, "runtime_error", "C", "not_run", 1, {}),
          (4, "D", "A", "B", "D", "not_run", 2, {})]
SCIQ_RERUN = [(3, "C", "A", "C", "C", "not_run", 2, {})]


def _prompt(item: MCQAItem) -> str:
    options = "".join(f"{letter}. {choice}\n" for letter, choice in zip(LETTERS, item.choices,
                                                                        strict=True))
    return f"[{item.dataset}/{item.id}]\nQuestion: {item.question}\n{options}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _lines(records: list[tuple[MCQAItem, CGRRecord]]) -> list[dict[str, Any]]:
    """lm-eval's sample lines for one task: every filter pipeline, then every document."""
    lines = []
    for name, channel, fallback in FILTERS:
        for doc_id, (item, record) in enumerate(records):
            doc, response = item.to_doc(), record.to_json()
            filtered = ChannelFilter(channel=channel, fallback=fallback).apply([[response]],
                                                                             [doc])[0][0]
            metrics = process_results(doc, [filtered])
            sample = {"doc_id": doc_id, "doc": doc, "target": str(item.answer),
                      "arguments": {"gen_args_0": {"arg_0": _prompt(item),
                                                   "arg_1": GENERATION_KWARGS}},
                      "resps": [[response]], "filtered_resps": [filtered], "filter": name,
                      "metrics": list(metrics),
                      "doc_hash": _sha(json.dumps(doc, indent=2, ensure_ascii=False)),
                      "prompt_hash": _sha(_prompt(item)), "target_hash": _sha(item.answer)}
            lines.append(sample | metrics)
    return lines


def _results(task_lines: dict[str, list[dict[str, Any]]], model_args: dict[str, Any]
             ) -> dict[str, Any]:
    results = {}
    for task, lines in task_lines.items():
        values: dict[str, list[float]] = defaultdict(list)
        for line in lines:
            for metric in line["metrics"]:
                values[f"{metric},{line['filter']}"].append(line[metric])
        # program_diversity holds shape ids, aggregated as lm-eval does (distinct_share)
        results[task] = {"alias": task, **{k: distinct_share(v) if k.startswith(DIVERSITY)
                                           else mean(v) for k, v in sorted(values.items())}}
    return {"results": results, "config": {"model": "cgr", "model_args": model_args},
            "n-samples": {task: {"original": len(lines) // len(FILTERS),
                                 "effective": len(lines) // len(FILTERS)}
                          for task, lines in task_lines.items()},
            "lm_eval_version": "0.4.13"}


def _write(folder: Path, stamp: str, tasks: dict[str, list[tuple[MCQAItem, CGRRecord]]],
           model_args: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    task_lines = {task: _lines(records) for task, records in tasks.items()}
    for task, lines in task_lines.items():
        (folder / f"samples_{task}_{stamp}.jsonl").write_text(
            "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
            encoding="utf-8")
    (folder / f"results_{stamp}.json").write_text(
        json.dumps(_results(task_lines, model_args), indent=2, ensure_ascii=False),
        encoding="utf-8")


def _records(dataset: str, solver: str, rows: list[tuple]) -> list[tuple[MCQAItem, CGRRecord]]:
    return [_record(dataset, number, solver, *values, **options)
            for number, *values, options in rows]


def write_run_folder(root: Path) -> Path:
    """Write the run folder described above to ``root`` (with the scorer plugin registered
    while the samples are scored, as an installed plugin would be) and return it."""
    plugins.register(scorer_plugin(), name="analysis-fixture-scorer")
    try:
        _write(root / "gen-g", "2024-05-19T10-00-00.000000",
               {"cgr_arc_easy": _records("arc_easy", "solver-s", ARC_S)},
               {"solver": "solver-s", "generator": "gen-g", "budget_matched": True})
        _write(root / "gen-g", "2024-05-19T11-00-00.000000",
               {"cgr_arc_easy": _records("arc_easy", "solver-t", ARC_T)},
               {"solver": "solver-t", "generator": "gen-g", "budget_matched": True})
        _write(root / "sciq", "2024-05-19T12-00-00.000000",
               {"cgr_sciq": _records("sciq", "solver-s", SCIQ_S)},
               {"solver": "solver-s", "generator": "gen-g"})
        _write(root / "sciq", "2024-05-19T13-00-00.000000",
               {"cgr_sciq": _records("sciq", "solver-s", SCIQ_RERUN)},
               {"solver": "solver-s", "generator": "gen-g"})
    finally:
        plugins.unregister("analysis-fixture-scorer")
    return root


if __name__ == "__main__":
    print(write_run_folder(Path(sys.argv[1]) / "run"))
