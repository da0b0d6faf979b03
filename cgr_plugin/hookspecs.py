"""The contract between cgr-plugin and its plugins: one hook per extension point.

Plugins implement these with ``@cgr_plugin.hookimpl`` and are found through the ``cgr``
entry-point group (``[project.entry-points.cgr] name = "module"``) or ``plugins.register()``.
Every hook is a collection hook: it gets a ``register`` callback and calls it once per thing it
adds, so cgr can check each entry and name both origins when two plugins claim one name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("cgr")
hookimpl = pluggy.HookimplMarker("cgr")


@hookspec
def register_scorers(register: Callable[..., None]) -> None:
    """Add per-item scorers: ``register(name, fn, *, channels=None, higher_is_better=True,
    description="")``.

    ``fn(record, channel) -> float | None`` gets the whole three-channel ``CGRRecord`` and the
    name of one channel (``direct``, ``assisted``, ``assisted_fallback``, ``generator``,
    ``budget_matched``) and returns that channel's score for the item, or None for "no score".
    Scores are averaged per channel in lm-eval's results (metric ``name``, one column per
    channel) and in ``cgr report``. ``channels`` limits which channels are scored.
    """


@hookspec
def register_extractors(register: Callable[..., None]) -> None:
    """Add answer extractors: ``register(name, fn)``, chosen with ``--model_args extractor=NAME``.

    ``fn(text, letters, choices) -> Extraction`` reads the solver's reply to a direct prompt
    (direct channel, ``solver.choose()``, the budget-matched control). It must never guess:
    return ``Extraction(None, "<rule>")`` when the text gives no single letter of ``letters``.
    """


@hookspec
def register_partitions(register: Callable[..., None]) -> None:
    """Add report partitions: ``register(name, keep, description="")``.

    ``keep(group) -> bool`` decides whether one (task, solver, generator) group of the report's
    summary belongs to the partition; ``group`` is the summary dict (``task``, ``solver``,
    ``generator``, ``n``, ``accuracy``...). Every ``cgr report`` shows the plugin's partition.
    """


@hookspec
def register_sandboxes(register: Callable[..., None]) -> None:
    """Add sandbox backends: ``register(name, sandbox)``, chosen with ``sandbox=NAME``.

    ``sandbox`` is a ``cgr_plugin.sandbox.Sandbox`` (``isolation_level()``, ``start(limits)``
    giving a started sandbox with ``run(program, item, *, handle_call, seed)`` and ``kill()``;
    ``run(...)`` does all three): never raise for anything the program does (every outcome is
    one status of the ``SandboxResult``), answer each solver call through ``handle_call``, and
    raise ``SandboxError`` (``SandboxUnavailable``, ``SandboxStartError``) only when the sandbox
    itself cannot run the program. A ``run_program(program, item, *, handle_call, limits,
    seed) -> SandboxResult`` function is accepted too; it must never raise. Check a backend
    with ``python -m cgr_plugin.sandbox.conformance NAME``. See docs/plugins.md.
    """


@hookspec
def register_models(register: Callable[..., None]) -> None:
    """Add model backends: ``register(name, factory)``, usable as ``solver=NAME`` or
    ``generator=NAME``.

    ``factory(args: dict) -> Backend`` builds the backend from the ``solver.KEY=VALUE``
    arguments; a Backend has ``name``, ``generate(requests, progress=...)``,
    ``judge(prompts)`` and ``describe()`` (see ``cgr_plugin.backends.Backend``).
    """


@hookspec
def register_normalizers(register: Callable[..., None]) -> None:
    """Add dataset row normalizers: ``register(name, fn)``, named in a task YAML as
    ``dataset_kwargs: {normalizer: NAME}``.

    ``fn(row: dict) -> dict`` turns one source row into a row the task's field mapping reads
    (by default the item fields ``id``, ``question``, ``choices``, ``answer``, ``context``,
    ``metadata``), exactly like a ``preprocess: !function`` hook; raise
    ``cgr_plugin.ItemError`` for a row that cannot be an item.
    """


HOOKS: tuple[Any, ...] = (register_scorers, register_extractors, register_partitions,
                          register_sandboxes, register_models, register_normalizers)


@hookspec
def register_fixed_programs(register: Callable[..., None]) -> None:
    """Add fixed programs: ``register(name, source)``, run as the control ``fixed:NAME``.

    ``source`` is a program's text with a top-level ``def solve(item, solver)``, as generated
    programs have; it runs on every item in the same sandbox, with the same helpers and
    budget, and no generator. See docs/plugins.md.
    """
