"""``cgr study`` without running anything: the study file's checks, the cells, the plan and its
cost, and the measured model speeds (timed on the project's tiny offline model)."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from cgr_plugin._paths import TASKS_DIR
from cgr_plugin.cli import cgr_main
from cgr_plugin.cli.study import shipped_studies, study_file
from cgr_plugin.models.registry import load_registry
from cgr_plugin.run.study import StudyError, format_plan, load_study, make_plan
from cgr_plugin.run.study.cells import _portable, _portable_bases, plan_cells
from cgr_plugin.run.study.cost import program_calls
from cgr_plugin.run.study.selection import eval_item_args, select_items
from cgr_plugin.run.study.speeds import Speed, SpeedCache, measure_speed, model_key

from .conftest import REPO, has_module

ARC = ["Mercury_417466", "Mercury_7081673", "Mercury_7239733"]  # the first ARC-Easy test items


def _study(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = ("name: t\ntasks: [cgr_arc_easy]\nlimit: 2\nsolvers: [smollm2-135m, qwen2.5-coder-0.5b]\n"
        "generators: [qwen2.5-coder-1.5b]\n")


@pytest.mark.parametrize("text, message", [
    ("name: t\ntasks: [cgr_arc_easy]\nsolver: [smollm2-135m]\n",
     r"s.yaml:line 3: unknown key 'solver' \(did you mean 'solvers'\?\)"),
    ("name: t\ntasks: [cgr_arc_esy]\nsolvers: [smollm2-135m]\n",
     r"s.yaml:line 2: unknown task or tag 'cgr_arc_esy' \(did you mean 'cgr_arc_easy'\?\)"),
    ("name: t\ntasks: [cgr_arc_easy]\nsolvers: [smollm2-13m]\n",
     r"s.yaml:line 3: solvers\[0\]: 'smollm2-13m' is not in the model registry \(did you mean "
     r"'smollm2-135m'\?\)"),
    ("name: t\ntasks: [cgr_arc_easy]\nsolvers: [{model: hff, args: {pretrained: x}}]\n",
     r"model 'hff' is neither in the model registry nor an lm-eval model "
     r"\(did you mean 'hf'\?\)"),
    (BASE + "generator_prompts: [per_opton]\n",
     r"line 6: unknown generator prompt family 'per_opton' \(did you mean 'per_option'\?\)"),
    (BASE + "controls: [cott]\n", r"unknown control 'cott'.*\(did you mean 'cot'\?\)"),
    (BASE + "controls: ['fixed:judge_each']\n",
     r"no fixed program named 'judge_each' \(did you mean 'judge_each_option'\?\)"),
    (BASE + "model_args: {solver: x}\n", r"line 6: model_args.solver: the study sets it"),
    (BASE + "model_args: {budgt: 3}\n",
     r"line 6: model_args: cgr: unknown model_arg 'budgt' \(did you mean 'budget'\?\)"),
    (BASE + "model_args: {budget: many}\n", r"model_arg budget must be an integer"),
    (BASE + "limit: 0\n", r"limit must be a whole number"),
    ("name: t\ntasks: [cgr_arc_easy]\nsolvers: [smollm2-135m]\ncontrols: [budget_matched]\n",
     r"budget_matched .* needs generators"),
    (BASE + "report: {resample: 10}\n", r"report: unknown key 'resample' \(did you mean "
                                        r"'resamples'\?\)"),
    ("tasks: [cgr_arc_easy]\nsolvers: [smollm2-135m]\n", r"missing required key 'name'"),
])
def test_a_bad_study_file_is_refused_with_its_line_and_a_close_match(tmp_path, text, message):
    with pytest.raises(StudyError, match=message):
        load_study(_study(tmp_path, text))


def test_an_item_id_that_is_not_in_the_task_is_refused_before_anything_runs(tmp_path):
    spec = load_study(_study(tmp_path, BASE + "items: {cgr_arc_easy: [Mercury_7081673, nope]}\n"))
    with pytest.raises(StudyError, match=r"items.cgr_arc_easy: no item 'nope' in the test split "
                                         r"of cgr_arc_easy \(2376 items"):
        select_items(spec)


def test_tags_expand_to_their_tasks_as_cgr_eval_finds_them(tmp_path):
    spec = load_study(_study(tmp_path, "name: t\ntasks: [cgr_paper, 'cgr_basic_skills_a*']\n"
                                       "solvers: [smollm2-135m]\n"))
    assert spec.tasks == ("cgr_failuresensoriq", "cgr_mmlu_pro", "cgr_openbookqa",
                          "cgr_timeseriesexam", "cgr_basic_skills_arithmetic")
    assert spec.task_files["cgr_mmlu_pro"][1] == "test"


def test_explicit_item_ids_become_lm_eval_sample_indices(tmp_path):
    spec = load_study(_study(tmp_path, "name: t\ntasks: [cgr_arc_easy, cgr_sciq]\nlimit: 1\n"
                             f"items: {{cgr_arc_easy: [{ARC[2]}, {ARC[0]}]}}\n"
                             "solvers: [smollm2-135m]\n"))
    selection = select_items(spec)
    assert [item.id for item in selection["cgr_arc_easy"].items] == [ARC[2], ARC[0]]
    assert json.loads(eval_item_args(spec, selection)[1]) == {"cgr_arc_easy": [2, 0],
                                                              "cgr_sciq": [0]}


def test_metadata_selects_subsets_for_the_items_and_reaches_cgr_eval(tmp_path):
    spec = load_study(_study(tmp_path, "name: t\ntasks: [cgr_mmlu]\nlimit: 3\n"
                             "solvers: [smollm2-135m]\nmetadata: {subsets: [virology]}\n"))
    selection = select_items(spec)
    assert {item.metadata["subject"] for item in selection["cgr_mmlu"].items} == {"virology"}
    args = eval_item_args(spec, selection)
    assert args == ["--limit", "3", "--metadata", '{"subsets":["virology"]}']


def _cells(tmp_path, text):
    spec = load_study(_study(tmp_path, text))
    return spec, plan_cells(spec, ["--limit", "2"])


GRID = BASE + ("generator_prompts: [cgr, per_option]\n"
               "controls: [fixed:judge_each_option, cot, budget_matched]\n")


def test_programs_are_written_once_per_generator_and_family_and_replayed_for_the_others(
        tmp_path):
    spec, cells = _cells(tmp_path, GRID)
    assert [(c.kind, c.name) for c in cells] == [
        ("write", "write-qwen2.5-coder-1.5b.cgr"),
        ("replay", "replay-qwen2.5-coder-1.5b.cgr-qwen2.5-coder-0.5b"),
        ("write", "write-qwen2.5-coder-1.5b.per_option"),
        ("replay", "replay-qwen2.5-coder-1.5b.per_option-qwen2.5-coder-0.5b"),
        ("controls", "controls-smollm2-135m"), ("controls", "controls-qwen2.5-coder-0.5b")]
    args = {c.kind: dict(a.split("=", 1) for a in c.argv[c.argv.index("--model_args") + 1]
                         .split(",")) for c in cells}
    assert args["write"]["solver"] == "smollm2-135m"  # the first solver writes
    assert args["write"]["generator"] == "qwen2.5-coder-1.5b"
    assert args["write"]["controls"] == "budget_matched"  # it depends on the programs
    assert args["replay"]["programs"] == "programs/qwen2.5-coder-1.5b.per_option"
    assert "generator" not in args["replay"]  # no generator is loaded for a replay
    assert args["controls"] == {**args["controls"], "channels": "direct",
                                "controls": "fixed:judge_each_option+cot"}
    assert cells[1].depends_on == cells[0].name
    assert all(f"journal=cells/{c.name}/journal.sqlite" in c.argv[3] for c in cells)
    assert all(c.argv[-4:-2] == ("--output_path", f"cells/{c.name}/out") for c in cells)


def test_cells_of_one_solver_share_direct_answers_through_their_journals(tmp_path):
    _, cells = _cells(tmp_path, GRID)
    by_name = {c.name: c for c in cells}
    smollm2 = by_name["controls-smollm2-135m"]
    assert smollm2.cache_from == ("cells/write-qwen2.5-coder-1.5b.cgr/journal.sqlite",
                                  "cells/write-qwen2.5-coder-1.5b.per_option/journal.sqlite")
    assert f"cache_from={'+'.join(smollm2.cache_from)}" in smollm2.argv[3]
    # a family added later changes what the cgr family's cells share, not their hashes:
    # a finished cell stays finished
    _, one_family = _cells(tmp_path, GRID.replace("[cgr, per_option]", "[cgr]"))
    for cell in one_family:
        assert cell.settings_hash == by_name[cell.name].settings_hash
        assert len(cell.cache_from) < len(by_name[cell.name].cache_from)


def test_a_changed_setting_changes_the_hashes_of_the_cells_it_decides(tmp_path):
    _, before = _cells(tmp_path, GRID)
    spec = load_study(_study(tmp_path, GRID.replace("limit: 2", "limit: 3")))
    limit = plan_cells(spec, ["--limit", "3"])
    assert all(a.settings_hash != b.settings_hash for a, b in zip(before, limit, strict=True))
    _, budget = _cells(tmp_path, GRID + "model_args: {program_timeout: 5}\n")
    assert all(a.settings_hash != b.settings_hash for a, b in zip(before, budget, strict=True))
    _, again = _cells(tmp_path, GRID)
    assert [c.settings_hash for c in again] == [c.settings_hash for c in before]


def test_a_study_without_generators_runs_direct_and_controls_per_solver_and_seeds_multiply(
        tmp_path):
    _, cells = _cells(tmp_path, "name: t\ntasks: [cgr_arc_easy]\nsolvers: [smollm2-135m]\n")
    assert [(c.kind, c.name) for c in cells] == [("direct", "direct-smollm2-135m")]
    _, cells = _cells(tmp_path, GRID + "seeds: [1, 2]\n")
    assert len(cells) == 12 and cells[0].name.endswith(".cgr-seed1")
    assert "seed=2" in cells[-1].argv[3] and cells[6].package.endswith(".seed2")


def test_solver_calls_per_program_follow_the_family_and_the_options():
    assert program_calls("per_option", 4, budget=8) == 4
    assert program_calls("per_option", 10, budget=8) == 8  # the budget caps the sketch
    assert program_calls("cgr", 4, budget=8) == 0.5
    assert program_calls("someone_elses", 4, budget=8) == 4


def test_llama_cpp_prompts_prefill_only_what_the_prompt_before_does_not_share():
    from cgr_plugin.run.study.cost import _new_tokens

    shared = "You write one program for this item. " * 40  # a family's fixed text, item last
    prompts = [shared + "Item: 2 + 2?", shared + "Item: 3 + 5?", "another prompt"]
    assert _new_tokens(prompts) == [len(prompts[0]) / 4, len("3 + 5?") / 4,
                                    len("another prompt") / 4]  # it shares nothing


def _plan(tmp_path, text, speeds):
    return make_plan(load_study(_study(tmp_path, text)), speeds=speeds, say=lambda _: None)


def test_the_plan_counts_calls_and_estimates_time_from_cached_speeds(tmp_path):
    cache = SpeedCache(tmp_path / "speeds.json")
    spec = load_study(_study(tmp_path, GRID))
    speed = Speed(load_seconds=2.0, prefill_tokens_per_s=100.0, decode_tokens_per_s=10.0)
    registry = load_registry()
    for entry in (*spec.solvers, *spec.generators):
        cache.put(model_key(entry, registry[entry.model]), speed)
    plan = make_plan(spec, speeds=cache, say=lambda _: None)
    write = plan.costs["write-qwen2.5-coder-1.5b.cgr"]
    assert write.generator_calls == 2 and write.solver_calls["direct"] == 2
    per_option = plan.costs["write-qwen2.5-coder-1.5b.per_option"]
    assert per_option.solver_calls["programs"] == 8  # 2 ARC items, 4 options each
    assert "direct" not in per_option.solver_calls and per_option.cached_direct == 2
    controls = plan.costs["controls-smollm2-135m"]
    assert controls.solver_calls == {"fixed:judge_each_option": 8, "cot": 2}
    assert all(cost.seconds and cost.seconds > 2.0 for cost in plan.costs.values())
    # 2 programs of ~350 tokens at 10 tokens/s, and 2 model loads: over a minute
    assert write.seconds > 2 * 35 + 4
    text = format_plan(plan, tmp_path / "out")
    assert "cells (6), run in this order:" in text
    assert re.search(r"total: 2 items; 4 generator calls, \d+ solver calls \(estimated\); "
                     r"estimated time \d+m\d\ds", text)
    assert "smollm2-135m: load 2.0 s, prefill 100 tok/s, decode 10.0 tok/s (cached" in text
    command = next(line for line in text.splitlines() if "cgr-eval" in line).strip()
    assert shlex.split(command)[:4] == ["cd", str(tmp_path / "out"), "&&", "cgr-eval"]


def test_a_model_that_is_not_here_gets_no_estimate_and_says_why(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    plan = _plan(tmp_path, "name: t\ntasks: [cgr_arc_easy]\nlimit: 1\n"
                           "solvers: [qwen2.5-1.5b]\n", SpeedCache(tmp_path / "speeds.json"))
    assert plan.estimated_seconds() is None
    assert plan.speeds["qwen2.5-1.5b"] == (None, "no estimate (not available offline: not in "
                                                 "the Hugging Face cache (needs the hub once))")
    assert "estimated time unknown (a model has no measured speed" in format_plan(plan, tmp_path)


def test_speeds_are_cached_per_machine(tmp_path):
    cache = SpeedCache(tmp_path / "speeds.json")
    speed = Speed(1.0, 50.0, 5.0, "2026-12-02 10:00:00")
    cache.put("m:1", speed)
    assert SpeedCache(tmp_path / "speeds.json").get("m:1") == speed
    other = SpeedCache(tmp_path / "speeds.json")
    other.machine = "another|machine"
    assert other.get("m:1") is None
    other.put("m:1", Speed(9.0, 1.0, 1.0))
    assert cache.get("m:1") == speed  # each machine keeps its own figure


@pytest.mark.skipif(not has_module("transformers"), reason="needs the hf extra")
def test_measure_speed_times_a_real_backend(tmp_path):
    from cgr_plugin.models.factory import make_backend
    from cgr_plugin.testing import tiny_llama

    folder = tiny_llama(tmp_path / "tiny")
    backend, _ = make_backend("hf", {"pretrained": str(folder), "dtype": "float32",
                                     "device": "cpu"})
    speed = measure_speed(backend)
    assert speed.load_seconds > 0 and speed.prefill_tokens_per_s > 0
    assert speed.decode_tokens_per_s > 0 and speed.measured_at
    assert speed.seconds(1000, 0) == pytest.approx(1000 / speed.prefill_tokens_per_s)


def test_every_shipped_study_loads_and_is_found_by_name(capsys):
    assert {"smoke", "cpu_default", "paper_parity"} <= set(shipped_studies())
    for name in shipped_studies():
        spec = load_study(study_file(name))
        assert spec.name == name
    cpu = load_study(study_file("cpu_default"))
    assert len(cpu.tasks) >= 8 and {"cgr_mmlu_pro", "cgr_aqua_rat"} <= set(cpu.tasks)
    assert [s.label for s in cpu.solvers] == ["smollm2-135m", "qwen2.5-coder-0.5b",
                                              "qwen2.5-coder-1.5b"]
    assert cpu.limit == 25 and cpu.families == ("cgr", "per_option")
    assert len(load_study(study_file("paper_parity")).solvers) == 6
    assert study_file(str(REPO / "studies" / "smoke.yaml")) == REPO / "studies" / "smoke.yaml"
    assert study_file("smoke.yaml") == study_file("smoke")


def test_cgr_study_dry_run_prints_the_plan_without_loading_a_model(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("CGR_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as done:
        cgr_main(["study", "smoke", "--dry-run", "--no-measure", "--out", str(tmp_path / "o")])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "cells (6), run in this order:" in out and "no estimate (not measured yet" in out
    assert not (tmp_path / "o").exists()  # a dry run writes nothing
    with pytest.raises(SystemExit) as done:
        cgr_main(["study", "no_such_study"])
    assert done.value.code == 2
    assert "no study file 'no_such_study'" in capsys.readouterr().err


def test_cell_hashes_do_not_depend_on_where_the_study_and_cgr_plugin_are(tmp_path):
    """A study folder cloned elsewhere (another checkout, a worktree) finds its finished cells:
    the hashes name cgr-plugin's task folder and the study's own folder by role, in the files
    they digest and in the command (a path-valued model_arg is there as an absolute path)."""
    hashes = []
    for folder, text in (("a", "x"), ("b", "x"), ("c", "changed")):
        (tmp_path / folder / "tpl").mkdir(parents=True)
        (tmp_path / folder / "tpl" / "note.txt").write_text(text)
        _, cells = _cells(tmp_path / folder, GRID + "model_args: {template_dir: tpl}\n")
        assert str((tmp_path / folder / "tpl").resolve()) in " ".join(cells[0].argv)
        hashes.append([c.settings_hash for c in cells])
    assert hashes[0] == hashes[1]
    assert all(a != c for a, c in zip(hashes[0], hashes[2], strict=True))
    bases = _portable_bases(load_study(_study(tmp_path / "a", GRID)))
    task = TASKS_DIR.resolve() / "cgr_arc_easy.yaml"
    assert _portable(str(task), bases) == "cgr-plugin:task_configs/cgr_arc_easy.yaml"
    assert _portable("/elsewhere/tasks.yaml", bases) == "/elsewhere/tasks.yaml"
    study_folder = str((tmp_path / "a").resolve())
    assert _portable(study_folder + "2/tpl", bases) == study_folder + "2/tpl"
    assert _portable(f"template_dir={study_folder}/tpl,x=1", bases) == "template_dir=study:/tpl,x=1"
