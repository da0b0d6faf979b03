"""benchmarks/gpu_check.py: one failing step is recorded and the others still run; every step
passes end to end on the CPU (``--cpu --quick``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failing_step_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    check = _gpu_check()

    def no_device(_):
        raise RuntimeError("no device")

    monkeypatch.setattr(check, "step_environment", no_device)
    monkeypatch.setattr(check, "step_data_parallel",
                        lambda _: {"status": "fail", "failure": "records differ"})
    monkeypatch.setattr(check, "step_generation", lambda _: {"rows": []})
    out = tmp_path / "check.json"
    code = check.main(["--cpu", "--only", "environment,data_parallel,generation",
                       "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 1 and report["all_passed"] is False
    steps = report["steps"]
    assert list(steps) == ["environment", "data_parallel", "generation"]
    assert steps["environment"]["status"] == "error"
    assert "RuntimeError: no device" in steps["environment"]["failure"]
    assert "traceback" in steps["environment"]
    assert steps["data_parallel"]["status"] == "fail"
    assert steps["generation"]["status"] == "ok"
    assert all(isinstance(s["seconds"], float) for s in steps.values())
    assert report["schema"] == check.SCHEMA and report["mode"] == "cpu"


def test_exit_status_zero_only_when_every_step_passed(tmp_path, monkeypatch):
    check = _gpu_check()
    for name in check.STEPS:
        monkeypatch.setattr(check, f"step_{name}", lambda _: {})
    out = tmp_path / "check.json"
    assert check.main(["--cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["all_passed"] is True and list(report["steps"]) == list(check.STEPS)
    with pytest.raises(SystemExit):
        check.main(["--cpu", "--only", "environment,warp_drive", "--json", str(out)])


@pytest.mark.slow
def test_every_step_passes_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--quick", "--json", str(out)],
                         capture_output=True, text=True, timeout=900)
    report = json.loads(out.read_text())
    failures = {n: s.get("failure") for n, s in report["steps"].items() if s["status"] != "ok"}
    assert run.returncode == 0 and not failures, (failures, run.stdout[-3000:])
    steps = report["steps"]
    assert steps["hf_direct_replay"]["records"] == steps["hf_direct_replay"]["items"]
    assert steps["data_parallel"]["backends_matching"] == ["gloo"]
    rows = steps["solver_throughput"]["rows"]
    assert [r["broker_batch"] for r in rows] == [1, 4]
    assert rows[1]["mean_batch"] > 2 and rows[1]["ratio_to_batch_1"] > 1.2
    for row in steps["generation"]["rows"]:
        assert 0 < row["decode_tokens_per_s"] < row["bound_tokens_per_s_measured_copy"]
