"""The three-channel result record: what CGR knows about one item after a run.

``cgr`` returns it as JSON from ``generate_until``; lm-eval logs it verbatim in each sample's
``resps`` and the per-channel filters read their answer from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ASSISTED_STATUSES", "AUDIT_FLAGS", "CHANNELS", "CONTROL_KINDS", "GENERATOR_STATUSES",
           "HARD_CODED", "HARD_CODING_EVIDENCE", "PROGRAM_CONTROL", "PROVENANCE_CLASSES", "SCHEMA",
           "SCORED_CHANNELS", "STRATEGY_TAGS", "STATUSES", "CGRRecord", "ChannelResult",
           "control_names", "control_problem", "hard_coded", "valid_utf8"]

SCHEMA = "cgr.record/1"
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_utf8(text: str) -> str:
    """``text`` with every lone surrogate as U+FFFD, so it encodes as UTF-8. Programs control
    much of a record (output, errors, answers): a stray ``"\\ud800"``, or an undecodable byte kept
    by ``surrogateescape``, must not stop the journal or lm-eval's sample writer."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
CHANNELS = ("direct", "assisted", "generator", "budget_matched")
# Controls beside the assisted channel (model_arg controls=), kept in CGRRecord.controls by
# name: "cot" (the solver reasons once, then answers) and "fixed:NAME" (a fixed program run on
# every item like a generated one). budget_matched is a control too, kept as its own channel.
PROGRAM_CONTROL = "fixed:"
CONTROL_KINDS = ("cot", "budget_matched", PROGRAM_CONTROL + "NAME")
_CONTROL_NAME = re.compile(r"^fixed:[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def control_names(spec: str | None) -> tuple[str, ...]:
    """The controls of a ``controls=`` value (``fixed:a+cot``), in the order given, each once;
    one reading for the model's settings and the task's columns."""
    return tuple(dict.fromkeys(part.strip() for part in (spec or "").split("+") if part.strip()))


def control_problem(name: str) -> str | None:
    """None for a valid control name, else what is wrong with it."""
    if name in ("cot", "budget_matched") or _CONTROL_NAME.match(name):
        return None
    return (f"unknown control {name!r}: one of cot, budget_matched or fixed:NAME (NAME a fixed "
            "program: letters, digits, _ . -)")
# The views lm-eval scores (one filter pipeline each): the channels plus assisted with fallback.
SCORED_CHANNELS = ("direct", "assisted", "assisted_fallback", "generator", "budget_matched")
# Every channel: ok (a letter), invalid (an answer in which no letter could be read; never
# guessed), error (the model failed), prompt_too_long (the channel's prompt did not fit the
# model's context; not sent, and the error names both lengths), not_run (not part of this run).
COMMON_STATUSES = ("ok", "invalid", "error", "prompt_too_long", "not_run")
# Assisted channel: what became of the generated program (generator_error: no program came,
# the generator's prompt too long included; the generator channel then says prompt_too_long).
ASSISTED_STATUSES = ("ok", "generator_error", "no_code", "syntax_error", "missing_entry",
                     "runtime_error", "timeout", "memory_limit", "budget_exceeded", "crashed",
                     "protocol_error", "invalid_answer", "uninformative", "entry_mismatch",
                     "not_run")
# Generator channel: what became of the generator's GENERATOR_ANSWER constant.
GENERATOR_STATUSES = ("ok", "missing", "placeholder", "invalid", "no_code", "syntax_error",
                      "error", "prompt_too_long", "not_run")
STATUSES = tuple(dict.fromkeys(COMMON_STATUSES + ASSISTED_STATUSES + GENERATOR_STATUSES))

# Audits of the assisted channel's program. HARD_CODED is the verdict "the answer may not come
# from the solver"; hard_coded() below is the only place that decides it, from the provenance
# class where the program has one, else from the static evidence flags. Everything downstream
# (lm-eval's audit metrics, the report's sensitivity check) reads the recorded verdict instead
# of deciding again.
HARD_CODED = "hard_coded"
HARD_CODING_EVIDENCE = ("returns_literal", "returns_generator_answer", "answered_without_solver")
# Where a program's answer comes from, from counterfactual re-runs (programs/provenance.py).
# "constant" is hard-coded in effect; "unknown" is no evidence either way.
PROVENANCE_CLASSES = ("solver_dependent", "computed_from_item", "constant", "mixed", "unknown")
# What a program's code does (programs/strategy.py), as lm-eval's ``strategy_<tag>`` shares.
STRATEGY_TAGS = ("loops_over_options", "arithmetic_on_item", "compares_item_data",
                 "reads_payload", "reads_context", "reply_in_condition", "reply_in_score")
# The flags lm-eval reports per item as ``audit_<flag>`` (assisted filter).
# copies_prompt: the program has the shape of a program its prompt shows (programs/shapes.py);
# leading_prompt: a solver prompt states or singles out the generator's own answer.
AUDIT_FLAGS = (HARD_CODED, "altered_item", "retyped_item", "placeholders", "copies_prompt",
               "leading_prompt")


def hard_coded(audits: Mapping[str, Any], solver_calls: int | None = None,
               provenance: Mapping[str, Any] | None = None) -> bool:
    """Whether a program's answer may not come from the solver.

    A provenance class other than ``unknown`` decides it: ``constant`` (the same letter
    whatever the solver replies and the option order) is hard-coded, every other class is not.
    Without one, the static flags decide: any of ``HARD_CODING_EVIDENCE``, or a program with no
    solver method call in its text (``no_solver_call``), before it runs (``solver_calls`` None)
    or, after the run, only if it indeed made no solver call (the solver can be reached under
    other names).
    """
    found = (provenance or {}).get("class")
    if found in PROVENANCE_CLASSES and found != "unknown":
        return found == "constant"
    if any(audits.get(flag) for flag in HARD_CODING_EVIDENCE):
        return True
    return bool(audits.get("no_solver_call")) and not solver_calls


@dataclass
class ChannelResult:
    status: str = "not_run"
    answer: str | None = None
    raw: str | None = None
    prompt: str | None = None
    # what the prompt shortened on purpose, e.g. "payload: 128 of 128 numbers rounded to 3
    # significant digits" (programs still get the exact item)
    prompt_shortened: str | None = None
    extraction_rule: str | None = None
    solver_calls: int = 0
    error: str | None = None
    seconds: float = 0.0  # wall time of the channel for this item
    model_seconds: float = 0.0  # of which spent inside models (solver and generator)
    tokens_in: int = 0
    tokens_out: int = 0
    # assisted / generator channels
    program: str | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    audits: dict[str, Any] = field(default_factory=dict)
    isolation: str | None = None
    difficulty: str | None = None
    fallback: dict[str, Any] | None = None  # {"source": "direct", "answer": "C"}, never in answer
    output: str | None = None
    # assisted channel, from the sandbox: why a program failed, and where it ran
    traceback: str | None = None  # of the exception the program raised (last frames, capped)
    stderr: str | None = None  # what its processes wrote to the real stderr (capped)
    sandbox: dict[str, Any] | None = None  # {"backend", "start": "warm"|"cold", "isolation"}
    # assisted channel, programs that ran ok: where the answer comes from, from counterfactual
    # re-runs (run/provenance.py): {"class": one of PROVENANCE_CLASSES, "reason", "evidence"}
    provenance: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown channel status {self.status!r}")
        if (self.status == "ok") != (self.answer is not None):
            raise ValueError("a channel has an answer exactly when its status is ok")


@dataclass
class CGRRecord:
    item: dict[str, Any]  # as MCQAItem.to_json() writes it, gold included (`cgr exec --item`)
    solver: str
    generator: str | None = None
    direct: ChannelResult = field(default_factory=ChannelResult)
    assisted: ChannelResult = field(default_factory=ChannelResult)
    generator_side: ChannelResult = field(default_factory=ChannelResult)
    # control: the direct prompt sampled as often as the program called the solver, majority vote
    budget_matched: ChannelResult = field(default_factory=ChannelResult)
    # the other controls of the run, by name ("cot", "fixed:judge_each_option")
    controls: dict[str, ChannelResult] = field(default_factory=dict)
    # the generator prompt family and its templates' hash: {"name": "cgr", "sha256": "..."}
    generator_prompt: dict[str, str] | None = None
    schema: str = SCHEMA

    @property
    def item_id(self) -> str:
        return str(self.item.get("id", ""))

    @property
    def gold(self) -> str | None:
        return self.item.get("answer")

    def channel(self, name: str) -> ChannelResult:
        """A channel or control by name; a valid control this run did not compute is not_run."""
        if name in CHANNELS:
            return self.generator_side if name == "generator" else getattr(self, name)
        if control_problem(name) is None:
            return self.controls.get(name, ChannelResult())
        raise KeyError(f"unknown channel {name!r}; channels: {', '.join(CHANNELS)}, and the "
                       "controls cot and fixed:NAME")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = {name: out.pop("generator_side" if name == "generator" else name)
                           for name in CHANNELS}
        return out

    def to_json(self) -> str:
        """The record as one line of valid UTF-8 JSON, whatever its program printed."""
        return valid_utf8(json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def from_json(cls, text: str) -> CGRRecord:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} record")
        channels = data.pop("channels")
        results = {("generator_side" if name == "generator" else name):
                   ChannelResult(**channels[name]) for name in CHANNELS if name in channels}
        controls = {name: ChannelResult(**result)
                    for name, result in (data.pop("controls", None) or {}).items()}
        return cls(**data, **results, controls=controls)
