"""The ``cgr`` model's settings: one declaration, lm-eval's model_args read from it, the docs
generated from it, and the model configured by it (with an in-test plugin backend)."""

from __future__ import annotations

import json
import re
import sqlite3
import types

import pytest
from lm_eval.api.instance import Instance
from lm_eval.utils import simple_parse_args_string

from cgr_plugin import hookimpl, plugins
from cgr_plugin.data.items import MCQAItem
from cgr_plugin.models.backends import Generation
from cgr_plugin.models.registry import DirectSettings
from cgr_plugin.prompts import generator_template, template_hash
from cgr_plugin.record import CGRRecord
from cgr_plugin.run.journal import Journal
from cgr_plugin.run.settings import (
    BACKEND_SCOPES,
    RunSettings,
    SettingsError,
    default_text,
    markdown_table,
    options,
)

from .conftest import REPO

README = REPO / "README.md"
ITEMS = [MCQAItem(id=f"q{i}", dataset="toy", question=f"Pick {i}?", choices=("x", "y", "z"),
                  answer="B") for i in range(3)]


def parse(model_args: str) -> RunSettings:
    """What ``--model_args`` on lm-eval's command line becomes."""
    return RunSettings.from_model_args(simple_parse_args_string(model_args))


# -- reading model_args ---------------------------------------------------------------------------
def test_defaults_are_the_documented_ones():
    settings = RunSettings.from_model_args({})
    assert (settings.solver, settings.generator, settings.channels) == (
        "smollm2-135m", "qwen2.5-coder-1.5b", "all")
    assisted = settings.assisted()
    assert (assisted.budget, assisted.fallback, assisted.generator_max_tokens, assisted.seed,
            assisted.concurrency, assisted.solver_batch, assisted.batch_wait_ms,
            assisted.extractor, assisted.sandbox) == (8, "none", 768, 0, 4, 16, 5.0, "cgr",
                                                      "bwrap")
    assert (assisted.limits.wall_seconds, assisted.limits.memory_bytes) == (20.0, 1024 << 20)
    assert (settings.chunk_size, settings.retries, settings.retry_backoff) == (16, 2, 1.0)
    assert settings.cache_path is None and settings.backend_defaults() == {}


def test_values_cast_by_lm_eval_and_strings_from_python_give_the_same_settings():
    cast = parse("budget=3,budget_matched=True,program_timeout=5,batch_wait_ms=2.5,seed=7")
    written = RunSettings.from_model_args({"budget": "3", "budget_matched": "true",
                                           "program_timeout": "5", "batch_wait_ms": "2.5",
                                           "seed": "7"})
    assert cast == written
    assert (cast.budget, cast.budget_matched, cast.program_timeout, cast.seed) == (3, True, 5.0,
                                                                                   7)


@pytest.mark.parametrize("text,expected", [(True, True), ("True", True), ("true", True),
                                           ("1", True), (False, False), ("False", False),
                                           ("false", False), ("no", False)])
def test_booleans_in_every_spelling(text, expected):
    assert RunSettings.from_model_args({"budget_matched": text}).budget_matched is expected


def test_none_or_an_empty_value_keeps_the_default():
    settings = parse("solver=none,budget=None,journal=none,generator=")
    assert (settings.solver, settings.budget, settings.journal, settings.generator) == (
        "smollm2-135m", 8, None, "qwen2.5-coder-1.5b")


def test_backend_arguments_pass_through_unchanged():
    settings = RunSettings.from_model_args({"solver": "hf", "solver.pretrained": "x/y",
                                            "solver.batch_size": 4, "generator.base_url": "u",
                                            "generator.n_ctx": "4096"})
    assert settings.solver_args == {"pretrained": "x/y", "batch_size": 4}
    assert settings.generator_args == {"base_url": "u", "n_ctx": "4096"}  # not cast


def test_only_given_llama_and_lm_eval_defaults_reach_the_backends():
    assert parse("seed=3,n_ctx=2048").backend_defaults() == {"seed": 3, "n_ctx": 2048}
    lm_eval_cli = RunSettings.from_model_args({"batch_size": 1, "max_batch_size": None,
                                               "device": "cuda"})
    assert lm_eval_cli.backend_defaults() == {"device": "cuda", "batch_size": 1}


