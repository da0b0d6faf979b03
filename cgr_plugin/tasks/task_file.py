"""Read a task YAML the way lm-eval does, keeping the line of every key for error messages.

lm-eval's own loader (``!function`` tags, ``include:``) gives the values; a second pass over
PyYAML's node tree gives the lines. A task whose ``class`` is :class:`cgr_plugin.task.CGRTask`
gets the packaged ``_cgr_base.yaml`` under its own keys, as the class does at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .._paths import TASKS_DIR
from ..data.loader import Problems, TaskConfigError
from ..data.normalize import did_you_mean

__all__ = ["BASE_CONFIG", "TaskFile", "read_task_file", "unknown_top_level_keys"]

# The class and loader a CGR task names: today's paths, then the 0.1 ones (cgr_plugin._compat).
CGR_TASK = ("cgr_plugin.tasks.CGRTask", "cgr_plugin.tasks.task.CGRTask", "cgr_plugin.task.CGRTask")
CGR_LOADER = ("cgr_plugin.tasks.dataset.load_mcqa_dataset",
              "cgr_plugin.dataset_loader.load_mcqa_dataset")
BASE_CONFIG = TASKS_DIR / "_cgr_base.yaml"
# Keys lm-eval takes out before building a TaskConfig.
_STRUCTURAL_KEYS = ("class", "include", "group", "task_list", "tag")


def _task_config_keys() -> tuple[str, ...]:
    from lm_eval.config.task import TaskConfig

    return tuple(f.name for f in fields(TaskConfig))


def unknown_top_level_keys(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key, message)`` for each key that lm-eval's TaskConfig would reject."""
    allowed = tuple(dict.fromkeys((*_task_config_keys(), *_STRUCTURAL_KEYS)))
    return [(str(key), f"unknown task key{did_you_mean(str(key), allowed)} (lm-eval's task "
                       "keys: " + ", ".join(sorted(allowed)) + ")")
            for key in config if key not in allowed]


@dataclass
class TaskFile:
    """A task YAML: its own keys, the effective configuration, and where each key is."""

    path: Path
    own: dict[str, Any]
    config: dict[str, Any]
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    uses_cgr: bool = False

    def line(self, *keys: str) -> str | None:
        """``line N`` of a key path written in this file (or of its nearest written parent,
        as for ``data_files: x.jsonl`` standing for ``{test: x.jsonl}``), or None."""
        path = tuple(str(k) for k in keys)
        while path:
            if path in self.lines:
                return f"line {self.lines[path]}"
            path = path[:-1]
        return None

    @property
    def dataset_kwargs(self) -> dict[str, Any]:
        value = self.config.get("dataset_kwargs") or {}
        return dict(value) if isinstance(value, Mapping) else {}


