"""Teach an lm-eval process about cgr: the ``cgr`` model and the packaged task folder.

Used by ``cgr-eval`` and :func:`cgr_plugin.register` directly, and by the opt-in startup hook
(``cgr enable-lm-eval``), a ``.pth`` line that runs in every interpreter of the environment.
That line must cost nothing in a process that never imports lm-eval, so it imports no
``cgr_plugin`` module: it finds this file without importing the package and loads it under
:data:`STARTUP_NAME`. That is why this module imports only the standard library at the top,
and why a later ``import cgr_plugin.tasks.lm_eval_hook`` returns that same module (one copy
of the hook's state per process; see the end of this file). For the same reason it imports
only modules every interpreter has loaded already (``importlib.abc`` alone would cost ~30 ms);
the rest (inspect, pathlib, sysconfig) load inside the functions that need them.

The packaged ``cgr_*`` tasks behave like lm-eval's own built-in tasks: a TaskManager indexes
them unless it is built with ``include_defaults=False``. ``cgr-eval`` skips the ~15k built-in
YAMLs it never needs (:func:`skip_builtin_tasks`) and keeps the packaged tasks.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys

TYPE_CHECKING = False  # typing itself costs every interpreter ~5 ms
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

PTH_NAME = "cgr_plugin_lm_eval.pth"
STARTUP_NAME = "_cgr_plugin_lm_eval_hook"  # the name the .pth line loads this file under
MODEL_TARGET = "cgr_plugin.run.model:CGRLM"

# What the .pth line runs (through exec, so it can be more than one statement). It locates this
# file with find_spec, which reads the path without importing cgr_plugin; after
# `pip uninstall cgr-plugin` a leftover .pth finds nothing and stays silent.
STARTUP_CODE = f"""\
import importlib.util, os, sys
try:
    hook = sys.modules.get({STARTUP_NAME!r})
    spec = hook is None and importlib.util.find_spec("cgr_plugin")
    if spec and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "tasks", "lm_eval_hook.py")
        if os.path.isfile(path):
            found = importlib.util.spec_from_file_location({STARTUP_NAME!r}, path)
            hook = importlib.util.module_from_spec(found)
            sys.modules[{STARTUP_NAME!r}] = hook
            found.loader.exec_module(hook)
    if hook is not None:
        hook.install_lazy()
except Exception as err:
    sys.modules.pop({STARTUP_NAME!r}, None)
    print(f"cgr-plugin: the lm-eval startup hook failed ({{err}}); run `cgr disable-lm-eval` "
          "to remove it", file=sys.stderr)
"""


def split_include_path(include_path: Any) -> list[str]:
    """lm-eval's epilogs promise ``a:b``; 0.4.13's TaskManager takes only one path or a list."""
    if include_path is None:
        return []
    if isinstance(include_path, str | os.PathLike):
        return [p for p in str(include_path).split(os.pathsep) if p]
    return [str(p) for p in include_path]


_skip_builtins = False


def skip_builtin_tasks() -> None:
    """Make TaskManagers that do not say ``include_defaults`` index only the packaged cgr tasks
    and their include paths (not lm-eval's built-ins)."""
    global _skip_builtins
    _skip_builtins = True


def patch_task_manager(manager_cls: type) -> None:
    """Index the packaged task folder wherever lm-eval's built-ins would be (patches once)."""
    if getattr(manager_cls.__init__, "_cgr_patched", False):
        return
    import inspect

    original = manager_cls.__init__
    signature = inspect.signature(original)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        if _skip_builtins and "include_defaults" not in bound.arguments:
            bound.arguments["include_defaults"] = False  # lm-eval's built-ins: no
            with_packaged = True                         # the packaged cgr tasks: yes
        else:
            with_packaged = bound.arguments.get("include_defaults", True)
        include_path = bound.arguments.get("include_path")
        if with_packaged:
            # Packaged tasks first: lm-eval lets later roots win, so a user's own cgr_x.yaml
            # overrides the packaged one of the same name.
            from cgr_plugin._paths import TASKS_DIR  # only when a TaskManager is built

            paths = split_include_path(include_path)
            if str(TASKS_DIR) not in paths:
                paths.insert(0, str(TASKS_DIR))
            bound.arguments["include_path"] = paths
        elif isinstance(include_path, str) and os.pathsep in include_path:
            bound.arguments["include_path"] = split_include_path(include_path)
        original(*bound.args, **bound.kwargs)

    __init__._cgr_patched = True  # type: ignore[attr-defined]
    manager_cls.__init__ = __init__


def register_model(model_registry: Any) -> None:
    if "cgr" not in model_registry:
        model_registry.register("cgr", target=MODEL_TARGET)


class _AfterImport:  # a sys.meta_path finder
    """Runs a callback right after a watched module has executed."""

    cgr_lm_eval_hook = True  # how install_lazy recognises an armed hook

    def __init__(self, callbacks: dict[str, Any]) -> None:
        self.callbacks = callbacks

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.callbacks:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        loader, callback = spec.loader, self.callbacks[name]
        exec_module = loader.exec_module

        def run(module: Any) -> None:
            exec_module(module)
            try:
                callback(module)
            except Exception as err:  # never break lm-eval because of the plugin
                print(f"cgr-plugin: lm-eval hook failed ({err}); run "
                      "`cgr disable-lm-eval` to remove it", file=sys.stderr)

        loader.exec_module = run  # type: ignore[method-assign]
        return spec


def install_lazy() -> None:
    """Arm the hooks; a no-op when lm-eval is never imported."""
    if any(getattr(f, "cgr_lm_eval_hook", False) for f in sys.meta_path):
        return
    callbacks = {
        "lm_eval.models": lambda m: register_model(
            sys.modules["lm_eval.api.registry"].model_registry),
        "lm_eval.tasks.manager": lambda m: patch_task_manager(m.TaskManager),
    }
    for name, callback in callbacks.items():  # already imported: apply now
        if name in sys.modules:
            callback(sys.modules[name])
    sys.meta_path.insert(0, _AfterImport(callbacks))


def site_packages() -> Path:
    import sysconfig
    from pathlib import Path

    return Path(sysconfig.get_paths()["purelib"])


def pth_line() -> str:
    """The one line of the ``.pth`` file: run :data:`STARTUP_CODE`, leaving no names behind."""
    return f"import builtins; builtins.exec({STARTUP_CODE!r}, {{}})\n"


def enable(site_dir: Path | None = None) -> Path:
    """Write the startup hook into ``site_dir`` (default: this environment's site-packages)."""
    target = (site_dir or site_packages()) / PTH_NAME
    target.write_text(pth_line(), encoding="utf-8")
    return target


def disable(site_dir: Path | None = None) -> Path | None:
    target = (site_dir or site_packages()) / PTH_NAME
    if target.exists():
        target.unlink()
        return target
    return None


# One copy of the hook's state per process: when the .pth line has loaded this file under
# STARTUP_NAME, the package's import of it is that module, so the TaskManager patch, the
# finder and skip_builtin_tasks() all share one set of globals.
sys.modules[__name__] = sys.modules.setdefault(STARTUP_NAME, sys.modules[__name__])
