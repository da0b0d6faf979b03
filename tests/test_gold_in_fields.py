"""A task that hands the gold to programs (through metadata, context or payload) is refused by
``cgr validate-dataset`` and at load; a field that mostly equals the gold is a warning."""

from __future__ import annotations

import json
import logging

import pytest

from cgr_plugin.data.items import ItemError
from cgr_plugin.tasks.dataset import load_mcqa_dataset
from cgr_plugin.tasks.validate import validate_main

from .conftest import REPO, run_cli

HEAD = "task: my_mcqa\nclass: !function cgr_plugin.tasks.task.CGRTask\n"
OPTIONS = [["Venus", "Mars", "Jupiter", "Saturn"], ["6", "8", "10", "12"],
           ["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], ["red", "blue", "green", "gray"]]


def _rows(n: int = 12) -> list[dict]:
    rows = []
    for i in range(n):
        options = OPTIONS[i % len(OPTIONS)]
        gold = "ABCD"[(i * 7) % 4]
        rows.append({"uid": f"u{i}", "stem": f"Question {i}?", "options": options, "key": gold,
                     "key_copy": gold, "topic": f"t{i % 3}",
                     "gold_text": options["ABCD".index(gold)],
                     "hint": gold if i % 4 else "ABCD"[(i * 7 + 1) % 4],  # 3 in 4 items
                     "extra": {"key": gold, "n": i}})
    return rows


def _task(folder, fields: str, rows: list[dict] | None = None):
    (folder / "my_mcqa.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in (rows or _rows())), encoding="utf-8")
    path = folder / "my_mcqa.yaml"
    path.write_text(HEAD + "dataset_kwargs:\n  data_files: my_mcqa.jsonl\n"
                    f"  fields:\n    id: uid\n    question: stem\n    choices: options\n"
                    f"    answer: key\n{fields}", encoding="utf-8")
    return path


@pytest.fixture
def validate(capsys, monkeypatch):
    """``cgr validate-dataset my_mcqa.yaml`` run in the YAML's folder: (exit status, lines)."""
    def run(path):
        monkeypatch.chdir(path.parent)
        code = validate_main([path.name])
        return code, capsys.readouterr().out.splitlines()
    return run


@pytest.mark.parametrize("fields, key, line", [
    ("    metadata: [topic, key]\n", "metadata", 10),
    ("    context: key\n", "context", 10),
])
def test_the_answer_field_mapped_where_programs_see_it_is_refused(validate, tmp_path, fields,
                                                                   key, line):
    path = _task(tmp_path, fields)
    code, out = validate(path)
    assert code == 1, out
    assert (f"my_mcqa.yaml:line {line}: field 'dataset_kwargs.fields.{key}': maps the answer "
            f"field 'key' into {key} ('key'): programs see {key}, so they would read the gold; "
            "map the answer only under fields.answer") in out
    with pytest.raises(ItemError, match=f"line {line}: field 'dataset_kwargs.fields.{key}': "
                                        "maps the answer field 'key'"):
        load_mcqa_dataset(config_source=str(path))


def test_a_payload_with_a_copy_of_the_answer_inside_is_refused(validate, tmp_path):
    code, out = validate(_task(tmp_path, "    payload: extra\n"))
    assert code == 1 and any("payload.key ('extra') equals the gold letter on 12 of 12 items"
                             in o for o in out), out


def test_a_payload_that_holds_the_answer_field_is_refused(validate, tmp_path):
    path = _task(tmp_path, "    payload: extra\n", [
        {**row, "extra": {"key": row["key"]}} for row in _rows()])
    path.write_text(path.read_text().replace("answer: key", "answer: extra.key"))
    code, out = validate(path)
    assert code == 1 and any("maps the answer field 'extra.key' into payload ('extra')" in o
                             for o in out), out


@pytest.mark.parametrize("fields, seen", [
    ("    metadata: [topic, key_copy]\n", "metadata.key_copy ('key_copy') equals the gold "
                                           "letter on 12 of 12 items"),
    ("    context: gold_text\n", "context ('gold_text') equals the gold option's text on 12 of "
                                 "12 items"),
])
def test_a_field_equal_to_the_answer_is_refused_naming_yaml_key_and_line(validate, tmp_path,
                                                                          fields, seen):
    path = _task(tmp_path, fields)
    code, out = validate(path)
    key = fields.split(":")[0].strip()
    assert code == 1, out
    problem = next(o for o in out if seen in o)
    assert problem.startswith(f"my_mcqa.yaml:line 10: field 'dataset_kwargs.fields.{key}': "
                              "split test: ")
    assert problem.endswith("a copy of the answer that programs would read; leave it out of "
                            "metadata, context and payload")
    with pytest.raises(ItemError, match="a copy of the answer"):
        load_mcqa_dataset(config_source=str(path))


def test_a_field_that_mostly_equals_the_gold_is_a_warning(validate, tmp_path, caplog):
    path = _task(tmp_path, "    metadata: [topic, hint]\n", _rows(40))
    code, out = validate(path)
    assert code == 0, out
    assert any(o.startswith("warning: my_mcqa.yaml:line 10: field 'dataset_kwargs.fields."
                            "metadata': split test: metadata.hint ('hint') equals the gold "
                            "letter on ") and "may hand them the gold" in o for o in out), out
    assert out[-1] == "my_mcqa.yaml: ok, 1 warning"
    with caplog.at_level(logging.WARNING):
        assert len(load_mcqa_dataset(config_source=str(path))["test"]) == 40
    assert any("metadata.hint ('hint') equals the gold letter" in r.message
               for r in caplog.records)


def test_fields_that_agree_with_the_gold_by_chance_pass(validate, tmp_path):
    rows = [{**row, "hint": "ABCD"[i % 4]} for i, row in enumerate(_rows(40))]
    code, out = validate(_task(tmp_path, "    metadata: [topic, hint]\n", rows))
    assert (code, out[-1]) == (0, "my_mcqa.yaml: ok"), out


def test_the_cli_refuses_the_answer_in_metadata(tmp_path):
    path = _task(tmp_path, "    metadata: [key]\n")
    run = run_cli("cgr", "validate-dataset", path.name, cwd=tmp_path,
                  env={"PYTHONPATH": str(REPO)})
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "my_mcqa.yaml:line 10: field 'dataset_kwargs.fields.metadata': maps the answer " \
           "field 'key' into metadata" in run.stdout
