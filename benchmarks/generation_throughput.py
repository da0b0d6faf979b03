"""(f) Generation throughput of the embedded backend: programs per minute and judge calls per
second, today's path against each lever added in turn, side by side in one run.

Levers, cumulative: (1) today: the item after the first paragraph of the generator prompt,
``create_chat_completion``; (2) + layout: the item last, so consecutive prompts share their
fixed text and llama-cpp-python reuses its KV state; (3) + lean: greedy decoding without the
per-token sampling path (``llama_decode.greedy_generate``); (4) + loop stop: a program that
repeats a block 4 times is cut there (on by default); (5) + draft: lookup decoding on top, drafts
from n-gram counts of the prompt, the reply and the replies before it (opt-in:
``generator_draft_tokens=N``); (6) + prompt cache: (4) through the backend as a later
run finds it, the shared prefix's KV state saved on disk by an earlier one (on by default);
(7) all: (6) with the drafts of (5).
(2), (3) and (6) must give the programs of their predecessors token for token, (7) those of (5);
(4) and (5) are counted. Judge: today's ``judge`` (fresh context, log-softmax over the
vocabulary) against the backend's (prompts in prefix order, shared prefix reused, two logits
read).

Run: python benchmarks/generation_throughput.py [--items 3] [--draft 4] [--family cgr]
     (wrap it in `flock /tmp/cgr-model.lock` on a shared machine)
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _harness import bundle_items

from cgr_plugin.models.base import GenerationRequest
from cgr_plugin.models.llama_cpp import LlamaCppBackend
from cgr_plugin.models.llama_decode import greedy_generate
from cgr_plugin.models.ngram_drafts import LookupDrafter
from cgr_plugin.models.registry import load_registry, model_file
from cgr_plugin.prompts import DEFAULT_GENERATOR_PROMPT, generator_template, render
from cgr_plugin.run.assisted import AssistedSettings


@dataclass
class Lever:
    name: str
    wall: float = 0.0
    texts: list[str] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    prefill_s: list[float] = field(default_factory=list)
    drafted: int = 0
    accepted: int = 0


def item_first(prompt: str, item: Any) -> str:
    """Today's generator prompt: the item right after the first paragraph."""
    block = render("item.j2", item=item)
    intro, rest = prompt[:-len(block)].rstrip("\n").split("\n\n", 1)
    return f"{intro}\n\n{block}\n{rest}"


Written = tuple[str, int, int, float, int, int]  # text, in, out, prefill s, drafted, accepted


def chat_completion(llm: Any, prompt: str, max_tokens: int) -> Written:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llm.ctx)
    reply = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}],
                                       max_tokens=max_tokens, temperature=0.0)
    usage = reply["usage"]
    prefill_s = llama_cpp.llama_perf_context(llm.ctx).t_p_eval_ms / 1000
    return (reply["choices"][0]["message"]["content"], usage["prompt_tokens"],
            usage["completion_tokens"], prefill_s, 0, 0)


def run_lever(lever: Lever, backend: LlamaCppBackend, prompts: Sequence[str],
              write: Callable[[str], Written], fresh: bool = True) -> Lever:
    """Time ``write`` over ``prompts``; ``fresh``: from an empty context."""
    if fresh:
        backend._model().reset()
        backend._reusable = 0
    started = time.perf_counter()
    for prompt in prompts:
        text, tokens_in, tokens_out, prefill_s, drafted, accepted = write(prompt)
        lever.texts.append(text)
        lever.tokens_in += tokens_in
        lever.tokens_out += tokens_out
        lever.prefill_s.append(prefill_s)
        lever.drafted += drafted
        lever.accepted += accepted
    lever.wall = time.perf_counter() - started
    return lever


def lean_writer(backend: LlamaCppBackend, max_tokens: int, draft: int, stop_repeats: int = 0
                ) -> Callable[[str], Written]:
    llm = backend._model()
    drafter = LookupDrafter()  # the lever's own, as a backend's: learns its replies in order

    def write(prompt: str) -> Written:
        chat = backend._chat(llm, prompt)
        decoded = greedy_generate(llm, chat.tokens, max_tokens, chat.stop,
                                  reusable=backend._reusable, draft=draft,
                                  stop_repeats=stop_repeats, drafter=drafter)
        backend._reusable = len(chat.tokens)
        return (decoded.text, decoded.tokens_in, decoded.tokens_out, decoded.prefill_s,
                decoded.drafted, decoded.accepted)
    return write


