"""(f'') What lookup-decoding drafts could gain on programs already written, without a model run.

A program package's records hold each program's greedy generator output. Replaying the programs
in their order token by token, a drafter proposes tokens and the model keeps those that equal
its own greedy tokens, so the kept drafts are read off the output itself. Each round costs one
llama.cpp batch of k + 1 tokens with every row's logits, whose milliseconds
``benchmarks/decode_bounds.py`` measures on the machine at hand; the projection is plain
decoding's cost (one token a step) over the drafts'. Drafters: the rule before 2026-12-04 (the
tokens after the latest earlier 3-gram), llama.cpp's own thresholds on the same counts, and the
backend's ``LookupDrafter`` with and without the earlier replies' counts, at drafts of up to 1
to 4 tokens. It assumes a check's batch picks the one-token steps' tokens, which holds but at
near-ties (docs/performance.md), and rebuilds each prompt from the record's question and choices
with the package's generator family.

Run: python benchmarks/lookup_drafts_replay.py PACKAGE [--costs 34.9,59.1,74.5,91.7,125.2]
     [--family cgr]   (PACKAGE: e.g. docs/results/cpu_default/programs/qwen2.5-coder-1.5b.cgr)
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.models.llama_cpp import LlamaCppBackend
from cgr_plugin.models.ngram_drafts import LookupDrafter, NgramCounts
from cgr_plugin.models.registry import load_registry, model_file
from cgr_plugin.prompts import generator_template, render
from cgr_plugin.run.assisted import AssistedSettings

Program = tuple[list[int], list[int]]  # prompt tokens, output tokens


class LatestNgram:
    """The rule before 2026-12-04: the tokens after the latest earlier 3-gram of the prompt
    and the reply (no counts, no earlier replies)."""

    def start(self, prompt: Sequence[int]) -> None:
        pass

    def draft(self, history: Sequence[int], limit: int) -> list[int]:
        tail = list(history[-3:])
        for begin in range(len(history) - 4, -1, -1):
            if list(history[begin:begin + 3]) == tail:
                return list(history[begin + 3:begin + 3 + limit])
        return []

    def finish(self, reply: Sequence[int]) -> None:
        pass


class LlamaCppThresholds(LookupDrafter):
    """llama.cpp's own lookup rule (``common_ngram_cache_draft``, without a static cache): the
    follower of the longest 1- to 4-gram whose counts pass fixed thresholds, first in this
    prompt and reply (lax), then in the earlier replies (strict); no cost cut."""

    LAX = {1: (2, 66), 2: (2, 50), 3: (1, 50), 4: (1, 50)}  # n: (fewest counts, least share %)
    STRICT = {1: (4, 75), 2: (3, 66), 3: (2, 66), 4: (2, 66)}

    def __init__(self) -> None:
        super().__init__(costs=(1.0,) * 5, sizes=(1, 2, 3, 4))  # batches free: drafts uncut

    def _guess(self, tokens: Sequence[int]) -> tuple[int, float] | None:
        for counts, limits in ((self._context, self.LAX), (self._earlier, self.STRICT)):
            token = self._pick(counts, tokens, limits)
            if token is not None:
                return token, 1.0
        return None

    def _pick(self, counts: NgramCounts, tokens: Sequence[int],
              limits: dict[int, tuple[int, int]]) -> int | None:
        for key in self._keys(tokens):
            followers = counts.followers(key)
            total = sum(followers.values())
            fewest, share = limits[len(key)]
            if not followers or total < fewest:
                continue
            token = max(followers, key=lambda t: (followers[t], -t))
            if 100 * followers[token] >= share * total:
                return token
        return None


class PromptOnly(LookupDrafter):
    """The backend's drafter without the earlier replies' counts."""

    def finish(self, reply: Sequence[int]) -> None:
        pass


def replay(programs: Sequence[Program], costs: Sequence[float], drafter: Any, limit: int
           ) -> tuple[float, int, int]:
    """(plain decoding's milliseconds over the drafts', drafted, kept) over ``programs``,
    written in their order by one backend."""
    plain = spent = 0.0
    drafted = kept = 0
    for prompt, output in programs:
        drafter.start(prompt)
        plain += max(len(output) - 1, 0) * costs[0]
        i = 1  # the first token comes with the prompt's batch
        while i < len(output):
            draft = drafter.draft(prompt + output[:i], limit)
            agreed = 0
            while (agreed < len(draft) and i + agreed < len(output)
                   and draft[agreed] == output[i + agreed]):
                agreed += 1
            spent += costs[len(draft)]
            drafted, kept = drafted + len(draft), kept + agreed
            i += agreed + 1
        drafter.finish(output)
    return plain / max(spent, 1e-9), drafted, kept


def read_programs(package: Path, family: str, generator: str) -> list[Program]:
    from llama_cpp import Llama

    backend = LlamaCppBackend(load_registry()[generator], prompt_cache="off")
    llm = Llama(str(model_file(backend.spec)), vocab_only=True, verbose=False)  # tokenizer only
    budget = AssistedSettings().budget
    programs = []
    for line in (package / "programs.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        fields = record["item"]
        item = MCQAItem(id=fields["id"], dataset=fields["dataset"], question=fields["question"],
                        choices=fields["choices"], answer=fields["answer"])
        prompt = render(generator_template(family), item=item, budget=budget)
        output = (record.get("generator_output") or "").encode("utf-8")
        programs.append((list(backend._chat(llm, prompt).tokens),
                         llm.tokenize(output, add_bos=False, special=True)))
    return programs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="an exported program package's folder")
    parser.add_argument("--costs", default="34.9,59.1,74.5,91.7,125.2",
                        help="ms of a batch of 1, 2, ... tokens with every row's logits "
                             "(decode_bounds.py; these: 2026-12-03, 2 cores)")
    parser.add_argument("--family", default="cgr", help="the package's generator family")
    parser.add_argument("--generator", default="qwen2.5-coder-1.5b")
    args = parser.parse_args()
    costs = [float(ms) for ms in args.costs.split(",")]
    programs = read_programs(args.package, args.family, args.generator)
    print(f"{len(programs)} programs, {sum(len(o) for _, o in programs)} tokens out; "
          f"batch costs {costs} ms")
    ratios = tuple(ms / costs[0] for ms in costs)
    rules: list[tuple[str, Callable[[], Any]]] = [
        ("the latest earlier 3-gram (before 2026-12-04)", LatestNgram),
        ("llama.cpp's own thresholds, the same caches", LlamaCppThresholds),
        ("n-gram counts, this prompt and reply only", lambda: PromptOnly(ratios)),
        ("n-gram counts with the earlier replies (the backend's drafter)",
         lambda: LookupDrafter(ratios))]
    for (name, make), limit in itertools.product(rules, range(1, len(costs))):
        gain, drafted, kept = replay(programs, costs, make(), limit)
        print(f"{name}, drafts of up to {limit}: {gain:.3f}x plain decoding; kept {kept} of "
              f"{drafted} ({kept / max(drafted, 1):.0%})")
    for start in range(0, len(programs), 25):  # a run's first programs: few earlier replies
        first = programs[start:start + 12]
        print(f"programs {start + 1}-{start + 12} alone (a fresh run's first): the backend's "
              f"drafter, up to 4, {replay(first, costs, LookupDrafter(ratios), 4)[0]:.3f}x; "
              f"the latest 3-gram, 2, {replay(first, costs, LatestNgram(), 2)[0]:.3f}x")



if __name__ == "__main__":
    main()
