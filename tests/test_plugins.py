"""The plugin manager and every hook, with plugins registered in-process."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest

from cgr_plugin import hookimpl, plugins
from cgr_plugin.data.items import MCQAItem
from cgr_plugin.extraction import Extraction
from cgr_plugin.hookspecs import HOOKS
from cgr_plugin.models.backends import Generation
from cgr_plugin.record import CGRRecord, ChannelResult
from cgr_plugin.sandbox.runner import SandboxResult
from cgr_plugin.tasks.scoring import ChannelFilter, process_results

from .conftest import REPO

ITEMS = [MCQAItem(id=f"q{i}", dataset="toy", question=f"Pick {i}?", choices=("x", "y", "z"),
                  answer="B") for i in range(3)]


@pytest.fixture
def plugin():
    """Register a namespace of hooks as a plugin for one test."""
    names = []

    def add(name, **hooks):
        module = types.SimpleNamespace(**{k: hookimpl(v) for k, v in hooks.items()})
        plugins.register(module, name=name)
        names.append(name)
        return module

    yield add
    for name in names:
        plugins.unregister(name)


def _record(direct="B", assisted="C"):
    return CGRRecord(item=ITEMS[0].to_json(), solver="s", generator="g",
                     direct=ChannelResult(status="ok", answer=direct),
                     assisted=ChannelResult(status="ok", answer=assisted),
                     generator_side=ChannelResult(status="ok", answer="B"))


def test_a_scorer_shows_up_in_the_channel_metrics(plugin):
    plugin("same", register_scorers=lambda register: register(
        "same_as_direct", lambda rec, ch: float(rec.channel(
            "assisted" if ch == "assisted_fallback" else ch).answer == rec.direct.answer),
        channels=["assisted", "generator"]))
    record = _record().to_json()
    doc = ITEMS[0].to_doc()
    metrics = {ch: process_results(doc, ChannelFilter(channel=ch).apply([[record]], [doc])[0])
               for ch in ("direct", "assisted", "generator")}
    assert metrics["assisted"]["same_as_direct"] == 0.0
    assert metrics["generator"]["same_as_direct"] == 1.0
    assert "same_as_direct" not in metrics["direct"]  # not one of its channels


def test_a_failing_scorer_costs_its_own_number_only(plugin):
    plugin("bad", register_scorers=lambda register: register("boom", lambda rec, ch: 1 / 0))
    (outcome,), = ChannelFilter(channel="direct").apply([[_record().to_json()]], [{}])
    outcome = json.loads(outcome)
    assert outcome["scores"] == {} and outcome["letter"] == "B"


def test_two_plugins_claiming_one_name_are_both_named(plugin, caplog):
    plugin("first", register_scorers=lambda register: register("dup", lambda r, c: 1.0))
    plugin("second", register_scorers=lambda register: register("dup", lambda r, c: 0.0))
    broken = plugins.registry().broken
    assert "second" in broken and "first" in broken["second"] and "dup" in broken["second"]
    assert "broken" in caplog.text and "second" in caplog.text


def test_strict_mode_turns_a_broken_plugin_into_an_error(plugin, monkeypatch):
    monkeypatch.setenv("CGR_STRICT_PLUGINS", "1")
    with pytest.raises(plugins.PluginError, match="'raiser'"):
        plugin("raiser", register_partitions=lambda register: 1 / 0)
        plugins.registry()


def test_unknown_names_list_what_is_registered():
    with pytest.raises(plugins.PluginError, match="no extractor named 'nope'.*cgr"):
        plugins.extractor("nope")


class ScriptedBackend:
    name = "scripted"

    def __init__(self, args):
        self.args = args

    def generate(self, requests, *, progress=False):
        return [Generation("My answer: option (Z), final: B") for _ in requests]

    def judge(self, prompts):
        return [0.5 for _ in prompts]

    def describe(self):
        return {"backend": "scripted", **self.args}


def last_capital(text, letters, choices=None):
    found = [c for c in text if c in letters]
    return Extraction(found[-1] if found else None, "last_capital")


def test_model_extractor_and_sandbox_plugins_drive_a_run(plugin):
    calls = []

    def fake_run_program(program, item, *, handle_call, limits, seed):
        calls.append(handle_call({"type": "call", "kind": "choose", "prompt": None}))
        return SandboxResult(status="ok", answer=calls[-1]["value"], isolation="in-test")

    plugin("kit", register_models=lambda register: register("scripted", ScriptedBackend),
           register_extractors=lambda register: register("last_capital", last_capital),
           register_sandboxes=lambda register: register("in-test", fake_run_program))
    from cgr_plugin.run.model import CGRLM

    lm = CGRLM(solver="scripted", generator="scripted", extractor="last_capital",
               sandbox="in-test", **{"solver.temperature": "0"})
    assert lm.solver.describe() == {"backend": "scripted", "temperature": "0"}
    records = lm._run_items(ITEMS[:1])
    assert records[0].direct.answer == "B" and records[0].direct.extraction_rule == "last_capital"
    assert records[0].assisted.status == "no_code"  # the scripted generator writes no program
    item_json = {"id": "q", "question": "?", "letters": ["A", "B"], "choices": ["x", "y"]}
    assert fake_run_program("", item_json, handle_call=lambda m: {"value": "B"}, limits=None,
                            seed=0).answer == "B"


def test_every_hook_is_documented_with_its_signature():
    docs = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    for hook in HOOKS:
        assert f"{hook.__name__}(register)" in docs, hook.__name__


def test_a_plugin_normalizer_named_in_a_task_yaml_shapes_the_rows(plugin, tmp_path):
    from cgr_plugin.tasks.dataset import load_mcqa_dataset

    def from_quiz(row):
        return {"id": row["n"], "question": row["q"], "choices": row["opts"].split("|"),
                "answer": row["ok"]}

    plugin("quiz", register_normalizers=lambda register: register("quiz_rows", from_quiz))
    (tmp_path / "quiz.jsonl").write_text(json.dumps(
        {"n": "a1", "q": "Two?", "opts": "1|2|3", "ok": "B"}) + "\n")

    def load(name):
        (tmp_path / "quiz.yaml").write_text(
            "task: quiz\nclass: !function cgr_plugin.tasks.task.CGRTask\ndataset_kwargs:\n"
            f"  data_files: quiz.jsonl\n  normalizer: {name}\n")
        return load_mcqa_dataset(data_files="quiz.jsonl", normalizer=name,
                                 config_source=str(tmp_path / "quiz.yaml"))

    (doc,) = load("quiz_rows")["test"]
    assert (doc["id"], doc["choices"], doc["answer"]) == ("a1", ["1", "2", "3"], "B")
    with pytest.raises(ValueError, match="no normalizer named 'nope'"):
        load("nope")


def test_a_misspelt_hook_registered_by_hand_fails_at_once(plugin):
    with pytest.raises(plugins.PluginError,
                       match="'typo'.*'register_scorer' is not a cgr hook; did you mean "
                             "'register_scorers'"):
        plugin("typo", register_scorer=lambda register: register("never", lambda r, c: 1.0))
    assert plugins.manager().get_plugin("typo") is None  # left unregistered
    assert "never" not in plugins.registry().entries["scorers"]


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A plugin module on sys.path, found through a real ``cgr`` entry point, loaded afresh."""
    from importlib.metadata import EntryPoint

    def install(source: str) -> str:
        (tmp_path / "cgr_typo_plugin.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        point = EntryPoint(name="typo", value="cgr_typo_plugin", group=plugins.ENTRY_POINT_GROUP)
        monkeypatch.setattr(plugins, "entry_points",
                            lambda group: [point] if group == point.group else [])
        for name, fresh in (("_manager", None), ("_registry", None), ("_load_failures", {})):
            monkeypatch.setattr(plugins, name, fresh)  # the session's manager comes back after
        return "typo (cgr_typo_plugin)"

    yield install
    sys.modules.pop("cgr_typo_plugin", None)


TYPO_PLUGIN = """\
from cgr_plugin import hookimpl

@hookimpl
def register_scorers(register):
    register("typo_score", lambda record, channel: 1.0)

@hookimpl
def register_partition(register):  # misspelt: the hook is register_partitions
    register("typo_part", lambda group: True)
"""


def test_an_installed_plugin_with_a_misspelt_hook_is_broken_and_skipped(installed_plugin,
                                                                        capsys, caplog):
    from cgr_plugin.cli import main as cli

    label = installed_plugin(TYPO_PLUGIN)
    reg = plugins.registry()
    assert "register_partition" in reg.broken[label] and "register_partitions" in reg.broken[label]
    assert "typo_score" not in reg.entries["scorers"]  # the whole plugin is skipped
    assert "broken" in caplog.text and label in caplog.text
    with pytest.raises(SystemExit) as done:
        cli.cgr_main(["plugins"])
    assert done.value.code == 1
    assert f"BROKEN {label}: hook 'register_partition' is not a cgr hook" in capsys.readouterr().out


def test_strict_mode_makes_a_misspelt_hook_an_error(installed_plugin, monkeypatch):
    monkeypatch.setenv("CGR_STRICT_PLUGINS", "1")
    label = installed_plugin(TYPO_PLUGIN)
    with pytest.raises(plugins.PluginError, match=re.escape(label) + ".*'register_partition'"):
        plugins.registry()
