"""``cgr validate-dataset``: every problem of a dataset YAML and its data, each with its place."""

from __future__ import annotations

import gzip
import json

import pytest

from cgr_plugin._paths import TASKS_DIR
from cgr_plugin.tasks.validate import format_report, validate_main, validate_task_yaml

from .conftest import REPO, run_cli

ROWS = [
    {"uid": "u1", "stem": "Which planet is known as the Red Planet?",
     "options": ["Venus", "Mars", "Jupiter", "Saturn"], "key": "B"},
    {"uid": "u2", "stem": "What gas do plants take in?",
     "options": ["Oxygen", "Nitrogen", "Carbon dioxide"], "key": "C"},
    {"uid": "u3", "stem": "How many legs does a spider have?",
     "options": ["6", "8", "10", "12"], "key": "b"},
]
HEAD = "task: my_mcqa\nclass: !function cgr_plugin.tasks.task.CGRTask\n"
FIELDS = "  fields: {id: uid, question: stem, choices: options, answer: key}\n"


def write(folder, rows, name="my_mcqa.jsonl"):
    path = folder / name
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


def dataset(folder, body=f"dataset_kwargs:\n  data_files: my_mcqa.jsonl\n{FIELDS}", rows=ROWS,
            head=HEAD):
    if rows is not None:
        write(folder, rows)
    path = folder / "my_mcqa.yaml"
    path.write_text(head + body)
    return path


def lines_of(path, **kwargs):
    report = validate_task_yaml(path)
    return report, format_report(report, **kwargs)


def test_a_good_dataset_gets_a_summary_and_no_problems(tmp_path):
    path = dataset(tmp_path)
    report, lines = lines_of(path)
    assert not report.problems.errors
    assert lines == [f"{path}: task my_mcqa: test (test_split): 3 items, letters A-D, 3-4 "
                     "choices", f"{path}: ok"]


def test_every_bad_row_is_reported_with_line_item_and_field(tmp_path):
    rows = [
        ROWS[0],
        dict(ROWS[1], uid="u1"),                           # duplicate id
        {"uid": "u3", "stem": "Q?", "options": ["only"], "key": "A"},   # one choice
        {"uid": "u4", "stem": "Q?", "options": ["a", ""], "key": "A"},  # empty choice
        {"uid": "u5", "stem": "Q?", "options": ["a", "b"], "key": "E"},  # gold not a letter
        {"uid": "u6", "options": ["a", "b"]},              # no question, no gold
        '{"uid": "u7", "stem": \n',                        # broken JSON
        "[1, 2]\n",                                        # not an object
        {"stem": "Q?", "options": ["a", "b"], "key": 0},   # no id
    ]
    path = dataset(tmp_path, rows=rows)
    data = tmp_path / "my_mcqa.jsonl"
    report, lines = lines_of(path)
    assert lines[:-2] == [
        f"{data}:line 2: item u1: field 'uid': duplicate id (first at line 1)",
        f"{data}:line 3: item u3: field 'options': needs at least two choices, got 1",
        f"{data}:line 4: item u4: field 'options': choice 1 must be a non-empty string, got ''",
        f"{data}:line 5: item u5: field 'key': gold 'E' (letter) does not name one of 2 "
        "choices; the letters are A, B",
        f"{data}:line 6: item u6: field 'stem': missing required field for question",
        f"{data}:line 6: item u6: field 'key': missing required field for answer",
        f"{data}:line 7: invalid JSON: Expecting value (column 23)",
        f"{data}:line 8: expected a JSON object, got list",
        f"{data}:line 9: field 'uid': missing id",
    ]
    assert lines[-1] == f"{path}: 9 problems"
    assert "test (test_split): 1 item, letters A-D" in lines[-2]


def test_yaml_problems_are_all_named_with_line_and_suggestion(tmp_path):
    path = dataset(tmp_path, head=HEAD + "test_spilt: test\n", body="""dataset_kwargs:
  data_files: {test: my_mcqa.jsonl, train: shots.jsonl, dev: notes.txt}
  shufle_seed: 3
  letters: numbrs
  fields:
    id: uid
    quesiton: stem
    question: stem
    choices: options
    answer: key
""")
    (tmp_path / "notes.txt").write_text("x")
    report, lines = lines_of(path)
    text = "\n".join(lines)
    for expected in [
        f"{path}:line 3: field 'test_spilt': unknown task key; did you mean 'test_split'?",
        f"{path}:line 5: field 'dataset_kwargs.data_files.train': no such file "
        f"{tmp_path / 'shots.jsonl'}",
        f"{path}:line 5: field 'dataset_kwargs.data_files.dev': unsupported data file type .txt",
        f"{path}:line 6: field 'dataset_kwargs.shufle_seed': unknown key; did you mean "
        "fields.shuffle_seed?",
        f"{path}:line 7: field 'dataset_kwargs.letters': unknown letter scheme 'numbrs'; did "
        "you mean 'numbers'?",
        f"{path}:line 10: field 'dataset_kwargs.fields.quesiton': unknown key; did you mean "
        "'question'?",
    ]:
        assert expected in text
    # the mapping stays usable without its unknown key, so the rows were still read
    assert "test (test_split): 3 items" in text
    assert lines[-1] == f"{path}: 6 problems"


