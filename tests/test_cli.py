import shlex
import subprocess
import sys

import pytest

from cgr_plugin._paths import TASKS_DIR
from cgr_plugin.cli import cgr_eval
from cgr_plugin.cli import main as cli

from .conftest import SHARED_DATA, run_cli


def _wrapper_options(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", sys.argv[:])  # lm-eval's parser reads and edits sys.argv
    return cgr_eval.read_options(cgr_eval.parse_lm_eval_args(list(argv))[1])


def test_task_patterns_and_include_paths_follow_lm_eval_flag_forms(monkeypatch):
    options = _wrapper_options(monkeypatch, "--model", "cgr", "--tasks", "cgr_arc_easy,cgr_mmlu",
                               "cgr_sciq", "--limit", "2", "--include_path=/a:/b", "-o", "out")
    assert options.command == "run"  # implied, as plain lm_eval implies it
    assert options.task_patterns == ["cgr_arc_easy", "cgr_mmlu", "cgr_sciq"]
    assert [str(p) for p in options.include_paths] == ["/a", "/b"]
    assert options.output_path == "out"
    validate = _wrapper_options(monkeypatch, "validate", "--tasks", "cgr_arc_easy,my_task",
                                "--include_path", "my_tasks")
    assert (validate.command, validate.task_patterns) == ("validate", ["cgr_arc_easy", "my_task"])
    assert cgr_eval.only_cgr_tasks(options.task_patterns)
    assert not cgr_eval.only_cgr_tasks(validate.task_patterns + ["hellaswag"])


def test_a_config_file_counts_where_the_command_line_is_silent(monkeypatch, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("tasks: [cgr_sciq]\noutput_path: from_config\ninclude_path: /cfg\n")
    options = _wrapper_options(monkeypatch, "--config", str(config), "-o", "from_cli")
    assert options.task_patterns == ["cgr_sciq"]
    assert [str(p) for p in options.include_paths] == ["/cfg"]
    assert options.output_path == "from_cli"  # the command line wins, as in lm-eval


def test_usage_errors_are_lm_evals_own(monkeypatch, capsys):
    with pytest.raises(SystemExit) as done:
        _wrapper_options(monkeypatch, "--model", "cgr", "--tasks", "cgr_sciq", "--no_such_flag")
    assert done.value.code == 2
    assert "unrecognized arguments: --no_such_flag" in capsys.readouterr().err


def test_packaged_task_configs_all_load():
    assert cgr_eval.broken_task_yamls([TASKS_DIR]) == []


def test_broken_yaml_is_reported_with_its_reason(tmp_path):
    (tmp_path / "cgr_ok.yaml").write_text("task: cgr_ok\n")
    (tmp_path / "cgr_bad.yaml").write_text("task: [unclosed\n")
    (tmp_path / "cgr_fn.yaml").write_text("task: cgr_fn\nprocess_results: !function nomod.fn\n")
    broken = dict(cgr_eval.broken_task_yamls([tmp_path]))
    assert set(broken) == {tmp_path / "cgr_bad.yaml", tmp_path / "cgr_fn.yaml"}
    assert "nomod" in broken[tmp_path / "cgr_fn.yaml"]


def test_cgr_path_and_models(capsys):
    with pytest.raises(SystemExit) as done:
        cli.cgr_main(["path"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == str(TASKS_DIR)
    with pytest.raises(SystemExit):
        cli.cgr_main(["models"])
    assert "qwen2.5-coder-1.5b" in capsys.readouterr().out


def test_cgr_models_says_which_models_this_machine_has(capsys):
    from cgr_plugin.models.registry import load_registry, offline_status

    with pytest.raises(SystemExit):
        cli.cgr_main(["models"])
    header, *rows = capsys.readouterr().out.splitlines()
    column = header.split().index("offline")
    shown = {row.split()[0]: row.split()[column] for row in rows
             if row.split() and row.split()[0] in load_registry()}
    assert shown == {name: "yes" if offline_status(spec)[0] else "no"
                     for name, spec in load_registry().items()}
    assert shown["qwen2.5-1.5b"] in ("yes", "no") and len(shown) >= 9
    with pytest.raises(SystemExit):
        cli.cgr_main(["models", "--offline"])
    listed = [row.split() for row in capsys.readouterr().out.splitlines()[1:]]
    assert all(row[column] == "yes" for row in listed if row and row[0] in shown)


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
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom cgr_plugin.cli import cgr_eval\n"
         f"h = cgr_eval.lock_output_folder({str(out)!r})\nprint('held', flush=True)\n"
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
    assert cgr_eval.lock_output_folder(str(out)) is not None


def test_a_cgr_error_is_one_line_and_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.cgr_main(["report", str(tmp_path)])  # a folder without samples files
    assert done.value.code == 2
    assert capsys.readouterr().err == (f"cgr report: error: {tmp_path}: no samples_*.jsonl files "
                                       "(run cgr-eval with --output_path and --log_samples)\n")


@pytest.mark.parametrize("bug", [KeyError("spec"), ValueError("bad math")])
def test_a_bug_keeps_its_traceback(bug, monkeypatch):
    from cgr_plugin.models import registry

    def broken_registry(*args, **kwargs):
        raise bug

    monkeypatch.setattr(registry, "load_registry", broken_registry)
    with pytest.raises(type(bug)) as raised:  # not turned into a message and exit status 2
        cli.cgr_main(["models"])
    assert raised.value is bug


def _examples(parser):
    """Each command line of an epilog's examples, continuation lines joined."""
    text = (parser.epilog or "").split("examples:", 1)[-1].replace("\\\n", " ")
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words.pop(0)  # VAR=value prefixes
        if words:
            yield words


def test_every_subcommand_has_examples_that_parse():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    assert set(subparsers) >= {"bundle", "models", "fetch-model", "exec", "report", "export",
                               "enable-lm-eval", "disable-lm-eval", "plugins", "path",
                               "validate-dataset", "sandbox-check"}
    for name, sub in [("cgr", parser), *subparsers.items()]:
        lines = list(_examples(sub))
        own = [w for w in lines if w[0] == "cgr" and (name == "cgr" or w[1] == name)]
        assert own, f"cgr {name}: no example of itself in its epilog"
        for words in (w for w in lines if w[0] == "cgr"):
            args = parser.parse_args(words[1:])  # exits (status 2) on an outdated flag
            assert callable(args.func), words


def test_sandbox_check_runs_the_conformance_suite_and_says_what_was_contained():
    done = run_cli("cgr", "sandbox-check", "bwrap", "--only", "net")
    if "bubblewrap" in done.stderr and done.returncode == 2:
        pytest.skip("no usable bubblewrap here")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sandbox 'bwrap': 4/4 hostile programs contained" in done.stdout
    unknown = run_cli("cgr", "sandbox-check", "no-such-sandbox")
    assert unknown.returncode == 2 and "no-such-sandbox" in unknown.stderr
