"""The opt-in that makes the user's literal `lm_eval --model cgr --tasks 'cgr_*'` work."""

from __future__ import annotations

import pytest

from cgr_plugin.tasks import lm_eval_hook as _lm_eval_hook

from .conftest import needs_llama, run_cli

pytestmark = [pytest.mark.slow, needs_llama]

PROBE = ("import lm_eval.api.registry as r; print(*(r.get_model(name).__name__ "
         "for name in ('hf', 'dummy', 'cgr')))")


@pytest.fixture
def hook_state():
    """Leave the environment's hook as the test found it."""
    pth = _lm_eval_hook.site_packages() / _lm_eval_hook.PTH_NAME
    before = pth.read_text() if pth.exists() else None
    yield pth
    if before is None:
        pth.unlink(missing_ok=True)
    else:
        pth.write_text(before)


def test_enable_then_plain_lm_eval_runs_cgr_tasks(tmp_path, hook_state):
    run_cli("cgr", "disable-lm-eval")
    before = run_cli("lm_eval", "--model", "cgr", "--tasks", "cgr_sciq", "--limit", "1",
                     cwd=tmp_path)
    assert before.returncode != 0  # without the opt-in plain lm_eval knows neither

    enabled = run_cli("cgr", "enable-lm-eval")
    assert enabled.returncode == 0 and hook_state.exists()
    run = run_cli("lm_eval", "--model", "cgr", "--tasks", "cgr_*", "--limit", "2",
                  "--output_path", "out", "--model_args", "channels=direct",
                  "--confirm_run_unsafe_code", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    for task in ("cgr_arc_easy", "cgr_mmlu", "cgr_truthfulqa_mc1"):
        assert task in run.stdout
    # built-in models still resolve with the hook in place
    probe = run_cli("python", "-c", PROBE)
    assert probe.stdout.split() == ["HFLM", "DummyLM", "CGRLM"], probe.stderr

    disabled = run_cli("cgr", "disable-lm-eval")
    assert disabled.returncode == 0 and not hook_state.exists()
    after = run_cli("lm_eval", "--model", "cgr", "--tasks", "cgr_sciq", "--limit", "1",
                    cwd=tmp_path)
    assert after.returncode != 0


def test_hook_is_inert_until_lm_eval_is_imported(hook_state):
    run_cli("cgr", "enable-lm-eval")
    probe = run_cli("python", "-c", "import sys; print('lm_eval' in sys.modules, "
                    "[m for m in sys.modules if m.startswith('cgr_plugin')], "
                    "'_cgr_plugin_lm_eval_hook' in sys.modules)")
    assert probe.stdout.split() == ["False", "[]", "True"], probe.stderr  # armed, nothing loaded