def _key_lines(node: yaml.Node, prefix: tuple[str, ...], out: dict[tuple[str, ...], int],
               functions: list[tuple[tuple[str, ...], str, int]],
               repeated: list[tuple[tuple[str, ...], int, int]]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            if path in out:  # YAML keeps the last silently
                repeated.append((path, out[path], key_node.start_mark.line + 1))
            out.setdefault(path, key_node.start_mark.line + 1)
            _key_lines(value_node, path, out, functions, repeated)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            path = (*prefix, str(i))
            out.setdefault(path, child.start_mark.line + 1)
            _key_lines(child, path, out, functions, repeated)
    elif isinstance(node, yaml.ScalarNode) and node.tag == "!function":
        functions.append((prefix, str(node.value), node.start_mark.line + 1))


def _qualname(obj: Any) -> str:
    if isinstance(obj, str):  # an unresolved !function: "<yaml folder>/module.attr"
        return obj
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def _is(obj: Any, dotted: tuple[str, ...]) -> bool:
    return obj is not None and _qualname(obj).endswith(dotted)


def _syntax_error(err: yaml.YAMLError, text: str) -> tuple[str, tuple[str, ...], int | None]:
    """The message and line of a YAML syntax error: the line of the construct the parser was
    reading (its context mark: an unclosed bracket or quote starts there), and where it gave
    up when that is elsewhere (often the end of the file)."""
    context, problem = getattr(err, "context_mark", None), getattr(err, "problem_mark", None)
    what = " ".join(str(x) for x in (getattr(err, "context", None),
                                     getattr(err, "problem", None)) if x) or str(err)
    mark = context or problem
    if context is not None and problem is not None and problem.line != context.line:
        last = len(text.splitlines())
        where = ("the end of the file" if problem.line >= last
                 else f"line {problem.line + 1}")
        what += f" (the parser gave up at {where})"
    return f"YAML syntax error: {what}", (), mark.line + 1 if mark else None


def _import_hint(err: Exception, dotted: str, folder: Path) -> str:
    """Python's "did you mean" for a misspelt function or module (lm-eval's wrapping of the
    error loses it): a close name in the module, or a close .py file next to the YAML."""
    module, _, name = dotted.rpartition(".")
    cause = err.__cause__ if isinstance(err.__cause__, AttributeError) else err
    owner = getattr(cause, "obj", None) if isinstance(cause, AttributeError) else None
    if owner is not None:
        return did_you_mean(name, [n for n in dir(owner) if not n.startswith("_")])
    if isinstance(err, ImportError) and module:
        return did_you_mean(module, sorted(p.stem for p in folder.glob("*.py")))
    return ""


def read_task_file(path: Path, problems: Problems) -> TaskFile | None:
    """The task YAML with every problem of its own keys added to ``problems``; None when it
    cannot be read at all (missing file, YAML syntax, a failed include)."""
    from lm_eval.tasks._yaml_loader import _import_func_in_yml, load_yaml

    source = str(path)

    def bad(message: str, keys: tuple[str, ...] = (), line: int | None = None) -> None:
        problems.add(TaskConfigError(message, source=source, field=".".join(keys) or None,
                                     line=f"line {line}" if line else None))

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        bad(f"cannot read the task YAML: {err.strerror if isinstance(err, OSError) else err}")
        return None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        bad(*_syntax_error(err, text))
        return None
    if not isinstance(root, yaml.MappingNode):
        bad("a task YAML must be a mapping of task settings (task: my_task, ...)")
        return None
    lines: dict[tuple[str, ...], int] = {}
    functions: list[tuple[tuple[str, ...], str, int]] = []
    repeated: list[tuple[tuple[str, ...], int, int]] = []
    _key_lines(root, (), lines, functions, repeated)
    for keys, first, again in repeated:
        bad(f"key given twice (lines {first} and {again}); YAML keeps the last one", keys,
            again)

    resolve = True
    for keys, dotted, line in functions:
        try:
            _import_func_in_yml(dotted, path.parent)
        except Exception as err:  # ImportError, AttributeError, a module that fails to import
            bad(f"!function {dotted} cannot be imported: {type(err).__name__}: {err}"
                f"{_import_hint(err, dotted, path.parent)}", keys, line)
            resolve = False  # go on with the references as strings
    try:
        own = load_yaml(path, resolve_func=resolve, recursive=False)
        config = load_yaml(path, resolve_func=resolve, recursive=True)
    except Exception as err:  # a missing or broken include, an include cycle
        bad(f"cannot load: {type(err).__name__}: {err}", ("include",), lines.get(("include",)))
        return None
    if _is(config.get("class"), CGR_TASK):
        base = load_yaml(BASE_CONFIG, resolve_func=resolve)
        base.pop("tag", None)
        config = {**base, **config}
    task_file = TaskFile(path=path, own=own, config=config, lines=lines,
                         uses_cgr=_is(config.get("custom_dataset"), CGR_LOADER))

    for key, message in unknown_top_level_keys(own):
        bad(message, (key,), lines.get((key,)))
    name = config.get("task")
    if name is None:
        bad("no 'task:' key; lm-eval lists a YAML as a task by its name (task: my_mcqa)")
    elif not isinstance(name, str):
        bad(f"must be a task name, got {name!r}", ("task",), lines.get(("task",)))
    kwargs = config.get("dataset_kwargs")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        bad(f"must be a mapping, got {type(kwargs).__name__}", ("dataset_kwargs",),
            lines.get(("dataset_kwargs",)))
    shots = config.get("num_fewshot")
    if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool)
                              or shots < 0):
        bad(f"must be a whole number of examples, got {shots!r}", ("num_fewshot",),
            lines.get(("num_fewshot",)))
    return task_file
