"""A user's own MCQA dataset, added as YAML + data in a folder of theirs, run through lm-eval."""

from __future__ import annotations

import pytest

from cgr_plugin.record import CGRRecord

from .conftest import REPO, needs_llama, run_cli
from .test_docs_datasets import write_doc_files
from .test_e2e_cli import DIRECT_ONLY, _results, _samples

pytestmark = [pytest.mark.slow, needs_llama]

ROWS = [
    {"uid": "u1", "stem": "Which planet is known as the Red Planet?",
     "options": ["Venus", "Mars", "Jupiter", "Saturn"], "key": 1, "area": "space"},
    {"uid": "u2", "stem": "What gas do plants take in for photosynthesis?",
     "options": ["Oxygen", "Nitrogen", "Carbon dioxide"], "key": 2, "area": "biology"},
    {"uid": "u3", "stem": "How many legs does a spider have?",
     "options": ["6", "8", "10", "12", "4"], "key": 1, "area": "biology"},
]
YAML = """task: cgr_usertoy
class: !function cgr_plugin.tasks.task.CGRTask
tag: [my_suite]
dataset_kwargs:
  data_files: {{test: data/toy.jsonl}}
  fields: {{id: uid, question: stem, choices: options, answer: key, metadata: [area]}}
{extra}"""


@pytest.fixture
def user_folder(tmp_path, write_jsonl):
    folder = tmp_path / "my_tasks"
    (folder / "data").mkdir(parents=True)
    write_jsonl("toy.jsonl", ROWS, folder / "data")
    (folder / "cgr_usertoy.yaml").write_text(YAML.format(extra=""))
    return folder


def test_new_dataset_runs_through_include_path(tmp_path, user_folder):
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_usertoy",
                  "--include_path", str(user_folder), "--output_path", "out",
                  "--log_samples", *DIRECT_ONLY, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert 0.0 <= _results(tmp_path / "out")["results"]["cgr_usertoy"]["acc,direct"] <= 1.0
    samples = _samples(tmp_path / "out", "cgr_usertoy")
    assert sorted(s["doc"]["id"] for s in samples) == ["u1", "u2", "u3"]
    golds = {s["doc"]["id"]: s["target"] for s in samples}
    assert golds == {"u1": "B", "u2": "C", "u3": "B"}


def test_plain_lm_eval_include_path_works_without_the_wrapper_for_tasks(tmp_path, user_folder):
    # Without the opt-in, plain lm_eval cannot know --model cgr, but it can validate our tasks.
    tasks_dir = run_cli("cgr", "path").stdout.strip()
    run = run_cli("lm_eval", "validate", "--tasks", "cgr_arc_easy", "--include_path", tasks_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "All tasks found and valid" in run.stdout


def test_cgr_eval_validate_loads_data(user_folder):
    run = run_cli("cgr-eval", "validate", "--tasks", "cgr_usertoy,cgr_arc_easy",
                  "--include_path", str(user_folder))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok    cgr_usertoy: 3 items" in run.stdout
    assert "ok    cgr_arc_easy: 2376 items" in run.stdout


def test_bad_data_row_is_a_clear_error(tmp_path, user_folder, write_jsonl):
    write_jsonl("toy.jsonl", [ROWS[0], dict(ROWS[1], key=7)], user_folder / "data")
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_usertoy",
                  "--include_path", str(user_folder), *DIRECT_ONLY, cwd=tmp_path)
    assert run.returncode == 2
    assert "toy.jsonl:line 2: item u2: field 'key'" in run.stderr
    run = run_cli("cgr-eval", "validate", "--tasks", "cgr_usertoy",
                  "--include_path", str(user_folder))
    assert run.returncode == 1 and "toy.jsonl:line 2: item u2: field 'key'" in run.stderr


def test_bad_yaml_is_named_not_silently_missing(tmp_path, user_folder):
    (user_folder / "cgr_usertoy.yaml").write_text(YAML.format(extra="  bogus: [unclosed\n"))
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_usertoy",
                  "--include_path", str(user_folder), *DIRECT_ONLY, cwd=tmp_path)
    assert run.returncode != 0
    assert f"task config {user_folder / 'cgr_usertoy.yaml'} cannot be loaded" in run.stderr


def test_unknown_dataset_key_names_file_and_key(tmp_path, user_folder):
    (user_folder / "cgr_usertoy.yaml").write_text(YAML.format(extra="  shufle_seed: 3\n"))
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_usertoy",
                  "--include_path", str(user_folder), *DIRECT_ONLY, cwd=tmp_path)
    assert run.returncode == 2
    assert ("cgr_usertoy.yaml:line 7: field 'dataset_kwargs.shufle_seed': unknown key; did you "
            "mean fields.shuffle_seed?") in run.stderr


def test_tag_selects_user_tasks(tmp_path, user_folder):
    run = run_cli("cgr-eval", "--model", "cgr", "--tasks", "my_suite",
                  "--include_path", str(user_folder), "--output_path", "out", *DIRECT_ONLY,
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(_results(tmp_path / "out")["results"]) == ["cgr_usertoy"]


def test_user_task_of_the_same_name_overrides_the_packaged_one(tmp_path, user_folder):
    (user_folder / "cgr_sciq.yaml").write_text(
        YAML.format(extra="").replace("task: cgr_usertoy", "task: cgr_sciq"))
    run = run_cli("cgr-eval", "validate", "--tasks", "cgr_sciq",
                  "--include_path", str(user_folder))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok    cgr_sciq: 3 items" in run.stdout



def test_docs_example_folder_validates_and_runs(tmp_path):
    """docs/datasets.md's CSV example (numbered options, one shot from a train split), written
    from the docs into its own folder, validated and run as the docs say."""
    write_doc_files(tmp_path)
    run = run_cli("cgr", "validate-dataset", "numbered/my_numbered.yaml", cwd=tmp_path,
                  env={"PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == [
        "numbered/my_numbered.yaml: task my_numbered: test (test_split): 2 items, letters 1-3, "
        "3 choices; train (fewshot_split): 1 item, letters 1-3, 3 choices",
        "numbered/my_numbered.yaml: ok"]
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args", "channels=direct",
                  "--include_path", "numbered", "--tasks", "my_numbered", "--limit", "2",
                  "--output_path", "out", "--log_samples", "--confirm_run_unsafe_code",
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert 0.0 <= _results(tmp_path / "out")["results"]["my_numbered"]["acc,direct"] <= 1.0
    samples = _samples(tmp_path / "out", "my_numbered")
    assert [s["target"] for s in samples] == ["2", "3"]
    for sample in samples:
        assert sample["doc"]["letters"] == ["1", "2", "3"]
        record = CGRRecord.from_json(sample["resps"][0][0])
        prompt = record.direct.prompt
        assert prompt.count("Question:") == 2  # one solved example, then the item
        assert "\nAnswer: 2\n\nQuestion:" in prompt
        assert prompt.startswith("Answer with the number of the correct option (1, 2, 3) only.")
        assert record.direct.status in ("ok", "invalid")
