import pytest

from cgr_plugin._paths import TASKS_DIR
from cgr_plugin.cli import main as cli
from cgr_plugin.tasks import lm_eval_hook as _lm_eval_hook

from .conftest import SHARED_DATA, run_cli


def test_task_patterns_and_include_paths_follow_lm_eval_flag_forms():
    argv = ["--model", "cgr", "--tasks", "cgr_arc_easy,cgr_mmlu", "cgr_sciq", "--limit", "2",
            "--include_path=/a:/b"]
    assert cli.task_patterns(argv) == ["cgr_arc_easy", "cgr_mmlu", "cgr_sciq"]
    assert [str(p) for p in cli.include_paths(argv)] == ["/a", "/b", str(TASKS_DIR)]


def test_packaged_task_configs_all_load():
    assert cli.broken_task_yamls([TASKS_DIR]) == []


def test_broken_yaml_is_reported_with_its_reason(tmp_path):
    (tmp_path / "cgr_ok.yaml").write_text("task: cgr_ok\n")
    (tmp_path / "cgr_bad.yaml").write_text("task: [unclosed\n")
    (tmp_path / "cgr_fn.yaml").write_text("task: cgr_fn\nprocess_results: !function nomod.fn\n")
    broken = dict(cli.broken_task_yamls([tmp_path]))
    assert set(broken) == {tmp_path / "cgr_bad.yaml", tmp_path / "cgr_fn.yaml"}
    assert "nomod" in broken[tmp_path / "cgr_fn.yaml"]


def test_cgr_path_and_models(capsys):
    with pytest.raises(SystemExit) as done:
        cli.cgr_main(["path"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == str(TASKS_DIR)
    with pytest.raises(SystemExit):
        cli.cgr_main(["models"])
    assert "qwen2.5-coder-1.5b" in capsys.readouterr().out


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="original source files not present")
def test_cgr_bundle_check(capsys):
    with pytest.raises(SystemExit) as done:
        cli.cgr_main(["bundle", "--source", str(SHARED_DATA), "--check", "sciq"])
    assert done.value.code == 0
    assert "bundle matches the shipped files" in capsys.readouterr().out


def test_cgr_bundle_without_sources_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.cgr_main(["bundle", "--source", str(tmp_path / "nowhere")])
    assert done.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_enable_and_disable_write_and_remove_one_pth(tmp_path, monkeypatch):
    monkeypatch.setattr(_lm_eval_hook, "site_packages", lambda: tmp_path)
    path = _lm_eval_hook.enable()
    assert path == tmp_path / "cgr_plugin_lm_eval.pth"
    assert path.read_text().startswith("import importlib.util")
    assert _lm_eval_hook.disable() == path and not path.exists()
    assert _lm_eval_hook.disable() is None


def test_patched_task_manager_adds_packaged_tasks_to_user_paths(tmp_path):
    seen = {}

    class FakeManager:  # records what lm-eval's TaskManager would receive
        def __init__(self, include_path=None, include_defaults=True):
            seen.update(include_path=include_path, include_defaults=include_defaults)

    _lm_eval_hook.patch_task_manager(FakeManager)
    _lm_eval_hook.patch_task_manager(FakeManager)  # idempotent
    FakeManager(include_path=f"{tmp_path}:/other")
    assert seen["include_path"] == [str(TASKS_DIR), str(tmp_path), "/other"]
    assert seen["include_defaults"] is True


def test_cgr_validate_dataset_exit_codes(tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text('{"question": "Q?", "choices": ["a", "b"], "answer": "B"}\n')
    good = tmp_path / "good.yaml"
    good.write_text("task: good\nclass: !function cgr_plugin.tasks.task.CGRTask\n"
                    "dataset_kwargs: {data_files: d.jsonl}\n")
    with pytest.raises(SystemExit) as done:
        cli.cgr_main(["validate-dataset", str(good)])
    assert done.value.code == 0 and capsys.readouterr().out.endswith(f"{good}: ok\n")
    with pytest.raises(SystemExit) as done:
        cli.cgr_main(["validate-dataset", str(good), str(tmp_path / "none.yaml")])
    assert done.value.code == 1
    assert f"{tmp_path / 'none.yaml'}: 1 problem" in capsys.readouterr().out


def test_a_second_run_into_the_same_output_folder_is_refused_until_the_first_ends(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom cgr_plugin.cli.main import lock_output_folder\n"
         f"h = lock_output_folder(['--output_path', {str(out)!r}])\nprint('held', flush=True)\n"
         "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = run_cli("cgr-eval", "--model", "cgr", "--tasks", "cgr_arc_easy",
                         "--output_path", str(out), "--limit", "1", "--confirm_run_unsafe_code")
        assert second.returncode == 2
        assert f"another run is writing to {out} (pid {holder.pid}" in second.stderr
    finally:
        holder.kill()  # a killed holder leaves no stale lock
        holder.wait()
    from cgr_plugin.cli.main import lock_output_folder

    assert lock_output_folder(["--output_path", str(out)]) is not None
