"""cgr report on programs that really ran (sandbox, scripted solver, provenance re-runs): the
provenance shares, the shape table, the generator-knowledge split, and a sensitivity check that
drops the programs classed constant. No model needed."""

from __future__ import annotations

import json

import pytest

from cgr_plugin.cli import cgr_main
from cgr_plugin.data.items import MCQAItem
from cgr_plugin.record import CGRRecord, ChannelResult
from cgr_plugin.run.assisted import AssistedSettings, run_item_program
from cgr_plugin.sandbox.runner import SandboxLimits, isolation_level

from .analysis_run_folder import _write
from .test_provenance import Scripted

pytestmark = pytest.mark.skipif(isolation_level() == "process", reason="needs bubblewrap")

HARD = "solver.judge(item.question)\n    return item.letters[2]"
COMPUTE = "return item.letters[item.choices.index(str(4 * 8))]"
JUDGE = ("return solver.pick({k: solver.judge(f'{item.question} {v}') "
         "for k, v in item.options.items()})")
LEADING = ('if solver.judge("Is the answer B (32)?") > 0.5:\n        return "B"\n'
           "    return solver.choose()")
# (gold, direct answer, program, the generator's own answer); choices 12, 32, 48, 7 except
# where the gold is C or A (32 moved there)
ROWS = [("C", "A", HARD, "C"),  # rescued, as the generator said; constant
        ("A", "A", HARD, "C"),  # harmed, as the generator said; constant
        ("B", "D", COMPUTE, "A"),  # rescued, not the generator's answer (computed from item)
        ("B", "B", JUDGE, "B"),
        ("B", "C", JUDGE, "D"),  # rescued, not the generator's answer
        ("B", "B", JUDGE, "A"),
        ("B", "C", LEADING, "B")]  # rescued, as the generator said; its prompt leads to B
CHOICES = {"A": ("32", "12", "48", "7"), "B": ("12", "32", "48", "7"),
           "C": ("12", "48", "32", "7")}


def _records() -> list[tuple[MCQAItem, CGRRecord]]:
    settings = AssistedSettings(limits=SandboxLimits(wall_seconds=5, cpu_seconds=5))
    out = []
    for number, (gold, direct, body, own) in enumerate(ROWS):
        item = MCQAItem(id=f"t{number}", dataset="toy", question="What is 4 * 8?",
                        choices=CHOICES[gold], answer=gold)
        program = f'GENERATOR_ANSWER = "{own}"\n\ndef solve(item, solver):\n    {body}\n'
        assisted, generator = run_item_program(
            f"```python\n{program}\n```", item, solver=Scripted(), settings=settings,
            direct_prompt=lambda it: it.question, direct_max_tokens=8)
        assert assisted.status == "ok", assisted.error
        out.append((item, CGRRecord(item=item.to_json(), solver="scripted", generator="gen-g",
                                    direct=ChannelResult(status="ok", answer=direct),
                                    assisted=assisted, generator_side=generator)))
    return out


def test_report_shows_provenance_shapes_attribution_and_drops_constant_programs(
        tmp_path, monkeypatch):
    records = _records()
    classes = [r.assisted.provenance["class"] for _, r in records]
    assert classes[:3] == ["constant", "constant", "computed_from_item"]
    _write(tmp_path / "run" / "gen-g", "2026-12-02T10-00-00.000000", {"cgr_toy": records},
           {"solver": "scripted", "generator": "gen-g"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        cgr_main(["report", "run", "--out", "rep", "--resamples", "200"])
    assert done.value.code == 0
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    (group,) = summary["groups"]
    shares = {(row["kind"], row["name"]): row for row in group["strategies"]}
    assert shares[("provenance", "constant")]["n"] == 2
    assert shares[("provenance", "constant")]["accuracy"]["correct"] == 1
    assert shares[("provenance", "computed_from_item")]["n"] == 1
    assert shares[("tag", "loops_over_options")]["n"] == 3  # the three judge-each programs
    assert group["shapes"][0]["n"] == 3 and group["shapes"][0]["provenance"] in (
        "solver_dependent", "mixed", "constant")
    assert {s["n"] for s in group["shapes"][1:]} == {2, 1}
    attribution = group["attribution"]
    assert (attribution["rescued_as_generator"], attribution["rescued_otherwise"]) == (2, 2)
    assert (attribution["harmed_as_generator"], attribution["harmed_otherwise"]) == (1, 0)
    assert attribution["generator_wrong_n"] == 4
    where = attribution["difference_where_generator_wrong"]
    assert where["difference"] == pytest.approx(0.25) and (where["rescued"],
                                                           where["harmed"]) == (2, 1)
    assert attribution["leading_prompt"] == pytest.approx(1 / 7)
    assert group["audits"]["leading_prompt"] == pytest.approx(1 / 7)
    # the sensitivity check drops exactly the constant programs, not the computed one
    assert summary["sensitivity"]["excluded_items"] == classes.count("constant") == 2
    report = (tmp_path / "rep" / "report.md").read_text()
    for title in ("Where the assisted answer comes from", "Most common program shapes",
                  "Generator knowledge"):
        assert title in report
    assert "| provenance | constant | 2 | 28.6 |" in report
