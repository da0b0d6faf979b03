"""The example plugin package, installed, changes cgr-eval's results and cgr report; a broken
installed plugin is named and skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cgr_plugin.programs.packages import write_programs

from .conftest import REPO, needs_llama, run_cli
from .test_e2e_cli import _results

pytestmark = [pytest.mark.slow]
EXAMPLE = REPO / "examples" / "cgr-scorer-example"
CHOOSE = "```python\ndef solve(item, solver):\n    return solver.choose()\n```"
ITEMS = ["Mercury_417466", "Mercury_7081673", "Mercury_7239733"]  # first ARC-Easy test items


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example plugin pip-installed into its own folder (put on PYTHONPATH to enable it)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(EXAMPLE)], check=True)
    return target


def _env(*paths: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(map(str, paths))}


def test_cgr_plugins_lists_the_installed_plugin(site):
    listed = run_cli("cgr", "plugins", "--json", env=_env(site))
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)["plugins"]["scorer_example"]
    assert found == {"scorers": ["agrees_with_direct"], "partitions": ["at_least_20_items"]}
    assert "scorer_example" not in run_cli("cgr", "plugins").stdout  # not installed: not there


@needs_llama
def test_the_example_scorer_reaches_lm_eval_results_and_the_report(site, tmp_path):
    package = write_programs(tmp_path / "pkg", {f"arc_easy/{i}": CHOOSE for i in ITEMS})
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args", f"programs={package}",
                  "--tasks", "cgr_arc_easy", "--limit", "3", "--output_path", "out",
                  "--log_samples", "--confirm_run_unsafe_code", cwd=tmp_path, env=_env(site))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "No aggregation function defined" not in run.stderr
    results = _results(tmp_path / "out")
    metrics = results["results"]["cgr_arc_easy"]
    # choose() asks the direct prompt again: greedy, so the program agrees with direct
    assert metrics["agrees_with_direct,assisted"] == 1.0
    assert "agrees_with_direct,direct" not in metrics  # not one of the scorer's channels
    assert results["higher_is_better"]["cgr_arc_easy"]["agrees_with_direct"] is False

    report = run_cli("cgr", "report", "out", "--out", "rep", "--resamples", "200", cwd=tmp_path,
                     env=_env(site))
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Scorer agrees_with_direct" in text and "1.000 (3)" in text
    assert "at_least_20_items" in text


def test_a_broken_plugin_is_named_and_the_run_goes_on(site, tmp_path):
    broken = tmp_path / "broken_site"
    info = broken / "cgr_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cgr-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cgr]\nbroken = cgr_broken_no_such_module\n")
    listed = run_cli("cgr", "plugins", env=_env(site, broken))
    assert listed.returncode == 1
    assert "BROKEN broken (cgr_broken_no_such_module): ModuleNotFoundError" in listed.stdout
    assert "scorer_example: " in listed.stdout  # the good plugin still loads
    strict = run_cli("cgr", "plugins", env={**_env(site, broken), "CGR_STRICT_PLUGINS": "1"})
    assert strict.returncode != 0 and "plugin 'broken (cgr_broken_no_such_module)'" in (
        strict.stderr + strict.stdout)
    only = run_cli("cgr", "plugins",
                   env={**_env(site, broken), "CGR_LOAD_PLUGINS": "scorer_example"})
    assert only.returncode == 0 and "BROKEN" not in only.stdout
