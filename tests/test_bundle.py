import json

import pytest

from cgr_plugin._paths import DATA_DIR
from cgr_plugin.data.bundle import aqua_row, build_bundle, load_recipes, oe_eval_query_row
from cgr_plugin.data.items import ItemError
from cgr_plugin.data.loader import read_items

from .conftest import SHARED_DATA

EXPECTED = {"arc_easy", "arc_challenge", "commonsense_qa", "mmlu", "medmcqa", "truthfulqa_mc1",
            "aqua_rat", "openbookqa", "sciq"}


def test_manifest_records_provenance_and_license_for_every_dataset():
    manifest = json.loads((DATA_DIR / "MANIFEST.json").read_text())
    assert set(manifest) == EXPECTED == set(load_recipes())
    for name, entry in manifest.items():
        assert entry["source"] and entry["license"] and entry["hub"]["path"], name
        items = read_items(DATA_DIR / entry["file"])
        assert len(items) == entry["items"]
    assert manifest["sciq"]["commercial_use"] is False


def test_shuffled_datasets_do_not_keep_the_gold_first():
    for name in ("truthfulqa_mc1", "sciq"):
        entry = json.loads((DATA_DIR / "MANIFEST.json").read_text())[name]
        golds = [item.answer for item in read_items(DATA_DIR / entry["file"])]
        assert golds.count("A") / len(golds) < 0.4, name


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="original source files not present")
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
