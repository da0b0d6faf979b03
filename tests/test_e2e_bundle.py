"""End-to-end: each dataset added for paper parity runs through cgr-eval's direct channel with
the real SmolLM2, and its logged prompts show what the item holds (a payload, its letters)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

from cgr_plugin.record import CGRRecord

from .conftest import needs_llama, run_cli

pytestmark = [pytest.mark.slow, needs_llama]

NEW_TASKS = ["cgr_mmlu_pro", "cgr_failuresensoriq", "cgr_failuresensoriq_perturbed",
             "cgr_timeseriesexam", "cgr_basic_skills_arithmetic",
             "cgr_basic_skills_string_operations", "cgr_basic_skills_pattern",
             "cgr_basic_skills_logical_reasoning", "cgr_basic_skills_common_knowledge"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One cgr-eval run of the nine tasks, two items each (one model load for all)."""
    cwd = tmp_path_factory.mktemp("bundle_e2e")
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args", "channels=direct",
                  "--tasks", ",".join(NEW_TASKS), "--limit", "2", "--output_path", "out",
                  "--log_samples", "--confirm_run_unsafe_code", cwd=cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    return cwd / "out"


@pytest.mark.parametrize("task", NEW_TASKS)
def test_new_task_runs_direct_on_two_items(run_dir, task):
    results = glob.glob(str(run_dir / "**" / "results_*.json"), recursive=True)
    metrics = json.loads(Path(results[0]).read_text())["results"][task]
    assert 0.0 <= metrics["acc,direct"] <= 1.0
    files = glob.glob(str(run_dir / "**" / f"samples_{task}_*.jsonl"), recursive=True)
    samples = [json.loads(line) for line in Path(files[0]).read_text().splitlines()]
    direct = [s for s in samples if s["filter"] == "direct"]
    assert len(direct) == 2
    for sample in direct:
        record = CGRRecord.from_json(sample["resps"][0][0])
        doc = sample["doc"]
        assert record.gold == doc["answer"] and record.direct.status in ("ok", "invalid")
        prompt = record.direct.prompt
        assert doc["question"] in prompt
        for letter, choice in zip(doc["letters"], doc["choices"], strict=True):
            assert f"{letter}. {choice}" in prompt
        payload = json.loads(doc["payload_json"])
        if task == "cgr_timeseriesexam":
            values = payload["series"]["ts"]
            data = ("Data (numbers rounded to 3 significant digits):\nseries:\n"
                    f"  ts ({len(values)} values): {values[0]:.3g}, ")
            assert data in prompt  # the item, its data first, comes after the instruction
            assert prompt.index(data) < prompt.index("Question: " + doc["question"])
        else:
            assert payload is None and "Data" not in prompt.split("Question:")[0]
        if task == "cgr_failuresensoriq_perturbed":
            assert doc["letters"][0] == "P" and "(P, Q" in prompt
