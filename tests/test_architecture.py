"""The layout's promises: stages import one way, and old import paths keep working."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cgr_plugin import _compat

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter not installed")
def test_import_contract_holds() -> None:
    done = subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("old", sorted(_compat.ALIASES))
def test_old_import_paths_are_the_new_modules(old: str) -> None:
    new = _compat.ALIASES[old]
    if old.endswith((".task", ".model", ".scoring", ".dataset_loader", ".validate",
                     ".task_file")):
        pytest.importorskip("lm_eval")
    assert importlib.import_module(old) is importlib.import_module(new)
    assert importlib.import_module(new).__spec__.name == new  # the real module keeps its name


@pytest.mark.parametrize("dotted", ["cgr_plugin.task.CGRTask", "cgr_plugin.tasks.CGRTask",
                                    "cgr_plugin.tasks.task.CGRTask"])
def test_yaml_function_paths_resolve_to_the_task_class(dotted: str, tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    from lm_eval.tasks._yaml_loader import _import_func_in_yml  # how lm-eval reads !function

    from cgr_plugin.tasks.task import CGRTask

    assert _import_func_in_yml(dotted, tmp_path) is CGRTask


def test_import_cgr_plugin_loads_nothing_else() -> None:
    code = ("import sys, cgr_plugin; print(sorted(m for m in sys.modules "
            "if m.startswith('cgr_plugin')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "['cgr_plugin', 'cgr_plugin._compat', 'cgr_plugin._version']"
