"""The wheel a user installs carries the task configs, prepared data, templates and registry."""

import subprocess
import sys
import zipfile

import pytest

from .conftest import REPO, has_module

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not has_module("hatchling"), reason="needs hatchling")]


def test_wheel_ships_resources(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(REPO)], check=True)
    (wheel,) = tmp_path.glob("cgr_plugin-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("cgr_plugin/task_configs/_cgr_base.yaml",
                 "cgr_plugin/task_configs/cgr_arc_easy.yaml",
                 "cgr_plugin/task_configs/_data/MANIFEST.json",
                 "cgr_plugin/task_configs/_data/mmlu/test.jsonl",
                 "cgr_plugin/templates/direct.j2",
                 "cgr_plugin/models/models.yaml",
                 "cgr_plugin/studies/smoke.yaml",
                 "cgr_plugin/studies/cpu_default.yaml",
                 "cgr_plugin/analysis/templates/report.html.j2"):
        assert path in names, path
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[lm_eval.models]" in text and "cgr = cgr_plugin.run.model:CGRLM" in text
    assert "cgr-eval = cgr_plugin.cli:cgr_eval_main" in text
