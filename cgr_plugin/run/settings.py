"""Every model_arg of ``--model cgr``, declared once: name, type, default, help, allowed values.

lm-eval hands ``--model_args`` to the model as keyword arguments, already cast by its own parser
(``8`` an int, ``True`` a bool, ``none`` None) or, from Python, as the caller wrote them
(``"8"``, ``"true"``). :meth:`RunSettings.from_model_args` turns either into one frozen
:class:`RunSettings` before any model loads: an unknown key names the closest valid one, a bad
value names its key and what it accepts. ``solver.KEY=VALUE`` and ``generator.KEY=VALUE`` pass
through to that backend unchanged. README's model_args table is :func:`markdown_table`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import CGRError
from ..models.registry import DIRECT_STYLES
from ..prompts import DEFAULT_GENERATOR_PROMPT
from ..record import PROGRAM_CONTROL, control_names, control_problem
from ..sandbox.runner import SandboxLimits
from .assisted import FALLBACKS, AssistedSettings

__all__ = ["BACKEND_SCOPES", "CHANNEL_SETS", "DEFAULT_GENERATOR", "DEFAULT_SOLVER", "Option",
           "RunSettings", "SettingsError", "default_text", "markdown_table", "options"]

DEFAULT_SOLVER = "smollm2-135m"
DEFAULT_GENERATOR = "qwen2.5-coder-1.5b"
CHANNEL_SETS = {"all": ("direct", "assisted"), "direct": ("direct",),
                "direct+assisted": ("direct", "assisted")}
# ROLE.KEY=VALUE goes to that role's backend unchanged (lm-eval's own --model_args of hf, ...)
BACKEND_SCOPES = {
    "solver": "that backend's own arguments, passed unchanged, e.g. "
              "`solver=hf,solver.pretrained=Qwen/Qwen2.5-1.5B-Instruct,solver.dtype=bfloat16`, "
              "or `solver.n_ctx=4096` for llama.cpp; `solver.chat_template=False` sends raw "
              "prompts; for a hub registry model, `solver.backend=hf` or `vllm` picks the "
              "backend (default: the registry's)",
    "generator": "the generator backend's own arguments, as for `solver.KEY`",
}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class SettingsError(CGRError):
    """A model_arg that is unknown or has a value its declaration does not allow."""


@dataclass(frozen=True)
class Option:
    """How one model_arg is read and documented.

    ``kind`` is int, float, bool or str; None passes the value on as lm-eval gave it.
    ``shown_default`` is what the table says where the default is None (decided elsewhere).
    """

    kind: type | None
    help: str
    metavar: str = "N"
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    shown_default: str | None = None


def _option(default: Any, kind: type | None, help: str, **how: Any) -> Any:
    return field(default=default, metadata={"option": Option(kind, help, **how)})


@dataclass(frozen=True)
class RunSettings:
    """The ``cgr`` model's configuration; fields with an :class:`Option` are model_args."""

    solver: str = _option(
        DEFAULT_SOLVER, str, "a registry model (in-process llama.cpp, GPU offload when the build "
        "supports it) **or any lm-eval model** (`hf`, `vllm`, `local-chat-completions`, ...)",
        metavar="NAME")
    generator: str = _option(
        DEFAULT_GENERATOR, str, "the program writer, same forms as `solver`; the same model in "
        "both roles is loaded once", metavar="NAME")
    channels: str = _option(
        "all", str, "`direct` skips programs (assisted and generator are then `not_run`); "
        "`all` and `direct+assisted` run every channel", choices=tuple(CHANNEL_SETS))
    generator_prompt: str = _option(
        DEFAULT_GENERATOR_PROMPT, str, "the generator prompt family, template "
        "`generator_NAME.j2`: `cgr` (strategies in words, no body to paste), `per_option` "
        "(0.1's prompt: one judge per option), `pot` (compute from the item's data), "
        "`decompose` (sub-questions), or a user folder's own; recorded with its hash",
        metavar="NAME")
    controls: str | None = _option(
        None, str, "controls beside assisted, joined with `+`: `fixed:NAME` (a fixed program "
        "on every item, same sandbox and budget, no generator: `judge_each_option`, "
        "`eliminate`, `evidence_then_judge`, or your own), `cot` (the solver reasons, then "
        "answers, in one call), `budget_matched`; each is a column of lm-eval's results and "
        "is paired with assisted in `cgr report`", metavar="C+C")
    fixed_programs: str | None = _option(
        None, str, "a folder of fixed programs, one `NAME.py` each, for `controls=fixed:NAME`",
        metavar="PATH")
    budget: int = _option(8, int, "solver calls per program", minimum=0)
    fallback: str = _option(
        "none", str, "the answer recorded beside an assisted failure, never inside it; see "
        "fallback above", choices=FALLBACKS)
    program_timeout: float = _option(20.0, float, "a program's wall-clock limit in the sandbox, "
                                     "seconds", metavar="S")
    provenance_seeds: int = _option(
        3, int, "canned-solver seeds of the provenance audit: each program that ran `ok` runs "
        "again, without models, under N canned solvers and N option permutations (a few ms "
        "each) and is classed `solver_dependent`, `computed_from_item`, `constant`, `mixed` "
        "or `unknown` (docs/programs.md); `0` turns it off", minimum=0)
    program_memory_mb: int = _option(1024, int, "a program's memory limit in the sandbox, MB",
                                     metavar="M", minimum=1)
    generator_max_tokens: int = _option(768, int, "the generator's output budget per program, "
                                        "tokens", minimum=1)
    generator_draft_tokens: int = _option(
        0, int, "lookup decoding while the embedded (llama.cpp) generator writes programs: up to "
        "N tokens drafted from n-gram counts of the prompt, the program so far and the "
        "programs written before it in the run are checked in one batch, each draft cut to the "
        "length that pays at the batch costs of 2 CPU cores (`generator.draft_costs=1:1.7:2.1` "
        "for other hardware: a batch of 1, 2, 3 tokens over one's; docs/performance.md); a "
        "batch's logits can differ from one-token steps in the last bits, so a near-tie may go "
        "the other way; `0`: plain greedy decoding, token for token", metavar="N", minimum=0)
    generator_stop_repeats: int = _option(
        4, int, "stop writing a program whose last lines repeat one block of 16 or more tokens "
        "N times in a row (a greedy loop that would run to the token budget); the assisted "
        "audit `generation_looped` says so; `0`: never", metavar="N", minimum=0)
    programs: str | None = _option(
        None, str, "replay the programs of a `cgr export` package instead of generating (no "
        "generator model is loaded)", metavar="PKG")
    budget_matched: bool = _option(False, bool, "add the budget-matched control channel (below); "
                                   "the same as `controls=budget_matched`")
    journal: str | None = _option(
        None, str, "an SQLite journal of finished records, written per chunk of `chunk_size` "
        "items; the same command again resumes after an interruption (Ctrl-C, kill -9); keys "
        "cover models, settings and templates, so changed settings never reuse stale records",
        metavar="PATH")
    chunk_size: int = _option(16, int, "items per round of every stage (direct, generation, "
                              "execution): the most an interruption loses", minimum=1)
    cache: str | None = _option(
        None, str, "SQLite cache of model responses keyed by model identity, prompt and "
        "decoding settings; a resumed run answers the interrupted chunk's finished calls from "
        "it and logs `response cache ...: N hits, M misses`", metavar="PATH\\|off",
        shown_default="the journal's file when `journal=` is set, else off")
    cache_from: str | None = _option(
        None, str, "journals (`a.sqlite+b.sqlite`) of other runs: the direct answers they "
        "recorded with this solver and direct settings go into the response cache first, so "
        "the direct channel asks the model only for the rest (how `cgr study`'s cells share "
        "them on a fresh clone, where the git-ignored cache is empty); a journal not there "
        "yet or made with other settings is passed over; decides no record", metavar="PATHS")
    concurrency: int = _option(4, int, "programs running at once", minimum=1)
    solver_batch: int = _option(16, int, "the broker sends the pending solver calls of all "
                                "running programs as one batch of at most N", minimum=1)
    batch_wait_ms: float = _option(5.0, float, "the longest the broker waits for a batch to "
                                   "fill, ms", metavar="M", minimum=0)
    retries: int = _option(2, int, "failed model calls are retried N times; what still fails "
                           "is recorded as the item's `error`", minimum=0)
    retry_backoff: float = _option(1.0, float, "seconds before the first retry, doubling after "
                                   "each (S, 2S, ...)", metavar="S", minimum=0)
    extractor: str = _option("cgr", str, "the answer extractor, a plugin's name (`cgr plugins`)",
                             metavar="NAME")
    sandbox: str = _option("bwrap", str, "the sandbox backend, a plugin's name (`cgr plugins`)",
                           metavar="NAME")
    direct_style: str | None = _option(
        None, str, "overrides the solver's direct-prompt style", choices=DIRECT_STYLES,
        shown_default="the registry's")
    direct_max_tokens: int | None = _option(
        None, int, "overrides the solver's direct-prompt token budget", minimum=1,
        shown_default="the registry's")
    registry: str | None = _option(
        None, str, "an extra registry YAML (also `CGR_MODELS=a.yaml:b.yaml`); entries override "
        "by name", metavar="PATH")
    template_dir: str | None = _option(
        None, str, "a folder whose templates shadow the packaged ones (also "
        "`CGR_TEMPLATES_PATH`)", metavar="PATH")
    seed: int | None = _option(
        None, int, "seeds the budget-matched draws and each program's run; when given, also "
        "every llama.cpp model's (and a plugin backend's) seed", shown_default="`0`")
    n_threads: int | None = _option(None, int, "threads of every llama.cpp model", minimum=1,
                                    shown_default="the cores, at most 8")
    n_ctx: int | None = _option(None, int, "context length of every llama.cpp model", minimum=1,
                                shown_default="the registry's")
    prompt_cache: str | None = _option(
        None, str, "llama.cpp models save the KV state of a prompt prefix of 256 or more tokens "
        "that consecutive prompts share (the generator's fixed text) and start from it in "
        "later runs, instead of evaluating it again (~15 s a run for the generator on 2 CPU "
        "cores); same logits as within one run; `on`: in ~/.cache/cgr-plugin/prompt-cache, "
        "a folder, or `off`", metavar="DIR", shown_default="`on`")
    device: str | None = _option(None, str, "lm-eval's `--device`, passed on to lm-eval and "
                                 "plugin backends", metavar="DEVICE")
    batch_size: Any = _option(None, None, "lm-eval's `--batch_size`, passed on to lm-eval and "
                              "plugin backends (for `hf`, `solver.batch_size=N` sets the "
                              "solver's alone)")
    max_batch_size: Any = _option(None, None, "lm-eval's `--max_batch_size`: accepted, not used")
    # solver.KEY=VALUE / generator.KEY=VALUE, unchanged
    solver_args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    generator_args: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        """Each model_arg read as its declared kind; None (lm-eval's ``none``) or an empty
        value leaves it at its default."""
        for spec in fields(self):
            option = spec.metadata.get("option")
            value = getattr(self, spec.name)
            if option is not None:
                converted = None if value is None else _convert(spec.name, value, option)
                object.__setattr__(self, spec.name,
                                   spec.default if converted is None else converted)
        for name in ("solver_args", "generator_args"):
            object.__setattr__(self, name, dict(getattr(self, name)))
        for name in self.control_names:
            problem = control_problem(name)
            if problem is not None:
                raise SettingsError(f"cgr: model_arg controls: {problem}")
        if self.matches_budget and "assisted" not in self.channel_names:
            raise SettingsError("cgr: the budget_matched control needs the assisted channel (it "
                                "matches each program's solver calls); drop channels=direct")

    @classmethod
    def from_model_args(cls, kwargs: Mapping[str, Any]) -> RunSettings:
        """lm-eval's model_args as settings; ``ROLE.KEY`` goes to that role's backend."""
        declared = options()
        values: dict[str, Any] = {}
        scoped: dict[str, dict[str, Any]] = {role: {} for role in BACKEND_SCOPES}
        for key, value in kwargs.items():
            role, dot, sub = key.partition(".")
            if dot and role in BACKEND_SCOPES and sub:
                scoped[role][sub] = value
            elif key in declared:
                values[key] = value
            else:
                raise SettingsError(_unknown_key_message(key, declared))
        return cls(**values, solver_args=scoped["solver"], generator_args=scoped["generator"])

    # -- what the run reads -----------------------------------------------------------------
    @property
    def channel_names(self) -> tuple[str, ...]:
        return CHANNEL_SETS[self.channels]

    @property
    def control_names(self) -> tuple[str, ...]:
        """``controls=`` as names, in the order given, each once."""
        return control_names(self.controls)

    @property
    def matches_budget(self) -> bool:
        """Whether the budget-matched control runs (``budget_matched=True`` or in controls)."""
        return self.budget_matched or "budget_matched" in self.control_names

    @property
    def fixed_program_names(self) -> tuple[str, ...]:
        return tuple(name.removeprefix(PROGRAM_CONTROL) for name in self.control_names
                     if name.startswith(PROGRAM_CONTROL))

    @property
    def cache_path(self) -> str | None:
        """The response cache: ``cache=``, else the journal's file; ``off`` turns it off."""
        path = self.cache or self.journal
        return None if not path or path == "off" else path

    @property
    def cache_from_paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.cache_from or "").split("+") if p)

    def backend_defaults(self) -> dict[str, Any]:
        """What every backend gets unless its own ``ROLE.KEY`` says otherwise (only keys set)."""
        return {k: getattr(self, k) for k in ("seed", "n_threads", "n_ctx", "prompt_cache",
                                              "device", "batch_size")
                if getattr(self, k) is not None}

    def assisted(self) -> AssistedSettings:
        return AssistedSettings(
            budget=self.budget, fallback=self.fallback,
            generator_max_tokens=self.generator_max_tokens, seed=self.seed or 0,
            generator_draft_tokens=self.generator_draft_tokens,
            generator_stop_repeats=self.generator_stop_repeats,
            concurrency=self.concurrency, solver_batch=self.solver_batch,
            batch_wait_ms=self.batch_wait_ms, extractor=self.extractor, sandbox=self.sandbox,
            provenance_seeds=self.provenance_seeds,
            limits=SandboxLimits.for_timeout(self.program_timeout, self.program_memory_mb))


