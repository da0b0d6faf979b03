"""``cgr-eval``: lm-eval's own CLI with the plugin registered and the packaged tasks indexed.

Every lm-eval flag and subcommand keeps working because lm-eval's own parser
(``lm_eval._cli.HarnessCLI``, what ``lm_eval``'s ``cli_evaluate`` builds) reads the command
line, once; the wrapper looks at the options it parsed (tasks, include paths, output path,
with a ``--config`` file's values under them) and then hands the same namespace to lm-eval.
``cgr-eval validate`` is the plugin's deeper check (:mod:`.eval_validate`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .. import register
from .._paths import TASKS_DIR
from ..errors import CGRError
from ..tasks import lm_eval_hook
from . import eval_validate

__all__ = ["LOCK_NAME", "WrapperOptions", "broken_task_yamls", "cgr_eval_main",
           "lock_output_folder", "only_cgr_tasks", "parse_lm_eval_args", "read_options"]

LOCK_NAME = ".cgr-eval.lock"


def parse_lm_eval_args(argv: Sequence[str]) -> tuple[Any, argparse.Namespace]:
    """``(lm-eval's CLI, its parsed options)`` for ``cgr-eval ARGV``, as ``lm_eval ARGV`` parses
    them (``run`` implied when no subcommand is named; ``--help`` and usage errors exit)."""
    from lm_eval._cli import HarnessCLI

    sys.argv = ["cgr-eval", *argv]  # HarnessCLI reads sys.argv, as lm-eval's own main does
    cli = HarnessCLI()
    return cli, cli.parse_args()


@dataclass(frozen=True)
class WrapperOptions:
    """What the wrapper reads from lm-eval's parsed options."""

    command: str | None           # run, ls, validate, or None (lm-eval prints its help)
    task_patterns: list[str]      # --tasks, split on commas as lm-eval splits them
    include_paths: list[Path]     # the user's --include_path folders
    output_path: str | None


def read_options(options: argparse.Namespace) -> WrapperOptions:
    """The options the wrapper acts on; a ``run --config`` file's values count where the command
    line gives none (lm-eval's own precedence)."""
    config = _config_file(getattr(options, "config", None))

    def value(name: str) -> Any:
        return getattr(options, name, None) or config.get(name)

    tasks = value("tasks") or []
    patterns = [p for item in ([tasks] if isinstance(tasks, str) else tasks)
                for p in str(item).split(",") if p]
    user_paths = lm_eval_hook.split_include_path(value("include_path"))
    return WrapperOptions(command=options.command, task_patterns=patterns,
                          include_paths=[Path(p) for p in user_paths],
                          output_path=value("output_path"))


def _config_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    from lm_eval.config.evaluate_config import EvaluatorConfig

    try:
        return EvaluatorConfig.load_yaml_config(path)
    except (OSError, ValueError, TypeError):
        return {}  # lm-eval reads the file again and reports what is wrong with it


def broken_task_yamls(roots: Sequence[Path]) -> list[tuple[Path, str]]:
    """YAML files lm-eval would skip silently (it logs them at DEBUG), with the reason."""
    from lm_eval.tasks._yaml_loader import load_yaml

    broken = []
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.yaml"))
        for path in files:
            if "__pycache__" in path.parts:
                continue
            try:
                load_yaml(path, resolve_func=True)
            except Exception as err:  # exactly what lm-eval's index swallows
                broken.append((path, f"{type(err).__name__}: {err}"))
    return broken


def _share_lm_eval_logging() -> None:
    """Our INFO lines (journal resumes, sandbox warnings) in lm-eval's format and stream."""
    import logging

    from lm_eval.utils import setup_logging

    setup_logging()
    ours = logging.getLogger("cgr_plugin")
    ours.setLevel(logging.INFO)
    for handler in logging.getLogger("lm_eval").handlers:
        ours.addHandler(handler)
    ours.propagate = False


def lock_output_folder(output: str | None) -> IO[str] | None:
    """Hold the ``--output_path`` folder's lock for this run, or exit with who holds it.

    Two runs writing one folder would interleave their samples files and the report would mix
    them. The lock is an flock, so a killed run (kill -9 included) never leaves it stale.
    Data-parallel ranks other than 0 do not write results and take no lock.
    """
    import fcntl

    if not output or os.environ.get("RANK", "0") != "0":
        return None
    folder = Path(output).expanduser()
    folder = folder.parent if folder.suffix == ".json" else folder
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 - held for the process's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        print(f"cgr-eval: error: another run is writing to {folder} ({holder}); wait for it to "
              "finish or give this run another --output_path", file=sys.stderr)
        sys.exit(2)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def only_cgr_tasks(patterns: Sequence[str]) -> bool:
    """Whether every pattern names a cgr task (or a YAML file): lm-eval's built-ins not needed."""
    return bool(patterns) and all(p.startswith("cgr") or p.endswith(".yaml") for p in patterns)


def cgr_eval_main(argv: Sequence[str] | None = None) -> None:
    """``cgr-eval``: lm-eval with cgr registered (same flags, same subcommands)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _share_lm_eval_logging()
    cli, parsed = parse_lm_eval_args(argv)
    options = read_options(parsed)
    register()
    broken = broken_task_yamls([*options.include_paths, TASKS_DIR])
    for path, reason in broken:
        print(f"cgr-eval: ERROR: task config {path} cannot be loaded and is skipped: {reason}",
              file=sys.stderr)
    if only_cgr_tasks(options.task_patterns) and not os.environ.get("CGR_INDEX_BUILTIN_TASKS"):
        # Indexing lm-eval's ~15k built-in task YAMLs costs 6-8 s; cgr tasks never need them.
        lm_eval_hook.skip_builtin_tasks()
    if options.command == "validate":
        sys.exit(eval_validate.deep_validate(options.task_patterns, options.include_paths))
    lock = lock_output_folder(options.output_path)  # noqa: F841 - held until the process ends
    try:
        cli.execute(parsed)
    except CGRError as err:
        print(f"cgr-eval: error: {err}", file=sys.stderr)
        sys.exit(2)
    except ValueError as err:
        if not str(err).startswith("Tasks not found"):
            raise
        print(f"cgr-eval: error: {_tasks_not_found(str(err), broken)}", file=sys.stderr)
        sys.exit(2)


def _tasks_not_found(message: str, broken: Sequence[tuple[Path, str]]) -> str:
    """lm-eval's "Tasks not found", with the likely reason: a task YAML that did not load."""
    if not broken:
        return f"{message} (`cgr-eval ls tasks` lists the tasks; --include_path adds a folder)"
    files = ", ".join(str(path) for path, _ in broken)
    likely = next((path for path, _ in broken if path.stem in message), broken[0][0])
    return (f"{message}; these task configs did not load (see above): {files}. "
            f"`cgr validate-dataset {likely}` gives the line and every problem")
