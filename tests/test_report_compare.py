"""``cgr report A B --compare`` on two hand-made runs (solver-s and solver-t on arc_easy, from
tests/analysis_run_folder.py; no model): pairs by (task, item id), B - A per dataset checked
against a count over the records, and both runs' letters per item in the explorer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cgr_plugin.analysis.stats import paired_difference
from cgr_plugin.cli import cgr_main

from .analysis_run_folder import ARC_S, ARC_T, _records, _write

STAMP = "2024-05-19T10-00-00.000000"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    _write(root / "a", STAMP, {"cgr_arc_easy": _records("arc_easy", "solver-s", ARC_S)},
           {"solver": "solver-s"})
    _write(root / "b", STAMP, {"cgr_arc_easy": _records("arc_easy", "solver-t", ARC_T)},
           {"solver": "solver-t"})
    return root / "a", root / "b"


def _report(runs, out: Path, *args: str) -> int:
    with pytest.raises(SystemExit) as done:
        cgr_main(["report", str(runs[0]), str(runs[1]), "--compare", "--out", str(out),
                  "--resamples", "300", *args])
    return done.value.code


@pytest.mark.parametrize("channel", ["assisted", "direct"])
def test_b_minus_a_per_dataset_is_a_count_over_the_paired_items(runs, tmp_path, channel):
    assert _report(runs, tmp_path / "rep", "--channel", channel) == 0
    comparison = json.loads((tmp_path / "rep" / "comparison.json").read_text())
    (dataset,) = comparison["datasets"]
    a = {r.item_id: r for _, r in _records("arc_easy", "solver-s", ARC_S)}
    b = {r.item_id: r for _, r in _records("arc_easy", "solver-t", ARC_T)}
    shared = sorted(set(a) & set(b))
    a_ok = [a[i].channel(channel).answer == a[i].gold for i in shared]
    b_ok = [b[i].channel(channel).answer == b[i].gold for i in shared]
    expected = paired_difference(b_ok, a_ok, resamples=300)
    assert (dataset["n"], dataset["only_a"], dataset["only_b"]) == (5, 5, 0)
    assert dataset["b_minus_a"] == expected.to_dict()
    assert {(x["item"], x["versus"]) for x in comparison["items"]} == {
        (i, "rescued" if y and not x else "harmed" if x and not y else
         "both_right" if x else "both_wrong") for i, x, y in zip(shared, a_ok, b_ok, strict=True)}
    table = (tmp_path / "rep" / "report.md").read_text()
    assert f"Run B minus run A, {channel} channel" in table


def test_a_run_with_two_configurations_is_refused(runs, tmp_path, capsys):
    _write(runs[0], "2024-05-19T11-00-00.000000",
           {"cgr_arc_easy": _records("arc_easy", "solver-t", ARC_T)}, {"solver": "solver-t"})
    try:
        assert _report(runs, tmp_path / "rep") == 2
        assert "2 configurations (solver-s + gen-g, solver-t + gen-g)" in capsys.readouterr().err
    finally:
        next(runs[0].glob("samples_*2024-05-19T11-*.jsonl")).unlink()
        next(runs[0].glob("results_2024-05-19T11-*.json")).unlink()


def test_compare_needs_two_runs_and_a_channel(runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cgr_main(["report", str(runs[0]), "--compare", "--out", str(tmp_path / "r")])
    assert done.value.code == 2 and "two run folders" in capsys.readouterr().err
    assert _report(runs, tmp_path / "rep", "--channel", "nonsense") == 2
    assert "not a channel" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_explorer_shows_both_runs_letters_and_filters_on_b_against_a(runs, tmp_path):
    assert _report(runs, tmp_path / "rep") == 0
    comparison = json.loads((tmp_path / "rep" / "comparison.json").read_text())
    harmed = comparison["datasets"][0]["b_minus_a"]["harmed"]
    page = (tmp_path / "rep" / "report.html").as_uri()
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
         "--dump-dom", page + "#versus=harmed&side=B"], capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = re.findall(r'<tr data-i="\d+"[^>]*>(.*?)</tr>', done.stdout, re.S)
    assert len(rows) == harmed > 0
    for row in rows:  # the B row shows A's letter beside its own
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        item = next(x for x in comparison["items"] if x["item"] == cells[0])
        assert cells[-3:] == ["B", item["a"][0] or item["a"][1], "harmed"]


def test_before_and_after_runs_of_one_configuration_stay_apart(tmp_path):
    """A and B with the same solver and generator (a prompt change): the report's groups name
    the run, so neither run's items are pooled with the other's."""
    for name in ("before", "after"):
        _write(tmp_path / name, STAMP,
               {"cgr_arc_easy": _records("arc_easy", "solver-s", ARC_S)}, {"solver": "solver-s"})
    assert _report((tmp_path / "before", tmp_path / "after"), tmp_path / "rep") == 0
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert sorted((g["generator"], g["n"]) for g in summary["groups"]) == [
        ("gen-g (run A)", 10), ("gen-g (run B)", 10)]
    comparison = json.loads((tmp_path / "rep" / "comparison.json").read_text())
    assert comparison["datasets"][0]["b_minus_a"]["difference"] == 0
