"""A study's cells: the cgr-eval runs that cover its grid, each written once.

For each seed:

- ``write``, one per (generator, family): the first solver with the generator, every task in
  one evaluation (one model load serves all datasets); its programs are exported as a package
  (``programs/GENERATOR.FAMILY``). ``budget_matched`` runs here: it matches each program's
  solver calls.
- ``replay``, one per (generator, family) and each further solver: the package's programs
  replayed (``programs=PACKAGE``), no generator loaded, with ``budget_matched`` again.
- ``controls``, one per solver: the controls that need no program (``cot``, ``fixed:NAME``)
  beside the direct channel, once per solver instead of once per family. ``cgr report``
  pairs them with every family's programs of the same solver on the same items. A study
  without generators has a ``direct`` cell per solver instead.

A cell's settings hash covers its cgr-eval command, cgr-plugin's version, the files its paths
name and the cell it replays: a finished cell is skipped while its hash stays the same.

Every cell shares one response cache, so a solver's direct answers are computed once. The cache
stays out of git; on a fresh clone each cell's ``cache_from=`` puts back the direct answers the
other cells of its solver recorded in their (committed) journals.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..._paths import TASKS_DIR
from ..._version import __version__
from ...prompts import environment
from .spec import PATH_ARGS, ModelEntry, StudySpec

__all__ = ["CACHE_FILE", "Cell", "plan_cells"]

CACHE_FILE = "cache.sqlite"  # one response cache for every cell: shared direct prompts hit it
CACHE_FROM = "cache_from="
CGR_EVAL = "cgr-eval"
PROGRAM_CONTROLS = ("budget_matched",)  # controls that depend on the programs


@dataclass(frozen=True)
class Cell:
    """One cgr-eval run of the study; paths are relative to the study's output folder."""

    name: str
    kind: str  # write | replay | controls | direct
    solver: ModelEntry
    generator: ModelEntry | None = None
    family: str | None = None
    seed: int | None = None
    controls: tuple[str, ...] = ()
    depends_on: str | None = None  # the write cell whose package a replay runs
    argv: tuple[str, ...] = ()  # cgr-eval's arguments (the program name not included)
    cache_from: tuple[str, ...] = ()  # the journals of the other cells of its solver
    settings_hash: str = ""

    @property
    def folder(self) -> str:
        return f"cells/{self.name}"

    @property
    def output(self) -> str:
        return f"{self.folder}/out"

    @property
    def journal(self) -> str:
        return f"{self.folder}/journal.sqlite"

    @property
    def package(self) -> str | None:
        """The program package a write cell exports or a replay cell runs."""
        if self.generator is None:
            return None
        seed = "" if self.seed is None else f".seed{self.seed}"
        return f"programs/{self.generator.label}.{self.family}{seed}"

    @property
    def command(self) -> list[str]:
        return [CGR_EVAL, *self.argv]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def plan_cells(spec: StudySpec, item_args: Sequence[str]) -> list[Cell]:
    """Every cell of the study in run order: per seed, each write cell and its replays, then
    the solvers' control cells. ``item_args`` are cgr-eval's item flags (``--limit N``)."""
    cells: list[Cell] = []
    program_controls = tuple(c for c in spec.controls if c in PROGRAM_CONTROLS)
    free_controls = tuple(c for c in spec.controls if c not in PROGRAM_CONTROLS)
    for seed in spec.seeds:
        suffix = "" if seed is None else f"-seed{seed}"
        for generator in spec.generators:
            for family in spec.families:
                tag = f"{_safe(generator.label)}.{family}{suffix}"
                write = _cell(spec, item_args, f"write-{tag}", "write", spec.solvers[0],
                              generator=generator, family=family, seed=seed,
                              controls=program_controls)
                cells.append(write)
                cells += [_cell(spec, item_args, f"replay-{tag}-{_safe(solver.label)}",
                                "replay", solver, generator=generator, family=family,
                                seed=seed, controls=program_controls, upstream=write)
                          for solver in spec.solvers[1:]]
        if free_controls or not spec.generators:
            kind = "controls" if free_controls else "direct"
            cells += [_cell(spec, item_args, f"{kind}-{_safe(solver.label)}{suffix}", kind,
                            solver, seed=seed, controls=free_controls)
                      for solver in spec.solvers]
    return [_sharing_answers(spec, cell, cells, item_args) for cell in cells]


def _sharing_answers(spec: StudySpec, cell: Cell, cells: Sequence[Cell],
                     item_args: Sequence[str]) -> Cell:
    """The cell with ``cache_from=`` naming the journals of the other cells of its solver
    (same model, same arguments: every cell has the study's model_args). It decides no record,
    so the settings hash stays as it was without it."""
    shared = tuple(other.journal for other in cells
                   if other.solver == cell.solver and other.name != cell.name)
    cell = replace(cell, cache_from=shared)
    return replace(cell, argv=tuple(_argv(spec, cell, item_args)))


