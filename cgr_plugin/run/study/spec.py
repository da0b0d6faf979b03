"""A study file: the grid of a CGR study in YAML, read and checked before anything runs.

Every key is declared in :data:`STUDY_KEYS` (docs/studies.md is its documentation). A mistake
is a :class:`StudyError` naming the file, the key's line and, where one exists, the closest
valid name: an unknown key, an unknown task or tag, a model that is not in the registry, an
unknown generator prompt family, control or fixed program, a model_arg the run would refuse.
Paths in the file are relative to the file, and are made absolute here, since each cell runs
from the study's output folder.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ... import plugins
from ..._paths import TASKS_DIR
from ...data.normalize import closest
from ...errors import CGRError
from ...models.registry import load_registry
from ...programs.library import fixed_programs
from ...prompts import DEFAULT_GENERATOR_PROMPT, generator_families
from ...record import PROGRAM_CONTROL, control_problem
from ..settings import RunSettings

__all__ = ["ModelEntry", "STUDY_KEYS", "StudyError", "StudySpec", "load_study"]

STUDY_KEYS = {
    "name": "the study's name (letters, digits, . _ -); required",
    "description": "free text, shown in the plan",
    "tasks": "task names, tags (cgr_paper, cgr_compute) or globs, as --tasks takes; required",
    "limit": "the first N items of each task (lm-eval's --limit); none: every item",
    "items": "explicit item ids per task ({task: [id, ...]}); tasks not named keep limit",
    "solvers": "models that answer; the first also runs with the generator; required",
    "generators": "models that write programs; none: no programs (direct and controls only)",
    "generator_prompts": "generator prompt families (generator_NAME.j2); default [cgr]",
    "controls": "cot, budget_matched, fixed:NAME",
    "seeds": "seeds (model_arg seed); each seed is a full grid with a report of its own",
    "model_args": "model_args of --model cgr for every cell (concurrency, budget, device, ...)",
    "include_path": "folders of your own task YAMLs (cgr-eval --include_path)",
    "metadata": "lm-eval's --metadata for every task, e.g. {subsets: [virology, anatomy]}",
    "report": "cgr report options: gate, resamples, seed, partitions, explorer",
}
REPORT_KEYS = ("gate", "resamples", "seed", "partitions", "explorer")
# model_args each cell sets itself from the study's axes and folders
STUDY_ARGS = {"solver": "solvers", "generator": "generators",
              "generator_prompt": "generator_prompts", "controls": "controls",
              "budget_matched": "controls", "seed": "seeds", "programs": "the study's cells",
              "journal": "the study's cells", "cache": "the study's cells",
              "cache_from": "the study's cells", "channels": "the study's cells"}
PATH_ARGS = ("template_dir", "fixed_programs", "registry")  # resolved against the file
MODEL_KEYS = ("model", "args", "name")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StudyError(CGRError):
    """A study file that cannot run as written; names the file, the line and the fix."""


@dataclass(frozen=True)
class ModelEntry:
    """One solver or generator: ``model`` is what ``solver=`` gets (a registry name, a plugin's
    backend or an lm-eval model), ``args`` its ``solver.KEY`` arguments, ``label`` its name in
    cell names and folders."""

    label: str
    model: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def model_args(self, role: str) -> list[str]:
        return [f"{role}={self.model}", *(f"{role}.{k}={v}" for k, v in self.args.items())]


@dataclass(frozen=True)
class StudySpec:
    """A checked study: every name resolved, every path absolute."""

    source: Path
    name: str
    tasks: tuple[str, ...]
    solvers: tuple[ModelEntry, ...]
    generators: tuple[ModelEntry, ...] = ()
    families: tuple[str, ...] = (DEFAULT_GENERATOR_PROMPT,)
    controls: tuple[str, ...] = ()
    seeds: tuple[int | None, ...] = (None,)
    limit: int | None = None
    items: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    model_args: Mapping[str, Any] = field(default_factory=dict)
    include_paths: tuple[Path, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    report: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    sha256: str = ""  # of the file's text
    task_files: Mapping[str, tuple[Path, str]] = field(default_factory=dict)  # YAML, split

    @property
    def template_dirs(self) -> list[str]:
        folder = self.model_args.get("template_dir")
        return [str(folder)] if folder else []


class _Where:
    """Lines of a YAML file's keys, for messages: ``FILE:line N: ...``."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.lines = path, {}
        try:
            self._walk(yaml.compose(text), ())
        except yaml.YAMLError:
            pass  # the parse below reports it

    def _walk(self, node: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = (*prefix, str(key.value))
                self.lines[path] = key.start_mark.line + 1
                self._walk(value, path)

    def error(self, keys: Sequence[str], message: str) -> StudyError:
        line = next((self.lines[tuple(keys[:n])] for n in range(len(keys), 0, -1)
                     if tuple(keys[:n]) in self.lines), None)
        at = f"{self.path}:line {line}" if line else str(self.path)
        return StudyError(f"{at}: {message}")


def _close(word: str, choices: Sequence[str]) -> str:
    found = closest(word, choices)
    return f" (did you mean {found!r}?)" if found else ""


def _as_list(raw: Any, key: str, where: _Where) -> list[Any]:
    if raw is None:
        return []
    if isinstance(raw, str | int | Mapping):
        return [raw]
    if not isinstance(raw, list):
        raise where.error([key], f"{key} must be a list, got {type(raw).__name__}")
    return raw


def load_study(path: str | Path) -> StudySpec:
    """The study in ``path``, checked: what :class:`StudySpec` holds is what runs."""
    path = Path(path).expanduser().resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise StudyError(f"cannot read study file {path}: {err.strerror or err}") from None
    where = _Where(path, text)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, Mapping):
        raise StudyError(f"{path}: a study file is a mapping of keys ({', '.join(STUDY_KEYS)})")
    for key in raw:
        if key not in STUDY_KEYS:
            raise where.error([str(key)], f"unknown key {key!r}{_close(str(key), STUDY_KEYS)}; "
                              f"a study has: {', '.join(STUDY_KEYS)}")
    for key in ("name", "tasks", "solvers"):
        if not raw.get(key):
            raise where.error([], f"missing required key {key!r} ({STUDY_KEYS[key]})")
    return _checked(raw, path, where, hashlib.sha256(text.encode()).hexdigest())


