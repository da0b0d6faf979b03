import gzip
import json

import pytest

from cgr_plugin.data.items import ItemError, MCQAItem
from cgr_plugin.data.loader import TaskConfigError, read_items
from cgr_plugin.data.normalize import FieldMapping, Normalizer
from cgr_plugin.tasks.dataset import load_mcqa_dataset

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
    with pytest.raises(TaskConfigError) as info:
        load_mcqa_dataset(config_source=source)
    assert str(info.value).startswith(
        f"{source}:line 3: field 'dataset_kwargs.data_file': unknown key; did you mean "
        "'data_files'?")


def test_missing_file_names_split_and_path(tmp_path):
    source = task_yaml(tmp_path, "dataset_kwargs:\n  data_files: {test: nowhere.jsonl}\n")
    with pytest.raises(TaskConfigError,
                       match=r"line 3: field 'dataset_kwargs.data_files.test': no such file "
                             r".*nowhere.jsonl"):
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
    with pytest.raises(ItemError, match=r"mine.jsonl:line 2: invalid JSON"):
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


# -- formats -----------------------------------------------------------------------------------
MAPPED = "  fields: {id: qid, question: prompt, choices: options, answer: label}\n"


def test_parquet_tsv_and_gzipped_csv_inputs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "mine.parquet")
    items = read_items(tmp_path / "mine.parquet", Normalizer("x", FieldMapping.from_config(
        {"id": "qid", "question": "prompt", "choices": "options", "answer": "label"})))
    assert [(it.id, it.answer) for it in items] == [("r0", "A"), ("r1", "B"), ("r2", "C"),
                                                   ("r3", "A")]
    (tmp_path / "mine.tsv").write_text("question\to1\to2\tgold\nWhich, if any?\ta\tb\tB\n")
    with gzip.open(tmp_path / "mine.csv.gz", "wt") as fh:
        fh.write('question,o1,o2,gold\n"Multi\nline?",a,b,A\n')
    csv_norm = Normalizer("x", FieldMapping.from_config({"choices": ["o1", "o2"],
                                                         "answer": "gold"}))
    assert read_items(tmp_path / "mine.tsv", csv_norm)[0].question == "Which, if any?"
    assert read_items(tmp_path / "mine.csv.gz", csv_norm)[0].question == "Multi\nline?"


def test_a_run_names_the_first_problem_and_how_many_more(tmp_path, write_jsonl):
    rows = [dict(ROWS[0], label=7), dict(ROWS[1], options=["only"]), ROWS[2]]
    write_jsonl("mine.jsonl", rows)
    source = task_yaml(tmp_path, "dataset_kwargs:\n  data_files: mine.jsonl\n" + MAPPED)
    with pytest.raises(ItemError) as info:
        load_mcqa_dataset(config_source=source)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'mine.jsonl'}:line 1: item r0: field 'label': gold 7")
    assert f"(and 2 more problems; `cgr validate-dataset {source}` lists them all)" in message


def test_unreadable_parquet_is_a_clear_error(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ItemError, match=r"bad.parquet: cannot read Parquet file"):
        read_items(tmp_path / "bad.parquet", Normalizer("x"))


def test_hub_dataset_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = task_yaml(tmp_path, """dataset_path: someone/nowhere-mcqa
dataset_kwargs:
  fields: {choices: choices.text, labels: choices.label, answer: answerKey}
""")
    with pytest.raises(TaskConfigError) as info:
        load_mcqa_dataset(config_source=source)
    message = str(info.value)
    assert message.startswith(f"{source}:line 2: field 'dataset_path': cannot load "
                              "'someone/nowhere-mcqa' with datasets.load_dataset")
    assert "point dataset_kwargs.data_files at the files" in message


def test_hub_rows_go_through_the_field_mapping(tmp_path, monkeypatch):
    import datasets

    hub = datasets.DatasetDict({"test": datasets.Dataset.from_list(
        [{"question": "Q?", "choices": {"text": ["x", "y"], "label": ["1", "2"]},
          "answerKey": "2"}])})
    seen = {}

    def fake_load(path, name=None, revision=None):  # the hub itself is out of reach here
        seen.update(path=path, name=name, revision=revision)
        return hub

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    source = task_yaml(tmp_path, """dataset_path: org/mcqa
dataset_name: easy
dataset_kwargs:
  revision: v1.0
  fields: {choices: choices.text, labels: choices.label, answer: answerKey}
""")
    docs = load_mcqa_dataset(config_source=source)["test"]
    assert seen == {"path": "org/mcqa", "name": "easy", "revision": "v1.0"}
    assert (docs[0]["answer"], docs[0]["id"]) == ("B", "cgr_mine/test/0")


def test_exactly_one_data_source(tmp_path, write_jsonl):
    write_jsonl("mine.jsonl", ROWS)
    source = task_yaml(tmp_path, "dataset_path: org/x\ndataset_kwargs:\n  data_files: "
                                 "mine.jsonl\n")
    with pytest.raises(TaskConfigError, match="exactly one of .*sets data_files and "
                                              "dataset_path"):
        load_mcqa_dataset(config_source=source)