def test_a_column_no_row_has_is_named_with_the_columns_there_are(tmp_path):
    path = dataset(tmp_path, body="dataset_kwargs:\n  data_files: my_mcqa.jsonl\n  fields:\n"
                                  "    id: uid\n    question: stme\n    choices: options\n"
                                  "    answer: key\n")
    _, lines = lines_of(path, max_repeats=2)
    # the root problem first and once; the rows' own copies of it are not listed
    assert lines[0] == (
        f"{path}:line 7: field 'dataset_kwargs.fields.question': no row of "
        f"{tmp_path / 'my_mcqa.jsonl'} has a column 'stme' (the question mapping); did you "
        "mean 'stem'?; columns: key, options, stem, uid (the 3 rows that lack it are not "
        "listed one by one)")
    assert not [line for line in lines if "missing required field" in line]
    assert lines[-1] == f"{path}: 1 problem"


def test_splits_and_fewshot_settings_are_checked(tmp_path):
    write(tmp_path, ROWS[:1], "shots.jsonl")
    path = dataset(tmp_path, head=HEAD + "test_split: validation\nnum_fewshot: 2\n"
                                         "fewshot_split: train\n",
                   body="dataset_kwargs:\n  data_files: {test: my_mcqa.jsonl, train: "
                        "shots.jsonl}\n" + FIELDS)
    _, lines = lines_of(path)
    assert (f"{path}:line 3: field 'test_split': test_split 'validation' is not a split of "
            "this dataset (splits: test, train)") in lines[0]
    assert lines[1] == (f"{path}:line 4: field 'num_fewshot': num_fewshot 2 but split 'train' "
                        "has only 1 example to show")
    path = dataset(tmp_path, head=HEAD + "num_fewshot: 1\n")
    _, lines = lines_of(path)
    assert lines[0].startswith(f"{path}:line 3: field 'num_fewshot': num_fewshot 1 needs "
                               "fewshot_split")


def test_letter_schemes_in_the_summary_and_in_gold_checks(tmp_path):
    rows = [dict(r, key=k) for r, k in zip(ROWS, ["2", "3", "5"], strict=True)]
    path = dataset(tmp_path, rows=rows, body="dataset_kwargs:\n  data_files: my_mcqa.jsonl\n"
                                             "  letters: numbers\n" + FIELDS)
    _, lines = lines_of(path)
    assert lines[0] == (f"{tmp_path / 'my_mcqa.jsonl'}:line 3: item u3: field 'key': gold '5' "
                        "(letter) does not name one of 4 choices; the letters are 1, 2, 3, 4")
    assert "letters 1-4" in lines[1]
    path = dataset(tmp_path, rows=ROWS, body="dataset_kwargs:\n  data_files: my_mcqa.jsonl\n"
                                             "  letters: [a, b]\n" + FIELDS)
    _, lines = lines_of(path)
    assert "field 'dataset_kwargs.letters': letter 'a' must be a non-empty label" in lines[0]


@pytest.mark.parametrize("text, expected", [
    ("task: [unclosed\n", ":line 1: YAML syntax error"),
    ("- just\n- a list\n", ": a task YAML must be a mapping"),
    ("task: t\nclass: !function nowhere_mod.Thing\n",
     ":line 2: field 'class': !function nowhere_mod.Thing cannot be imported"),
    ("task: t\ndataset_kwargs:\n  data_files: x.jsonl\n",
     ": this task does not load its data with cgr-plugin"),
    ("class: !function cgr_plugin.tasks.task.CGRTask\ndataset_kwargs: {data_files: x.jsonl}\n",
     ": no 'task:' key"),
    (HEAD, ": the data needs exactly one of dataset_kwargs.data_files"),
    ("task: t\ntask: u\n", ":line 2: field 'task': key given twice (lines 1 and 2)"),
    ("include: nowhere.yaml\ntask: t\n", ":line 1: field 'include': cannot load"),
    (HEAD + "dataset_kwargs: [1]\n", ":line 3: field 'dataset_kwargs': must be a mapping"),
    (HEAD + "dataset_kwargs: {data_files: x.jsonl, fields: question}\n",
     ":line 3: field 'dataset_kwargs.fields': 'fields' must be a mapping, got str"),
    (HEAD + "num_fewshot: two\n", ":line 3: field 'num_fewshot': must be a whole number"),
])
def test_malformed_yaml_is_a_message_not_a_traceback(tmp_path, text, expected):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    _, lines = lines_of(path)
    assert any(line.startswith(f"{path}{expected}") for line in lines), lines
    assert lines[-1].endswith(" problem") or lines[-1].endswith(" problems")


