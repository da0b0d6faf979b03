"""End-to-end assisted channel: real lm-eval, real generator and solver models, real sandbox."""

from __future__ import annotations

import json

import pytest

from cgr_plugin.record import ASSISTED_STATUSES, GENERATOR_STATUSES, CGRRecord
from cgr_plugin.sandbox.runner import isolation_level

from .conftest import needs_llama, run_cli
from .test_e2e_cli import _results, _samples

pytestmark = [pytest.mark.slow, needs_llama,
              pytest.mark.skipif(isolation_level() == "process", reason="needs bubblewrap")]

ITEM = {"id": "t1", "dataset": "toy", "question": "Which planet is known as the Red Planet?",
        "choices": ["Venus", "Mars", "Jupiter"], "answer": "B"}


def _check_three_channels(out, task, n):
    metrics = _results(out)["results"][task]
    for column in ("acc,direct", "acc,assisted", "acc,assisted_fallback", "acc,generator",
                   "solver_calls,assisted", "status_ok,assisted", "audit_hard_coded,assisted"):
        assert column in metrics, column
    samples = _samples(out, task, "assisted")
    assert len(samples) == n
    records = [CGRRecord.from_json(s["resps"][0][0]) for s in samples]
    for record in records:
        assert record.direct.status in ("ok", "invalid")
        assert record.assisted.status in ASSISTED_STATUSES and record.assisted.status != "not_run"
        assert record.generator_side.status in GENERATOR_STATUSES
        assert record.generator_side.raw  # the generator's whole output is kept
        assert record.assisted.solver_calls == len(record.assisted.trace) <= 8
    return records


def test_three_channels_with_small_models(tmp_path):
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args", "generator=smollm2-135m",
                  "--tasks", "cgr_arc_easy", "--limit", "3", "--output_path", "out",
                  "--log_samples", "--confirm_run_unsafe_code", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    _check_three_channels(tmp_path / "out", "cgr_arc_easy", 3)


def test_three_channels_with_the_1_5b_model(tmp_path):
    model = "qwen2.5-coder-1.5b"
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args",
                  f"generator={model},solver={model}", "--tasks", "cgr_arc_easy", "--limit",
                  "2", "--output_path", "out", "--log_samples", "--confirm_run_unsafe_code",
                  cwd=tmp_path, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    records = _check_three_channels(tmp_path / "out", "cgr_arc_easy", 2)
    assert any(r.assisted.program for r in records)  # the 1.5B model writes real programs


def _exec(tmp_path, program, item=ITEM, *extra):
    (tmp_path / "program.py").write_text(program)
    (tmp_path / "item.json").write_text(json.dumps(item))
    run = run_cli("cgr", "exec", str(tmp_path / "program.py"), "--item",
                  str(tmp_path / "item.json"), *extra)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1
    return CGRRecord.from_json(lines[0])


def test_cgr_exec_flags_a_hard_coded_letter_but_not_a_derived_one(tmp_path):
    hard = _exec(tmp_path, 'GENERATOR_ANSWER = "B"\ndef solve(item, solver):\n    return "B"\n')
    assert hard.assisted.audits["hard_coded"] and hard.generator_side.answer == "B"
    derived = _exec(tmp_path, "def solve(item, solver):\n    return solver.pick({k: "
                              "solver.judge(f'{item.question} {v}') for k, v in "
                              "item.options.items()})\n")
    assert derived.assisted.status == "ok" and not derived.assisted.audits["hard_coded"]
    assert derived.assisted.solver_calls == 3


def test_cgr_exec_takes_a_record_line_and_reports_failures(tmp_path, monkeypatch):
    monkeypatch.setenv("CGR_EXEC_SECRET", "do-not-leak")
    line = _exec(tmp_path, "def solve(item, solver):\n    return 'A'\n")
    (tmp_path / "record.json").write_text(line.to_json())
    attack = ("import os, socket\ndef solve(item, solver):\n"
              "    open('/tmp/x', 'w').write(str(dict(os.environ)))\n"
              "    socket.create_connection(('127.0.0.1', 9), timeout=1)\n")
    (tmp_path / "attack.py").write_text(attack)
    run = run_cli("cgr", "exec", str(tmp_path / "attack.py"), "--item",
                  str(tmp_path / "record.json"), "--budget", "2")
    assert run.returncode == 0
    record = CGRRecord.from_json(run.stdout)
    assert record.assisted.status == "runtime_error"
    assert "do-not-leak" not in run.stdout
