"""Command-line entry points.

``cgr-eval`` is lm-eval's own CLI with the plugin registered and the packaged tasks on the
include path: every lm-eval flag keeps working. ``cgr`` holds the plugin's own chores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .._paths import TASKS_DIR


def _data_errors() -> tuple[type[Exception], ...]:
    from ..analysis.runs import RunError
    from ..data.items import ItemError
    from ..data.loader import TaskConfigError
    from ..models.backends import BackendError
    from ..models.registry import RegistryError
    from ..prompts import TemplateError

    return (ItemError, TaskConfigError, RegistryError, TemplateError, BackendError, RunError)


def _option_values(argv: Sequence[str], *names: str) -> list[str]:
    """Values of ``--opt v`` / ``--opt=v`` for any of ``names`` (lm-eval takes nargs for tasks)."""
    values: list[str] = []
    grab = False
    for arg in argv:
        if grab:
            if arg.startswith("-"):
                grab = False
            else:
                values.append(arg)
                continue
        for name in names:
            if arg == name:
                grab = True
            elif arg.startswith(name + "="):
                values.append(arg.split("=", 1)[1])
    return values


def task_patterns(argv: Sequence[str]) -> list[str]:
    return [p for v in _option_values(argv, "--tasks", "-t") for p in v.replace(",", " ").split()]


def include_paths(argv: Sequence[str]) -> list[Path]:
    from ..tasks.lm_eval_hook import split_include_path

    paths = [Path(p) for v in _option_values(argv, "--include_path")
             for p in split_include_path(v)]
    return [*paths, TASKS_DIR]


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
            except Exception as err:
                broken.append((path, f"{type(err).__name__}: {err}"))
    return broken


def _deep_validate(argv: Sequence[str]) -> int:
    """Build each selected task: parse, load and normalize its data, render its first prompt."""
    from lm_eval.tasks import TaskManager

    user_paths = [str(p) for p in include_paths(argv)[:-1]]
    manager = TaskManager(include_path=user_paths or None, include_defaults=False)
    names = manager.match_tasks(task_patterns(argv))
    if not names:
        print("No cgr tasks matched " + " ".join(task_patterns(argv)), file=sys.stderr)
        return 1
    failed = 0
    for name in names:
        try:
            task = manager.load([name])["tasks"][name]
            docs = list(task.eval_docs)
            task.doc_to_text(docs[0])
            print(f"ok    {name}: {len(docs)} items")
        except _data_errors() + (TypeError, KeyError, ValueError, OSError) as err:
            failed += 1
            print(f"FAIL  {name}: {err}", file=sys.stderr)
    return 1 if failed else 0


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


LOCK_NAME = ".cgr-eval.lock"


def lock_output_folder(argv: Sequence[str]) -> IO[str] | None:
    """Hold ``--output_path``'s lock for this run, or exit with who holds it.

    Two runs writing one folder would interleave their samples files and the report would mix
    them. The lock is an flock, so a killed run (kill -9 included) never leaves it stale.
    Data-parallel ranks other than 0 do not write results and take no lock.
    """
    import fcntl

    outputs = _option_values(argv, "--output_path", "-o")
    if not outputs or os.environ.get("RANK", "0") != "0":
        return None
    folder = Path(outputs[-1]).expanduser()
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


def cgr_eval_main(argv: Sequence[str] | None = None) -> None:
    """``cgr-eval``: lm-eval with cgr registered (same flags, same subcommands)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from .. import register
    from ..tasks import lm_eval_hook as _lm_eval_hook

    register()
    for path, reason in broken_task_yamls(include_paths(argv)):
        print(f"cgr-eval: ERROR: task config {path} cannot be loaded and is skipped: {reason}",
              file=sys.stderr)
    patterns = task_patterns(argv)
    only_cgr = bool(patterns) and all(p.startswith("cgr") or p.endswith(".yaml")
                                      for p in patterns)
    if only_cgr and not os.environ.get("CGR_INDEX_BUILTIN_TASKS"):
        # Indexing lm-eval's ~15k built-in task YAMLs costs 6-8 s; cgr tasks never need them.
        _lm_eval_hook.skip_builtin_tasks()
    if argv[:1] == ["validate"]:
        sys.exit(_deep_validate(argv))
    sys.argv = ["cgr-eval", *argv]
    lock = lock_output_folder(argv)  # noqa: F841 - held until the process ends
    from lm_eval.__main__ import cli_evaluate

    _share_lm_eval_logging()

    try:
        cli_evaluate()
    except _data_errors() as err:
        print(f"cgr-eval: error: {err}", file=sys.stderr)
        sys.exit(2)