def options() -> dict[str, Option]:
    """Every model_arg in declaration order (README's order)."""
    return {f.name: f.metadata["option"] for f in fields(RunSettings) if "option" in f.metadata}


def _convert(key: str, value: Any, option: Option) -> Any:
    """``value`` as ``option.kind``, or a :class:`SettingsError` naming the key."""
    kind = option.kind
    if kind is None:
        return value
    if kind is str:
        converted: Any = str(value).strip() or None  # an empty value: the default
    elif kind is bool:
        converted = _as_bool(key, value)
    elif isinstance(value, bool):  # True is an int to Python, never a count to a user
        raise SettingsError(f"cgr: model_arg {key} must be {_kind_name(kind)}, got {value!r}")
    else:
        converted = _as_number(key, value, kind)
    if option.choices and converted is not None and converted not in option.choices:
        close = difflib.get_close_matches(converted, option.choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SettingsError(f"cgr: model_arg {key} must be one of {', '.join(option.choices)}; "
                            f"got {converted!r}{hint}")
    if option.minimum is not None and converted < option.minimum:
        raise SettingsError(f"cgr: model_arg {key} must be {option.minimum:g} or more, "
                            f"got {converted!r}")
    return converted


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise SettingsError(f"cgr: model_arg {key} must be True or False, got {value!r}")


def _as_number(key: str, value: Any, kind: type) -> int | float:
    try:
        number = float(value) if kind is float else _as_int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"cgr: model_arg {key} must be {_kind_name(kind)}, "
                            f"got {value!r}") from None
    return number


