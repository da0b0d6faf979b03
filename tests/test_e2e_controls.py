"""Controls beside the assisted channel, run as a user runs them (cgr-eval, real lm-eval, real
SmolLM2): every item gets direct, assisted, the budget-matched control, a fixed program and the
chain-of-thought control, each with a status and a column in lm-eval's results, and
``cgr report`` pairs assisted with each control."""

from __future__ import annotations

import glob
import json

import pytest

from cgr_plugin.programs.library import fixed_source
from cgr_plugin.programs.packages import write_programs
from cgr_plugin.record import STATUSES, CGRRecord

from .conftest import needs_llama, run_cli
from .test_e2e_cli import _samples
from .test_e2e_determinism import _items

pytestmark = [pytest.mark.slow, needs_llama]
LIMIT = 4
CONTROLS = ("fixed:judge_each_option", "cot")


def test_a_fixed_program_runs_like_a_generated_one_and_every_control_is_reported(tmp_path):
    """The replayed programs are judge_each_option itself, so the assisted channel and the
    control fixed:judge_each_option must agree call for call: same sandbox, helpers, budget."""
    program = f"```python\n{fixed_source('judge_each_option')}\n```"
    package = write_programs(tmp_path / "pkg", dict.fromkeys(_items(), program))
    done = run_cli("cgr-eval", "--model", "cgr", "--model_args",
                   f"programs={package},controls={'+'.join(CONTROLS)}+budget_matched",
                   "--tasks", "cgr_arc_easy", "--limit", str(LIMIT), "--output_path", "out",
                   "--log_samples", "--confirm_run_unsafe_code", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [CGRRecord.from_json(s["resps"][0][0])
               for s in _samples(tmp_path / "out", "cgr_arc_easy")]
    assert len(records) == LIMIT
    for record in records:
        assert set(record.controls) == set(CONTROLS)
        for name in ("direct", "assisted", "budget_matched", *CONTROLS):
            assert record.channel(name).status in STATUSES
            assert record.channel(name).status != "not_run", (record.item_id, name)
        fixed, assisted = record.controls["fixed:judge_each_option"], record.assisted
        assert (fixed.status, fixed.answer, fixed.solver_calls) == (
            assisted.status, assisted.answer, assisted.solver_calls)
        assert [t["prompt"] for t in fixed.trace] == [t["prompt"] for t in assisted.trace]
        assert fixed.sandbox == assisted.sandbox
        assert record.controls["cot"].solver_calls == 1
        assert "Answer: X" in record.controls["cot"].prompt  # the reasoning style's prompt
        assert record.generator_prompt is None  # replayed: written for another run's prompt
        assert assisted.audits["copies_prompt"] is None
    results = json.loads(open(glob.glob(str(tmp_path / "out" / "**" / "results_*.json"),
                                        recursive=True)[0]).read())["results"]["cgr_arc_easy"]
    for name in ("direct", "assisted", "budget_matched", *CONTROLS):
        assert f"acc,{name}" in results, sorted(results)
    assert results["acc,fixed:judge_each_option"] == results["acc,assisted"]
    report = run_cli("cgr", "report", "out", "--out", "rep", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Controls beside assisted" in text
    rows = [line.split(" | ") for line in text.splitlines()
            if "| fixed:judge_each_option |" in line]
    assert len(rows) == 1 and rows[0][8:11] == ["+0.0 [+0.0, +0.0]", "0", "0"], rows
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    controls = summary["groups"][0]["controls"]
    assert set(controls) == set(CONTROLS)
    assert controls["cot"]["assisted_minus_control"]["mcnemar_p"] is not None
