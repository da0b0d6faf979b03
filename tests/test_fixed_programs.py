"""Fixed programs, the control that tells a generated program's gain from its strategy's:
shipped, added from a folder or a plugin, and refused when they are not programs."""

from __future__ import annotations

import pytest

from cgr_plugin import hookimpl, plugins
from cgr_plugin.programs.library import FixedProgramError, fixed_programs, fixed_source
from cgr_plugin.programs.shapes import shape_id
from cgr_plugin.run.settings import RunSettings, SettingsError


def test_the_shipped_programs_are_distinct_strategies():
    shipped = fixed_programs()
    assert {"judge_each_option", "eliminate", "evidence_then_judge"} <= set(shipped)
    assert len({shape_id(source) for source in shipped.values()}) == len(shipped)


def test_a_user_folder_adds_programs_and_shadows_a_shipped_one(tmp_path):
    (tmp_path / "first_option.py").write_text("def solve(item, solver):\n"
                                              "    return solver.choose()\n")
    (tmp_path / "eliminate.py").write_text("def solve(item, solver):\n    return None\n")
    found = fixed_programs(tmp_path)
    assert "solver.choose()" in found["first_option"]
    assert found["eliminate"].endswith("return None\n")
    assert "judge" in found["judge_each_option"]


@pytest.mark.parametrize(("text", "message"), [
    ("def solve(item, solver)\n    return 1\n", "does not parse"),
    ("def answer(item, solver):\n    return 'A'\n", "no top-level def solve"),
])
def test_a_folder_program_that_is_not_one_is_refused_by_name(tmp_path, text, message):
    (tmp_path / "broken.py").write_text(text)
    with pytest.raises(FixedProgramError, match=f"'broken'.*{message}"):
        fixed_programs(tmp_path)


def test_an_unknown_name_lists_the_programs_there_are(tmp_path):
    with pytest.raises(FixedProgramError, match="no fixed program named 'nope'.*eliminate"):
        fixed_source("nope")
    with pytest.raises(FixedProgramError, match="no such folder"):
        fixed_programs(tmp_path / "missing")


class _Plugin:
    @hookimpl
    def register_fixed_programs(self, register):
        register("always_choose", "def solve(item, solver):\n    return solver.choose()\n")


def test_a_plugin_registers_a_fixed_program():
    plugins.register(_Plugin(), "fixed-program-plugin")
    try:
        assert "always_choose" in fixed_programs()
        assert "return solver.choose()" in fixed_source("always_choose")
    finally:
        plugins.unregister("fixed-program-plugin")


def test_controls_are_read_in_order_once_and_budget_matched_is_one_of_them():
    settings = RunSettings.from_model_args(
        {"controls": "fixed:eliminate+cot+fixed:eliminate+budget_matched"})
    assert settings.control_names == ("fixed:eliminate", "cot", "budget_matched")
    assert settings.fixed_program_names == ("eliminate",)
    assert settings.matches_budget
    with pytest.raises(SettingsError, match="unknown control 'fixed:'"):
        RunSettings.from_model_args({"controls": "fixed:"})
