"""Solver routed through an lm-eval registered backend (hf) instead of the embedded llama.cpp."""

from __future__ import annotations

import pytest

from cgr_plugin.record import CGRRecord

from .conftest import has_module, run_cli
from .test_e2e_cli import _results, _samples

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not has_module("transformers"), reason="needs the hf extra")]


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory):
    from cgr_plugin.testing import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


def test_solver_through_lm_eval_hf_backend(tmp_path, tiny_hf_model):
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args",
                  f"solver=hf,solver.pretrained={tiny_hf_model},solver.dtype=float32,"
                  "channels=direct", "--confirm_run_unsafe_code",
                  "--tasks", "cgr_arc_easy", "--limit", "3", "--output_path", "out",
                  "--log_samples", "--device", "cpu", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _results(tmp_path / "out")["results"]["cgr_arc_easy"]["invalid,direct"] >= 0.0
    for sample in _samples(tmp_path / "out", "cgr_arc_easy"):
        record = CGRRecord.from_json(sample["resps"][0][0])
        assert record.solver == f"hf:{tiny_hf_model}"
        assert record.direct.status in ("ok", "invalid")  # random weights: mostly gibberish
        assert record.direct.raw is not None


def test_unknown_solver_is_a_clear_error(tmp_path):
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args", "solver=no-such-model",
                  "--tasks", "cgr_sciq", "--limit", "1", "--confirm_run_unsafe_code",
                  cwd=tmp_path)
    assert run.returncode == 2
    assert "unknown model 'no-such-model'" in run.stderr
    assert "smollm2-135m" in run.stderr
