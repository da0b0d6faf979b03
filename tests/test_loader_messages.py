"""What a new user reads when a dataset goes wrong: the root problem first, at the line of the
mistake, once, with the hint that fixes it (issue 13's loader fixes)."""

from __future__ import annotations

import json

import pytest

from cgr_plugin.cli.eval_validate import deep_validate
from cgr_plugin.data.items import ItemError
from cgr_plugin.tasks.dataset import load_mcqa_dataset
from cgr_plugin.tasks.task_file import unknown_top_level_keys
from cgr_plugin.tasks.validate import format_report, validate_task_yaml

from .conftest import run_cli

HEAD = "task: cgr_mine\nclass: !function cgr_plugin.tasks.task.CGRTask\n"
ROWS = [{"qid": f"r{i}", "q": f"Question {i}?", "opts": ["yes", "no", "maybe"], "gold": i % 3}
        for i in range(30)]


def write_task(folder, body, rows=ROWS, name="cgr_mine.yaml"):
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / name
    path.write_text(HEAD + body)
    return path


def report_lines(path):
    return format_report(validate_task_yaml(path))


def test_a_yaml_syntax_error_names_the_line_of_the_mistake(tmp_path):
    body = ("dataset_kwargs:\n  data_files: rows.jsonl\n  fields: {question: q, choices: opts,\n"
            "    answer: gold\n" + "".join(f"# note {i}\n" for i in range(5)))
    path = write_task(tmp_path, body)  # 11 lines; the flow mapping opened on line 5 never closes
    assert len(path.read_text().splitlines()) == 11
    first = report_lines(path)[0]
    assert first.startswith(f"{path}:line 5: YAML syntax error: while parsing a flow mapping")
    assert first.endswith("(the parser gave up at the end of the file)")


def test_duplicate_ids_are_grouped_like_other_repeated_problems(tmp_path):
    rows = [{**row, "qid": "same"} for row in ROWS]
    path = write_task(tmp_path, "dataset_kwargs:\n  data_files: rows.jsonl\n"
                      "  fields: {id: qid, question: q, choices: opts, answer: gold}\n", rows)
    lines = report_lines(path)
    shown = [line for line in lines if "duplicate id (first at line 1)" in line]
    assert len(shown) == 5
    data = tmp_path / "rows.jsonl"
    assert (f"{data}: field 'qid': duplicate id -- 24 more like this at line 7, line 8, line 9, "
            "line 10, line 11, line 12, line 13, line 14, line 15, line 16, ... (14 more) "
            "(--all lists each)") in lines
    assert lines[-1] == f"{path}: 29 problems"


def test_a_misspelt_preprocess_function_is_one_problem_with_the_hint(tmp_path):
    (tmp_path / "fix.py").write_text("def fix_row(row):\n    return row\n")
    path = write_task(tmp_path, "dataset_kwargs:\n  data_files: rows.jsonl\n"
                      "  preprocess: !function fix.fix_rw\n"
                      "  fields: {question: q, choices: opts, answer: gold}\n")
    lines = report_lines(path)
    assert lines[0].startswith(f"{path}:line 5: field 'dataset_kwargs.preprocess': !function "
                               "fix.fix_rw cannot be imported: AttributeError")
    assert lines[0].endswith("did you mean 'fix_row'?")
    assert lines[1:] == [f"{path}: split test: rows not read; fix the problems above first",
                         f"{path}: 1 problem"]
    path.write_text(path.read_text().replace("fix.fix_rw", "fx.fix_row"))
    assert report_lines(path)[0].endswith("did you mean 'fix'?")  # the module next to the YAML


def test_a_mapping_typo_is_reported_first_and_once_at_run_time_too(tmp_path):
    rows = [{"q": r["q"], "opts": r["opts"], "answerC": r["gold"]} for r in ROWS]
    path = write_task(tmp_path, "dataset_kwargs:\n  data_files: rows.jsonl\n"
                      "  fields: {question: q, choices: opts, answer: answerc}\n", rows)
    lines = report_lines(path)
    assert lines[0].startswith(f"{path}:line 5: field 'dataset_kwargs.fields.answer': no row of")
    assert "did you mean 'answerC'?" in lines[0]
    assert lines[-1] == f"{path}: 1 problem"
    with pytest.raises(ItemError, match=r"did you mean 'answerC'\?.*not listed one by one\)$"):
        load_mcqa_dataset(config_source=str(path))


