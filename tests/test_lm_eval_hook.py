"""The lm-eval hook: packaged tasks as lm-eval's defaults, and the opt-in .pth's startup cost."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from cgr_plugin._paths import TASKS_DIR
from cgr_plugin.tasks import lm_eval_hook

from .conftest import REPO

# Every packaged task (each task_configs/cgr_<dataset>.yaml is named after its task).
CGR_TASKS = {path.stem for path in TASKS_DIR.glob("cgr_*.yaml")}
# What a 0.1 `cgr enable-lm-eval` wrote (it imports cgr_plugin and its hook module).
PTH_01 = ("import importlib.util as _u; _u.find_spec('cgr_plugin') and "
          "__import__('cgr_plugin._lm_eval_hook').__dict__['_lm_eval_hook'].install_lazy()\n")


@pytest.fixture
def user_tasks(tmp_path):
    """A folder with one plain lm-eval task of the user's."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_task.yaml").write_text("task: my_task\ndataset_path: nowhere\n"
                                         "output_type: generate_until\n")
    return folder


@pytest.fixture
def task_manager():
    """lm-eval's real TaskManager, patched as ``cgr_plugin.register()`` patches it."""
    pytest.importorskip("lm_eval")
    import cgr_plugin

    cgr_plugin.register()
    from lm_eval.tasks import TaskManager

    return TaskManager


def test_include_defaults_false_lists_only_the_include_path(task_manager, user_tasks):
    manager = task_manager(include_defaults=False, include_path=str(user_tasks))
    assert manager.all_tasks == ["my_task"]  # lm-eval's own test_task_manager expects this


def test_packaged_tasks_join_wherever_lm_evals_defaults_would(task_manager, user_tasks,
                                                              monkeypatch):
    monkeypatch.setattr(lm_eval_hook, "_skip_builtins", True)  # what cgr-eval sets
    manager = task_manager(include_path=f"{user_tasks}:{user_tasks.parent / 'none'}")
    assert set(manager.all_subtasks) == CGR_TASKS | {"my_task"}  # no built-ins, cgr kept
    assert manager.include_path == [str(TASKS_DIR), str(user_tasks),
                                    str(user_tasks.parent / "none")]  # a:b split, user's last
    explicit = task_manager(include_path=str(user_tasks), include_defaults=False)
    assert explicit.all_tasks == ["my_task"]  # an explicit include_defaults=False wins


def test_a_users_task_of_a_packaged_name_overrides_it(task_manager, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_eval_hook, "_skip_builtins", True)
    (tmp_path / "cgr_sciq.yaml").write_text("task: cgr_sciq\ndataset_path: mine\n")
    manager = task_manager(include_path=str(tmp_path))
    assert manager.task_index["cgr_sciq"].yaml_path == tmp_path / "cgr_sciq.yaml"


def test_enable_and_disable_write_and_remove_one_pth(tmp_path, monkeypatch):
    monkeypatch.setattr(lm_eval_hook, "site_packages", lambda: tmp_path)
    path = lm_eval_hook.enable()
    assert path == tmp_path / "cgr_plugin_lm_eval.pth"
    (line,) = path.read_text().splitlines()
    assert line.startswith("import ")  # site executes only lines that start with an import
    assert "cgr_plugin." not in line and "__import__" not in line
    assert lm_eval_hook.disable() == path and not path.exists()
    assert lm_eval_hook.disable() is None


def _bare_interpreter(site_dir: Path, code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose only .pth files are ``site_dir``'s.

    -S keeps the environment's own .pth files (an armed hook among them) out; site-packages
    goes on sys.path for lm-eval, and the checkout (the working folder) for cgr_plugin.
    """
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    prelude = (f"import site, sys; sys.path.extend({paths!r}); site.addsitedir({str(site_dir)!r})"
               "\nimport json\n")
    return subprocess.run([sys.executable, "-S", "-c", prelude + code], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


PROBE = """\
before = sorted(m for m in sys.modules if m.startswith("cgr_plugin"))
armed = "_cgr_plugin_lm_eval_hook" in sys.modules
import lm_eval.models
from lm_eval.api.registry import model_registry
from lm_eval.tasks import TaskManager
import cgr_plugin.tasks.lm_eval_hook as hook
hook.skip_builtin_tasks()  # as cgr-eval does; the packaged tasks stay
print(json.dumps({"before": before, "armed": armed, "cgr": "cgr" in model_registry,
                  "tasks": TaskManager().match_tasks(["cgr_sci*"]),
                  "one_copy": sys.modules.get("_cgr_plugin_lm_eval_hook") in (None, hook)}))
"""


def test_the_armed_hook_loads_no_cgr_plugin_module_until_lm_eval_is_imported(tmp_path):
    pytest.importorskip("lm_eval")
    lm_eval_hook.enable(tmp_path)
    done = _bare_interpreter(tmp_path, PROBE)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen["before"] == [] and seen["armed"]
    assert seen["cgr"] and seen["tasks"] == ["cgr_sciq"] and seen["one_copy"]
    assert done.stderr == ""


def test_a_hook_written_by_0_1_still_works(tmp_path):
    pytest.importorskip("lm_eval")
    (tmp_path / lm_eval_hook.PTH_NAME).write_text(PTH_01)
    done = _bare_interpreter(tmp_path, PROBE)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen["cgr"] and seen["tasks"] == ["cgr_sciq"]


def test_a_leftover_hook_without_the_package_stays_silent(tmp_path):
    lm_eval_hook.enable(tmp_path)
    code = "print(sorted(m for m in sys.modules if 'cgr' in m))"
    done = subprocess.run([sys.executable, "-S", "-c", "import site, sys; "
                           f"site.addsitedir({str(tmp_path)!r}); {code}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})  # no PYTHONPATH: no cgr_plugin
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "[]", "")
