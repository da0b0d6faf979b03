import json

import pytest

from cgr_plugin.record import (
    ASSISTED_STATUSES,
    AUDIT_FLAGS,
    SCORED_CHANNELS,
    CGRRecord,
    ChannelResult,
)
from cgr_plugin.tasks.scoring import ChannelFilter, filter_list, metric_list, process_results


def record(direct):
    item = {"id": "q", "dataset": "toy", "question": "Q?", "choices": ["a", "b", "c"],
            "answer": "B"}
    return CGRRecord(item=item, solver="s", direct=direct)


def test_record_round_trip_has_all_three_channels():
    rec = record(ChannelResult(status="ok", answer="B", raw="B", solver_calls=1))
    data = json.loads(rec.to_json())
    assert set(data["channels"]) == {"direct", "assisted", "generator", "budget_matched"}
    assert data["channels"]["assisted"]["status"] == "not_run"
    assert CGRRecord.from_json(rec.to_json()) == rec


def test_status_and_answer_must_agree():
    with pytest.raises(ValueError):
        ChannelResult(status="ok")
    with pytest.raises(ValueError):
        ChannelResult(status="invalid", answer="A")
    with pytest.raises(ValueError):
        ChannelResult(status="maybe")


def test_channel_filter_reads_each_channel_outcome():
    responses = [[record(ChannelResult(status="ok", answer="B")).to_json()],
                 [record(ChannelResult(status="invalid", raw="hmm")).to_json()],
                 [record(ChannelResult(status="error", error="boom")).to_json()],
                 ["not json at all"]]
    out = [json.loads(o) for (o,) in ChannelFilter("direct").apply(responses, [{}] * 4)]
    assert [(o["letter"], o["status"]) for o in out] == [
        ("B", "ok"), (None, "invalid"), (None, "error"), (None, "error")]
    (assisted,), = ChannelFilter("assisted").apply(responses[:1], [{}])
    assert json.loads(assisted)["status"] == "not_run"
    with pytest.raises(ValueError, match="unknown channel"):
        ChannelFilter("side")


def test_fallback_view_uses_the_recorded_fallback_only():
    failed = ChannelResult(status="uninformative", fallback={"source": "direct", "answer": "B"})
    rec = CGRRecord(item=record(ChannelResult()).item, solver="s", assisted=failed).to_json()
    (strict,), = ChannelFilter("assisted").apply([[rec]], [{}])
    (lenient,), = ChannelFilter("assisted", fallback=True).apply([[rec]], [{}])
    doc = {"answer": "B", "letters": ["A", "B", "C"]}
    assert process_results(doc, [strict])["acc"] == 0.0
    scored = process_results(doc, [lenient])
    assert scored["acc"] == 1.0 and scored["fallback_used"] == 1.0


def test_process_results_scores_letters_and_counts_statuses():
    doc = {"answer": "B", "letters": ["A", "B", "C"]}
    direct = {"channel": "direct", "letter": "B", "status": "ok", "solver_calls": 1}
    assert process_results(doc, [json.dumps(direct)]) == {"acc": 1.0, "invalid": 0.0,
                                                          "solver_calls": 1.0}
    assisted = {"channel": "assisted", "letter": None, "status": "timeout", "solver_calls": 3,
                "audits": {"hard_coded": True}}
    scored = process_results(doc, [json.dumps(assisted)])
    assert (scored["acc"], scored["invalid"], scored["solver_calls"]) == (0.0, 1.0, 3.0)
    assert scored["status_timeout"] == 1.0 and scored["status_ok"] == 0.0
    assert scored["audit_hard_coded"] == 1.0 and scored["audit_altered_item"] == 0.0
    assert process_results(doc, [json.dumps({"channel": "budget_matched", "letter": None,
                                             "status": "not_run"})]) == {}
    generator = {"channel": "generator", "letter": "C", "status": "ok"}
    assert process_results(doc, [json.dumps(generator)]) == {"acc": 0.0, "invalid": 0.0}
    assert process_results(doc, ["B"])["acc"] == 1.0  # a plain letter from another filter


def test_every_metric_process_results_returns_is_declared_once_from_the_record():
    declared = [m["metric"] for m in metric_list()]
    assert len(declared) == len(set(declared))
    doc = {"answer": "A", "letters": ["A", "B"]}
    seen = set()
    for status in ASSISTED_STATUSES:
        for view in SCORED_CHANNELS:
            outcome = {"channel": view, "letter": "A", "status": status, "solver_calls": 2,
                       "fallback_used": False, "audits": dict.fromkeys(AUDIT_FLAGS, True)}
            seen |= set(process_results(doc, [json.dumps(outcome)]))
    outcome = {"channel": "assisted", "letter": "A", "status": "ok", "solver_calls": 2,
               "audits": {"program_shape": "0123456789ab"}}
    seen |= set(process_results(doc, [json.dumps(outcome)]))  # a program with a shape
    outcome = {"channel": "assisted", "letter": "A", "status": "ok", "solver_calls": 2,
               "provenance": "constant", "audits": {"strategy": {"tags": ["reads_payload"]}}}
    seen |= set(process_results(doc, [json.dumps(outcome)]))  # re-run, with strategy tags
    assert seen == set(declared)
    higher = {m["metric"] for m in metric_list() if m["higher_is_better"]}
    assert higher == {"acc", "status_ok", "program_diversity", "provenance_solver_dependent"}


def test_provenance_and_strategy_shares_come_from_the_assisted_record():
    doc = {"answer": "A", "letters": ["A", "B"]}
    outcome = {"channel": "assisted", "letter": "B", "status": "ok", "solver_calls": 1,
               "provenance": "constant", "audits": {
                   "hard_coded": True, "strategy": {"tags": ["reply_in_condition"]}}}
    scored = process_results(doc, [json.dumps(outcome)])
    assert scored["provenance_constant"] == 1.0 and scored["provenance_mixed"] == 0.0
    assert scored["strategy_reply_in_condition"] == 1.0 and scored["strategy_reads_payload"] == 0
    assert scored["audit_hard_coded"] == 1.0
    failed = {"channel": "assisted", "letter": None, "status": "runtime_error", "audits": {}}
    assert not any(k.startswith(("provenance_", "strategy_"))
                   for k in process_results(doc, [json.dumps(failed)]))


def test_one_filter_pipeline_per_scored_view_and_only_the_fallback_view_falls_back():
    pipelines = filter_list()
    assert [p["name"] for p in pipelines] == list(SCORED_CHANNELS)
    for pipeline in pipelines:
        first, last = pipeline["filter"]
        assert first["function"] is ChannelFilter and last == {"function": "take_first"}
        assert first.get("fallback", False) == (pipeline["name"] == "assisted_fallback")
