"""Controls measured in a run without programs pair with the program runs of the same solver
(how ``cgr study`` runs cot and fixed:NAME once per solver instead of once per family)."""

from __future__ import annotations

from cgr_plugin.analysis.control_runs import pair_separate_controls
from cgr_plugin.analysis.runs import ItemOutcome
from cgr_plugin.analysis.summary import build_summary


def _outcome(item, *, solver="s", generator="g", assisted="A", status="ok", controls=None,
             gold="A", family="cgr"):
    return ItemOutcome(
        run="run", task="t", solver=solver, generator=generator, item_id=item, gold=gold,
        direct="B", assisted=assisted, generator_letter=None, fallback=None, control=None,
        direct_status="ok", assisted_status=status, generator_status="ok",
        control_status="not_run", direct_calls=1, assisted_calls=2, family=family,
        controls=controls or {})


def _controls_run(item, cot="B", **kwargs):
    return _outcome(item, generator="-", assisted=None, status="not_run", family=None,
                    controls={"cot": (cot, "ok", 1), "fixed:judge_each_option": ("A", "ok", 4)},
                    **kwargs)


def test_a_program_run_gets_the_controls_of_the_same_solver_and_item():
    programs = [_outcome("1"), _outcome("2"), _outcome("1", solver="other")]
    paired = pair_separate_controls([*programs, _controls_run("1"), _controls_run("2")])
    assert paired[0].controls == {"cot": ("B", "ok", 1), "fixed:judge_each_option": ("A", "ok", 4)}
    assert paired[1].controls.keys() == {"cot", "fixed:judge_each_option"}
    assert paired[2].controls == {}  # another solver: nothing to pair with
    assert paired[3:] == [_controls_run("1"), _controls_run("2")]  # the controls run stays


def test_a_control_the_program_run_measured_itself_is_kept_and_an_ambiguous_one_left_out():
    own = _outcome("1", controls={"cot": ("A", "ok", 1)})
    paired = pair_separate_controls([own, _controls_run("1", cot="C"), _controls_run("1")])
    assert paired[0].controls["cot"] == ("A", "ok", 1)
    alone = pair_separate_controls([_outcome("1"), _controls_run("1", cot="C"),
                                    _controls_run("1", cot="B")])[0]
    assert "cot" not in alone.controls  # two runs disagree: no pairing is better than a guess
    assert alone.controls["fixed:judge_each_option"] == ("A", "ok", 4)


def test_the_report_shows_assisted_minus_a_control_measured_in_its_own_run():
    outcomes = pair_separate_controls(
        [_outcome(str(i)) for i in range(4)] + [_controls_run(str(i)) for i in range(4)])
    summary = build_summary(outcomes, runs=["run"], resamples=50)
    group = next(g for g in summary["groups"] if g["generator"] == "g [cgr]")
    cot = group["controls"]["cot"]
    assert cot["n"] == 4 and cot["accuracy"]["value"] == 0.0
    assert cot["assisted_minus_control"]["difference"] == 1.0  # assisted A = gold, cot B
