"""Reading run folders back: a damaged samples file is named with its path and line in
``cgr report``'s error, and lines of other filter pipelines are read without scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cgr_plugin.analysis.runs import RunError, iter_logged
from cgr_plugin.cli import cgr_main

from .analysis_run_folder import SCORER, write_run_folder

SAMPLES = "samples_cgr_arc_easy_2024-05-19T10-00-00.000000.jsonl"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_run_folder(tmp_path_factory.mktemp("runs") / "run")


@pytest.fixture
def run(pristine, tmp_path) -> Path:
    """A copy of the run folder that a test may damage."""
    return Path(shutil.copytree(pristine, tmp_path / "run"))


def _report_error(run: Path, tmp_path: Path, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        cgr_main(["report", str(run), "--out", str(tmp_path / "rep"), "--resamples", "50"])
    assert done.value.code == 2
    assert not (tmp_path / "rep" / "summary.json").exists()
    return capsys.readouterr().err


def _rewrite(path: Path, edit) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))


def test_a_half_written_last_line_is_named(run, tmp_path, capsys):
    path = run / "gen-g" / SAMPLES
    _rewrite(path, lambda lines: [*lines[:-1], lines[-1][:len(lines[-1]) // 2]])
    error = _report_error(run, tmp_path, capsys)
    assert f"{path}: line 50 is cut short" in error  # 10 items x 5 filter pipelines


def test_a_line_that_is_not_json_is_named(run, tmp_path, capsys):
    path = run / "gen-g" / SAMPLES
    _rewrite(path, lambda lines: [*lines[:2], b"{'doc_id': 2, oops\n", *lines[3:]])
    error = _report_error(run, tmp_path, capsys)
    assert f"{path}: line 3 is not JSON" in error


@pytest.mark.parametrize("line, why", [
    (b"[1, 2]\n", "is JSON but not an lm-eval sample"),
    (b'{"doc_id": 0, "resps": [["C"]]}\n', "is not a cgr record"),
    (b'{"doc_id": 0}\n', "is not a cgr record"),
])
def test_a_line_that_is_json_but_not_a_record_is_named(run, tmp_path, capsys, line, why):
    path = run / "sciq" / "samples_cgr_sciq_2024-05-19T13-00-00.000000.jsonl"
    _rewrite(path, lambda lines: [*lines, line])
    error = _report_error(run, tmp_path, capsys)
    assert f"{path}: line 6 {why}" in error


def test_bytes_that_are_not_utf8_are_named(run, tmp_path, capsys):
    path = run / "gen-g" / SAMPLES
    _rewrite(path, lambda lines: [lines[0], b'{"doc_id": "\xff\xfe"}\n', *lines[1:]])
    assert f"{path}: line 2 is not UTF-8" in _report_error(run, tmp_path, capsys)


def test_recorded_scores_that_are_not_numbers_are_named(run, tmp_path, capsys):
    path = run / "gen-g" / SAMPLES

    def corrupt(lines):
        sample = json.loads(lines[10])  # the assisted pipeline's first line
        outcome = json.loads(sample["filtered_resps"][0])
        outcome["scores"] = {SCORER: "high"}
        sample["filtered_resps"] = [json.dumps(outcome)]
        return [*lines[:10], (json.dumps(sample) + "\n").encode(), *lines[11:]]

    _rewrite(path, corrupt)
    assert f"{path}: line 11 has plugin scores that are not numbers" in _report_error(
        run, tmp_path, capsys)


def test_lines_of_another_filter_pipeline_carry_the_record_but_no_scores(run):
    path = run / "gen-g" / SAMPLES

    def plain_letters(lines):
        out = []
        for line in lines:
            sample = json.loads(line)
            if sample["filter"] == "assisted":  # as if a user's own regex pipeline wrote it
                sample["filter"], sample["filtered_resps"] = "my_regex", ["C"]
            out.append((json.dumps(sample) + "\n").encode())
        return out

    _rewrite(path, plain_letters)
    items = [i for i in iter_logged([run]) if i.record.solver == "solver-s"
             and i.task == "cgr_arc_easy"]
    assert len(items) == 10
    assert all("assisted" not in i.scores and "assisted_fallback" in i.scores for i in items)


def test_a_folder_without_samples_says_how_to_make_them(tmp_path):
    with pytest.raises(RunError, match="--log_samples"):
        list(iter_logged([tmp_path]))
