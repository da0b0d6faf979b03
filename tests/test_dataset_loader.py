import gzip
import json

import pytest

from cgr_plugin.dataset_loader import TaskConfigError, load_mcqa_dataset, read_items
from cgr_plugin.items import ItemError, MCQAItem
from cgr_plugin.normalize import FieldMapping, Normalizer

ROWS = [{"qid": f"r{i}", "prompt": f"Question {i}?", "options": ["yes", "no", "maybe"],
         "label": i % 3, "topic": "t1" if i < 2 else "t2"} for i in range(4)]


def task_yaml(folder, body):
    path = folder / "cgr_mine.yaml"
    path.write_text("task: cgr_mine\n" + body)
    return str(path)


def test_data_files_resolve_relative_to_the_task_yaml(tmp_path, write_jsonl, monkeypatch):
    (tmp_path / "data").mkdir()
    write_jsonl("data/mine.jsonl", ROWS)
    source = task_yaml(tmp_path, """dataset_kwargs:
  data_files: {test: data/mine.jsonl}
  fields: {id: qid, question: prompt, choices: options, answer: label, metadata: [topic]}
""")
    monkeypatch.chdir("/")  # lm-eval would resolve relative files against the cwd
    splits = load_mcqa_dataset(config_source=source, version=1.0, solver="anything")
    docs = list(splits["test"])
    assert [d["id"] for d in docs] == ["r0", "r1", "r2", "r3"]
    item = MCQAItem.from_doc(docs[2])
    assert (item.answer, item.dataset, item.metadata) == ("C", "cgr_mine", {"topic": "t2"})


def test_subset_selection_and_unknown_subset(tmp_path, write_jsonl):
    write_jsonl("mine.jsonl", ROWS)
    source = task_yaml(tmp_path, """dataset_kwargs:
  data_files: mine.jsonl
  fields: {id: qid, question: prompt, choices: options, answer: label, metadata: [topic]}
  subset_field: topic
""")
    assert len(load_mcqa_dataset(config_source=source, subsets="t1")["test"]) == 2
    with pytest.raises(TaskConfigError, match="unknown topic 't9'; available: t1, t2"):
        load_mcqa_dataset(config_source=source, subsets=["t9"])


def test_unknown_dataset_kwarg_names_the_yaml(tmp_path, write_jsonl):
    write_jsonl("mine.jsonl", ROWS)
    source = task_yaml(tmp_path, "dataset_kwargs:\n  data_file: mine.jsonl\n")
    with pytest.raises(TaskConfigError,
                       match=r"cgr_mine.yaml: unknown key dataset_kwargs.data_file"):
        load_mcqa_dataset(config_source=source)


def test_missing_file_names_split_and_path(tmp_path):
    source = task_yaml(tmp_path, "dataset_kwargs:\n  data_files: {test: nowhere.jsonl}\n")
    with pytest.raises(TaskConfigError, match="data_files.test: no such file .*nowhere.jsonl"):
        load_mcqa_dataset(config_source=source)


def test_bad_row_names_file_line_and_field(tmp_path, write_jsonl):
    rows = [dict(ROWS[0]), dict(ROWS[1], label=9)]
    path = write_jsonl("mine.jsonl", rows)
    normalizer = Normalizer("mine", FieldMapping.from_config(
        {"id": "qid", "question": "prompt", "choices": "options", "answer": "label"}))
    with pytest.raises(ItemError) as info:
        read_items(path, normalizer)
    assert str(path) in str(info.value) and info.value.field == "label"
    assert info.value.item == "r1"


def test_broken_json_line_and_empty_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "ok", "choices": ["a", "b"], "answer": "A"}\n{"question": \n')
    with pytest.raises(ItemError, match=r"mine.jsonl: item line 2: invalid JSON"):
        read_items(path, Normalizer("mine"))
    path.write_text("\n")
    with pytest.raises(ItemError, match="holds no items"):
        read_items(path, Normalizer("mine"))


def test_json_csv_and_gzip_inputs(tmp_path):
    rows = [{"question": "Q?", "choices": ["a", "b"], "answer": "A"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(rows[0]) + "\n")
    (tmp_path / "c.csv").write_text("question,o1,o2,gold\nQ?,a,b,B\n")
    assert read_items(tmp_path / "a.json", Normalizer("x"))[0].answer == "A"
    assert read_items(tmp_path / "b.jsonl.gz", Normalizer("x"))[0].answer == "A"
    csv_norm = Normalizer("x", FieldMapping.from_config({"choices": ["o1", "o2"],
                                                         "answer": "gold"}))
    assert read_items(tmp_path / "c.csv", csv_norm)[0].answer == "B"
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(ItemError, match="unsupported data file type"):
        read_items(tmp_path / "d.txt", Normalizer("x"))


def test_bundled_dataset_loads(tmp_path):
    source = task_yaml(tmp_path, "dataset_kwargs:\n  bundle: arc_easy\n")
    docs = load_mcqa_dataset(config_source=source)["test"]
    assert len(docs) == 2376
    assert all(d["answer"] in d["letters"] for d in docs)


def test_subsets_for_a_task_without_subset_field_is_an_error(tmp_path, write_jsonl):
    write_jsonl("mine.jsonl", ROWS)
    source = task_yaml(tmp_path, """dataset_kwargs:
  data_files: mine.jsonl
  fields: {id: qid, question: prompt, choices: options, answer: label}
""")
    with pytest.raises(TaskConfigError, match="no dataset_kwargs.subset_field"):
        load_mcqa_dataset(config_source=source, subsets="t1")
