"""End-to-end: real lm-eval CLI and Python API, real bundle items, real SmolLM2 (llama.cpp)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

from cgr_plugin.record import CGRRecord

from .conftest import needs_llama, run_cli

pytestmark = [pytest.mark.slow, needs_llama]

ALL_TASKS = ["cgr_aqua_rat", "cgr_arc_challenge", "cgr_arc_easy",
             "cgr_basic_skills_arithmetic", "cgr_basic_skills_common_knowledge",
             "cgr_basic_skills_logical_reasoning", "cgr_basic_skills_pattern",
             "cgr_basic_skills_string_operations", "cgr_commonsense_qa",
             "cgr_failuresensoriq", "cgr_failuresensoriq_perturbed", "cgr_medmcqa", "cgr_mmlu",
             "cgr_mmlu_pro", "cgr_openbookqa", "cgr_sciq", "cgr_timeseriesexam",
             "cgr_truthfulqa_mc1"]


def _results(out: Path) -> dict:
    files = glob.glob(str(out / "**" / "results_*.json"), recursive=True)
    assert len(files) == 1, files
    return json.loads(Path(files[0]).read_text())


def _samples(out: Path, task: str, channel: str | None = "direct") -> list[dict]:
    """Sample lines of one filter pipeline (lm-eval writes one line per item and pipeline)."""
    files = glob.glob(str(out / "**" / f"samples_{task}_*.jsonl"), recursive=True)
    assert len(files) == 1, files
    lines = [json.loads(line) for line in Path(files[0]).read_text().splitlines()]
    return [s for s in lines if channel is None or s["filter"] == channel]


DIRECT_ONLY = ["--model_args", "channels=direct", "--confirm_run_unsafe_code"]


def test_cgr_tasks_need_the_unsafe_code_confirmation(tmp_path):
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_sciq", "--limit", "1",
                  cwd=tmp_path)
    assert run.returncode != 0
    assert "confirm_run_unsafe_code" in run.stderr


def test_a_cgr_error_in_a_run_is_one_line_without_a_traceback(tmp_path):
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args", "solver=no-such-model",
                  "--tasks", "cgr_sciq", "--limit", "1", "--confirm_run_unsafe_code", cwd=tmp_path)
    assert run.returncode == 2
    assert "cgr-eval: error: unknown model 'no-such-model'" in run.stderr
    assert "Traceback" not in run.stderr


def test_cgr_eval_runs_the_direct_channel_and_logs_samples(tmp_path):
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_arc_easy", "--limit", "6",
                  "--output_path", "out", "--log_samples", *DIRECT_ONLY, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "acc" in run.stdout and "direct" in run.stdout  # lm-eval's results table
    metrics = _results(tmp_path / "out")["results"]["cgr_arc_easy"]
    assert 0.0 <= metrics["acc,direct"] <= 1.0
    assert 0.0 <= metrics["invalid,direct"] <= 1.0
    samples = _samples(tmp_path / "out", "cgr_arc_easy")
    assert len(samples) == 6
    for sample in samples:
        record = CGRRecord.from_json(sample["resps"][0][0])
        assert record.item_id == sample["doc"]["id"]
        assert record.gold == sample["target"] == sample["doc"]["answer"]
        direct = record.direct
        assert direct.prompt and sample["doc"]["question"] in direct.prompt
        assert direct.raw is not None and direct.status in ("ok", "invalid")
        outcome = json.loads(sample["filtered_resps"][0])
        assert (outcome["letter"], outcome["status"]) == (direct.answer, direct.status)
        assert record.assisted.status == "not_run"  # channels=direct
        assert sample["acc"] == float(direct.answer == record.gold)


def test_python_api_with_registered_plugin():
    import lm_eval
    from lm_eval.tasks import TaskManager

    import cgr_plugin

    cgr_plugin.register()
    manager = TaskManager(include_path=str(cgr_plugin.TASKS_DIR), include_defaults=False)
    names = manager.match_tasks(["cgr_sci*"])
    assert names == ["cgr_sciq"]
    out = lm_eval.simple_evaluate(model="cgr", model_args={"solver": "smollm2-135m",
                                                           "channels": "direct"},
                                  tasks=names, task_manager=manager, limit=3,
                                  log_samples=True, bootstrap_iters=0,
                                  confirm_run_unsafe_code=True)
    assert set(out["results"]["cgr_sciq"]) >= {"acc,direct", "invalid,direct"}
    records = [CGRRecord.from_json(s["resps"][0][0]) for s in out["samples"]["cgr_sciq"]
               if s["filter"] == "direct"]
    assert [r.direct.solver_calls for r in records] == [1, 1, 1]
    assert out["config"]["model_args"] == {"solver": "smollm2-135m", "channels": "direct"}
    # registering never hides lm-eval's own models
    from lm_eval.api.registry import get_model
    assert get_model("hf").__name__ == "HFLM"


def test_every_task_runs_with_a_wildcard(tmp_path):
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_*", "--limit", "1",
                  "--output_path", "out", *DIRECT_ONLY, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(_results(tmp_path / "out")["results"]) == ALL_TASKS


def test_ls_tasks_lists_every_cgr_task():
    run = run_cli("cgr-eval", "ls", "tasks")
    assert run.returncode == 0, run.stderr[-2000:]
    for task in ALL_TASKS:
        assert task in run.stdout


def test_mmlu_subjects_are_selectable(tmp_path):
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_mmlu", "--limit", "2",
                  "--metadata", '{"subsets": ["virology"]}', "--output_path", "out",
                  "--log_samples", *DIRECT_ONLY, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    for sample in _samples(tmp_path / "out", "cgr_mmlu"):
        assert json.loads(sample["doc"]["metadata_json"])["subject"] == "virology"
