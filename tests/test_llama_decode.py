"""The lean greedy path gives what llama-cpp-python's own chat completion gives, token for
token, and yes/no scores equal to a fresh context's, whatever order the prompts come in."""

from __future__ import annotations

import numpy as np
import pytest

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.models.base import GenerationRequest
from cgr_plugin.models.llama_cpp import LlamaCppBackend
from cgr_plugin.models.llama_decode import (
    feed,
    greedy_generate,
    last_logits,
    repeated_block,
    repeated_comments,
)
from cgr_plugin.models.ngram_drafts import LookupDrafter
from cgr_plugin.models.registry import load_registry, model_file
from cgr_plugin.prompts import render

from .conftest import needs_llama

ITEMS = [MCQAItem(id=str(i), dataset="toy", question=q, choices=c, answer="A")
         for i, (q, c) in enumerate([
             ("Which is a mammal?", ("whale", "trout", "crow", "newt")),
             ("What do plants need to make food?", ("sunlight", "sand", "salt", "smoke")),
             ("Which unit measures force?", ("newton", "meter", "liter", "kelvin"))])]


def _requests() -> list[GenerationRequest]:
    generator = [render("generator_cgr.j2", item=item, budget=8) for item in ITEMS]
    direct = [render("direct.j2", item=item, style="reasoning") for item in ITEMS]
    return ([GenerationRequest(p, 96) for p in generator + direct]
            + [GenerationRequest(generator[0], 40, stop=("\n",)),  # a stop string, same prompt
               GenerationRequest("Say 'héllo wörld' in Japanese.", 24)])  # multi-byte text


def _reference(backend: LlamaCppBackend, request: GenerationRequest) -> tuple[str, int]:
    """Today's path on a fresh context: create_chat_completion, greedy."""
    llm = backend._model()
    llm.reset()
    reply = llm.create_chat_completion(
        messages=[{"role": "user", "content": request.prompt}], max_tokens=request.max_tokens,
        temperature=0.0, stop=list(request.stop) or None)
    return reply["choices"][0]["message"]["content"], reply["usage"]["completion_tokens"]


@pytest.fixture(scope="module")
def smollm2():
    return load_registry()["smollm2-135m"]


@pytest.mark.slow
@needs_llama
def test_greedy_texts_equal_create_chat_completion_token_for_token(smollm2):
    requests = _requests()
    lean = LlamaCppBackend(smollm2, n_threads=2).generate(requests)
    reference = LlamaCppBackend(smollm2, n_threads=2)
    for request, got in zip(requests, lean, strict=True):
        assert got.error is None
        assert (got.text, got.tokens_out) == _reference(reference, request)


def _installed(name: str):
    spec = load_registry()[name]
    try:
        model_file(spec)
    except Exception as err:  # the model's package is not installed here
        pytest.skip(f"{name} is not installed: {err}")
    return spec


@pytest.mark.slow
@needs_llama
@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])  # Q4_1 and Q4_K tiles
def test_judge_scores_do_not_depend_on_what_came_before(name):
    spec = _installed(name)
    prompts = [f"Question: {item.question}\nProposed answer: {choice}\nIs the proposed answer "
               "correct?" for item in ITEMS for choice in item.choices]
    batched = LlamaCppBackend(spec, n_threads=2).judge(prompts)
    fresh = LlamaCppBackend(spec, n_threads=2)
    one_by_one = []
    for prompt in prompts:
        fresh._model().reset()
        fresh._reusable = 0
        one_by_one.extend(fresh.judge([prompt]))
    assert [j.p_yes for j in batched] == [j.p_yes for j in one_by_one]
    assert all(0.0 < j.p_yes < 1.0 for j in batched)


def test_a_loop_is_a_block_of_sixteen_or_more_tokens_repeated_at_the_end():
    line = list(range(100, 118))  # 18 tokens
    assert repeated_block([1, 2, 3, *line * 4], 4) == 18
    assert repeated_block([1, 2, 3, *line * 3], 4) == 0  # three times is not yet a loop
    assert repeated_block([*line * 4, 7], 4) == 0  # the end is not the loop
    short = [5, 6, 7, 8, 9, 10, 11, 12]  # an 8-token line counts in pairs
    assert repeated_block(short * 8, 4) == 16
    assert repeated_block(short * 4, 4) == 0
    assert repeated_block(line * 4, 0) == 0