def test_the_cache_follows_the_journal_unless_turned_off():
    assert parse("journal=/tmp/j.sqlite").cache_path == "/tmp/j.sqlite"
    assert parse("journal=/tmp/j.sqlite,cache=/tmp/c.sqlite").cache_path == "/tmp/c.sqlite"
    assert parse("journal=/tmp/j.sqlite,cache=off").cache_path is None


def test_an_unknown_key_names_the_closest_valid_one_and_lists_them_all():
    with pytest.raises(SettingsError) as err:
        parse("solvr=smollm2-135m")
    message = str(err.value)
    assert "unknown model_arg 'solvr' (did you mean 'solver'?)" in message
    assert all(name in message for name in options())
    with pytest.raises(SettingsError, match=r"'solvr.n_ctx' \(did you mean 'solver.n_ctx'\?\)"):
        parse("solvr.n_ctx=2048")
    with pytest.raises(SettingsError, match="did you mean 'budget_matched'"):
        parse("budget_match=True")


@pytest.mark.parametrize("model_args,message", [
    ("budget=eight", "model_arg budget must be an integer, got 'eight'"),
    ("budget=8.5", "model_arg budget must be an integer, got 8.5"),
    ("budget=-1", "model_arg budget must be 0 or more"),
    ("fallback=dirct", "model_arg fallback must be one of none, direct, generator; got 'dirct' "
                       "(did you mean 'direct'?)"),
    ("channels=assisted", "model_arg channels must be one of all, direct, direct+assisted"),
    ("direct_style=letters", "direct_style must be one of letter, reasoning"),
    ("budget_matched=maybe", "model_arg budget_matched must be True or False, got 'maybe'"),
    ("program_timeout=soon", "model_arg program_timeout must be a number"),
    ("chunk_size=0", "model_arg chunk_size must be 1 or more, got 0"),
    ("concurrency=True", "model_arg concurrency must be an integer, got True"),
    ("channels=direct,budget_matched=True",
     "the budget_matched control needs the assisted channel"),
    ("controls=fixed:judge_each_option+cott", "unknown control 'cott'"),
])
def test_a_bad_value_names_its_key_and_what_it_accepts(model_args, message):
    with pytest.raises(SettingsError) as err:
        parse(model_args)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)  # what callers caught before


# -- docs generated from, and checked against, the declaration ------------------------------------
def _readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- model_args table:")
    end = text.index("<!-- end of model_args table -->")
    return text[text.index("\n", start) + 1:end]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def test_readme_model_args_table_is_generated_from_the_declaration():
    assert _readme_table() == markdown_table(), (
        "README's model_args table is stale; regenerate it with python -c 'from "
        "cgr_plugin.run.settings import markdown_table; print(markdown_table())'")


def test_every_declared_key_has_a_readme_row_with_its_default_and_no_row_is_undeclared():
    rows = {}
    for line in _readme_table().splitlines()[2:]:
        key_cell, default_cell, _ = _cells(line)
        rows[re.match(r"`([\w.]+)=", key_cell).group(1)] = default_cell
    scoped = {f"{role}.KEY" for role in BACKEND_SCOPES}
    assert set(rows) == set(options()) | scoped
    for name in options():
        assert rows[name] == default_text(name), name


def test_every_key_the_docs_mention_is_declared():
    declared = set(options())
    for path in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for key in re.findall(r"`([a-z_]+)(?:\.[A-Za-z_]+)?=", path.read_text(encoding="utf-8")):
            assert key in declared or key in BACKEND_SCOPES, f"{path.name}: {key}="


def test_docs_default_columns_match_the_declaration():
    text = (REPO / "docs" / "backends.md").read_text(encoding="utf-8")
    checked = 0
    for table in re.findall(r"(?m)^(\|.*default.*\|\n\|[-|]+\|\n(?:\|.*\|\n)+)", text):
        header = _cells(table.splitlines()[0])
        column = next(i for i, cell in enumerate(header) if "default" in cell)
        for line in table.splitlines()[2:]:
            cells = _cells(line)
            key = re.match(r"`(\w+)=", cells[0]).group(1)
            assert cells[column].startswith(default_text(key)), (key, cells[column])
            checked += 1
    assert checked >= 4


# -- the model configured from the settings --------------------------------------------------------
class ScriptedBackend:
    """Answers every prompt with one letter; stands for a model in wiring tests."""

    built: list[ScriptedBackend] = []

    def __init__(self, args):
        self.args = dict(args)
        self.name = "scripted"
        self.calls = 0
        ScriptedBackend.built.append(self)

    def generate(self, requests, *, progress=False):
        self.calls += len(requests)
        if callable(progress):
            progress(len(requests))
        return [Generation("Answer: B") for _ in requests]

    def judge(self, prompts):
        return [0.5 for _ in prompts]

    def describe(self):
        return {"backend": "scripted", **self.args}