# -- cgr ---------------------------------------------------------------------------------------
def _cmd_bundle(args: argparse.Namespace) -> int:
    from ..data.bundle import build_bundle

    source = None if args.hub else Path(args.source).expanduser()
    if source is not None and not source.is_dir():
        print(f"cgr bundle: source folder {source} does not exist (pass --source DIR with the "
              "original files, or --hub)", file=sys.stderr)
        return 2
    manifest = build_bundle(Path(args.out), source_root=source, names=args.datasets or None,
                            from_hub=args.hub, check=args.check)
    for name, entry in sorted(manifest.items()):
        if not args.datasets or name in args.datasets:
            print(f"{name:16} {entry['items']:6} items  sha256 {entry['sha256'][:16]}  "
                  f"{entry['license']}")
    print("bundle matches the shipped files" if args.check else f"wrote {args.out}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from ..models.registry import load_registry

    for name, spec in load_registry().items():
        print(f"{name:20} {spec.family:14} {spec.parameters:6} {spec.format:5} "
              f"direct={spec.direct.style}/{spec.direct.max_tokens}  {spec.license}")
    return 0


def _cmd_fetch_model(args: argparse.Namespace) -> int:
    from ..models.registry import load_registry, model_file

    registry = load_registry()
    for name in args.names:
        if name not in registry:
            print(f"cgr fetch-model: unknown model {name!r}; known: {', '.join(registry)}",
                  file=sys.stderr)
            return 2
        print(f"{name}: {model_file(registry[name])}")
    return 0


def _cmd_enable(args: argparse.Namespace) -> int:
    from ..tasks.lm_eval_hook import enable

    path = enable()
    print(f"installed {path}\nplain `lm_eval --model cgr --tasks 'cgr_*'` now works in this "
          "environment; undo with `cgr disable-lm-eval`")
    return 0


def _cmd_disable(args: argparse.Namespace) -> int:
    from ..tasks.lm_eval_hook import disable

    path = disable()
    print(f"removed {path}" if path else "the lm-eval hook was not installed")
    return 0


def _cmd_exec(args: argparse.Namespace) -> int:
    """Run one program against one item; print the record as one JSON line."""
    import json

    from ..data.items import MCQAItem
    from ..models.backends import make_backend
    from ..models.registry import DirectSettings, load_registry
    from ..prompts import render
    from ..record import CGRRecord
    from ..run.assisted import AssistedSettings, run_item_program
    from ..sandbox.runner import SandboxLimits

    data = json.loads(Path(args.item).read_text(encoding="utf-8"))
    if isinstance(data, dict) and "schema" in data and "item" in data:
        data = data["item"]  # a whole record line: take its item
    item = MCQAItem.from_json(data)
    registry = load_registry()
    solver, spec = make_backend(args.solver, {}, registry=registry)
    direct = spec.direct if spec else DirectSettings()  # the same defaults as the cgr model
    settings = AssistedSettings(budget=args.budget,
                                limits=SandboxLimits.for_timeout(args.timeout))
    text = Path(args.program).read_text(encoding="utf-8")
    assisted, generator = run_item_program(
        text, item, solver=solver, settings=settings,
        direct_prompt=lambda it: render("direct.j2", item=it, style=direct.style),
        direct_max_tokens=direct.max_tokens)
    record = CGRRecord(item=item.to_json(), solver=solver.name, generator=str(args.program),
                       assisted=assisted, generator_side=generator)
    print(record.to_json())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ..analysis.render import write_report
    from ..analysis.runs import load_runs
    from ..analysis.summary import build_summary, load_partitions

    if args.resamples < 1:
        raise ValueError("--resamples must be at least 1")
    partitions = load_partitions(args.partitions) if args.partitions else []
    summary = build_summary(load_runs(args.runs), runs=args.runs, partitions=partitions,
                            gate=args.gate, resamples=args.resamples, seed=args.seed)
    for kind, path in write_report(summary, Path(args.out)).items():
        print(f"{kind:5} {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ..analysis.export import export_package

    manifest = export_package([Path(r) for r in args.runs], Path(args.out))
    print(f"wrote {manifest['programs']} programs ({', '.join(manifest['tasks'])}) to {args.out}")
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .. import plugins

    found = plugins.describe()
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        for name, kinds in found["plugins"].items():
            added = "; ".join(f"{kind}: {', '.join(sorted(names))}"
                              for kind, names in sorted(kinds.items())) or "nothing"
            print(f"{name}: {added}")
        for name, why in found["broken"].items():
            print(f"BROKEN {name}: {why}")
    return 1 if found["broken"] else 0


def _cmd_path(args: argparse.Namespace) -> int:
    print(TASKS_DIR)
    return 0


def _cmd_validate_dataset(args: argparse.Namespace) -> int:
    from ..tasks.validate import validate_main

    return validate_main(args.yamls, show_all=args.all)


def cgr_main(argv: Sequence[str] | None = None) -> None:
    """``cgr``: bundle rebuilds, model files, and the lm-eval opt-in."""
    parser = argparse.ArgumentParser(
        prog="cgr", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="cgr-plugin utilities (run evaluations with cgr-eval)",
        epilog=textwrap.dedent("""\
            examples:
              cgr path                         # task folder, for lm_eval --include_path
              cgr validate-dataset my_tasks/my_mcqa.yaml   # every problem of a dataset YAML
              cgr models                       # registered solver/generator models
              cgr fetch-model qwen2.5-coder-1.5b
              cgr bundle --source ../shared/data --check
              cgr exec program.py --item item.json --solver smollm2-135m
              cgr report out_smol out_qwen --out report
              cgr export out_qwen --out programs_qwen   # then --model_args programs=...
              cgr plugins                      # installed plugins and what they add
              cgr enable-lm-eval               # then: lm_eval --model cgr --tasks 'cgr_*'
            """))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("bundle", help="rebuild the prepared MCQA bundle from source files")
    p.add_argument("--source", default=os.environ.get("CGR_DATA_SOURCE", "../shared/data"),
                   help="folder with the original dataset files (default: %(default)s)")
    p.add_argument("--hub", action="store_true", help="read rows from the Hugging Face hub")
    p.add_argument("--out", default=str(TASKS_DIR / "_data"), help="output folder")
    p.add_argument("--check", action="store_true",
                   help="rebuild in memory and fail unless every byte matches the shipped files")
    p.add_argument("datasets", nargs="*", help="datasets to rebuild (default: all)")
    p.set_defaults(func=_cmd_bundle)
    sub.add_parser("models", help="list registered models").set_defaults(func=_cmd_models)
    p = sub.add_parser("fetch-model", help="assemble and verify registry models' GGUF files")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=_cmd_fetch_model)
    p = sub.add_parser("exec", help="run one program in the sandbox against one item")
    p.add_argument("program", help="a Python file (or generator output with a code block)")
    p.add_argument("--item", required=True, help="item JSON, as in a record's 'item' field")
    p.add_argument("--solver", default="smollm2-135m", help="registry or lm-eval model")
    p.add_argument("--budget", type=int, default=8, help="solver calls allowed")
    p.add_argument("--timeout", type=float, default=20.0, help="program seconds")
    p.set_defaults(func=_cmd_exec)
    p = sub.add_parser("report", help="statistics and plots over finished runs")
    p.add_argument("runs", nargs="+", help="lm-eval --output_path folders (with --log_samples)")
    p.add_argument("--out", default="cgr_report", help="output folder (default: %(default)s)")
    p.add_argument("--gate", type=float, default=0.30,
                   help="direct-accuracy threshold of the direct_gate partition")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=20240519, help="bootstrap seed")
    p.add_argument("--partitions", help="YAML file of user-defined partitions")
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("export", help="write a run's programs as a replayable package")
    p.add_argument("runs", nargs="+", help="lm-eval --output_path folders (with --log_samples)")
    p.add_argument("--out", required=True, help="package folder to write")
    p.set_defaults(func=_cmd_export)
    sub.add_parser("enable-lm-eval", help="let plain `lm_eval` find --model cgr and cgr_* tasks"
                   ).set_defaults(func=_cmd_enable)
    sub.add_parser("disable-lm-eval", help="remove the lm-eval startup hook"
                   ).set_defaults(func=_cmd_disable)
    p = sub.add_parser("plugins", help="list loaded plugins, what each registered, and broken "
                       "ones (exit status 1 when any is broken)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_plugins)
    sub.add_parser("path", help="print the packaged task folder").set_defaults(func=_cmd_path)
    p = sub.add_parser(
        "validate-dataset", help="check dataset task YAMLs and every row of their data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check each task YAML (keys, field mapping, splits, few-shot, letters) and "
                    "read every row of every split; print every problem as FILE:line N: item "
                    "ID: field 'X': message, then a summary. Exit status 1 when any problem was "
                    "found. Schema: docs/datasets.md.",
        epilog=textwrap.dedent("""\
            examples:
              cgr validate-dataset my_tasks/my_mcqa.yaml
              cgr validate-dataset my_tasks/*.yaml --all
            """))
    p.add_argument("yamls", nargs="+", metavar="FILE.yaml", help="task YAML files")
    p.add_argument("--all", action="store_true",
                   help="print every repeat of a problem (default: 5, then a count)")
    p.set_defaults(func=_cmd_validate_dataset)
    args = parser.parse_args(argv)
    try:
        sys.exit(args.func(args))
    except _data_errors() + (KeyError, FileNotFoundError, ValueError) as err:
        print(f"cgr {args.command}: error: {err}", file=sys.stderr)
        sys.exit(2)
