"""The direct channel: the solver answers each item's direct prompt, all items in one batch.

The same prompt is what a program's ``solver.choose()`` sends and what the budget-matched
control samples, so both channels measure against exactly this question.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

from ..data.items import MCQAItem
from ..models.backends import Backend, GenerationRequest
from ..models.registry import DirectSettings, ModelSpec
from ..prompts import Prompt, render_prompt
from ..record import ChannelResult
from .progress import StageBars

__all__ = ["direct_prompt", "direct_settings", "rendered_direct_prompt", "run_direct"]


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


def run_direct(items: Sequence[MCQAItem], *, solver: Backend, settings: DirectSettings,
               extract: Callable[..., Any], template_dirs: Sequence[str] = (),
               bars: StageBars | None = None, stage: str = "direct") -> list[ChannelResult]:
    """One solver call per item; a letter is read with ``extract`` (never guessed). The
    chain-of-thought control is this with the ``reasoning`` style (``stage="cot"``)."""
    rendered = [rendered_direct_prompt(item, settings, template_dirs) for item in items]
    prompts = [prompt.text for prompt in rendered]
    requests = [GenerationRequest(prompt, settings.max_tokens) for prompt in prompts]
    started = time.perf_counter()
    with bars.stage(stage, calls_per_item=1) if bars else nullcontext(False) as tick:
        generations = solver.generate(requests, progress=tick)
    per_item = (time.perf_counter() - started) / max(len(items), 1)
    results = []
    for item, prompt, gen in zip(items, rendered, generations, strict=True):
        if gen.error is not None:
            results.append(ChannelResult(
                status="prompt_too_long" if gen.too_long else "error", prompt=prompt.text,
                prompt_shortened=prompt.shortened, error=gen.error,
                solver_calls=0 if gen.too_long else 1, seconds=per_item,
                tokens_in=gen.tokens_in or 0))
            continue
        found = extract(gen.text, item.letters, item.choices)
        results.append(ChannelResult(
            status="ok" if found.letter else "invalid", answer=found.letter, raw=gen.text,
            prompt=prompt.text, prompt_shortened=prompt.shortened, extraction_rule=found.rule,
            solver_calls=1, seconds=per_item, model_seconds=per_item,
            tokens_in=gen.tokens_in or 0, tokens_out=gen.tokens_out or 0))
    return results