def test_comment_lines_that_repeat_but_for_their_numbers_are_a_loop():
    step = ("    # The probability is the sum of the other options.\n"
            "    # Therefore, the probability is {a} + 0.1 = {b}.\n")
    counting = "def solve(item, solver):\n" + "".join(
        step.format(a=round(0.5 + k / 10, 1), b=round(0.6 + k / 10, 1)) for k in range(4))
    assert repeated_comments(counting, 4) == 2
    assert repeated_comments(counting, 5) == 0  # four times so far
    assert repeated_comments(counting + "    return 'A'\n", 4) == 0  # code ends the loop
    assert repeated_comments(counting + "    # The proba", 4) == 2  # a line not yet complete
    short = "".join(f"    # step {k}\n" for k in range(6))
    assert repeated_comments(short, 4) == 0  # short notes, numbered: not a loop
    unrolled = "".join(f"    total += item.payload['series']['ts'][{k}] * 2\n" for k in range(6))
    assert repeated_comments(unrolled, 4) == 0  # code is never cut for its numbers


def _part_only_at_near_ties(spec, requests: list[GenerationRequest], plain: list, other: list,
                            tie: float) -> int:
    """How many of ``other``'s texts equal ``plain``'s; fails unless each of the rest leaves the
    plain text where the plain step's two best candidates were within ``tie`` logits."""
    probe = LlamaCppBackend(spec, n_threads=2)
    llm = probe._model()
    same = 0
    for request, a, b in zip(requests, plain, other, strict=True):
        assert a.error is None and b.error is None, (a.error, b.error)
        if a.text == b.text:
            same += 1
            continue
        prompt = probe._chat(llm, request.prompt).tokens
        ta = llm.tokenize(a.text.encode(), add_bos=False, special=True)
        tb = llm.tokenize(b.text.encode(), add_bos=False, special=True)
        k = next((i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y), None)
        assert k is not None, "one reply is the other cut short: not a near-tie"
        feed(llm, prompt, 0)  # then one token a step, as plain decoding computed them
        for token in ta[:k]:  # (a prompt's batch gives other last bits: 0.7 logits seen)
            llm.eval([token])
        logits = last_logits(llm).astype(np.float64)
        gap = abs(logits[ta[k]] - logits[tb[k]])
        assert gap < tie, (request.prompt[:60], k, gap)
    return same


@pytest.mark.slow
@needs_llama
def test_each_reply_carries_its_own_time_not_the_batchs_average(smollm2):
    count = "Count from 1 to 200, separated by commas."
    short, long = LlamaCppBackend(smollm2, n_threads=2).generate(
        [GenerationRequest("Say yes.", 1), GenerationRequest(count, 64)])
    assert (short.tokens_out, long.tokens_out) == (1, 64)
    assert 0 < short.seconds < long.seconds


@pytest.mark.slow
@needs_llama
def test_drafted_texts_equal_plain_greedy_or_part_at_a_near_tie(smollm2):
    """Drafts are checked in batches, whose logits may differ from one-token steps in the last
    bits: a drafted text may leave the plain one only where the plain step's two best tokens
    were all but tied."""
    requests = _requests()
    plain = LlamaCppBackend(smollm2, n_threads=2).generate(requests)
    drafted = LlamaCppBackend(smollm2, n_threads=2).generate(
        [GenerationRequest(r.prompt, r.max_tokens, r.stop, draft=4) for r in requests])
    same = _part_only_at_near_ties(smollm2, requests, plain, drafted, tie=0.05)
    assert same >= len(requests) // 2  # most replies do not meet a tie at all