def later_run_writer(generator: LlamaCppBackend, folder: str, prompts: Sequence[str],
                     max_tokens: int, stop_repeats: int, draft: int = 0
                     ) -> Callable[[str], Written]:
    """The backend's own path with a prompt cache, as a run after an earlier one finds it: the
    earlier run (untimed, two one-token replies) saves the shared prefix, then a backend with an
    empty context (the same weights: no reload) writes the programs."""
    import llama_cpp

    llm = generator._model()
    for run in range(2):
        backend = LlamaCppBackend(generator.spec, n_threads=generator.n_threads,
                                  prompt_cache=folder)
        backend._llm = llm
        llm.reset()
        llm._ctx.kv_cache_clear()
        if run == 0:
            backend.generate([GenerationRequest(p, 1) for p in prompts[:2]])

    def write(prompt: str) -> Written:
        llama_cpp.llama_perf_context_reset(llm.ctx)
        (reply,) = backend.generate([GenerationRequest(prompt, max_tokens, draft=draft,
                                                       stop_repeats=stop_repeats)])
        prefill_s = llama_cpp.llama_perf_context(llm.ctx).t_p_eval_ms / 1000
        return reply.text or "", reply.tokens_in or 0, reply.tokens_out or 0, prefill_s, 0, 0
    return write