def _checked(raw: Mapping[str, Any], path: Path, where: _Where, sha256: str) -> StudySpec:
    name = str(raw["name"])
    if not _NAME.match(name):
        raise where.error(["name"], f"name {name!r}: use letters, digits, '.', '_' and '-'")
    model_args = _model_args(raw.get("model_args"), path.parent, where)
    include = tuple(_path(p, path.parent) for p in _as_list(raw.get("include_path"),
                                                            "include_path", where))
    solvers = _models(raw, "solvers", model_args, where)
    generators = _models(raw, "generators", model_args, where)
    if raw.get("generator_prompts") and not generators:
        raise where.error(["generator_prompts"], "generator_prompts without generators: no "
                          "programs are written; add generators or remove generator_prompts")
    families = tuple(_families(raw, model_args, where)) if generators else ()
    controls = tuple(_controls(raw, model_args, bool(generators), where))
    task_files = _expand_tasks(_as_list(raw["tasks"], "tasks", where), include, where)
    tasks = tuple(task_files)
    return StudySpec(
        source=path, name=name, tasks=tasks, solvers=solvers, generators=generators,
        families=families, controls=controls, seeds=_seeds(raw.get("seeds"), where),
        limit=_limit(raw.get("limit"), where), items=_items(raw.get("items"), tasks, where),
        model_args=model_args, include_paths=include,
        metadata=_metadata(raw.get("metadata"), where),
        report=_report(raw.get("report"), path.parent, where),
        description=str(raw.get("description") or ""), sha256=sha256, task_files=task_files)


def _path(value: Any, base: Path) -> Path:
    return (base / Path(str(value)).expanduser()).resolve()


def _scalar(value: Any, keys: list[str], where: _Where) -> Any:
    if isinstance(value, Mapping | list) or (isinstance(value, str) and "," in value):
        raise where.error(keys, f"{'.'.join(keys)}: {value!r}: a model_arg value is one word or "
                          "number without commas (lm-eval splits model_args on commas)")
    return value


