import json

import pytest

from cgr_plugin.record import CGRRecord, ChannelResult
from cgr_plugin.scoring import ChannelFilter, process_results


def record(direct):
    item = {"id": "q", "dataset": "toy", "question": "Q?", "choices": ["a", "b", "c"],
            "answer": "B"}
    return CGRRecord(item=item, solver="s", direct=direct)


def test_record_round_trip_has_all_three_channels():
    rec = record(ChannelResult(status="ok", answer="B", raw="B", solver_calls=1))
    data = json.loads(rec.to_json())
    assert set(data["channels"]) == {"direct", "assisted", "generator"}
    assert data["channels"]["assisted"]["status"] == "not_run"
    assert CGRRecord.from_json(rec.to_json()) == rec


def test_status_and_answer_must_agree():
    with pytest.raises(ValueError):
        ChannelResult(status="ok")
    with pytest.raises(ValueError):
        ChannelResult(status="invalid", answer="A")
    with pytest.raises(ValueError):
        ChannelResult(status="maybe")


def test_channel_filter_reads_letters_and_sentinels():
    responses = [[record(ChannelResult(status="ok", answer="B")).to_json()],
                 [record(ChannelResult(status="invalid", raw="hmm")).to_json()],
                 [record(ChannelResult(status="error", error="boom")).to_json()],
                 ["not json at all"]]
    out = ChannelFilter("direct").apply(responses, [{}] * 4)
    assert out == [["B"], ["[invalid]"], ["[error]"], ["[not_cgr_record]"]]
    assert ChannelFilter("assisted").apply(responses[:1], [{}]) == [["[not_run]"]]
    with pytest.raises(ValueError, match="unknown channel"):
        ChannelFilter("side")


def test_process_results_scores_letters_only():
    doc = {"answer": "B", "letters": ["A", "B", "C"]}
    assert process_results(doc, ["B"]) == {"acc": 1.0, "invalid": 0.0}
    assert process_results(doc, ["C"]) == {"acc": 0.0, "invalid": 0.0}
    assert process_results(doc, ["[invalid]"]) == {"acc": 0.0, "invalid": 1.0}
