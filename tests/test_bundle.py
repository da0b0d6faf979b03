import gzip
import json
import zipfile

import pytest

from cgr_plugin._paths import DATA_DIR
from cgr_plugin.data.bundle import (
    aqua_row,
    build_bundle,
    build_items,
    failuresensoriq_row,
    load_recipes,
    oe_eval_query_row,
    timeseriesexam_row,
)
from cgr_plugin.data.items import ItemError
from cgr_plugin.data.loader import read_items

from .conftest import SHARED_DATA

# Items shipped, and items left out as not valid MCQA upstream.
NEW = {"mmlu_pro": (12027, 5), "failuresensoriq": (2667, 0),
       "failuresensoriq_perturbed": (2667, 0), "timeseriesexam": (763, 0),
       "basic_skills_arithmetic": (1047, 0), "basic_skills_string_operations": (1218, 1),
       "basic_skills_pattern": (534, 0), "basic_skills_logical_reasoning": (1118, 0),
       "basic_skills_common_knowledge": (1037, 0)}
EXPECTED = {"arc_easy", "arc_challenge", "commonsense_qa", "mmlu", "medmcqa", "truthfulqa_mc1",
            "aqua_rat", "openbookqa", "sciq", *NEW}
needs_sources = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                   reason="original source files not present")


def _manifest() -> dict:
    return json.loads((DATA_DIR / "MANIFEST.json").read_text())


def _bundle_item(name: str, item_id: str):
    items = read_items(DATA_DIR / _manifest()[name]["file"])
    return next(item for item in items if item.id == item_id)


def test_manifest_records_provenance_and_license_for_every_dataset():
    manifest = _manifest()
    assert set(manifest) == EXPECTED == set(load_recipes())
    for name, entry in manifest.items():
        assert entry["source"] and entry["license"] and entry["sha256"], name
        assert entry["hub"] is None or entry["hub"]["path"], name
        items = read_items(DATA_DIR / entry["file"])
        assert len(items) == entry["items"]
        dropped = entry["dropped"]
        assert dropped["count"] == len(dropped["items"]) == sum(dropped["reasons"].values())
    assert manifest["sciq"]["commercial_use"] is False


@pytest.mark.parametrize("name", sorted(NEW))
def test_new_datasets_ship_every_valid_item_and_count_the_rest(name):
    entry = _manifest()[name]
    assert (entry["items"], entry["dropped"]["count"]) == NEW[name]


def test_shuffled_datasets_do_not_keep_the_gold_first():
    for name in ("truthfulqa_mc1", "sciq"):
        entry = json.loads((DATA_DIR / "MANIFEST.json").read_text())[name]
        golds = [item.answer for item in read_items(DATA_DIR / entry["file"])]
        assert golds.count("A") / len(golds) < 0.4, name


@needs_sources
def test_rebuild_from_sources_is_byte_for_byte_identical():
    build_bundle(DATA_DIR, source_root=SHARED_DATA, check=True)


def test_source_row_hooks():
    row = {"query": "Question: Why?\nAnswer:", "choices": ["a", "b"], "gold": 1}
    assert oe_eval_query_row(row)["question"] == "Why?"
    with pytest.raises(ItemError, match="query"):
        oe_eval_query_row({"query": "Why?"})
    assert aqua_row({"options": ["A)21", "B) 5(√3 + 1)"]})["options"] == ["21", "5(√3 + 1)"]
    with pytest.raises(ItemError, match="does not start with B"):
        aqua_row({"options": ["A)1", "C)2"]})


def test_items_not_valid_upstream_are_left_out_with_their_reason():
    dropped = _manifest()["mmlu_pro"]["dropped"]
    assert dropped["reasons"] == {"options: needs at least two choices, got 1": 5}
    assert sorted(e["id"] for e in dropped["items"]) == ["2129", "2253", "5664", "5666", "6921"]
    blank = _manifest()["basic_skills_string_operations"]["dropped"]["items"]
    assert [(e["id"], e["reason"]) for e in blank] == [
        ("55", "choices: choice 2 must be a non-empty string, got ' '")]


