"""The assisted and generator channels: generator prompt -> program -> audits -> sandbox run.

Programs of a chunk are written in one generator batch, then run concurrently in a bounded
pool (``concurrency``). Solver calls from a running program come back here (``SolverCalls``),
are checked against the item's budget, answered through the ``SolverBroker`` (which batches the
pending calls of all running programs), and logged with prompt, response, tokens and latency.
The fallback policy never touches the assisted answer itself: it is recorded beside it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from .. import plugins
from ..data.items import MCQAItem
from ..models.backends import Backend, Generation, GenerationRequest, seconds_each
from ..programs.attribution import leading_prompt
from ..programs.scaffold import audit_program, extract_program, read_constants
from ..programs.shapes import copies_prompt, shape_id
from ..programs.strategy import strategy
from ..prompts import DEFAULT_GENERATOR_PROMPT, generator_template, render_prompt
from ..record import HARD_CODED, ChannelResult, hard_coded
from ..sandbox.interface import (
    STDERR_CHARS,
    TRACEBACK_CHARS,
    SandboxError,
    SandboxLimits,
    SandboxResult,
    as_sandbox,
)
from .broker import SolverBroker
from .item_view import item_for_program, item_for_prompt, program_seed
from .progress import StageBars
from .provenance import provenance_of

__all__ = ["FALLBACKS", "AssistedSettings", "SolverCalls", "run_assisted", "run_fixed_program",
           "run_item_program", "run_programs"]

log = logging.getLogger(__name__)
FALLBACKS = ("none", "direct", "generator")
_TRACE_TEXT = 4000  # characters of each prompt/response kept in the trace


@dataclass(frozen=True)
class AssistedSettings:
    budget: int = 8
    fallback: str = "none"
    generator_max_tokens: int = 768
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    seed: int = 0
    concurrency: int = 4  # programs running at once
    solver_batch: int = 16  # most solver calls the broker sends in one batch
    batch_wait_ms: float = 5.0  # longest a call waits for others to join its batch
    extractor: str = "cgr"  # plugin name of the answer extractor solver.choose() uses
    sandbox: str = "bwrap"  # plugin name of the sandbox backend
    provenance_seeds: int = 3  # canned-solver seeds of the provenance re-runs; 0: none
    generator_draft_tokens: int | None = 0  # prompt-lookup drafts per step; None: backend's
    generator_stop_repeats: int = 4  # cut a program that repeats a block this often; 0: never

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"cgr: fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if self.budget < 0:
            raise ValueError("cgr: budget must be zero or more solver calls")
        if self.provenance_seeds < 0:
            raise ValueError("cgr: provenance_seeds must be zero or more")
        if self.concurrency < 1 or self.solver_batch < 1 or self.batch_wait_ms < 0:
            raise ValueError("cgr: concurrency and solver_batch must be 1 or more, "
                             "batch_wait_ms 0 or more")


class SolverCalls:
    """Answers one program's solver calls within its budget, keeping the trace."""

    def __init__(self, item: MCQAItem, solver: SolverBroker, budget: int,
                 direct_prompt: Callable[[MCQAItem], str], direct_max_tokens: int,
                 extractor: str = "cgr") -> None:
        self.item, self.solver, self.budget = item, solver, budget
        self.extract = plugins.extractor(extractor)
        self.direct_prompt, self.direct_max_tokens = direct_prompt, direct_max_tokens
        self.trace: list[dict[str, Any]] = []

    @property
    def made(self) -> int:
        return len(self.trace)

    def __call__(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.made >= self.budget:
            return {"error": "budget_exceeded"}
        kind = message.get("kind")
        started = time.perf_counter()
        entry: dict[str, Any] = {"kind": kind}
        try:
            if kind in ("ask", "choose"):
                prompt = message.get("prompt")
                if kind == "choose" and prompt is None:
                    prompt = self.direct_prompt(self.item)
                limit = message.get("max_tokens") or (
                    128 if kind == "ask" else self.direct_max_tokens)
                limit = max(1, min(int(limit), 1024))
                gen = self.solver.generate(GenerationRequest(str(prompt), limit))
                entry.update(prompt=str(prompt)[:_TRACE_TEXT], tokens_in=gen.tokens_in,
                             tokens_out=gen.tokens_out)
                if gen.error is not None:
                    entry["error"] = gen.error
                    reply = {"error": gen.error}
                else:
                    entry["response"] = gen.text[:_TRACE_TEXT]
                    value: Any = gen.text
                    if kind == "choose":
                        found = self.extract(gen.text, self.item.letters, self.item.choices)
                        value = found.letter
                        entry.update(letter=found.letter, extraction_rule=found.rule)
                    reply = {"value": value}
            elif kind == "judge":
                prompt = str(message.get("prompt"))
                judgement = self.solver.judge(prompt)
                entry["prompt"] = prompt[:_TRACE_TEXT]
                if judgement.error is not None:
                    entry["error"] = judgement.error
                    reply = {"error": judgement.error}
                else:
                    entry["p_yes"] = judgement.p_yes
                    reply = {"value": judgement.p_yes}  # programs get a float, as before
            else:
                entry["error"] = f"unknown call {str(kind)[:80]!r}"  # the program's text: short
                reply = {"error": entry["error"]}
        except Exception as err:  # a backend failure answers this call, not the whole run
            entry["error"] = f"{type(err).__name__}: {err}"
            reply = {"error": entry["error"]}
        entry["seconds"] = round(time.perf_counter() - started, 4)
        self.trace.append(entry)
        return reply


def _run_in_sandbox(code: str, item: MCQAItem, calls: SolverCalls,
                    settings: AssistedSettings) -> SandboxResult:
    """The sandbox's result; one that could not run the program is ``crashed``, saying why
    (``extra["sandbox_error"]``: the kind of failure), as ``Sandbox.__call__`` does."""
    sandbox = as_sandbox(plugins.sandbox(settings.sandbox), settings.sandbox)
    try:
        return sandbox.run(code, item_for_program(item), handle_call=calls,
                           limits=settings.limits, seed=program_seed(settings.seed, item))
    except SandboxError as err:
        return SandboxResult(status="crashed", message=str(err), isolation=None,
                             extra={"sandbox_error": type(err).__name__})


def run_item_program(program_text: str | None, item: MCQAItem, *,
                     solver: Backend | SolverBroker, settings: AssistedSettings,
                     direct_prompt: Callable[[MCQAItem], str],
                     direct_max_tokens: int, prompt: str | None = None
                     ) -> tuple[ChannelResult, ChannelResult]:
    """(assisted, generator) results for one item from the generator's raw output.

    ``solver`` is the broker shared by concurrently running programs, or a backend of its own;
    ``prompt`` the generator prompt the output answers (audit ``copies_prompt``).
    """
    if not isinstance(solver, SolverBroker):
        with SolverBroker(solver, max_batch=1, wait_seconds=0) as broker, broker.program():
            return run_item_program(program_text, item, solver=broker, settings=settings,
                                    direct_prompt=direct_prompt,
                                    direct_max_tokens=direct_max_tokens, prompt=prompt)
    started = time.perf_counter()
    program = extract_program(program_text)
    letter, constant_status, difficulty = read_constants(program.tree, item.letters)
    generator = ChannelResult(
        status="ok" if letter else (program.status if program.tree is None else constant_status),
        answer=letter, raw=program_text, difficulty=difficulty)
    audits = audit_program(program, question=item.question, choices=item.choices,
                           letters=item.letters)
    # the program's shape (names and literals abstracted), and whether its prompt showed it
    audits["program_shape"] = shape_id(program.source)
    audits["copies_prompt"] = None if prompt is None else copies_prompt(program.source, prompt)
    audits["strategy"] = strategy(program.source)  # helpers called, tags (programs/strategy.py)
    # "not_run" until the sandbox has run an extracted program; extraction failures are final
    assisted = ChannelResult(status="not_run" if program.status == "ok" else program.status,
                             program=program.source,
                             audits=audits, difficulty=difficulty, error=program.message)
    if program.status == "ok":
        calls = SolverCalls(item, solver, settings.budget, direct_prompt, direct_max_tokens,
                            settings.extractor)
        outcome = _run_in_sandbox(program.code or "", item, calls, settings)
        assisted.isolation, assisted.output = outcome.isolation, outcome.output or None
        assisted.traceback = outcome.traceback and outcome.traceback[-TRACEBACK_CHARS:]
        assisted.stderr = outcome.stderr and outcome.stderr[-STDERR_CHARS:]
        assisted.sandbox = {"backend": settings.sandbox, "start": outcome.start,
                            "isolation": outcome.isolation}
        if outcome.extra.get("sandbox_error"):  # the sandbox, not the program, failed
            assisted.sandbox["error"] = outcome.extra["sandbox_error"]
        assisted.trace, assisted.solver_calls = calls.trace, calls.made
        assisted.model_seconds = outcome.solver_seconds
        assisted.tokens_in = sum(t.get("tokens_in") or 0 for t in calls.trace)
        assisted.tokens_out = sum(t.get("tokens_out") or 0 for t in calls.trace)
        assisted.status, assisted.error = outcome.status, outcome.message
        if outcome.status == "budget_exceeded":
            assisted.error = f"asked for more than {settings.budget} solver calls"
        elif outcome.status == "ok":
            answer = outcome.answer
            if isinstance(answer, str) and answer.strip().upper() in item.letters:
                assisted.answer = answer.strip().upper()
            elif answer is None:
                assisted.status, assisted.error = "uninformative", "solve() returned None"
            else:
                assisted.status = "invalid_answer"
                assisted.error = (f"solve() returned {answer!r:.200}, not one of the item's "
                                  "letters")
        # run-time evidence decides whether the solver was used; the literal checks stay
        audits["answered_without_solver"] = assisted.status == "ok" and calls.made == 0
        if assisted.status == "ok" and settings.provenance_seeds:
            with solver.idle():  # the re-runs call no model: batches need not wait for them
                assisted.provenance = provenance_of(
                    program.code or "", item, str(assisted.answer), calls.trace,
                    seeds=settings.provenance_seeds, budget=settings.budget,
                    sandbox=settings.sandbox, limits=settings.limits, seed=settings.seed,
                    program_seconds=outcome.program_seconds, trace_chars=_TRACE_TEXT)
        if audits["strategy"] is not None:  # the calls it made, by helper (pick is not sent)
            audits["strategy"]["made"] = dict(Counter(str(t.get("kind")) for t in calls.trace))
        audits["leading_prompt"] = leading_prompt(
            [str(t["prompt"]) for t in calls.trace if t.get("prompt")], letter, item.letters,
            item.choices, item.question)
        # the static verdict stays beside the one that decides (the class, where there is one)
        audits["hard_coded_static"] = hard_coded(audits, solver_calls=calls.made)
        audits[HARD_CODED] = hard_coded(audits, solver_calls=calls.made,
                                        provenance=assisted.provenance)
        audits["choose_unreadable"] = sum(1 for t in calls.trace
                                          if t.get("kind") == "choose" and t.get("letter") is None
                                          and "error" not in t)
    assisted.seconds = time.perf_counter() - started
    return assisted, generator


def _apply_fallback(assisted: ChannelResult, settings: AssistedSettings,
                    direct: ChannelResult | None, generator: ChannelResult) -> None:
    if assisted.status == "ok" or settings.fallback == "none":
        return
    source = direct if settings.fallback == "direct" else generator
    if source is not None and source.status == "ok":
        assisted.fallback = {"source": settings.fallback, "answer": source.answer}


def _write_programs(items: Sequence[MCQAItem], prompts: Sequence[str], *,
                    generator: Backend | None, settings: AssistedSettings,
                    bars: StageBars | None, programs: Mapping[str, str] | None
                    ) -> tuple[list[Generation], list[float]]:
    """Each item's generator output (or its replayed program), and its seconds."""
    started = time.perf_counter()
    with bars.stage("generation") if bars else nullcontext(False) as tick:
        if programs is not None:
            generations = [Generation(programs[f"{item.dataset}/{item.id}"])
                           if f"{item.dataset}/{item.id}" in programs
                           else Generation(None, "no program for this item in the replayed "
                                           "package") for item in items]
            if tick:
                tick(len(items))
        else:
            if generator is None:
                raise ValueError("run_assisted needs a generator or replayed programs")
            generations = generator.generate(
                [GenerationRequest(p, settings.generator_max_tokens,
                                   draft=settings.generator_draft_tokens,
                                   stop_repeats=settings.generator_stop_repeats)
                 for p in prompts],
                progress=tick)
    return generations, seconds_each(generations, time.perf_counter() - started)


def run_programs(items: Sequence[MCQAItem], generations: Sequence[Generation], *,
                 solver: Backend, settings: AssistedSettings,
                 direct_prompt: Callable[[MCQAItem], str], direct_max_tokens: int,
                 prompts: Sequence[str | None] | None = None, stage: str = "execution",
                 bars: StageBars | None = None) -> list[tuple[ChannelResult, ChannelResult]]:
    """(assisted, generator) for each item's program text, run in a pool of ``concurrency``
    sharing one solver broker. ``prompts`` are the generator prompts the programs answer (for
    the copies_prompt audit); fixed programs have none."""
    def run_one(index: int, item: MCQAItem, gen: Generation, broker: SolverBroker
                ) -> tuple[ChannelResult, ChannelResult]:
        if gen.error is not None:
            outcome = (ChannelResult(status="generator_error", error=gen.error),
                       ChannelResult(status="prompt_too_long" if gen.too_long else "error",
                                     error=gen.error))
        else:
            try:
                with broker.program():
                    outcome = run_item_program(gen.text, item, solver=broker, settings=settings,
                                               direct_prompt=direct_prompt,
                                               direct_max_tokens=direct_max_tokens,
                                               prompt=prompts[index] if prompts else None)
            except Exception as err:  # a harness failure costs this item, never the run
                log.exception("item %s: running its program failed", item.id)
                message = f"{type(err).__name__}: {err}"
                outcome = (ChannelResult(status="crashed", program=gen.text, error=message),
                           ChannelResult(status="error", raw=gen.text, error=message))
        if bars:
            bars.advance(stage, 1, outcome[0].solver_calls)
        return outcome

    with (bars.stage(stage) if bars else nullcontext()),  \
            SolverBroker(solver, max_batch=settings.solver_batch,
                         wait_seconds=settings.batch_wait_ms / 1000) as broker, \
            ThreadPoolExecutor(max_workers=min(settings.concurrency, max(len(items), 1)),
                               thread_name_prefix="cgr-program") as pool:
        futures = [pool.submit(run_one, i, item, gen, broker)
                   for i, (item, gen) in enumerate(zip(items, generations, strict=True))]
        return [future.result() for future in futures]


def run_assisted(items: Sequence[MCQAItem], *, solver: Backend, generator: Backend | None,
                 settings: AssistedSettings, direct_prompt: Callable[[MCQAItem], str],
                 direct_max_tokens: int, template_dirs: Sequence[str] = (),
                 direct: Sequence[ChannelResult] | None = None, bars: StageBars | None = None,
                 programs: Mapping[str, str] | None = None,
                 generator_prompt: str = DEFAULT_GENERATOR_PROMPT
                 ) -> list[tuple[ChannelResult, ChannelResult]]:
    """Generate every item's program in one batch with the family ``generator_prompt`` (or take
    it from ``programs``, a replayed package keyed by ``dataset/id``: those were written for
    another prompt, so their copies_prompt audit is None), then run them."""
    rendered = [render_prompt(generator_template(generator_prompt), template_dirs,
                              item=item_for_prompt(item), budget=settings.budget)
                for item in items]
    prompts = [prompt.text for prompt in rendered]
    generations, took = _write_programs(items, prompts, generator=generator,
                                        settings=settings, bars=bars, programs=programs)
    outcomes = run_programs(items, generations, solver=solver, settings=settings,
                            direct_prompt=direct_prompt, direct_max_tokens=direct_max_tokens,
                            prompts=None if programs is not None else prompts, bars=bars)
    for i, (assisted, generator_result) in enumerate(outcomes):
        generator_result.prompt = prompts[i]
        generator_result.prompt_shortened = rendered[i].shortened
        generator_result.seconds = generator_result.model_seconds = took[i]
        generator_result.tokens_in = generations[i].tokens_in or 0
        generator_result.tokens_out = generations[i].tokens_out or 0
        if generations[i].looped:  # the program was cut where it began to repeat itself
            assisted.audits["generation_looped"] = generations[i].looped
        assisted.seconds += took[i]
        assisted.model_seconds += took[i]
        _apply_fallback(assisted, settings, direct[i] if direct else None, generator_result)
    return outcomes


def run_fixed_program(source: str, items: Sequence[MCQAItem], *, solver: Backend,
                      settings: AssistedSettings, direct_prompt: Callable[[MCQAItem], str],
                      direct_max_tokens: int, stage: str,
                      bars: StageBars | None = None) -> list[ChannelResult]:
    """The control ``fixed:NAME``: one program's source run on every item exactly as a
    generated program runs (sandbox, helpers, budget, statuses, trace), without a generator."""
    text = f"```python\n{source}\n```"
    outcomes = run_programs(items, [Generation(text) for _ in items], solver=solver,
                            settings=settings, direct_prompt=direct_prompt,
                            direct_max_tokens=direct_max_tokens, stage=stage, bars=bars)
    return [assisted for assisted, _ in outcomes]