def _model_args(raw: Any, base: Path, where: _Where) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise where.error(["model_args"], "model_args must be a mapping of model_arg to value")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key)
        if key in STUDY_ARGS:
            raise where.error(["model_args", key], f"model_args.{key}: the study sets it for "
                              f"each cell (from {STUDY_ARGS[key]}); remove it here")
        value = _scalar(value, ["model_args", key], where)
        out[key] = str(_path(value, base)) if key in PATH_ARGS and value is not None else value
    try:
        RunSettings.from_model_args(out)
    except CGRError as err:
        bad = next((k for k in out if f"'{k}'" in str(err) or f" {k} " in str(err)), None)
        raise where.error(["model_args", *([bad] if bad else [])],
                          f"model_args: {err}") from None
    return out


def _models(raw: Mapping[str, Any], key: str, model_args: Mapping[str, Any], where: _Where
            ) -> tuple[ModelEntry, ...]:
    """Each entry as a ModelEntry; a name must be a registry model or a plugin's backend, a
    mapping's ``model`` may also be any lm-eval model (hf, vllm, local-chat-completions)."""
    registry = load_registry([model_args["registry"]] if model_args.get("registry") else [])
    known = sorted({*registry, *plugins.registry().entries["models"]})
    entries = []
    for index, entry in enumerate(_as_list(raw.get(key), key, where)):
        keys = [key]
        if isinstance(entry, str):
            if entry not in known:
                raise where.error(keys, f"{key}[{index}]: {entry!r} is not in the model registry"
                                  f"{_close(entry, known)}; registered: {', '.join(known)} "
                                  "(`cgr models`); another lm-eval model goes as "
                                  "{model: hf, args: {pretrained: ID}}")
            entries.append(ModelEntry(entry, entry))
            continue
        entries.append(_model_mapping(entry, f"{key}[{index}]", keys, known, where))
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise where.error([key], f"{key}: {twice!r} appears twice (give one a name:)")
    return tuple(entries)


def _model_mapping(entry: Any, what: str, keys: list[str], known: Sequence[str],
                   where: _Where) -> ModelEntry:
    if not isinstance(entry, Mapping) or "model" not in entry:
        raise where.error(keys, f"{what}: a model is a registry name or a mapping with "
                          "model (and args, name)")
    unknown = [k for k in entry if k not in MODEL_KEYS]
    if unknown:
        raise where.error(keys, f"{what}: unknown key {unknown[0]!r}"
                          f"{_close(str(unknown[0]), MODEL_KEYS)}; a model has: model, args, name")
    model = str(entry["model"])
    if model not in known and model not in (lm_eval_models := _lm_eval_models()):
        raise where.error(keys, f"{what}: model {model!r} is neither in the model registry nor "
                          f"an lm-eval model{_close(model, [*known, *sorted(lm_eval_models)])} "
                          "(`cgr models`, `lm-eval ls models`)")
    if model == "cgr":
        raise where.error(keys, f"{what}: the cgr model cannot be its own solver or generator")
    args = entry.get("args") or {}
    if not isinstance(args, Mapping):
        raise where.error(keys, f"{what}: args must be a mapping of the backend's arguments")
    args = {str(k): _scalar(v, [*keys], where) for k, v in args.items()}
    label = str(entry.get("name") or args.get("pretrained") or model).rstrip("/")
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", label.rsplit("/", 1)[-1])
    return ModelEntry(label, model, args)


def _lm_eval_models() -> set[str]:
    import lm_eval.models  # noqa: F401 - fills lm-eval's model registry
    from lm_eval.api.registry import model_registry

    return set(model_registry)


def _families(raw: Mapping[str, Any], model_args: Mapping[str, Any], where: _Where) -> list[str]:
    known = generator_families([model_args["template_dir"]] if model_args.get("template_dir")
                               else [])
    families = [str(f) for f in _as_list(raw.get("generator_prompts"), "generator_prompts",
                                         where)] or [DEFAULT_GENERATOR_PROMPT]
    for family in families:
        if family not in known:
            raise where.error(["generator_prompts"], f"unknown generator prompt family "
                              f"{family!r}{_close(family, known)}; families: {', '.join(known)}")
    return list(dict.fromkeys(families))