def test_drop_invalid_covers_only_the_named_fields(tmp_path):
    rows = [{"id": "a", "question": "Q?", "choices": ["x", "y"], "gold": 0},
            {"id": "b", "question": "Q?", "choices": ["x"], "gold": 0},
            {"id": "c", "question": "", "choices": ["x", "y"], "gold": 0}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {"split": "test", "local": {"path": "rows.jsonl", "reader": "jsonl"},
              "drop_invalid": ["choices"],
              "fields": {"choices": "choices", "answer": "gold", "answer_format": "index"}}
    with pytest.raises(ItemError, match="question"):  # a bad question is not droppable
        build_items("toy", recipe, source_root=tmp_path)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    build = build_items("toy", recipe, source_root=tmp_path)
    assert [item.id for item in build.items] == ["a"]
    assert build.dropped_summary() == {
        "count": 1, "reasons": {"choices: needs at least two choices, got 1": 1},
        "items": [{"row": 1, "id": "b", "reason": "choices: needs at least two choices, got 1"}]}
    del recipe["drop_invalid"]
    with pytest.raises(ItemError, match="needs at least two choices"):
        build_items("toy", recipe, source_root=tmp_path)


@needs_sources
def test_check_notices_a_stale_manifest(tmp_path):
    for name in ("aqua_rat",):
        (tmp_path / name).mkdir()
        (tmp_path / name / "test.jsonl").write_bytes((DATA_DIR / name / "test.jsonl").read_bytes())
    manifest = _manifest()
    manifest["aqua_rat"]["items"] += 1
    (tmp_path / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"MANIFEST.json \(aqua_rat\)"):
        build_bundle(tmp_path, source_root=SHARED_DATA, names=["aqua_rat"], check=True)


def test_hub_builds_skip_datasets_without_a_known_hub_source():
    recipe = load_recipes()["timeseriesexam"]
    assert "hub" not in recipe
    with pytest.raises(ValueError, match="no Hugging Face hub source"):
        build_items("timeseriesexam", recipe, source_root=None, from_hub=True)


# -- one known item of each new dataset, read from the original file ---------------------------
def _source_gold(name: str) -> tuple[str, str]:
    """(item id, gold letter) of one item, straight from the original source file."""
    if name == "mmlu_pro":
        with zipfile.ZipFile(SHARED_DATA / "mmlu_pro/model_outputs_Llama-2-7b-hf_5shots.zip") as z:
            row = json.loads(z.read("model_outputs_Llama-2-7b-hf_5shots.json"))[100]
        return str(row["question_id"]), row["answer"]
    if name.startswith("failuresensoriq"):
        file = ("fmsr_filtered_perturbed_data_all_simple.jsonl" if name.endswith("perturbed")
                else "fmsr_filtered_data_all.jsonl")
        lines = (SHARED_DATA / "failuresensoriq" / file).read_text().splitlines()
        row = json.loads(lines[1234])
        letters = "PQRST" if name.endswith("perturbed") else "ABCDE"
        return str(row["id"]), letters[row["correct"].index(True)]
    if name == "timeseriesexam":
        row = json.loads((SHARED_DATA / "timeseriesexam/qa_dataset_round_3.json").read_text())[500]
        return str(row["id"]), "ABCD"[row["options"].index(row["answer"])]
    skill = name.removeprefix("basic_skills_")
    with gzip.open(SHARED_DATA / "basic_skills" / skill / "rc_5shot/requests.jsonl.gz", "rt") as fh:
        docs = [json.loads(line)["doc"] for line in fh]
    doc = next(d for d in docs if d["id"] == "200")
    return doc["id"], "ABCDEFGHIJ"[doc["gold"]]


@needs_sources
@pytest.mark.parametrize("name", sorted(NEW))
def test_a_known_item_keeps_its_source_gold(name):
    item_id, gold = _source_gold(name)
    assert _bundle_item(name, item_id).answer == gold


@needs_sources
def test_time_series_reach_the_payload_exactly():
    rows = json.loads((SHARED_DATA / "timeseriesexam/qa_dataset_round_3.json").read_text())
    one = next(r for r in rows if "ts" in r)
    two = next(r for r in rows if "ts1" in r)
    assert _bundle_item("timeseriesexam", str(one["id"])).payload == {"series": {"ts": one["ts"]}}
    assert _bundle_item("timeseriesexam", str(two["id"])).payload == {
        "series": {"ts1": two["ts1"], "ts2": two["ts2"]}}


def test_failuresensoriq_copies_pair_by_id_with_the_same_options():
    plain = {item.id: item for item in read_items(DATA_DIR / "failuresensoriq/test.jsonl")}
    pert = {item.id: item for item in read_items(DATA_DIR / "failuresensoriq_perturbed/test.jsonl")}
    assert plain.keys() == pert.keys()
    moved = 0
    for item_id, item in plain.items():
        other = pert[item_id]
        assert sorted(item.choices) == sorted(other.choices)
        assert item.choices[item.answer_index] == other.choices[other.answer_index]
        assert other.letters == tuple("PQRST")[:len(other.choices)]
        moved += item.answer_index != other.answer_index
    assert moved > len(plain) / 2


def test_new_source_row_hooks():
    assert failuresensoriq_row({"option_ids": ["P)", "Q)"]})["option_ids"] == ["P)", "Q)"]
    with pytest.raises(ItemError, match="not P, Q, R"):
        failuresensoriq_row({"option_ids": ["Q)", "P)"]})
    assert timeseriesexam_row({"ts1": [1.5, 2], "ts2": [3.0]})["payload"] == {
        "series": {"ts1": [1.5, 2], "ts2": [3.0]}}
    with pytest.raises(ItemError, match="no time series"):
        timeseriesexam_row({"question": "?"})
    with pytest.raises(ItemError, match="list of numbers"):
        timeseriesexam_row({"ts": [1.0, "2"]})


def test_tags_select_the_paper_and_compute_sets():
    from lm_eval.tasks import TaskManager

    from cgr_plugin._paths import TASKS_DIR

    index = TaskManager(include_path=str(TASKS_DIR), include_defaults=False).task_index
    assert index["cgr_paper"].tags == {"cgr_mmlu_pro", "cgr_failuresensoriq",
                                       "cgr_timeseriesexam", "cgr_openbookqa"}
    assert index["cgr_compute"].tags == {"cgr_aqua_rat", *(f"cgr_{n}" for n in NEW
                                                           if n.startswith("basic_skills"))}
    assert index["cgr"].tags == {f"cgr_{name}" for name in EXPECTED}
