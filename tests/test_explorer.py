"""The report's item explorer on a hand-made run folder (no model): its rows count what the
summary counts, its data cannot break out of its script block, and in headless Chromium the
filters change the visible rows, a click shows the program and the solver calls, and a hostile
program is shown as text."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cgr_plugin.analysis.explorer import embed_json, explorer_data
from cgr_plugin.analysis.plots import solver_calls as figures_solver_calls
from cgr_plugin.analysis.runs import LoggedItem, item_outcome
from cgr_plugin.cli import cgr_main
from cgr_plugin.data.items import MCQAItem
from cgr_plugin.record import CGRRecord, ChannelResult

from .analysis_run_folder import HOSTILE_QUESTION, _write, write_run_folder

HOSTILE_PROGRAM = ('def solve(item, solver):\n'
                   '    """</script><img src=x onerror=alert(1)>"""\n'
                   '    note = "</script><img src=x onerror=\\"document.title=\'pwned\'\\">"\n'
                   '    return solver.choose()  # <!-- & done\n')
FIXED_PROGRAM = "def solve(item, solver):\n    return solver.choose()\n"
TRACE = [{"kind": "choose", "prompt": "Which option? </script>", "response": "The answer is B",
          "letter": "B", "extraction_rule": "answer_is", "tokens_in": 41, "tokens_out": 5,
          "seconds": 0.125},
         {"kind": "judge", "prompt": "Is B right?", "p_yes": 0.875, "seconds": 0.0625}]


def _hostile_record() -> tuple[MCQAItem, CGRRecord]:
    item = MCQAItem(id="hostile/test/1", dataset="hostile", question="Pick <b>B</b>?",
                    choices=["no", "yes", "maybe", "never"], answer="B")
    assisted = ChannelResult(status="ok", answer="B", solver_calls=2, program=HOSTILE_PROGRAM,
                             trace=TRACE, output="printed </script> text",
                             audits={"hard_coded": False},
                             raw="```python\n" + HOSTILE_PROGRAM + "```")
    record = CGRRecord(item=item.to_json(), solver="solver-s", generator="gen-g",
                       direct=ChannelResult(status="ok", answer="A", solver_calls=1, raw="A",
                                            prompt="Question: Pick <b>B</b>?"),
                       assisted=assisted, generator_side=ChannelResult(status="ok", answer="B"),
                       controls={"fixed:eliminate": ChannelResult(
                           status="ok", answer="C", solver_calls=1, program=FIXED_PROGRAM,
                           trace=[{"kind": "ask", "prompt": "Which is clearly wrong?",
                                   "response": "option D", "seconds": 0.5}])})
    return item, record


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("explorer")
    run = write_run_folder(root / "run")
    _write(run / "hostile", "2024-05-19T14-00-00.000000", {"cgr_hostile": [_hostile_record()]},
           {"solver": "solver-s", "generator": "gen-g"})
    with pytest.raises(SystemExit) as done:
        cgr_main(["report", str(run), "--out", str(root / "rep"), "--resamples", "200"])
    assert done.value.code == 0
    return root / "rep"


def _blocks(html: str) -> tuple[dict, list]:
    found = dict(re.findall(r'<script type="application/json" id="cgr-(rows|details)">(.*?)'
                            r"</script>", html, re.S))
    return json.loads(found["rows"]), json.loads(found["details"])


def test_embedded_json_cannot_close_its_script_block():
    text = embed_json({"program": "</script><script>alert(1)</script> <!-- & \u2028"})
    assert not set("<>&") & set(text) and "\u2028" not in text
    assert json.loads(text)["program"].startswith("</script><script>")


def test_rows_count_the_rescued_and_harmed_items_of_the_summary(report):
    summary = json.loads((report / "summary.json").read_text())
    html = (report / "report.html").read_text()
    rows, details = _blocks(html)
    rows = rows["rows"]
    assert len(rows) == len(details) == sum(g["n"] for g in summary["groups"])
    for group in summary["groups"]:
        mine = [r for r in rows if (r["task"], r["solver"], r["model"]) == (
            group["task"], group["solver"], group["generator"])]
        assert len(mine) == group["n"]
        for kind in ("rescued", "harmed"):
            assert sum(r["agreement"] == kind for r in mine) == group["difference"][kind]
    assert html.count("</script>") == html.count("<script")  # no block ended early
    hostile = next(d for d in details if d["item"]["id"] == "hostile/test/1")
    assert hostile["program"] == HOSTILE_PROGRAM and hostile["trace"] == TRACE
    assert any(d["item"]["question"] == HOSTILE_QUESTION for d in details)


def _dom(page: Path, fragment: str, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran, opened from file:// at ``#fragment``."""
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri() + fragment], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Uncaught" not in done.stderr, done.stderr[-2000:]
    return done.stdout


