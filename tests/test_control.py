"""The budget-matched control's sampling, voting and tie-breaking (scripted solver)."""

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.models.backends import Generation
from cgr_plugin.run.control import run_budget_matched

ITEMS = [MCQAItem(id=f"q{i}", dataset="toy", question=f"Question {i}?",
                  choices=("red", "green", "blue"), answer="A") for i in range(3)]


class Replies:
    """Answers each sampled request with the next scripted reply for its item."""

    name = "scripted"

    def __init__(self, scripts):
        self.scripts, self.requests = {k: list(v) for k, v in scripts.items()}, []

    def generate(self, requests, *, progress=False):
        self.requests += requests
        return [Generation(self.scripts[r.prompt].pop(0)) for r in requests]


def test_majority_of_as_many_samples_as_the_program_called():
    solver = Replies({"Question 0?": ["A", "B", "A"], "Question 1?": ["C"],
                      "Question 2?": ["no idea", "hmm"]})
    results = run_budget_matched(ITEMS, [3, 0, 2], solver=solver, prompt=lambda i: i.question,
                                 max_tokens=8, seed=5)
    assert [r.answer for r in results] == ["A", "C", None]
    assert [r.solver_calls for r in results] == [3, 1, 2]  # at least one call
    assert [r.status for r in results] == ["ok", "ok", "invalid"]
    assert [r.temperature > 0 for r in solver.requests] == [True] * 3 + [False] + [True] * 2
    assert len({r.seed for r in solver.requests}) == len(solver.requests)  # a seed per draw


def test_ties_are_broken_by_a_seeded_shuffle_not_by_position():
    winners = set()
    for seed in range(20):
        solver = Replies({"Question 0?": ["A", "B"]})
        (result,) = run_budget_matched(ITEMS[:1], [2], solver=solver,
                                       prompt=lambda i: i.question, max_tokens=8, seed=seed)
        again = run_budget_matched(ITEMS[:1], [2], solver=Replies({"Question 0?": ["A", "B"]}),
                                   prompt=lambda i: i.question, max_tokens=8, seed=seed)[0]
        assert result.answer == again.answer
        winners.add(result.answer)
    assert winners == {"A", "B"}
