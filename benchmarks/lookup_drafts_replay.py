"""(f'') What prompt-lookup drafting could gain on programs already written, without a model run.

A program package's records hold each program's greedy generator output. Replaying it token by
token, a drafting rule ("after a match of at least L tokens, propose the next k") proposes what
followed the longest earlier match in the prompt or the output; the model keeps the drafts that
equal its own greedy tokens, so the kept drafts are read off the output itself. Each round costs
one llama.cpp batch of k + 1 tokens with every row's logits, whose milliseconds
``benchmarks/decode_bounds.py`` measures on the machine at hand; the projection is plain decoding's
cost (one token a step) over the rule's. It assumes a check's batch picks the one-token steps'
tokens, which holds but at near-ties (docs/performance.md), and rebuilds each prompt from the
record's question and choices with the package's generator family.

Run: python benchmarks/lookup_drafts_replay.py PACKAGE [--costs 34.9,59.1,74.5,91.7,125.2]
     [--family cgr]   (PACKAGE: e.g. docs/results/cpu_default/programs/qwen2.5-coder-1.5b.cgr)
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.models.llama_cpp import LlamaCppBackend
from cgr_plugin.models.llama_decode import lookup_draft
from cgr_plugin.models.registry import load_registry, model_file
from cgr_plugin.prompts import generator_template, render
from cgr_plugin.run.assisted import AssistedSettings

Program = tuple[list[int], list[int]]  # prompt tokens, output tokens
Propose = Callable[[Sequence[int]], list[int]]  # the history so far -> a draft


def longest_match(history: Sequence[int], longest: int = 16, shortest: int = 2
                  ) -> tuple[int, int | None]:
    """(length, where its continuation starts) of the longest suffix of ``history`` that came
    earlier; (0, None) when not even ``shortest`` tokens did."""
    found: tuple[int, int | None] = (0, None)
    for size in range(shortest, min(longest, len(history) - 1) + 1):
        tail = list(history[-size:])
        start = next((s + size for s in range(len(history) - size - 1, -1, -1)
                      if list(history[s:s + size]) == tail), None)
        if start is None:
            break
        found = (size, start)
    return found


def longest_rule(at_least: int, k: int) -> Propose:
    """Drafts of ``k`` after the longest earlier match, when it has ``at_least`` tokens."""
    def propose(history: Sequence[int]) -> list[int]:
        size, start = longest_match(history)
        return list(history[start:start + k]) if size >= at_least and start is not None else []
    return propose


def replay(programs: Sequence[Program], costs: Sequence[float], propose: Propose
           ) -> tuple[float, int, int]:
    """(plain decoding's milliseconds over the rule's, drafted, kept) over ``programs``."""
    plain = spent = 0.0
    drafted = kept = 0
    for prompt, output in programs:
        plain += max(len(output) - 1, 0) * costs[0]
        i = 1  # the first token comes with the prompt's batch
        while i < len(output):
            draft = propose(prompt + output[:i])
            agreed = 0
            while (agreed < len(draft) and i + agreed < len(output)
                   and draft[agreed] == output[i + agreed]):
                agreed += 1
            spent += costs[len(draft)]
            drafted, kept = drafted + len(draft), kept + agreed
            i += agreed + 1
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
    rules = [(f"generator_draft_tokens={k} (the latest earlier 3-gram)",
              lambda history, k=k: lookup_draft(history, k)) for k in range(1, len(costs))]
    rules += [(f"drafts of {k} after a longest match of >= {at_least:2} tokens",
               longest_rule(at_least, k))
              for at_least, k in itertools.product((3, 4, 6, 8, 12), range(1, len(costs)))]
    for name, propose in rules:
        gain, drafted, kept = replay(programs, costs, propose)
        print(f"{name}: {gain:.3f}x plain decoding; kept {kept} of {drafted} "
              f"({kept / max(drafted, 1):.0%})")


if __name__ == "__main__":
    main()
