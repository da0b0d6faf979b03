"""cgr report over real runs of two solvers on three tasks, checked against the samples."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cgr_plugin.record import CGRRecord
from cgr_plugin.sandbox.runner import isolation_level

from .conftest import needs_llama, run_cli

pytestmark = [pytest.mark.slow, needs_llama,
              pytest.mark.skipif(isolation_level() == "process", reason="needs bubblewrap")]

TASKS = "cgr_arc_easy,cgr_sciq,cgr_openbookqa"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folders = []
    for solver in ("smollm2-135m", "qwen2.5-coder-0.5b"):
        out = tmp_path_factory.mktemp(solver)
        run = run_cli("cgr-eval", "--model", "cgr", "--model_args",
                      f"solver={solver},generator=smollm2-135m,generator_max_tokens=256,"
                      "budget_matched=True",
                      "--tasks", TASKS, "--limit", "4", "--output_path", str(out),
                      "--log_samples", "--confirm_run_unsafe_code", cwd=out)
        assert run.returncode == 0, run.stderr[-3000:]
        folders.append(out)
    return folders


def _records(folder: Path) -> dict[str, list[CGRRecord]]:
    by_task: dict[str, list[CGRRecord]] = {}
    for path in folder.rglob("samples_*.jsonl"):
        task = path.name.removeprefix("samples_").rsplit("_", 1)[0]
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        by_task[task] = [CGRRecord.from_json(s["resps"][0][0]) for s in lines
                         if s["filter"] == "direct"]
    return by_task


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.sources: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.sources += [(tag, name, value) for name, value in attrs if name in ("src", "href")]


def test_report_numbers_match_an_independent_recount(runs, tmp_path):
    run = run_cli("cgr", "report", *map(str, runs), "--out", str(tmp_path / "report"),
                  "--resamples", "2000")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    groups = {(g["task"], g["solver"]): g for g in summary["groups"]}
    assert len(groups) == 6  # 3 tasks x 2 solvers
    for folder in runs:
        for task, records in _records(folder).items():
            group = groups[(task, records[0].solver)]
            n = len(records)
            direct = sum(r.direct.answer == r.gold for r in records)
            assisted = sum(r.assisted.answer == r.gold for r in records)
            rescued = sum(r.assisted.answer == r.gold != r.direct.answer for r in records)
            harmed = sum(r.direct.answer == r.gold != r.assisted.answer for r in records)
            assert group["n"] == n
            assert group["accuracy"]["direct"]["correct"] == direct
            assert group["accuracy"]["assisted"]["correct"] == assisted
            assert group["difference"]["difference"] == pytest.approx((assisted - direct) / n)
            assert (group["difference"]["rescued"], group["difference"]["harmed"]) == (
                rescued, harmed)
            assert sum(group["statuses"].values()) == n
    for partition in ("all", "non_zero_baseline", "direct_gate"):
        assert partition in summary["aggregates"]
        assert partition in summary["sensitivity"]["aggregates"]
    every = summary["aggregates"]["all"]["by_model"]
    assert sum(agg["items"] for agg in every.values()) == 24

    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Per dataset" in markdown and "cgr_sciq" in markdown
    assert "## Budget-matched control" in markdown
    for group in groups.values():
        assert group["accuracy"]["budget_matched"]["n"] == group["n"]
        assert "difference_vs_budget_matched" in group
    parser = _Collect()
    parser.feed((tmp_path / "report" / "report.html").read_text())
    assert parser.tags.count("img") == 5 and parser.tags.count("table") >= 4
    # self-contained: every figure is an SVG inside the page, links stay in the page (the
    # explorer's), nothing is fetched
    assert all(value.startswith("data:image/svg+xml;base64,") if name == "src"
               else value.startswith("#") for _, name, value in parser.sources), parser.sources


def test_user_partitions_and_bad_input(runs, tmp_path):
    rules = tmp_path / "partitions.yaml"
    rules.write_text("science:\n  tasks: [cgr_arc_easy, cgr_sciq]\n  description: science\n")
    run = run_cli("cgr", "report", str(runs[0]), "--out", str(tmp_path / "r"),
                  "--partitions", str(rules), "--resamples", "500")
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    (science,) = summary["aggregates"]["science"]["by_model"].values()
    assert sorted(science["tasks"]) == ["cgr_arc_easy", "cgr_sciq"]
    rules.write_text("science:\n  taks: [cgr_arc_easy]\n")
    run = run_cli("cgr", "report", str(runs[0]), "--out", str(tmp_path / "r2"),
                  "--partitions", str(rules))
    assert run.returncode == 2 and "unknown key 'taks'" in run.stderr
    run = run_cli("cgr", "report", str(tmp_path / "empty"), "--out", str(tmp_path / "r3"))
    assert run.returncode == 2 and "no samples_" in run.stderr


def test_export_then_replay_reproduces_every_assisted_answer(runs, tmp_path):
    package = tmp_path / "pkg"
    run = run_cli("cgr", "export", str(runs[0]), "--out", str(package))
    assert run.returncode == 0, run.stderr[-2000:]
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["schema"] == "cgr.programs/1" and manifest["programs"] == 12
    assert set(manifest["templates"]) >= {"generator_cgr.j2", "generator_per_option.j2",
                                          "direct.j2"}
    replay = tmp_path / "replay"
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args",
                  f"programs={package},solver=smollm2-135m", "--tasks", TASKS, "--limit", "4",
                  "--output_path", str(replay), "--log_samples", "--confirm_run_unsafe_code",
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    before = {r.item_id: r for records in _records(runs[0]).values() for r in records}
    after = {r.item_id: r for records in _records(replay).values() for r in records}
    assert set(after) == set(before)
    for key, record in after.items():
        assert record.generator.startswith("replay:")
        assert record.generator_prompt == before[key].generator_prompt is not None
        old = before[key].assisted
        assert (record.assisted.status, record.assisted.answer) == (old.status, old.answer), key
        assert record.generator_side.answer == before[key].generator_side.answer


def test_a_damaged_package_is_refused(runs, tmp_path):
    package = tmp_path / "pkg"
    assert run_cli("cgr", "export", str(runs[0]), "--out", str(package)).returncode == 0
    with open(package / "programs.jsonl", "a") as fh:
        fh.write("{}\n")
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args", f"programs={package}",
                  "--tasks", "cgr_sciq", "--limit", "1", "--confirm_run_unsafe_code",
                  cwd=tmp_path)
    assert run.returncode != 0 and "differ from the manifest" in run.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(runs, tmp_path):
    assert run_cli("cgr", "report", str(runs[0]), "--out", str(tmp_path / "r"),
                   "--resamples", "500").returncode == 0
    shot = tmp_path / "shot.png"
    render = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
         f"--screenshot={shot}", (tmp_path / "r" / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert render.returncode == 0, render.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # tables and figures drew something
    assert "Uncaught" not in render.stderr
