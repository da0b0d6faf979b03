"""(f') What bounds the generator's decoding on this machine, and what speculation or batching
could still gain: the costs that decide it, measured side by side in one run.

1. The generator's cost of one llama.cpp batch of n tokens at the end of a real generator
   prompt (n = 1 is a decode step; n = k + 1 with every row's logits is the check of k
   drafted tokens; with the last row's only, a prompt's end).
2. Parallel sequences: one batch a step carrying the next token of 1, 2, 4, 8 sequences that
   share a prefix (llama.cpp's parallel decoding), tokens per second in aggregate.
3. Speculative decoding with a draft model: how often the draft model's greedy token equals
   the generator's in the generator's own programs, the tokens a round of k drafts would keep,
   and the projected milliseconds per token (k draft steps + one check of k + 1) against plain.

Run: python benchmarks/decode_bounds.py [--items 6] [--draft-model qwen2.5-coder-0.5b]
     (wrap it in `flock /tmp/cgr-model.lock` on a shared machine)
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np
from _harness import bundle_items

from cgr_plugin.models.base import GenerationRequest
from cgr_plugin.models.llama_cpp import LlamaCppBackend
from cgr_plugin.models.registry import load_registry
from cgr_plugin.prompts import DEFAULT_GENERATOR_PROMPT, generator_template, render
from cgr_plugin.run.assisted import AssistedSettings


def batch_ms(llm, prompt: Sequence[int], n: int, every_row: bool = False, repeats: int = 15
             ) -> float:
    """Milliseconds to evaluate n tokens after ``prompt`` (already in the context), with the
    logits of the last row only (a prompt's end) or of ``every_row`` (the check of n - 1
    drafts needs each row's argmax)."""
    times = []
    for _ in range(repeats):
        llm._ctx.kv_cache_seq_rm(-1, len(prompt) - n, -1)
        started = time.perf_counter()
        llm._batch.set_batch(batch=list(prompt[-n:]), n_past=len(prompt) - n,
                             logits_all=every_row)
        llm._ctx.decode(llm._batch)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000


def parallel_rates(llm, prefix: Sequence[int], widths: Sequence[int], steps: int = 32
                   ) -> dict[int, float]:
    """Aggregate tokens per second of ``width`` sequences decoded in one batch a step."""
    import llama_cpp
    from llama_cpp import _internals

    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 4096, 512, 512
    params.n_threads = params.n_threads_batch = llm.context_params.n_threads
    params.n_seq_max, params.kv_unified = max(widths), True
    params.flash_attn_type = llm.context_params.flash_attn_type
    context = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
    ctx, memory = context.ctx, llama_cpp.llama_get_memory(context.ctx)
    batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(rows):
        batch.n_tokens = len(rows)
        for i, (token, pos, seq, logits) in enumerate(rows):
            batch.token[i], batch.pos[i], batch.logits[i] = token, pos, logits
            batch.n_seq_id[i], batch.seq_id[i][0] = 1, seq
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    try:
        for start in range(0, len(prefix), 512):
            decode([(token, start + i, 0, False)
                    for i, token in enumerate(prefix[start:start + 512])])
        rates = {}
        for width in widths:
            for seq in range(width):
                llama_cpp.llama_memory_seq_rm(memory, seq, len(prefix) if seq == 0 else -1, -1)
                if seq:
                    llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
            tokens = [prefix[-1]] * width
            started = time.perf_counter()
            for step in range(steps):
                decode([(tokens[s], len(prefix) + step, s, True) for s in range(width)])
                tokens = [int(np.argmax(np.ctypeslib.as_array(
                    llama_cpp.llama_get_logits_ith(ctx, s), shape=(llm.n_vocab(),))))
                    for s in range(width)]
            rates[width] = width * steps / (time.perf_counter() - started)
        return rates
    finally:
        llama_cpp.llama_batch_free(batch)
        context.close()


def draft_agreement(draft_spec, threads: int, programs: Sequence[tuple[list[int], list[int]]]
                    ) -> np.ndarray:
    """For each program token, whether the draft model's greedy choice there equals it."""
    import llama_cpp

    from cgr_plugin.models.registry import model_file

    size = max(len(p) + len(o) for p, o in programs) + 16
    llm = llama_cpp.Llama(model_path=str(model_file(draft_spec)), n_ctx=size, n_threads=threads,
                          logits_all=True, verbose=False)
    agree = []
    for prompt, program in programs:
        llm.reset()
        llm.eval(prompt + program)
        scores = np.asarray(llm.scores[len(prompt) - 1:len(prompt) + len(program) - 1])
        agree.append(scores.argmax(axis=1) == np.asarray(program))
    return np.concatenate(agree) if agree else np.zeros(0, dtype=bool)


def tokens_per_round(agree: np.ndarray, k: int) -> float:
    """Greedy speculation over the programs: drafts kept while they agree (at most k), plus the
    generator's own token."""
    kept, i = [], 0
    while i < agree.size:
        run = 0
        while run < k and i + run < agree.size and agree[i + run]:
            run += 1
        kept.append(run + 1)
        i += run + 1
    return float(np.mean(kept))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=6, help="ARC-Easy programs to write")
    parser.add_argument("--generator", default="qwen2.5-coder-1.5b")
    parser.add_argument("--draft-model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 8))
    args = parser.parse_args()
    registry = load_registry()
    settings = AssistedSettings()
    prompts = [render(generator_template(DEFAULT_GENERATOR_PROMPT), item=item,
                      budget=settings.budget) for item in bundle_items("arc_easy", args.items)]
    generator = LlamaCppBackend(registry[args.generator], n_threads=args.threads,
                                prompt_cache="off")
    replies = generator.generate([GenerationRequest(p, settings.generator_max_tokens,
                                                    stop_repeats=settings.generator_stop_repeats)
                                  for p in prompts])
    llm = generator._model()
    programs = [(generator._chat(llm, p).tokens,
                 llm.tokenize((r.text or "").encode(), add_bos=False, special=True))
                for p, r in zip(prompts, replies, strict=True)]
    print(f"{args.items} programs by {args.generator} ({args.threads} threads), "
          f"{sum(len(o) for _, o in programs)} tokens; load average {os.getloadavg()[0]:.2f}")

    prompt = programs[0][0]
    llm.reset()
    llm.eval(prompt)
    last_row = {n: batch_ms(llm, prompt, n) for n in (1, 2, 3, 4, 5, 8)}
    costs = {n: batch_ms(llm, prompt, n, every_row=True) for n in (1, 2, 3, 4, 5, 8)}
    for name, measured in (("the last row's logits", last_row), ("every row's", costs)):
        print(f"generator batch of n tokens after a prompt, {name}: "
              + ", ".join(f"n={n} {ms:.1f} ms" for n, ms in measured.items()))

    rates = parallel_rates(llm, prompt[:960], (1, 2, 4, 8))
    print("parallel sequences, aggregate tok/s: "
          + ", ".join(f"{w}: {r:.1f} ({r / rates[1]:.2f}x)" for w, r in rates.items()))

    draft = LlamaCppBackend(registry[args.draft_model], n_threads=args.threads,
                            prompt_cache="off")
    small = draft._model()
    small.reset()
    small.eval(prompt)
    step = batch_ms(small, prompt, 1)
    agree = draft_agreement(registry[args.draft_model], args.threads, programs)
    print(f"{args.draft_model}: one step {step:.1f} ms; its greedy token equals the "
          f"generator's {agree.mean():.2f} of {agree.size} program tokens")
    plain = costs[1]
    for k in (2, 3, 4):
        kept = tokens_per_round(agree, k)
        spec = (k * step + costs[k + 1]) / kept
        free = costs[k + 1] / kept
        print(f"  k={k}: {kept:.2f} tokens a round -> {spec:.1f} ms/token with the draft model "
              f"({plain / spec:.2f}x plain {plain:.1f}); {free:.1f} ms/token if drafts were "
              f"free ({plain / free:.2f}x)")


if __name__ == "__main__":
    main()