@pytest.fixture
def scripted():
    module = types.SimpleNamespace(register_models=hookimpl(
        lambda register: register("scripted", ScriptedBackend)))
    plugins.register(module, name="test-settings-scripted")
    ScriptedBackend.built = []
    yield ScriptedBackend
    plugins.unregister("test-settings-scripted")


def _lm(**model_args):
    from cgr_plugin.run.model import CGRLM

    return CGRLM(solver="scripted", generator="scripted", **model_args)


def test_the_model_is_configured_by_its_settings(scripted):
    lm = _lm(budget="3", fallback="direct", program_timeout=5, direct_style="reasoning",
             direct_max_tokens="32", channels="direct+assisted", seed=4,
             **{"solver.temperature": "0"})
    assert lm.channels == ("direct", "assisted")
    assert (lm.assisted_settings.budget, lm.assisted_settings.fallback,
            lm.assisted_settings.limits.wall_seconds) == (3, "direct", 5.0)
    assert (lm.direct_settings.style, lm.direct_settings.max_tokens) == ("reasoning", 32)
    assert [b.args for b in scripted.built] == [{"seed": 4, "temperature": "0"}]


def test_a_bad_setting_fails_before_any_model_is_built(scripted):
    with pytest.raises(SettingsError, match="budget"):
        _lm(budget="many")
    with pytest.raises(plugins.PluginError, match="named 'nope'"):
        _lm(sandbox="nope")
    assert scripted.built == []


def test_model_info_covers_the_settings_the_journal_identity_depends_on(scripted):
    info = _lm(budget=3, budget_matched=True, **{"generator.model": "big"}).get_model_info()
    assert info == {
        "cgr_solver": {"backend": "scripted"}, "cgr_generator": "scripted:big",
        "cgr_generator_args": {"model": "big"}, "cgr_seed": 0, "cgr_program_memory_mb": 1024,
        "cgr_channels": ["direct", "assisted", "budget_matched"], "cgr_controls": [],
        "cgr_generator_prompt": {"name": "cgr",
                                 "sha256": template_hash(generator_template("cgr"))},
        "cgr_fixed_programs": {},
        "cgr_direct": {"style": "letter", "max_tokens": 8}, "cgr_programs": None,
        "cgr_extractor": "cgr", "cgr_sandbox": "bwrap",
        "cgr_assisted": {"budget": 3, "fallback": "none", "program_timeout": 20.0,
                         "generator_max_tokens": 768, "generator_draft_tokens": 0,
                         "generator_stop_repeats": 4, "provenance_seeds": 3}}


def _requests(items, task="cgr_toy"):
    return [Instance(request_type="generate_until", doc=item.to_doc(),
                     arguments=("prompt", {"until": []}), idx=0, metadata=(task, i, 1))
            for i, item in enumerate(items)]


def test_records_leave_as_json_once_and_a_rerun_takes_them_from_the_journal(scripted, tmp_path):
    journal = tmp_path / "run.sqlite"
    first = _lm(channels="direct", journal=str(journal), chunk_size=2)
    texts = first.generate_until(_requests(ITEMS), disable_tqdm=True)
    records = [CGRRecord.from_json(text) for text in texts]
    assert [r.item_id for r in records] == ["q0", "q1", "q2"]
    assert {(r.direct.status, r.direct.answer) for r in records} == {("ok", "B")}
    assert [b.calls for b in scripted.built] == [3]
    saved = Journal(journal, first.journal.identity)
    assert len(saved) == 3
    again = _lm(channels="direct", journal=str(journal), chunk_size=2)
    assert again.generate_until(_requests(ITEMS), disable_tqdm=True) == texts
    assert [b.calls for b in scripted.built] == [3, 0]


