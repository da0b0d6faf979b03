"""Lookup-decoding drafts: what the drafter proposes, and when it holds back."""

import pytest

from cgr_plugin.models.base import BackendError
from cgr_plugin.models.factory import make_backend
from cgr_plugin.models.ngram_drafts import CPU_BATCH_COSTS, LookupDrafter, NgramCounts, best_length

FREE = (1.0, 1.0, 1.0, 1.0, 1.0)  # a batch costs one step, as on a GPU


def test_a_draft_continues_what_followed_the_same_ngram_in_the_prompt():
    drafter = LookupDrafter(FREE)
    prompt = [1, 2, 3, 4, 5, 6, 7, 9, 9]
    drafter.start(prompt)
    assert drafter.draft([*prompt, 1, 2, 3], 3) == [4, 5, 6]
    assert drafter.draft([*prompt, 1, 2, 3], 0) == []
    assert drafter.draft([*prompt, 40, 41], 3) == []  # never seen: nothing to copy


def test_earlier_replies_teach_the_later_ones():
    reply = [10, 11, 12, 13, 14, 15]
    drafter = LookupDrafter(FREE)
    drafter.start([1, 2, 3])
    assert drafter.draft([1, 2, 3, 10, 11], 3) == []  # the first reply has nothing to copy
    drafter.finish(reply)
    drafter.start([4, 5, 6])  # another item's prompt, which holds none of it
    assert drafter.draft([4, 5, 6, 10, 11], 3) == [12, 13, 14]


def test_a_follower_seen_half_the_time_is_checked_only_where_a_check_is_cheap():
    texts = [[1, 2, 3, 7, 20], [1, 2, 3, 8, 21]]
    cpu, free = LookupDrafter(CPU_BATCH_COSTS), LookupDrafter(FREE)
    for drafter in (cpu, free):
        for text in texts:
            drafter.start([0])
            drafter.finish(text)
        drafter.start([0])
    assert cpu.draft([0, 1, 2, 3], 2) == []  # a 2-token batch costs 1.69 steps on 2 cores
    assert len(free.draft([0, 1, 2, 3], 2)) >= 1


def test_the_draft_length_maximises_expected_tokens_per_cost():
    assert best_length([0.99, 0.99, 0.99], CPU_BATCH_COSTS) == 3
    assert best_length([0.99, 0.3], CPU_BATCH_COSTS) == 1
    assert best_length([0.5], CPU_BATCH_COSTS) == 0
    assert best_length([0.5, 0.5], FREE) == 2
    assert best_length([0.99] * 9, CPU_BATCH_COSTS) == 3  # a batch of 5 costs 3.59 steps
    assert best_length([0.99] * 9, FREE) == len(FREE) - 1  # no longer than the costs go


def test_counts_taken_back_leave_nothing():
    counts = NgramCounts()
    counts.add([1, 2, 3, 4, 5, 6])
    assert counts.followers((1, 2)) == {3: 1}
    counts.add([1, 2, 3, 4, 5, 6], times=-1)
    assert len(counts) == 0


def test_bad_draft_costs_fail_before_a_model_loads():
    with pytest.raises(ValueError, match="positive"):
        LookupDrafter([1.0])
    with pytest.raises(BackendError, match="draft_costs"):
        make_backend("qwen2.5-coder-0.5b", {"draft_costs": "1,fast"})
    backend, _ = make_backend("qwen2.5-coder-0.5b", {"draft_costs": "1:1.2:1.4"})  # model_args
    assert backend._drafter.costs == (1.0, 1.2, 1.4)