# -- splits, letters -----------------------------------------------------------------------------
def test_a_test_split_that_is_not_there_is_named(tmp_path, write_jsonl):
    write_jsonl("mine.jsonl", ROWS)
    source = task_yaml(tmp_path, "test_split: validation\ndataset_kwargs:\n  data_files: "
                                 "{dev: mine.jsonl}\n" + MAPPED)
    with pytest.raises(TaskConfigError, match=r"line 2: field 'test_split': test_split "
                                              r"'validation' is not a split of this dataset"):
        load_mcqa_dataset(config_source=source)


@pytest.mark.parametrize("letters, golds, expected", [
    ("numbers", [1, 2, 3, 1], ["1", "2", "3", "1"]),
    ("[W, X, Y, Z]", ["X", "w", "Y", "Z"], ["X", "W", "Y", "Z"]),
])
def test_letter_schemes_label_the_choices(tmp_path, write_jsonl, letters, golds, expected):
    rows = [dict(ROWS[i], label=g, options=["p", "q", "r", "s"]) for i, g in enumerate(golds)]
    write_jsonl("mine.jsonl", rows)
    source = task_yaml(tmp_path, f"dataset_kwargs:\n  data_files: mine.jsonl\n  letters: "
                                 f"{letters}\n" + MAPPED.replace("label}", "label, "
                                                                 "answer_format: letter}"))
    docs = list(load_mcqa_dataset(config_source=source)["test"])
    assert [d["answer"] for d in docs] == expected
    assert docs[0]["letters"] == (["1", "2", "3", "4"] if letters == "numbers"
                                  else ["W", "X", "Y", "Z"])
    assert MCQAItem.from_doc(docs[0]).letters == tuple(docs[0]["letters"])


def test_letter_schemes_apply_to_bundles(tmp_path):
    source = task_yaml(tmp_path, "dataset_kwargs:\n  bundle: aqua_rat\n  letters: numbers\n")
    docs = load_mcqa_dataset(config_source=source)["test"]
    assert docs[0]["letters"] == ["1", "2", "3", "4", "5"]
    assert all(d["answer"] in d["letters"] for d in docs)


# -- few-shot (CGRTask hands lm-eval's drawn examples to the model) ------------------------------
def _fewshot_task(tmp_path, write_jsonl, extra: str):
    from lm_eval.tasks import TaskManager

    write_jsonl("q.jsonl", ROWS)
    write_jsonl("shots.jsonl", [dict(r, qid=f"s{i}") for i, r in enumerate(ROWS[:3])])
    (tmp_path / "cgr_fs.yaml").write_text(
        "task: cgr_fs\nclass: !function cgr_plugin.tasks.task.CGRTask\n" + extra
        + "dataset_kwargs:\n  data_files: {test: q.jsonl, train: shots.jsonl}\n" + MAPPED)
    manager = TaskManager(include_path=[str(tmp_path)], include_defaults=False)
    return manager.load(["cgr_fs"])["tasks"]["cgr_fs"]


def test_fewshot_examples_reach_the_item(tmp_path, write_jsonl):
    task = _fewshot_task(tmp_path, write_jsonl, "fewshot_split: train\n")
    task.set_config(key="num_fewshot", value=2)
    task.build_all_requests(limit=2)
    for instance in task.instances:
        item = MCQAItem.from_doc(instance.doc)
        assert len(item.examples) == 2
        assert {e.id for e in item.examples} <= {"s0", "s1", "s2"}
        assert item.id in instance.args[0]  # lm-eval's own prompt text is unchanged
    task.set_config(key="num_fewshot", value=0)
    task.build_all_requests(limit=1)
    assert "examples_json" not in task.instances[0].doc


def test_fewshot_without_a_split_or_with_too_few_examples_is_an_error(tmp_path, write_jsonl):
    task = _fewshot_task(tmp_path, write_jsonl, "")
    task.set_config(key="num_fewshot", value=1)
    with pytest.raises(TaskConfigError, match="num_fewshot 1 needs fewshot_split"):
        task.build_all_requests(limit=1)
    task = _fewshot_task(tmp_path, write_jsonl, "fewshot_split: train\n")
    task.set_config(key="num_fewshot", value=5)
    with pytest.raises(TaskConfigError, match="split 'train' has only 3 examples"):
        task.build_all_requests(limit=1)


def test_cgr_task_names_an_unknown_task_key(tmp_path, write_jsonl):
    from lm_eval.tasks import TaskManager

    write_jsonl("mine.jsonl", ROWS)
    (tmp_path / "cgr_typo.yaml").write_text(
        "task: cgr_typo\nclass: !function cgr_plugin.tasks.task.CGRTask\ntest_spilt: test\n"
        "dataset_kwargs:\n  data_files: mine.jsonl\n" + MAPPED)
    manager = TaskManager(include_path=[str(tmp_path)], include_defaults=False)
    with pytest.raises(TaskConfigError, match=r"cgr_typo.yaml: field 'test_spilt': unknown task "
                                              r"key; did you mean 'test_split'\?"):
        manager.load(["cgr_typo"])