def _visible(dom: str) -> list[tuple[int, str]]:
    return [(int(i), a) for i, a in re.findall(r'<tr data-i="(\d+)" data-agreement="(\w+)"', dom)]


chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")


@chromium
def test_filters_change_the_visible_rows(report, tmp_path):
    summary = json.loads((report / "summary.json").read_text())
    page = report / "report.html"
    everything = _visible(_dom(page, "", tmp_path))
    assert len(everything) == sum(g["n"] for g in summary["groups"])
    rescued = _visible(_dom(page, "#agreement=rescued", tmp_path))
    assert len(rescued) == sum(g["difference"]["rescued"] for g in summary["groups"])
    assert {a for _, a in rescued} == {"rescued"}
    sciq = _dom(page, "#task=cgr_sciq&agreement=harmed", tmp_path)
    assert _visible(sciq) == [] and ">0 of " in sciq
    flagged = _visible(_dom(page, "#flag=hard_coded", tmp_path))
    assert len(flagged) == 1  # the fixture's one hard-coded program


@chromium
def test_detail_shows_program_and_solver_calls_as_text(report, tmp_path):
    rows, _ = _blocks((report / "report.html").read_text())
    index = next(r["i"] for r in rows["rows"] if r["item"] == "hostile/test/1")
    dom = _dom(report / "report.html", f"#open={index}", tmp_path)
    detail = dom[dom.index('id="cgr-detail"'):]
    assert "<title>CGR report</title>" in dom  # the onerror handler never ran
    assert "<img src=\"x\"" not in dom and "<img src=x" not in dom
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in detail  # shown, as text
    program = re.search(r'<pre class="cgr-program">(.*?)</pre>', detail, re.S).group(1)
    assert '<span class="py-kw">def</span>' in program  # highlighted
    assert re.sub(r"<[^>]+>", "", program).replace("&lt;", "<").replace("&gt;", ">").replace(
        "&amp;", "&").replace("&quot;", '"') == HOSTILE_PROGRAM
    trace = detail[detail.index('id="cgr-trace"'):]
    assert "Which option? &lt;/script&gt;" in trace and "The answer is B" in trace
    assert "P(yes) = 0.875" in trace and ">41<" in trace and ">0.125<" in trace
    assert "printed &lt;/script&gt; text" in detail  # captured output
    control = detail[detail.index("Program (fixed:eliminate)"):]  # a control's own program
    assert "Which is clearly wrong?" in control and "option D" in control
    assert "solver.choose" in re.sub(r"<[^>]+>", "", control)


def test_solver_calls_are_a_histogram_on_integer_counts():
    """One bar per call count from 0 up (every item at 4 calls: bars 0..4, only 4 non-empty)."""
    svg = figures_solver_calls([{"task": "cgr_a", "solver": "s",
                                 "solver_calls": {"assisted_histogram": {"4": 10}}}])
    assert re.findall(r'id="calls-0-(\d+)"', svg) == ["0", "1", "2", "3", "4"]
    for label in "01234":
        assert f"<!-- {label} -->" in svg  # each count is a tick label
    assert "<!-- 5 -->" not in svg


def test_provenance_is_read_defensively_into_rows_and_details(tmp_path):
    """Records from before the assisted channel had ``provenance`` have none; a mapping gives
    its class and evidence; anything else is kept as evidence of an unknown class."""
    items = [_hostile_record()[1] for _ in range(3)]
    items[1].assisted.provenance = {"class": "solver", "evidence": ["answer from choose()"]}
    items[2].assisted.provenance = "odd value"
    logged = [LoggedItem(tmp_path, "cgr_hostile", r, {}) for r in items]
    data = explorer_data(logged, [item_outcome(x) for x in logged])
    rows = json.loads(str(data["rows"]))["rows"]
    details = json.loads(str(data["details"]))
    assert sorted(str(r["provenance"]) for r in rows) == ["None", "solver", "unknown"]
    assert sorted(str(d["provenance"]) for d in details) == [
        "None", "{'class': 'solver', 'evidence': ['answer from choose()']}",
        "{'class': 'unknown', 'evidence': 'odd value'}"]