def test_keys_are_listed_once_and_rows_named_by_id(tmp_path):
    ((_, message),) = unknown_top_level_keys({"tasks": "x"})
    allowed = message.split("lm-eval's task keys: ")[1].rstrip(")").split(", ")
    assert len(allowed) == len(set(allowed)) and "tag" in allowed
    (tmp_path / "fix.py").write_text("def fix_row(row):\n    raise KeyError('answer')\n")
    path = write_task(tmp_path, "dataset_kwargs:\n  data_files: rows.jsonl\n"
                      "  preprocess: !function fix.fix_row\n"
                      "  fields: {id: qid, question: q, choices: opts, answer: gold}\n")
    assert report_lines(path)[0] == (f"{tmp_path / 'rows.jsonl'}:line 1: item r0: preprocess "
                                     "function failed: KeyError: 'answer'")


@pytest.mark.parametrize("fmt, golds, hint", [
    ("index", [1, 2, 3], "if they count from 1, set fields.answer_format: index1"),
    ("index1", [0, 1, 2], "if they count from 0, set fields.answer_format: index"),
])
def test_golds_in_the_other_numbering_get_the_hint(tmp_path, fmt, golds, hint):
    rows = [{**row, "gold": golds[i % 3]} for i, row in enumerate(ROWS[:6])]
    path = write_task(tmp_path, "dataset_kwargs:\n  data_files: rows.jsonl\n"
                      f"  fields: {{question: q, choices: opts, answer: gold, "
                      f"answer_format: {fmt}}}\n", rows)
    errors = [line for line in report_lines(path) if "does not name one of" in line]
    assert len(errors) == 2 and all(line.endswith(hint) for line in errors)
    rows[0]["gold"] = 7  # one gold that fits neither numbering: no hint
    path = write_task(tmp_path, path.read_text().removeprefix(HEAD), rows)
    assert not [line for line in report_lines(path) if hint in line]


def test_cgr_eval_on_a_broken_yaml_is_an_error_not_a_traceback(tmp_path):
    (tmp_path / "cgr_broken.yaml").write_text("task: cgr_broken\ndataset_kwargs:\n"
                                              "  fields: {question: q,\n")
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_broken", "--include_path",
                  str(tmp_path), "--limit", "1", "--confirm_run_unsafe_code", cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "cgr-eval: error: Tasks not found" in run.stderr
    assert f"`cgr validate-dataset {tmp_path / 'cgr_broken.yaml'}` gives the line" in run.stderr


def test_cgr_eval_validate_renders_the_first_prompt(capsys):
    assert deep_validate(["cgr_basic_skills_pattern"], []) == 0
    out = capsys.readouterr().out
    assert "ok    cgr_basic_skills_pattern: 534 items\n" in out
    assert ("      | Question: 2 4 6 8\n      | A. 14\n" in out
            and "      | Answer with the letter of the correct option (A, B, C, D) only." in out)


def test_save_to_disk_folders_and_arrow_files_are_read(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"question": r["q"], "choices": r["opts"], "answer": r["gold"]} for r in ROWS[:4]]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(
        str(tmp_path / "both"))
    for data in ("saved", next((tmp_path / "saved").glob("*.arrow")).name):
        where = "saved" if data == "saved" else f"saved/{data}"
        path = write_task(tmp_path, f"dataset_kwargs:\n  data_files: {where}\n")
        docs = load_mcqa_dataset(config_source=str(path))["test"]
        assert [d["answer"] for d in docs] == ["A", "B", "C", "A"]
    path = write_task(tmp_path, "dataset_kwargs:\n  data_files: both\n")
    assert "holds the splits test (a DatasetDict); name one folder per split, e.g. " \
           "data_files: {test: both/test}" in report_lines(path)[0]
