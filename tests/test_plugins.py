"""The plugin manager and every hook, with plugins registered in-process."""

from __future__ import annotations

import json
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
