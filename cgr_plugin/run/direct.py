"""The direct channel: the solver answers each item's direct prompt, all items in one batch.

The same prompt is what a program's ``solver.choose()`` sends and what the budget-matched
control samples, so both channels measure against exactly this question.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..data.items import MCQAItem
from ..models.backends import Backend, Generation, GenerationRequest, seconds_each
from ..models.registry import DirectSettings, ModelSpec
from ..prompts import Prompt, render_prompt
from ..record import ChannelResult
from .journal import Journal, written_with
from .progress import StageBars

__all__ = ["direct_prompt", "direct_request", "direct_settings", "recorded_direct_answers",
           "rendered_direct_prompt", "run_direct"]

log = logging.getLogger(__name__)


def direct_settings(spec: ModelSpec | None, *, style: str | None = None,
                    max_tokens: int | None = None) -> DirectSettings:
    """The solver's registry settings (the defaults for a model outside the registry), with
    ``direct_style`` / ``direct_max_tokens`` on top where given."""
    base = spec.direct if spec else DirectSettings()
    return DirectSettings(style=base.style if style is None else style,
                          max_tokens=int(base.max_tokens if max_tokens is None else max_tokens))


def direct_prompt(item: MCQAItem, settings: DirectSettings, template_dirs: Sequence[str]) -> str:
    return rendered_direct_prompt(item, settings, template_dirs).text


def rendered_direct_prompt(item: MCQAItem, settings: DirectSettings,
                           template_dirs: Sequence[str]) -> Prompt:
    """The direct prompt, with what it shortened on purpose (for the record)."""
    return render_prompt("direct.j2", list(template_dirs), item=item, style=settings.style)


def direct_request(prompt: str, settings: DirectSettings) -> GenerationRequest:
    """The one call the direct channel makes for a prompt: greedy, the solver's token budget."""
    return GenerationRequest(prompt, settings.max_tokens)


def recorded_direct_answers(journals: Sequence[str | Path], solver: str,
                            made_with: Mapping[str, Any], settings: DirectSettings
                            ) -> Iterator[tuple[GenerationRequest, Generation]]:
    """The direct answers ``solver`` gave in other runs' journals, as the requests and replies
    they were, for a response cache to answer from. A journal is used when a run that wrote it
    had the settings ``made_with`` (this run's solver identity and direct settings, as
    ``CGRLM.get_model_info()`` names them); one written before journals kept their runs'
    settings is taken on trust (a study's cells share their settings) and said so. A journal
    not there yet, unreadable or made with other settings is passed over and counted in the
    log."""
    counts = {"used": 0, "missing": 0, "unreadable": 0, "other settings": 0, "unchecked": 0}
    for path in journals:
        if not Path(path).is_file():
            counts["missing"] += 1
            continue
        try:
            same = written_with(path, made_with)
            if same is False:
                counts["other settings"] += 1
                continue
            counts["unchecked"] += same is None
            for record in Journal.records(path):
                answer = _direct_generation(record, solver, settings)
                if answer is not None:
                    counts["used"] += 1
                    yield answer
        except sqlite3.Error as err:
            counts["unreadable"] += 1
            log.warning("cgr: cache_from: cannot read the journal %s (%s); passed over", path, err)
    log.info("cgr: cache_from: %d direct answers of %s from %d journals (passed over: %d not "
             "there yet, %d unreadable, %d made with other settings; %d from before journals "
             "kept their settings, taken on trust)", counts["used"], solver, len(journals),
             counts["missing"], counts["unreadable"], counts["other settings"],
             counts["unchecked"])


def _direct_generation(record: Any, solver: str, settings: DirectSettings
                       ) -> tuple[GenerationRequest, Generation] | None:
    """One record's direct call and reply, or None where it is another solver's or there was
    no reply."""
    if not isinstance(record, dict) or record.get("solver") != solver:
        return None
    direct = (record.get("channels") or {}).get("direct") or {}
    prompt, raw = direct.get("prompt"), direct.get("raw")
    if not isinstance(prompt, str) or not isinstance(raw, str) or direct.get("error"):
        return None
    return direct_request(prompt, settings), Generation(
        raw, tokens_in=direct.get("tokens_in"), tokens_out=direct.get("tokens_out"))


def run_direct(items: Sequence[MCQAItem], *, solver: Backend, settings: DirectSettings,
               extract: Callable[..., Any], template_dirs: Sequence[str] = (),
               bars: StageBars | None = None, stage: str = "direct") -> list[ChannelResult]:
    """One solver call per item; a letter is read with ``extract`` (never guessed). The
    chain-of-thought control is this with the ``reasoning`` style (``stage="cot"``)."""
    rendered = [rendered_direct_prompt(item, settings, template_dirs) for item in items]
    prompts = [prompt.text for prompt in rendered]
    requests = [direct_request(prompt, settings) for prompt in prompts]
    started = time.perf_counter()
    with bars.stage(stage, calls_per_item=1) if bars else nullcontext(False) as tick:
        generations = solver.generate(requests, progress=tick)
    took = seconds_each(generations, time.perf_counter() - started)
    results = []
    for item, prompt, gen, seconds in zip(items, rendered, generations, took, strict=True):
        if gen.error is not None:
            results.append(ChannelResult(
                status="prompt_too_long" if gen.too_long else "error", prompt=prompt.text,
                prompt_shortened=prompt.shortened, error=gen.error,
                solver_calls=0 if gen.too_long else 1, seconds=seconds,
                tokens_in=gen.tokens_in or 0))
            continue
        found = extract(gen.text, item.letters, item.choices)
        results.append(ChannelResult(
            status="ok" if found.letter else "invalid", answer=found.letter, raw=gen.text,
            prompt=prompt.text, prompt_shortened=prompt.shortened, extraction_rule=found.rule,
            solver_calls=1, seconds=seconds, model_seconds=seconds,
            tokens_in=gen.tokens_in or 0, tokens_out=gen.tokens_out or 0))
    return results