def _controls(raw: Mapping[str, Any], model_args: Mapping[str, Any], programs: bool,
              where: _Where) -> list[str]:
    controls = [str(c) for c in _as_list(raw.get("controls"), "controls", where)]
    fixed = None
    for name in controls:
        problem = control_problem(name)
        if problem is not None:
            known = ["cot", "budget_matched", "fixed:judge_each_option"]
            raise where.error(["controls"], f"{problem}{_close(name, known)}")
        if name == "budget_matched" and not programs:
            raise where.error(["controls"], "budget_matched matches each program's solver "
                              "calls: it needs generators")
        if name.startswith(PROGRAM_CONTROL):
            fixed = fixed if fixed is not None else fixed_programs(model_args.get(
                "fixed_programs"))
            program = name.removeprefix(PROGRAM_CONTROL)
            if program not in fixed:
                raise where.error(["controls"], f"no fixed program named {program!r}"
                                  f"{_close(program, list(fixed))}; there are: "
                                  f"{', '.join(sorted(fixed))}")
    return list(dict.fromkeys(controls))


def _expand_tasks(patterns: list[Any], include: Sequence[Path], where: _Where
                  ) -> dict[str, tuple[Path, str]]:
    """{task: (its YAML, the split lm-eval evaluates)} from names, tags and globs, as
    cgr-eval's task manager indexes them (the packaged cgr tasks and the study's include_path,
    not lm-eval's built-ins)."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=[*map(str, include), str(TASKS_DIR)],
                          include_defaults=False)
    index = manager.task_index
    tasks: list[str] = []
    for pattern in map(str, patterns):
        if any(c in pattern for c in "*?["):
            found = [t for t in manager.match_tasks([pattern]) if t in manager.all_subtasks]
        elif pattern in manager.all_tags:
            found = sorted(n for n in manager.all_subtasks if pattern in index[n].tags)
        elif pattern in manager.all_subtasks:
            found = [pattern]
        elif pattern in manager.all_groups:
            raise where.error(["tasks"], f"{pattern!r} is an lm-eval group; name its tasks or "
                              "a tag instead")
        else:
            found = []
        if not found:
            raise where.error(["tasks"], f"unknown task or tag {pattern!r}"
                              f"{_close(pattern, manager.all_tasks)} (`cgr-eval ls tasks`; "
                              "include_path adds your own folder)")
        tasks += found
    out = {}
    for task in dict.fromkeys(tasks):
        entry = index[task]
        split = (entry.cfg or {}).get("test_split") or (entry.cfg or {}).get("validation_split")
        if entry.yaml_path is None or not split:
            raise where.error(["tasks"], f"task {task!r} has no YAML with a test or validation "
                              "split for the study to count its items")
        out[task] = (Path(entry.yaml_path), str(split))
    return out


def _seeds(raw: Any, where: _Where) -> tuple[int | None, ...]:
    seeds = _as_list(raw, "seeds", where)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise where.error(["seeds"], f"seeds must be integers, got {seeds!r}")
    return tuple(dict.fromkeys(seeds)) or (None,)


def _limit(raw: Any, where: _Where) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise where.error(["limit"], f"limit must be a whole number of items (1 or more), got "
                          f"{raw!r}")
    return raw


def _items(raw: Any, tasks: Sequence[str], where: _Where) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise where.error(["items"], "items must map task names to lists of item ids")
    out = {}
    for task, ids in raw.items():
        task = str(task)
        if task not in tasks:
            raise where.error(["items", task], f"items.{task}: not one of the study's tasks"
                              f"{_close(task, tasks)}")
        if not isinstance(ids, list) or not ids:
            raise where.error(["items", task], f"items.{task}: a list of item ids")
        out[task] = tuple(dict.fromkeys(str(i) for i in ids))
    return out


def _metadata(raw: Any, where: _Where) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise where.error(["metadata"], "metadata must be a mapping, as lm-eval's --metadata")
    return {str(k): v for k, v in raw.items()}


def _report(raw: Any, base: Path, where: _Where) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise where.error(["report"], f"report must be a mapping ({', '.join(REPORT_KEYS)})")
    for key in raw:
        if key not in REPORT_KEYS:
            raise where.error(["report", str(key)], f"report: unknown key {key!r}"
                              f"{_close(str(key), REPORT_KEYS)}; it has: {', '.join(REPORT_KEYS)}")
    out = dict(raw)
    if out.get("partitions"):
        out["partitions"] = str(_path(out["partitions"], base))
    return out
