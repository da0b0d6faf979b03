"""Teach an lm-eval process about cgr: the ``cgr`` model and the packaged task folder.

Used by ``cgr-eval`` directly, and by the opt-in startup hook (``cgr enable-lm-eval``), which
installs a ``.pth`` line that arms :func:`install_lazy` in every interpreter of the environment:
nothing is imported until the program itself imports lm-eval.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import os
import sys
from pathlib import Path
from typing import Any

PTH_NAME = "cgr_plugin_lm_eval.pth"
MODEL_TARGET = "cgr_plugin.run.model:CGRLM"


def split_include_path(include_path: Any) -> list[str]:
    """lm-eval's epilogs promise ``a:b``; 0.4.13's TaskManager takes only one path or a list."""
    if include_path is None:
        return []
    if isinstance(include_path, str | Path):
        return [p for p in str(include_path).split(os.pathsep) if p]
    return [str(p) for p in include_path]


_skip_builtins = False


def skip_builtin_tasks() -> None:
    """Make TaskManagers index only include paths unless a caller asks for the built-ins."""
    global _skip_builtins
    _skip_builtins = True


def patch_task_manager(manager_cls: type) -> None:
    """Put the packaged task folder on every TaskManager's include paths (patches once)."""
    if getattr(manager_cls.__init__, "_cgr_patched", False):
        return
    original = manager_cls.__init__
    signature = inspect.signature(original)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        from .._paths import TASKS_DIR

        bound = signature.bind(self, *args, **kwargs)
        # Packaged tasks first: lm-eval lets later roots win, so a user's own cgr_x.yaml
        # overrides the packaged one of the same name.
        paths = split_include_path(bound.arguments.get("include_path"))
        if str(TASKS_DIR) not in paths:
            paths.insert(0, str(TASKS_DIR))
        bound.arguments["include_path"] = paths
        if _skip_builtins and "include_defaults" not in bound.arguments:
            bound.arguments["include_defaults"] = False
        original(*bound.args, **bound.kwargs)

    __init__._cgr_patched = True  # type: ignore[attr-defined]
    manager_cls.__init__ = __init__


def register_model(model_registry: Any) -> None:
    if "cgr" not in model_registry:
        model_registry.register("cgr", target=MODEL_TARGET)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback right after a watched module has executed."""

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
    if any(isinstance(f, _AfterImport) for f in sys.meta_path):
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

    return Path(sysconfig.get_paths()["purelib"])


def enable() -> Path:
    target = site_packages() / PTH_NAME
    # One line, guarded: after `pip uninstall cgr-plugin` the leftover file must stay silent.
    target.write_text("import importlib.util as _u; _u.find_spec('cgr_plugin') and "
                      "__import__('cgr_plugin._lm_eval_hook').__dict__['_lm_eval_hook']"
                      ".install_lazy()\n")
    return target


def disable() -> Path | None:
    target = site_packages() / PTH_NAME
    if target.exists():
        target.unlink()
        return target
    return None
