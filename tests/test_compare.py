"""``cgr compare`` on two plain lm-eval runs (samples files as lm-eval 0.4.13 writes them for a
built-in multiple-choice task: filter ``none``, metrics acc and acc_norm), checked against a
hand count and analysis/stats.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

from cgr_plugin.analysis.compare import compare_samples
from cgr_plugin.analysis.stats import paired_difference
from cgr_plugin.cli import cgr_main

from .analysis_run_folder import write_run_folder

# doc_id -> (acc of run A, acc of run B): 3 both right, 2 both wrong, 5 B alone, 1 A alone
OUTCOMES = {0: (1, 1), 1: (1, 1), 2: (1, 1), 3: (0, 0), 4: (0, 0), 5: (0, 1), 6: (0, 1),
            7: (0, 1), 8: (0, 1), 9: (0, 1), 10: (1, 0)}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _line(doc_id: int, acc: int, *, question: str | None = None) -> dict:
    doc = {"id": f"Mercury_{doc_id}", "question": question or f"Question {doc_id}?",
           "choices": {"text": ["a", "b", "c", "d"], "label": ["A", "B", "C", "D"]},
           "answerKey": "A"}
    prompt = f"Question: {doc['question']}\nAnswer:"
    return {"doc_id": doc_id, "doc": doc, "target": 0,
            "arguments": {f"gen_args_{k}": {"arg_0": prompt, "arg_1": f" {c}"}
                          for k, c in enumerate("abcd")},
            "resps": [[["-1.5", "False"]]] * 4, "filtered_resps": [["-1.5", "False"]] * 4,
            "filter": "none", "metrics": ["acc", "acc_norm"],
            "doc_hash": _sha(json.dumps(doc, indent=2, ensure_ascii=False)),
            "prompt_hash": _sha(prompt), "target_hash": _sha("0"),
            "acc": float(acc), "acc_norm": float(1 - acc)}


def _write(path: Path, lines: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    a = _write(tmp_path / "a" / "samples_arc_easy_2026-01-01T10-00-00.000000.jsonl",
               [_line(d, acc) for d, (acc, _) in OUTCOMES.items()])
    b = _write(tmp_path / "b" / "samples_arc_easy_2026-01-02T10-00-00.000000.jsonl",
               [_line(d, acc) for d, (_, acc) in reversed(OUTCOMES.items())])  # any order
    return a, b


def test_numbers_are_the_hand_count_and_stats_paired_difference(runs, tmp_path, capsys):
    a, b = runs
    with pytest.raises(SystemExit) as done:
        cgr_main(["compare", str(a), str(b), "--out", str(tmp_path / "c.json"),
                  "--resamples", "2000", "--seed", "7"])
    assert done.value.code == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["metric"] == "acc" and list(result["comparisons"]) == ["none"]
    c = result["comparisons"]["none"]
    assert (c["n"], c["rescued"], c["harmed"], c["both_right"], c["both_wrong"]) == (
        11, 5, 1, 3, 2)
    assert c["acc_a"] == pytest.approx(4 / 11) and c["acc_b"] == pytest.approx(8 / 11)
    assert c["difference"] == pytest.approx(4 / 11)
    assert c["mcnemar_p"] == pytest.approx(binomtest(5, 6, 0.5).pvalue)  # = 0.21875
    assert c["mcnemar_p"] == pytest.approx(14 / 64)
    ids = sorted(OUTCOMES)
    expected = paired_difference([bool(OUTCOMES[d][1]) for d in ids],
                                 [bool(OUTCOMES[d][0]) for d in ids], resamples=2000, seed=7)
    assert (c["ci_low"], c["ci_high"]) == (expected.low, expected.high)
    printed = capsys.readouterr().out
    assert "B - A +36.4 points" in printed and "McNemar p = 0.219" in printed
    assert "rescued) 5" in printed and "harmed) 1" in printed


def test_other_metric_and_documents_in_one_run_only(runs):
    a, b = runs
    lines = [json.loads(x) for x in b.read_text().splitlines()]
    _write(b, [x for x in lines if x["doc_id"] != 10] + [_line(11, 1)])
    c = compare_samples(a, b, metric="acc_norm", resamples=200)["comparisons"]["none"]
    assert c["n"] == 10 and c["pairing"]["only_a"] == 1 and c["pairing"]["only_b"] == 1
    assert (c["rescued"], c["harmed"]) == (0, 5)  # acc_norm is 1 - acc here


def test_different_documents_under_one_id_are_refused(runs):
    a, b = runs
    lines = [json.loads(x) for x in b.read_text().splitlines()]
    lines[0] = _line(lines[0]["doc_id"], 1, question="Another question")
    _write(b, lines)
    with pytest.raises(Exception, match="different doc_hash.*--allow-hash-mismatch"):
        compare_samples(a, b, resamples=200)
    assert compare_samples(a, b, resamples=200, allow_hash_mismatch=True)[
        "comparisons"]["none"]["pairing"]["doc_hash_mismatched"] == 1


def test_bad_input_is_a_one_line_error(runs, tmp_path, capsys):
    a, b = runs
    for argv, message in (([str(a), str(b), "--metric", "f1"], "metric 'f1' is not in both"),
                          ([str(a), str(b), "--filter", "assisted"], "filter 'assisted' is not"),
                          ([str(a), str(tmp_path / "missing.jsonl")], "cannot read")):
        with pytest.raises(SystemExit) as done:
            cgr_main(["compare", *argv])
        assert done.value.code == 2 and message in capsys.readouterr().err
    lines = [json.loads(x) for x in a.read_text().splitlines()]
    lines[0]["acc"] = 0.5
    _write(a, lines)
    with pytest.raises(Exception, match="is not 0 or 1"):
        compare_samples(a, b, resamples=200)


def test_cgr_samples_pair_per_filter(tmp_path):
    run = write_run_folder(tmp_path / "run")
    path = next((run / "gen-g").glob("samples_cgr_arc_easy_2024-05-19T10-*.jsonl"))
    result = compare_samples(path, path, resamples=200)
    assert set(result["comparisons"]) == {"direct", "assisted", "assisted_fallback",
                                          "generator", "budget_matched"}
    same = result["comparisons"]["assisted"]
    assert same["n"] == 10 and same["difference"] == 0 and same["mcnemar_p"] == 1.0
    only = compare_samples(path, path, filter_name="direct", resamples=200)
    assert list(only["comparisons"]) == ["direct"]