def test_csv_tsv_and_parquet_rows_are_checked(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.csv").write_text("uid,stem,o1,o2,key\nc1,Q?,a,b,B\nc2,Q?,a\nc3,Q?,a,b,0\n")
    with gzip.open(tmp_path / "b.tsv.gz", "wt") as fh:
        fh.write("uid\tstem\to1\to2\tkey\nt1\tQ?\ta\tb\tA\n")
    pq.write_table(pa.Table.from_pylist([{"uid": "p1", "stem": "Q?", "o1": "a", "o2": "b",
                                          "key": 7}]), tmp_path / "c.parquet")
    path = dataset(tmp_path, rows=None, body="""dataset_kwargs:
  data_files: {test: a.csv, validation: b.tsv.gz, train: c.parquet}
  fields: {id: uid, question: stem, choices: [o1, o2], answer: key}
""")
    _, lines = lines_of(path)
    assert lines[:3] == [
        f"{tmp_path / 'a.csv'}:line 3: 3 values for 5 columns",
        f"{tmp_path / 'a.csv'}:line 4: item c3: field 'key': cannot tell how gold '0' names a "
        "choice; set fields.answer_format (letter, index, index1, label, text, one_hot)",
        f"{tmp_path / 'c.parquet'}:row 0: item p1: field 'key': gold 7 (index) does not name "
        "one of 2 choices",
    ]
    assert ("test (test_split): 1 item, letters A-B, 2 choices; validation (unused): 1 item,"
            in lines[3])


def test_hub_dataset_offline_is_one_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = dataset(tmp_path, rows=None, head=HEAD + "dataset_path: someone/nowhere\n",
                   body="dataset_kwargs:\n  revision: main\n")
    report, lines = lines_of(path)
    assert len(report.problems.errors) == 1
    assert lines[0].startswith(f"{path}:line 3: field 'dataset_path': cannot load "
                               "'someone/nowhere' with datasets.load_dataset: ConnectionError")


def test_packaged_task_validates():
    report = validate_task_yaml(TASKS_DIR / "cgr_sciq.yaml")
    assert not report.problems.errors
    assert [(s.name, s.roles, s.items) for s in report.splits] == [
        ("validation", ["test_split"], 1000)]


def test_validate_main_exit_status(tmp_path, capsys):
    good = dataset(tmp_path)
    assert validate_main([str(good)]) == 0
    assert validate_main([str(good), str(tmp_path / "missing.yaml")]) == 1
    assert (f"{tmp_path / 'missing.yaml'}: cannot read the task YAML: No such file or "
            "directory") in capsys.readouterr().out


def test_cli_on_a_good_and_a_bad_dataset(tmp_path):
    good_dir, bad_dir = tmp_path / "good", tmp_path / "bad"
    good_dir.mkdir()
    bad_dir.mkdir()
    dataset(good_dir)
    dataset(bad_dir, rows=[ROWS[0], dict(ROWS[1], key="Z"), ROWS[0]])
    env = {"PYTHONPATH": str(REPO)}  # this checkout, whatever the environment has installed
    run = run_cli("cgr", "validate-dataset", "good/my_mcqa.yaml", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == "good/my_mcqa.yaml: ok"
    run = run_cli("cgr", "validate-dataset", "good/my_mcqa.yaml", "bad/my_mcqa.yaml",
                  cwd=tmp_path, env=env)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stdout.splitlines()[-3:] == [
        "bad/my_mcqa.jsonl:line 3: item u1: field 'uid': duplicate id (first at line 1)",
        "bad/my_mcqa.yaml: task my_mcqa: test (test_split): 1 item, letters A-D, 4 choices",
        "bad/my_mcqa.yaml: 2 problems",
    ]
    assert ("bad/my_mcqa.jsonl:line 2: item u2: field 'key': gold 'Z' (letter) does not name "
            "one of 3 choices; the letters are A, B, C") in run.stdout


def test_unreadable_data_files_are_messages(tmp_path):
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "x.jsonl.gz").write_bytes(b"not gzip")
    (tmp_path / "d.json").write_text('{"a": 1}')
    (tmp_path / "adir.jsonl").mkdir()
    path = dataset(tmp_path, rows=None, body="dataset_kwargs:\n  data_files: {test: bin.jsonl, "
                   "train: x.jsonl.gz, dev: d.json, other: adir.jsonl}\n")
    _, lines = lines_of(path)
    assert lines[0] == (f"{path}:line 4: field 'dataset_kwargs.data_files.other': "
                        f"{tmp_path / 'adir.jsonl'} is a folder without .arrow files; name a "
                        "data file, or a folder that datasets' save_to_disk wrote for one split")
    assert lines[1].startswith(f"{tmp_path / 'bin.jsonl'}: cannot read data file: 'utf-8' codec")
    assert lines[2].startswith(f"{tmp_path / 'x.jsonl.gz'}: cannot read data file: Not a "
                               "gzipped file")
    assert lines[3] == (f"{tmp_path / 'd.json'}: a .json data file must hold a list of objects "
                        "(or JSON lines)")
    assert lines[-1] == f"{path}: 4 problems"