def judge_today(backend: LlamaCppBackend, prompts: Sequence[str]) -> list[float]:
    """The judge of cgr-plugin 0.1: a fresh context per prompt, log-softmax over the vocab."""
    from cgr_plugin.models.llama_cpp import NO, YES

    llm = backend._model()
    yes_ids, no_ids = backend._answer_ids(llm, YES), backend._answer_ids(llm, NO)
    out = []
    for prompt in prompts:
        llm.reset()
        llm.eval(backend._chat(llm, prompt).tokens)
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(),
                                       shape=(llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        logprobs = logits - top - math.log(np.exp(logits - top).sum())
        yes, no = np.logaddexp.reduce(logprobs[yes_ids]), np.logaddexp.reduce(logprobs[no_ids])
        out.append(float(1 / (1 + math.exp(no - yes))))
    return out


def memory_read_gbps() -> float:
    block = np.ones(64 * 2**20, dtype=np.float64)  # 512 MiB, far beyond the caches
    block.sum()
    started = time.perf_counter()
    for _ in range(3):
        block.sum()
    return 3 * block.nbytes / (time.perf_counter() - started) / 1e9


def report_generation(levers: Sequence[Lever], n: int) -> None:
    base = levers[0]
    print(f"{'lever':<10}{'s/program':>10}{'prog/min':>9}{'×today':>7}{'tok in':>8}{'tok out':>8}"
          f"{'prefill s (1st; rest)':>23}{'decode tok/s':>13}{'draft kept':>11}")
    for lever in levers:
        rest = lever.prefill_s[1:] or lever.prefill_s
        decode = lever.tokens_out / max(lever.wall - sum(lever.prefill_s), 1e-9)
        kept = f"{lever.accepted}/{lever.drafted}" if lever.drafted else "-"
        print(f"{lever.name:<10}{lever.wall / n:>10.1f}{60 * n / lever.wall:>9.2f}"
              f"{base.wall / lever.wall:>7.2f}{lever.tokens_in:>8}{lever.tokens_out:>8}"
              f"{lever.prefill_s[0]:>14.1f}; {sum(rest) / len(rest):>6.1f}{decode:>13.1f}"
              f"{kept:>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3, help="ARC-Easy items (programs)")
    parser.add_argument("--generator", default="qwen2.5-coder-1.5b")
    parser.add_argument("--solver", default="qwen2.5-coder-0.5b")
    parser.add_argument("--draft", type=int, default=4,
                        help="the most tokens a lookup draft may have (the drafter checks "
                             "fewer where a batch would cost more than it saves)")
    parser.add_argument("--family", default=DEFAULT_GENERATOR_PROMPT,
                        help="generator prompt family (docs/prompts.md)")
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 8))
    args = parser.parse_args()

    registry = load_registry()
    items = bundle_items("arc_easy", args.items)
    settings = AssistedSettings()
    max_tokens = settings.generator_max_tokens
    prompts = [render(generator_template(args.family), item=item,
                      budget=settings.budget) for item in items]
    generator = LlamaCppBackend(registry[args.generator], n_threads=args.threads,
                                prompt_cache="off")  # the levers before the last one
    llm = generator._model()
    load = os.getloadavg()
    print(f"{args.items} ARC-Easy programs by {args.generator} ({args.family} prompts), "
          f"max_tokens {max_tokens}, "
          f"{args.threads} threads; load average before: {load[0]:.2f}, {load[1]:.2f}")

    today = [item_first(p, i) for p, i in zip(prompts, items, strict=True)]
    stop_repeats = settings.generator_stop_repeats
    with tempfile.TemporaryDirectory(prefix="cgr-prompt-cache-") as folder:
        levers = [
            run_lever(Lever("today"), generator, today,
                      lambda p: chat_completion(llm, p, max_tokens)),
            run_lever(Lever("+layout"), generator, prompts,
                      lambda p: chat_completion(llm, p, max_tokens)),
            run_lever(Lever("+lean"), generator, prompts, lean_writer(generator, max_tokens, 0)),
            run_lever(Lever("+loopstop"), generator, prompts,
                      lean_writer(generator, max_tokens, 0, stop_repeats)),
            run_lever(Lever(f"+draft{args.draft}"), generator, prompts,  # opt-in, on +loopstop
                      lean_writer(generator, max_tokens, args.draft, stop_repeats)),
        ]
        cached = later_run_writer(generator, folder, prompts, max_tokens, stop_repeats)
        levers.append(run_lever(Lever("+promptcache"), generator, prompts, cached,
                                fresh=False))
        everything = later_run_writer(generator, folder, prompts, max_tokens, stop_repeats,
                                      args.draft)
        levers.append(run_lever(Lever(f"all:+draft{args.draft}"), generator, prompts,
                                everything, fresh=False))
    report_generation(levers, args.items)
    layout, lean, stopped, drafted, cached_run, all_run = levers[1:]
    same = sum(a == b for a, b in zip(layout.texts, lean.texts, strict=True))
    cut = sum(a != b for a, b in zip(lean.texts, stopped.texts, strict=True))
    same_draft = sum(a == b for a, b in zip(stopped.texts, drafted.texts, strict=True))
    same_cache = sum(a == b for a, b in zip(stopped.texts, cached_run.texts, strict=True))
    same_all = sum(a == b for a, b in zip(drafted.texts, all_run.texts, strict=True))
    print(f"identical programs: +lean vs +layout {same}/{args.items}; loops cut by +loopstop: "
          f"{cut}; +draft vs +loopstop {same_draft}/{args.items}; +promptcache vs +loopstop "
          f"{same_cache}/{args.items}; all vs +draft {same_all}/{args.items}")
    best = min(levers[1:], key=lambda lever: lever.wall)
    print(f"best: {best.name}, {levers[0].wall / best.wall:.2f}× today's programs per minute "
          f"(target ≥ 3×: {'holds' if levers[0].wall / best.wall >= 3 else 'not met'})")

    solver = LlamaCppBackend(registry[args.solver], n_threads=args.threads, prompt_cache="off")
    questions = [f"Question: {item.question}\nProposed answer: {choice}\nIs the proposed answer "
                 "correct?" for choice_index in range(4) for item in items
                 for choice in item.choices[choice_index:choice_index + 1]]
    solver.judge(["Is this a warm-up?"])
    started = time.perf_counter()
    old = judge_today(solver, questions)
    today_s = time.perf_counter() - started
    solver._model().reset()
    solver._reusable = 0
    started = time.perf_counter()
    new = [j.p_yes for j in solver.judge(questions)]
    lean_s = time.perf_counter() - started
    diff = max(abs(a - b) for a, b in zip(old, new, strict=True))
    print(f"judge ({args.solver}, {len(questions)} calls, options interleaved across items): "
          f"today {len(questions) / today_s:.2f}/s, lean {len(questions) / lean_s:.2f}/s "
          f"({today_s / lean_s:.2f}×); max |ΔP(yes)| {diff:.1e}")

    bandwidth = memory_read_gbps()
    size = Path(model_file(registry[args.generator])).stat().st_size / 1e9
    first_rate = levers[0].tokens_in / max(sum(levers[0].prefill_s), 1e-9)
    print(f"machine bounds: prefill {first_rate:.1f} tok/s (today's prompts, measured); memory "
          f"read {bandwidth:.1f} GB/s (numpy, one thread) -> decode bound ~{bandwidth / size:.1f} "
          f"tok/s for {size:.2f} GB of weights; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