def _as_int(value: Any) -> int:
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    if isinstance(value, int):
        return value
    return int(str(value).strip())


def _kind_name(kind: type) -> str:
    return "an integer" if kind is int else "a number"


def _unknown_key_message(key: str, declared: Mapping[str, Option]) -> str:
    role, dot, sub = key.partition(".")
    if dot:  # a misspelled role: solvr.n_ctx
        close = difflib.get_close_matches(role, BACKEND_SCOPES, n=1)
        guess = f"{close[0]}.{sub}" if close and sub else None
    else:
        close = difflib.get_close_matches(key, list(declared) + list(BACKEND_SCOPES), n=1)
        guess = close[0] if close else None
    hint = f" (did you mean {guess!r}?)" if guess else ""
    return (f"cgr: unknown model_arg {key!r}{hint}; valid: {', '.join(declared)}, and "
            "solver.KEY / generator.KEY for the backends' own arguments")


# -- documentation ------------------------------------------------------------------------------
def markdown_table() -> str:
    """README's model_args table, one row per key, from the declarations above."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, option in options().items():
        rows.append(f"| `{name}={_metavar(option)}` | {default_text(name)} | "
                    f"{option.help} |")
        if name in BACKEND_SCOPES:
            rows.append(f"| `{name}.KEY=VALUE` | — | {BACKEND_SCOPES[name]} |")
    return "\n".join(rows) + "\n"


def _metavar(option: Option) -> str:
    if option.kind is bool:
        return "True\\|False"
    return "\\|".join(option.choices) if option.choices else option.metavar


def default_text(name: str) -> str:
    """The default of model_arg ``name`` as README and docs tables show it."""
    default = next(f.default for f in fields(RunSettings) if f.name == name)
    if default is None:
        return options()[name].shown_default or "—"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"
