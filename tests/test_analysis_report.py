"""cgr report on a hand-made run folder (tests/analysis_run_folder.py): the numbers of
summary.json, plugin scores as the run recorded them, and the HTML page. No model needed."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cgr_plugin import hookimpl, plugins
from cgr_plugin._paths import DATA_DIR
from cgr_plugin.analysis.render import write_report
from cgr_plugin.analysis.runs import load_runs
from cgr_plugin.analysis.summary import build_summary
from cgr_plugin.cli import cgr_main
from cgr_plugin.plugins import Partition

from .analysis_run_folder import HOSTILE_QUESTION, SCORER, write_run_folder

PINNED = Path(__file__).parent / "data" / "analysis_report_summary.json"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    return write_run_folder(tmp_path_factory.mktemp("runs") / "run")


def _report(run_folder: Path, out: Path, monkeypatch, *args: str) -> dict:
    """``cgr report run --out OUT`` from the folder above the run, as a user types it."""
    monkeypatch.chdir(run_folder.parent)
    with pytest.raises(SystemExit) as done:
        cgr_main(["report", run_folder.name, "--out", str(out), *args])
    assert done.value.code == 0
    return json.loads((out / "summary.json").read_text())


def test_summary_json_is_byte_for_byte_what_it_was_before_the_architecture_change(
        run_folder, tmp_path, monkeypatch):
    """tests/data/analysis_report_summary.json was written by the OLD code, commit 8477d46
    (before issue 11's changes to the analysis package): ``python -m tests.analysis_run_folder
    DIR``, then 8477d46's ``cgr report run --out rep`` (default settings) with the fixture's
    scorer plugin registered, because that code recomputed plugin scores at report time. Today's
    report reads the scores from the samples, with no scorer installed, and must write the same
    bytes (plus a zero count for ``entry_mismatch``, the status issue 12 added, and the three
    keys per group issue 15 added, which are taken out before comparing: ``family``, the
    ``controls`` beside assisted and the ``programs`` figures, all empty for this run, and
    issue 16's: ``strategies`` and ``shapes`` (empty: no program here was re-run or has a
    shape), ``attribution``, the ``leading_prompt`` audit and the sensitivity rule's wording)."""
    summary = _report(run_folder, tmp_path / "rep", monkeypatch)
    assert summary.pop("program_sets")  # issue 17's, below
    for group in summary["groups"]:
        assert (group.pop("family"), group.pop("controls")) == (None, {})
        assert group.pop("programs")["programs"] == 0  # the fixture's records have no shapes
        assert (group.pop("strategies"), group.pop("shapes")) == ([], [])
        assert group.pop("attribution")["generator_wrong_n"] <= group["assisted_ran"]
        assert group["audits"].pop("leading_prompt") == 0
    rule = summary["sensitivity"]["rule"]
    assert "classed constant" in rule
    summary["sensitivity"]["rule"] = ("programs flagged hard_coded removed; each partition "
                                      "keeps the datasets it has on the full data")
    today = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    assert today.encode() == PINNED.read_bytes()


def test_the_report_names_each_run_s_programs_by_the_digest_of_their_package(
        run_folder, tmp_path, monkeypatch):
    """A published report can be checked against the program package shipped with it: each
    run's program set carries the digest that ``cgr export`` writes into the manifest."""
    summary = _report(run_folder, tmp_path / "rep", monkeypatch)
    (entry,) = summary["program_sets"]  # the one run folder given, one generator
    package = tmp_path / "pkg"
    with pytest.raises(SystemExit) as done:
        cgr_main(["export", run_folder.name, "--out", str(package)])
    assert done.value.code == 0
    manifest = json.loads((package / "manifest.json").read_text())
    assert (entry["run"], entry["programs"]) == ("run", manifest["programs"])
    assert entry["generator_outputs_sha256"] == manifest["generator_outputs_sha256"]
    assert entry["generator_outputs_sha256"] in (tmp_path / "rep" / "report.md").read_text()
    part = tmp_path / "pkg-part"  # another set of programs, another digest
    with pytest.raises(SystemExit):
        cgr_main(["export", str(run_folder / "sciq"), "--out", str(part)])
    other = json.loads((part / "manifest.json").read_text())["generator_outputs_sha256"]
    assert other != entry["generator_outputs_sha256"]
    bundle = json.loads((DATA_DIR / "MANIFEST.json").read_text())
    assert manifest["licenses"]["cgr_arc_easy"]["arc_easy"]["license"] == (
        bundle["arc_easy"]["license"])  # the items' terms travel with the programs


def test_accuracies_differences_and_rescued_harmed(run_folder, tmp_path, monkeypatch):
    summary = _report(run_folder, tmp_path / "rep", monkeypatch, "--resamples", "500")
    groups = {(g["task"], g["solver"]): g for g in summary["groups"]}
    assert sorted(groups) == [("cgr_arc_easy", "solver-s"), ("cgr_arc_easy", "solver-t"),
                              ("cgr_sciq", "solver-s")]
    arc = groups[("cgr_arc_easy", "solver-s")]
    assert arc["n"] == 10
    assert arc["accuracy"]["direct"]["correct"] == 6 and arc["accuracy"]["assisted"]["correct"] == 7
    assert arc["accuracy"]["assisted_fallback"]["correct"] == 8  # the timed-out item's fallback
    assert arc["accuracy"]["budget_matched"]["correct"] == 7
    difference = arc["difference"]
    assert (difference["rescued"], difference["harmed"]) == (3, 2)
    assert difference["difference"] == pytest.approx(0.1)
    assert difference["low"] <= 0.1 <= difference["high"] and difference["mcnemar_p"] == 1.0
    assert arc["statuses"]["ok"] == 8 and arc["statuses"]["timeout"] == 1
    assert arc["audits"]["hard_coded"] == pytest.approx(0.1)
    assert arc["audits"]["direct_unreadable"] == pytest.approx(0.1)
    # sciq: the rerun file replaced item 3 (runtime error -> right), and no control ran there
    sciq = groups[("cgr_sciq", "solver-s")]
    assert sciq["n"] == 4 and sciq["accuracy"]["assisted"]["correct"] == 3
    assert sciq["statuses"]["runtime_error"] == 0 and "budget_matched" not in sciq["accuracy"]
    assert sciq["zero_baseline"] and summary["diagnostics"]["zero_baseline"] == [
        "cgr_sciq / solver-s"]


def test_partitions_and_the_sensitivity_check_without_flagged_programs(run_folder, tmp_path,
                                                                       monkeypatch):
    summary = _report(run_folder, tmp_path / "rep", monkeypatch, "--resamples", "500")
    aggregates = summary["aggregates"]
    s, t = "solver-s + gen-g", "solver-t + gen-g"
    assert sorted(aggregates["all"]["by_model"][s]["tasks"]) == ["cgr_arc_easy", "cgr_sciq"]
    assert aggregates["all"]["by_model"][s]["items"] == 14
    assert aggregates["non_zero_baseline"]["excluded"] == ["cgr_sciq / solver-s"]
    assert aggregates["direct_gate"]["by_model"][t]["tasks"] == []  # 20% direct: under the gate
    macro = aggregates["all"]["by_model"][s]["macro"]
    assert macro["control"] == pytest.approx((0.6 + 0.0) / 2)
    assert macro["treated"] == pytest.approx((0.7 + 0.75) / 2)
    # the hard-coded program (arc_easy item 9, a rescue) leaves; partitions keep their datasets
    sensitivity = summary["sensitivity"]
    assert sensitivity["excluded_items"] == 1
    clean = sensitivity["aggregates"]["non_zero_baseline"]["by_model"][s]
    assert clean["tasks"] == ["cgr_arc_easy"] and clean["items"] == 9
    assert clean["micro"]["difference"]["rescued"] == 2
    assert clean["micro"]["difference"]["difference"] == pytest.approx(0.0)


class _ConstantScorer:
    """A scorer installed at report time under the run's scorer name, and one more."""

    @hookimpl
    def register_scorers(self, register):
        register(SCORER, lambda record, channel: 0.5)
        register("installed_later", lambda record, channel: 1.0)


def test_plugin_scores_are_the_ones_the_run_recorded(run_folder, tmp_path, monkeypatch):
    recorded = _report(run_folder, tmp_path / "before", monkeypatch, "--resamples", "200")
    plugins.register(_ConstantScorer(), name="installed-later")
    try:
        later = _report(run_folder, tmp_path / "after", monkeypatch, "--resamples", "200")
    finally:
        plugins.unregister("installed-later")
    for group, again in zip(recorded["groups"], later["groups"], strict=True):
        assert list(group["scores"]) == [SCORER] and again["scores"] == group["scores"]
    arc = recorded["groups"][0]["scores"][SCORER]
    assert "direct" not in arc  # not one of the scorer's channels at run time
    assert arc["assisted"] == {"mean": pytest.approx(4 / 7), "n": 7}
    assert "Scorer agrees_with_direct" in (tmp_path / "after" / "report.md").read_text()


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_html_page_has_every_table_and_figure_and_needs_no_other_file(run_folder, tmp_path,
                                                                     monkeypatch):
    _report(run_folder, tmp_path / "rep", monkeypatch, "--resamples", "200")
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    summary_part, explorer = html.split('<section id="cgr-explorer">')  # tests/test_explorer.py
    page = _Page()
    page.feed(summary_part)
    markdown = (tmp_path / "rep" / "report.md").read_text()
    tables = [tag for tag, _ in page.tags if tag == "table"]
    assert len(tables) == markdown.count("\n## ") - 1  # every table but the diagnostics line
    assert "cgr_arc_easy" in page.text and "solver-t" in page.text
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 5
    for image in images:
        kind, _, data = image["src"].partition(",")
        assert kind == "data:image/svg+xml;base64"
        assert base64.b64decode(data).decode("utf-8").startswith("<svg")
    assert not [attrs for tag, attrs in page.tags
                if tag in ("script", "link", "iframe")
                or attrs.get("href", "#").partition("#")[0]]  # links within the page only
    scripts = _Page()
    scripts.feed(explorer)  # the explorer's own code and data, nothing fetched
    assert [attrs for tag, attrs in scripts.tags if tag == "script"] == [
        {"type": "application/json", "id": "cgr-rows"},
        {"type": "application/json", "id": "cgr-details"}, {}]
    assert not [tag for tag, attrs in scripts.tags if "src" in attrs or "href" in attrs
                or tag in ("link", "iframe", "img")]


def test_untrusted_text_reaches_the_page_escaped(run_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(run_folder.parent)
    hostile = "<script>alert('solver')</script>"
    outcomes = [dataclasses.replace(o, solver=hostile) if o.solver == "solver-t" else o
                for o in load_runs([run_folder.name])]
    partition = Partition("<b>mine</b>", "<img src=x onerror=alert(1)>", lambda g: True)
    summary = build_summary(outcomes, runs=["<i>run</i>"], partitions=[partition],
                            resamples=200)
    write_report(summary, tmp_path / "rep")
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    assert {tag for tag, _ in page.tags} <= {"html", "head", "meta", "title", "style", "body",
                                             "h1", "h2", "p", "table", "tr", "th", "td",
                                             "figure", "figcaption", "img",
                                             "section", "ul", "li"}  # the headline
    text = "".join(page.text)
    for value in (hostile, "<b>mine</b>", "<i>run</i>"):
        assert value in text  # shown to the reader as text, never as markup
    assert "&lt;script&gt;alert(&#39;solver&#39;)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    # the item's own <script> question is in the samples, never in the page
    assert HOSTILE_QUESTION in (run_folder / "sciq").joinpath(
        "samples_cgr_sciq_2024-05-19T12-00-00.000000.jsonl").read_text()


def test_figures_leave_pyplot_and_the_process_backend_alone(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_bytes(PINNED.read_bytes())
    script = ("import json, sys, matplotlib\n"
              "matplotlib.use('pdf')\n"
              "from cgr_plugin.analysis.plots import figures\n"
              f"drawn = figures(json.loads(open({str(summary)!r}).read()))\n"
              "assert len(drawn) == 5 and all(s.startswith('<svg') for s in drawn.values())\n"
              "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
              "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