def _cell(spec: StudySpec, item_args: Sequence[str], name: str, kind: str, solver: ModelEntry,
          *, generator: ModelEntry | None = None, family: str | None = None,
          seed: int | None = None, controls: tuple[str, ...] = (),
          upstream: Cell | None = None) -> Cell:
    cell = Cell(name=name, kind=kind, solver=solver, generator=generator, family=family,
                seed=seed, controls=controls, depends_on=upstream.name if upstream else None)
    argv = _argv(spec, cell, item_args)
    return replace(cell, argv=tuple(argv), settings_hash=_settings_hash(spec, argv, upstream))


def _argv(spec: StudySpec, cell: Cell, item_args: Sequence[str]) -> list[str]:
    model_args = cell.solver.model_args("solver")
    if cell.kind == "write":
        assert cell.generator is not None
        model_args += [*cell.generator.model_args("generator"),
                       f"generator_prompt={cell.family}"]
    elif cell.kind == "replay":
        model_args.append(f"programs={cell.package}")
    else:
        model_args.append("channels=direct")
    if cell.controls:
        model_args.append(f"controls={'+'.join(cell.controls)}")
    if cell.seed is not None:
        model_args.append(f"seed={cell.seed}")
    model_args += [f"journal={cell.journal}", f"cache={CACHE_FILE}"]
    if cell.cache_from:
        model_args.append(f"{CACHE_FROM}{'+'.join(cell.cache_from)}")
    model_args += [f"{key}={value}" for key, value in spec.model_args.items()
                   if value is not None]
    argv = ["--model", "cgr", "--model_args", ",".join(model_args),
            "--tasks", ",".join(spec.tasks), *item_args,
            "--output_path", cell.output, "--log_samples", "--confirm_run_unsafe_code"]
    if spec.include_paths:
        argv += ["--include_path", os.pathsep.join(map(str, spec.include_paths))]
    return argv


def _settings_hash(spec: StudySpec, argv: Sequence[str], upstream: Cell | None) -> str:
    """What decides a cell's records: its command, this cgr-plugin, the contents of the
    templates, task folders and files it names, and the cell whose programs it replays."""
    files = [Path(v) for k, v in spec.model_args.items() if k in PATH_ARGS and v]
    files += [*spec.include_paths, *(path for path, _ in spec.task_files.values())]
    bases = _portable_bases(spec)
    argv = [_without_cache_from(a) for a in argv]
    blob = {"argv": [_portable(a, bases) for a in argv], "cgr": __version__,
            "files": {_portable(str(p), bases): _digest(p) for p in files},
            "templates": _templates(spec.template_dirs), "upstream": upstream and
            upstream.settings_hash, "env": {k: os.environ.get(k, "") for k in
                                            ("CGR_MODELS", "CGR_TEMPLATES_PATH")}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _without_cache_from(arg: str) -> str:
    """A model_args string without ``cache_from=`` (it decides no record)."""
    return re.sub(rf"(^|,){re.escape(CACHE_FROM)}[^,]*", "", arg)


def _portable_bases(spec: StudySpec) -> list[tuple[str, str]]:
    """The folders a hash names by role instead of by place: cgr-plugin's packaged tasks, and
    the study file's folder (where its relative paths start)."""
    return [(str(TASKS_DIR.resolve()), "cgr-plugin:task_configs"),
            (str(spec.source.parent.resolve()), "study:")]


def _portable(text: str, bases: Sequence[tuple[str, str]]) -> str:
    """``text`` (a path, or an argument holding paths) with those folders named by role, so a
    study folder resumed from another checkout (a fresh clone, a worktree, a wheel) has the
    same hashes and finds its finished cells."""
    for folder, role in bases:  # the whole folder: /x/s names the study, /x/s2 does not
        text = re.sub(re.escape(folder) + r"(?=[/,]|$)", role, text)
    return text


def _templates(template_dirs: Sequence[str]) -> dict[str, str]:
    """sha256 of every template on the search path, first found first (as prompts search)."""
    found: dict[str, str] = {}
    for folder in environment(list(template_dirs)).loader.searchpath:
        for path in sorted(Path(folder).glob("*.j2")):
            found.setdefault(path.name, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def _digest(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents); '' where there is none."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if not path.is_dir():
        return ""
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(child.relative_to(path)).encode() + b"\0" + child.read_bytes())
    return digest.hexdigest()
