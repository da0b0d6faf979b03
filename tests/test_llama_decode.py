"""The lean greedy path gives what llama-cpp-python's own chat completion gives, token for
token, and yes/no scores equal to a fresh context's, whatever order the prompts come in."""

from __future__ import annotations

import pytest

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.models.base import GenerationRequest
from cgr_plugin.models.llama_cpp import LlamaCppBackend
from cgr_plugin.models.llama_decode import lookup_draft
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


def test_prompt_lookup_drafts_what_followed_the_last_ngram():
    history = [5, 6, 7, 8, 9, 1, 2, 5, 6, 7]
    assert lookup_draft(history, 3) == [8, 9, 1]
    assert lookup_draft(history, 0) == []
    assert lookup_draft([1, 2, 3, 4], 3) == []
