"""docs/datasets.md is what a new user follows: its files validate, its outputs are real, and it
documents every key the loader accepts."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from cgr_plugin.data.loader import DATASET_KWARGS
from cgr_plugin.data.normalize import ANSWER_FORMATS, LETTER_SCHEMES, FieldMapping
from cgr_plugin.tasks.validate import format_report, validate_task_yaml

from .conftest import REPO

DOC = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"<!-- (file|output): (.+?) -->\n```[a-z]*\n(.*?)```", re.S)


def blocks(kind: str) -> dict[str, str]:
    return {name: body for k, name, body in BLOCK.findall(DOC) if k == kind}


def write_doc_files(folder: Path) -> None:
    """Every file the docs show, at the path the docs give it, under ``folder``."""
    for name, body in blocks("file").items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(body, encoding="utf-8")


@pytest.fixture
def doc_files(tmp_path, monkeypatch):
    write_doc_files(tmp_path)
    monkeypatch.chdir(tmp_path)  # the paths as the docs write them
    return tmp_path


def test_every_documented_dataset_validates(doc_files):
    yamls = [name for name in blocks("file") if name.endswith(".yaml")]
    assert yamls == ["my_mcqa/my_mcqa.yaml", "numbered/my_numbered.yaml"]
    for name in yamls:
        report = validate_task_yaml(Path(name))
        assert not report.problems.errors, format_report(report)


def test_documented_outputs_are_what_the_command_prints(doc_files):
    outputs = blocks("output")
    path = Path("my_mcqa/my_mcqa.yaml")
    assert format_report(validate_task_yaml(path)) == outputs[
        f"cgr validate-dataset {path}"].splitlines()
    data = doc_files / "my_mcqa" / "my_mcqa.jsonl"  # the bad example, as the docs describe it
    data.write_text(data.read_text().replace('"gold": "C"', '"gold": "D"')
                    .replace('"qid": "m3"', '"qid": "m1"'))
    assert format_report(validate_task_yaml(path)) == outputs["bad example"].splitlines()


def test_every_key_and_choice_is_documented():
    for key in DATASET_KWARGS:
        assert f"| `{key}` |" in DOC, key
    for key in (f.name for f in fields(FieldMapping)):
        assert f"| `{key}` |" in DOC, key
    for fmt in ANSWER_FORMATS:
        assert f"`{fmt}`" in DOC, fmt
    for scheme in LETTER_SCHEMES:
        assert f"| `{scheme}`" in DOC, scheme
    for key in ("test_split", "fewshot_split", "num_fewshot", "dataset_path", "dataset_name"):
        assert f"`{key}`" in DOC, key
