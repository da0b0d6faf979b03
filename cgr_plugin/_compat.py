"""Import paths from before the stage subpackages (0.1), kept working for YAML and plugins.

Task YAML written against 0.1 says ``!function cgr_plugin.task.CGRTask``; plugins may import
``cgr_plugin.backends``. Each old name is an alias of its new module (the same module object,
so ``isinstance`` and monkeypatching agree), resolved only when imported. Remove in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

# Back-compat aliases: old module -> new module. ---------------------------------------------
ALIASES = {
    "cgr_plugin.items": "cgr_plugin.data.items",
    "cgr_plugin.normalize": "cgr_plugin.data.normalize",
    "cgr_plugin.dataset_loader": "cgr_plugin.tasks.dataset",
    "cgr_plugin.bundle": "cgr_plugin.data.bundle",
    "cgr_plugin.task": "cgr_plugin.tasks.task",
    "cgr_plugin.task_file": "cgr_plugin.tasks.task_file",
    "cgr_plugin.validate": "cgr_plugin.tasks.validate",
    "cgr_plugin.scoring": "cgr_plugin.tasks.scoring",
    "cgr_plugin._lm_eval_hook": "cgr_plugin.tasks.lm_eval_hook",
    "cgr_plugin.backends": "cgr_plugin.models.backends",
    "cgr_plugin.model_registry": "cgr_plugin.models.registry",
    "cgr_plugin.cache": "cgr_plugin.models.cache",
    "cgr_plugin.scaffold": "cgr_plugin.programs.scaffold",
    "cgr_plugin.model": "cgr_plugin.run.model",
    "cgr_plugin.control": "cgr_plugin.run.control",
    "cgr_plugin.assisted": "cgr_plugin.run.assisted",
    "cgr_plugin.broker": "cgr_plugin.run.broker",
    "cgr_plugin.journal": "cgr_plugin.run.journal",
    "cgr_plugin.progress": "cgr_plugin.run.progress",
}
# ----------------------------------------------------------------------------------------------


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        module = importlib.import_module(self.target)
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        module.__spec__ = self._real_spec  # the import system set the alias's spec on it


class AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        new = ALIASES.get(name)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(name, _AliasLoader(new))


def install() -> None:
    if not any(isinstance(finder, AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
