"""A tiny study end to end with the real SmolLM2 (2 items): the plan with a measured speed,
every kind of cell through real cgr-eval, one report, and a rerun that recomputes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO, needs_llama

pytestmark = [pytest.mark.slow, needs_llama]

STUDY = """\
name: e2e
tasks: [cgr_arc_easy]
limit: 2
solvers: [smollm2-135m, {model: smollm2-135m, name: smollm2-again, args: {n_ctx: 2048}}]
generators: [smollm2-135m]
generator_prompts: [cgr]
controls: [cot, fixed:judge_each_option, budget_matched]
model_args: {generator_max_tokens: 128}
report: {resamples: 500}
"""


def _study(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "CGR_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "cgr_plugin", "study", "study.yaml", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)


def test_a_tiny_smollm2_study_plans_runs_reports_and_resumes_for_nothing(tmp_path):
    (tmp_path / "study.yaml").write_text(STUDY)
    plan = _study(tmp_path, "--dry-run")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "smollm2-135m: load" in plan.stdout and "(measured now)" in plan.stdout
    assert "estimated time unknown" not in plan.stdout
    assert not (tmp_path / "study_e2e").exists()

    run = _study(tmp_path, "--out", "out")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    state = {c["name"]: c for c in json.loads((tmp_path / "out" / "study.json").read_text())
             ["cells"]}
    assert [c["kind"] for c in state.values()] == ["write", "replay", "controls", "controls"]
    assert all(c["status"] == "done" for c in state.values())
    summary = json.loads((tmp_path / "out" / "report" / "summary.json").read_text())
    assert len(summary["settings"]["runs"]) == 4
    written = next(g for g in summary["groups"] if g["generator"] == "smollm2-135m [cgr]")
    assert written["n"] == 2 and "budget_matched" in written["accuracy"]
    assert written["controls"]["cot"]["assisted_minus_control"] is not None
    assert any(g["generator"].startswith("replay:programs/smollm2-135m.cgr")
               for g in summary["groups"])
    for name in ("report.md", "report.html"):
        assert (tmp_path / "out" / "report" / name).is_file()

    again = _study(tmp_path, "--out", "out")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "recomputed nothing: 4 cells finished before" in again.stdout
    cached = _study(tmp_path, "--dry-run")
    assert "(cached, measured" in cached.stdout and "measured now" not in cached.stdout
