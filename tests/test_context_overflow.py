"""A prompt too long for the model's context: never sent, never cut, recorded with both lengths.

The models here are scripted stand-ins for a backend that found the prompt too long; the code
under test is what the channels, retries and records make of that answer. The real backends'
counting is checked against real models in tests/test_e2e_context.py.
"""

from __future__ import annotations

import pytest

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.extraction import extract_letter
from cgr_plugin.models.backends import Generation, GenerationRequest, prompt_too_long
from cgr_plugin.models.registry import DirectSettings
from cgr_plugin.models.retry import RetryingBackend
from cgr_plugin.prompts import render
from cgr_plugin.record import GENERATOR_STATUSES, CGRRecord, ChannelResult
from cgr_plugin.run.assisted import AssistedSettings, run_assisted
from cgr_plugin.run.control import run_budget_matched
from cgr_plugin.run.direct import run_direct
from cgr_plugin.sandbox.runner import isolation_level

SERIES = MCQAItem(id="ts1", dataset="toy", question="Is the series rising?",
                  choices=("Yes", "No"), answer="A",
                  payload={"series": {"ts": [0.123456 * i for i in range(200)]}})
SHORT = MCQAItem(id="q1", dataset="toy", question="2 + 2 =", choices=("3", "4"), answer="B")


class ContextLimited:
    """Answers "Answer: B" to prompts of at most ``limit`` words, and too-long otherwise."""

    name = "limited"

    def __init__(self, limit: int) -> None:
        self.limit, self.calls = limit, 0

    def generate(self, requests, *, progress=False):
        out = []
        for r in requests:
            self.calls += 1
            words = len(r.prompt.split())
            out.append(prompt_too_long(self.name, words, r.max_tokens, self.limit)
                       if words + r.max_tokens > self.limit else Generation("Answer: B"))
        return out

    def judge(self, prompts):
        return [0.5 for _ in prompts]

    def describe(self):
        return {"backend": "limited"}


def test_the_direct_status_names_the_limit_and_the_prompt_length():
    results = run_direct([SERIES, SHORT], solver=ContextLimited(150),
                         settings=DirectSettings(style="letter", max_tokens=8),
                         extract=extract_letter)
    too_long, fine = results
    assert too_long.status == "prompt_too_long" and too_long.answer is None
    words = len(too_long.prompt.split())
    assert f"{words} prompt tokens + 8 for the reply exceed its context of 150 tokens" in \
        too_long.error
    assert too_long.tokens_in == words and too_long.solver_calls == 0
    assert too_long.prompt.count(", ") >= 199  # the whole series was in it, not a cut one
    assert too_long.prompt_shortened == ("payload: 199 of 200 numbers rounded to 3 "
                                         "significant digits")
    assert (fine.status, fine.answer, fine.prompt_shortened) == ("ok", "B", None)


def test_too_long_is_final_not_retried():
    solver = ContextLimited(150)
    retrying = RetryingBackend(solver, retries=3, backoff=0.0)
    (answer,) = retrying.generate([_request(SERIES)])
    assert solver.calls == 1 and answer.too_long and answer.tokens_in
    assert "exceed its context of 150 tokens" in answer.error


def _request(item):
    return GenerationRequest(render("direct.j2", item=item, style="letter"), 8)


def test_the_control_says_too_long_once():
    (result,) = run_budget_matched([SERIES], [3], solver=ContextLimited(150),
                                   prompt=lambda it: _request(it).prompt, max_tokens=8)
    assert result.status == "prompt_too_long"
    assert result.error.count("prompt too long") == 1


@pytest.mark.skipif(isolation_level() == "process", reason="needs bubblewrap")
def test_a_generator_prompt_too_long_is_recorded_in_both_channels():
    settings = AssistedSettings(budget=2)
    ((assisted, generator),) = run_assisted(
        [SERIES], solver=ContextLimited(10_000), generator=ContextLimited(300),
        settings=settings, direct_prompt=lambda it: it.question, direct_max_tokens=8)
    assert generator.status == "prompt_too_long" and assisted.status == "generator_error"
    assert "exceed its context of 300 tokens" in generator.error
    assert assisted.error == generator.error
    assert "item.payload is {\"series\": {\"ts\": [200 numbers]}}" in generator.prompt
    assert generator.prompt_shortened.startswith("payload: 199 of 200 numbers rounded")


def test_the_status_is_part_of_the_record_schema():
    result = ChannelResult(status="prompt_too_long", error="prompt too long for m: ...")
    record = CGRRecord(item=SHORT.to_json(), solver="m", direct=result)
    again = CGRRecord.from_json(record.to_json())
    assert again.direct.status == "prompt_too_long"
    assert "prompt_too_long" in GENERATOR_STATUSES