@pytest.mark.slow
@needs_llama
def test_a_backends_earlier_replies_feed_the_drafts_of_its_later_ones(smollm2):
    """The second of two replies alike (a run's programs share their text) keeps more drafted
    tokens from a drafter that saw the first than from a fresh one."""
    backend = LlamaCppBackend(smollm2, n_threads=2)
    llm = backend._model()
    first, second = (backend._chat(llm, f"Write a Python function named {name} that returns "
                                         "the sum of a list of numbers.").tokens
                     for name in ("total", "add_all"))
    drafter = LookupDrafter()
    greedy_generate(llm, first, 80, [], reusable=0, draft=4, drafter=drafter)
    warm = greedy_generate(llm, second, 80, [], reusable=0, draft=4, drafter=drafter)
    cold = greedy_generate(llm, second, 80, [], reusable=0, draft=4)
    assert warm.accepted > cold.accepted
    assert warm.tokens_out > 20 and warm.accepted <= warm.drafted


@pytest.mark.slow
@needs_llama
def test_a_reply_that_loops_is_cut_where_the_loop_is_plain(smollm2):
    prompt = "Write a poem where every line is 'I like the car and the tower and the ten minutes.'"
    backend = LlamaCppBackend(smollm2, n_threads=2)
    full, cut = backend.generate([GenerationRequest(prompt, 300),
                                  GenerationRequest(prompt, 300, stop_repeats=4)])
    assert full.looped is None and full.tokens_out == 300  # greedy goes on to the cap
    assert cut.looped and "4 times in a row" in cut.looped
    assert cut.tokens_out < 200
    assert full.text.startswith(cut.text)
    last_line = cut.text.rstrip("\n").rsplit("\n", 1)[-1]
    assert full.text[len(cut.text):].startswith(last_line)  # what was cut was more of the loop



def _prompt_tokens_evaluated(backend: LlamaCppBackend) -> int:
    import llama_cpp

    return llama_cpp.llama_perf_context(backend._model().ctx).n_p_eval


@pytest.mark.slow
@needs_llama
def test_a_later_process_starts_from_the_saved_prefix_and_answers_the_same(smollm2, tmp_path):
    """The prefix two prompts shared is saved; a new backend (a later run) loads it instead of
    evaluating it, and its reply is the one a cold context gives."""
    prompts = [GenerationRequest(render("generator_cgr.j2", item=item, budget=8), 48)
               for item in ITEMS]
    first = LlamaCppBackend(smollm2, n_threads=2, prompt_cache=str(tmp_path))
    first.generate(prompts[:2])
    assert len(list(tmp_path.rglob("*.state"))) == 1
    later = LlamaCppBackend(smollm2, n_threads=2, prompt_cache=str(tmp_path))
    (warm,) = later.generate(prompts[2:])
    (cold,) = LlamaCppBackend(smollm2, n_threads=2, prompt_cache="off").generate(prompts[2:])
    assert warm.text == cold.text and warm.tokens_in == cold.tokens_in
    assert _prompt_tokens_evaluated(later) < warm.tokens_in - 256  # the prefix came from disk


@pytest.mark.slow
@needs_llama
def test_an_unreadable_saved_state_is_ignored(smollm2, tmp_path):
    prompts = [GenerationRequest(render("generator_cgr.j2", item=item, budget=8), 16)
               for item in ITEMS]
    LlamaCppBackend(smollm2, n_threads=2, prompt_cache=str(tmp_path)).generate(prompts[:2])
    (state,) = tmp_path.rglob("*.state")
    state.write_bytes(b"not a llama.cpp state" * 100)
    later = LlamaCppBackend(smollm2, n_threads=2, prompt_cache=str(tmp_path))
    (reply,) = later.generate(prompts[2:])
    (cold,) = LlamaCppBackend(smollm2, n_threads=2, prompt_cache="off").generate(prompts[2:])
    assert reply.text == cold.text
    assert _prompt_tokens_evaluated(later) == reply.tokens_in  # all of it evaluated afresh


@pytest.mark.slow
@needs_llama
def test_a_prompt_cache_that_cannot_be_written_costs_only_the_speed_up(smollm2, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    prompts = [GenerationRequest(render("generator_cgr.j2", item=item, budget=8), 16)
               for item in ITEMS[:2]]
    replies = LlamaCppBackend(smollm2, n_threads=2,
                              prompt_cache=str(blocked / "cache")).generate(prompts)
    cold = LlamaCppBackend(smollm2, n_threads=2, prompt_cache="off").generate(prompts)
    assert [r.text for r in replies] == [r.text for r in cold]
    assert all(r.error is None for r in replies)