def test_cache_from_answers_the_direct_channel_from_another_runs_journal(scripted, tmp_path):
    first = _lm(channels="direct", journal=str(tmp_path / "a.sqlite"))
    before = [json.loads(t)["channels"]["direct"]
              for t in first.generate_until(_requests(ITEMS), disable_tqdm=True)]
    journals = f"{tmp_path / 'a.sqlite'}+{tmp_path / 'not_yet.sqlite'}"
    second = _lm(channels="direct", journal=str(tmp_path / "b.sqlite"),
                 cache=str(tmp_path / "fresh.sqlite"), cache_from=journals)
    after = [json.loads(t)["channels"]["direct"]
             for t in second.generate_until(_requests(ITEMS), disable_tqdm=True)]
    assert [b.calls for b in scripted.built] == [3, 0]  # every answer came from the journal
    fields = ("status", "answer", "raw", "prompt", "extraction_rule", "tokens_in", "tokens_out")
    assert [[d[f] for f in fields] for d in after] == [[d[f] for f in fields] for d in before]
    # another budget asks other questions: nothing recorded answers them
    third = _lm(channels="direct", direct_max_tokens=64, cache=str(tmp_path / "c.sqlite"),
                cache_from=str(tmp_path / "a.sqlite"))
    third.generate_until(_requests(ITEMS), disable_tqdm=True)
    assert scripted.built[-1].calls == 3


def test_only_the_same_solvers_recorded_direct_answers_are_taken(scripted, tmp_path):
    from cgr_plugin.run.direct import recorded_direct_answers

    lm = _lm(channels="direct", journal=str(tmp_path / "a.sqlite"))
    lm.generate_until(_requests(ITEMS), disable_tqdm=True)
    lm.journal._db.close()
    journal, info = [str(tmp_path / "a.sqlite")], lm.get_model_info()

    def taken(name="scripted", identity=info["cgr_solver"], settings=lm.direct_settings,
              journals=journal):
        made_with = {"cgr_solver": identity,
                     "cgr_direct": {"style": settings.style, "max_tokens": settings.max_tokens}}
        return sorted(r.prompt for r, _ in recorded_direct_answers(journals, name, made_with,
                                                                   settings))

    assert taken() == sorted(lm._direct_prompt(i) for i in ITEMS)
    assert taken(name="another") == []
    assert taken(identity={"backend": "scripted", "n_ctx": 512}) == []
    assert taken(settings=DirectSettings(style="letter", max_tokens=64)) == []
    (tmp_path / "junk.sqlite").write_text("not a journal")
    assert taken(journals=[str(tmp_path / "junk.sqlite")]) == []
    # a journal from before journals kept their runs' settings is taken on trust
    with sqlite3.connect(tmp_path / "a.sqlite") as db:
        db.execute("DROP TABLE runs")
    assert taken(settings=DirectSettings(style="letter", max_tokens=64)) != []


def test_cache_from_without_a_cache_is_refused(scripted, tmp_path):
    with pytest.raises(SettingsError, match="cache_from"):
        _lm(cache="off", cache_from=str(tmp_path / "a.sqlite"))


def test_a_doc_that_is_no_item_gets_an_error_record_and_the_others_run(scripted):
    requests = _requests(ITEMS[:1])
    requests.append(Instance(request_type="generate_until", doc={"question": "?"},
                             arguments=("prompt", {}), idx=0, metadata=("cgr_toy", 9, 1)))
    texts = _lm(channels="direct").generate_until(requests, disable_tqdm=True)
    direct = [json.loads(text)["channels"]["direct"] for text in texts]
    assert direct[0]["status"] == "ok"
    assert direct[1]["status"] == "error" and "not a cgr item" in direct[1]["error"]


def test_the_generator_prompt_family_is_checked_recorded_and_a_stale_override_named(
        scripted, tmp_path, caplog):
    with pytest.raises(SettingsError, match="families here: cgr, decompose, per_option, pot"):
        _lm(generator_prompt="nope")
    (tmp_path / "generator_mine.j2").write_text("Mine. {% include 'item.j2' %}")
    (tmp_path / "generator.j2").write_text("0.1's override")
    with caplog.at_level("WARNING"):
        lm = _lm(generator_prompt="mine", template_dir=str(tmp_path))
    assert "generator.j2 is no longer read" in caplog.text
    assert lm.generator_prompt == {
        "name": "mine", "sha256": template_hash("generator_mine.j2", [str(tmp_path)])}
    records = [CGRRecord.from_json(text)
               for text in lm.generate_until(_requests(ITEMS), disable_tqdm=True)]
    assert {r.generator_prompt["name"] for r in records} == {"mine"}
    assert all(r.generator_side.prompt.startswith("Mine. Question: Pick") for r in records)
    assert lm.get_model_info()["cgr_generator_prompt"]["name"] == "mine"
