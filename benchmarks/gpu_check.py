"""GPU check for machines that have GPUs: device placement, data parallel, batching pays off.

1. environment: torch/CUDA devices, and whether llama.cpp was built with GPU offload;
2. one GPU: the direct channel with lm-eval's ``hf`` backend on cuda:0 (items/s);
3. data parallel: ``accelerate launch`` with one rank per GPU gives the same per-item records
   as one process (and items/s);
4. batching: replayed programs (4 ask() calls each) with the solver on the GPU at concurrency
   1 and 16: programs/s and the broker's mean batch.

The model is ``--pretrained PATH`` (any local HF causal LM) or, by default, a random-weight
Llama built offline (cgr_plugin.testing). ``--cpu`` runs the same steps on CPU (to try the
script where there is no GPU). Exit status 0 when every check passes.

Run: python benchmarks/gpu_check.py [--pretrained PATH] [--limit 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ASK4_PROGRAM, bundle_items

BIN = Path(sys.executable).parent


def records(out: Path) -> dict[str, tuple]:
    from cgr_plugin.record import CGRRecord

    found = {}
    for path in out.rglob("samples_cgr_arc_easy_*.jsonl"):
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            if sample.get("filter") == "direct":
                record = CGRRecord.from_json(sample["resps"][0][0])
                found[record.item_id] = (record.direct.status, record.direct.raw)
    return found


def cgr_eval(launcher: list[str], model_args: str, device: str, limit: int, out: Path
             ) -> tuple[float, subprocess.CompletedProcess]:
    command = [*launcher, str(BIN / "cgr-eval"), "--model", "cgr", "--model_args", model_args,
               "--tasks", "cgr_arc_easy", "--limit", str(limit), "--device", device,
               "--output_path", str(out), "--log_samples", "--confirm_run_unsafe_code"]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    return time.perf_counter() - started, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", help="a local HF model folder (default: random Llama)")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--cpu", action="store_true", help="run the checks on CPU")
    args = parser.parse_args()
    import torch

    failures = []
    gpus = 0 if args.cpu else torch.cuda.device_count()
    print(f"torch {torch.__version__}; CUDA available: {torch.cuda.is_available()}; "
          f"devices: {[torch.cuda.get_device_name(i) for i in range(gpus)]}")
    try:
        import llama_cpp

        print(f"llama.cpp GPU offload: {llama_cpp.llama_supports_gpu_offload()}")
    except ImportError:
        print("llama.cpp: not installed")
    if not gpus and not args.cpu:
        print("no GPU here: nothing to check (use --cpu to try the steps on CPU)")
        return 1
    device = "cpu" if args.cpu else "cuda:0"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.pretrained
        if model is None:
            from cgr_plugin.testing import tiny_llama

            model = str(tiny_llama(work / "model", hidden=512, layers=8))
        model_args = (f"solver=hf,solver.pretrained={model},solver.batch_size=16,"
                      "channels=direct")

        seconds, one = cgr_eval([], model_args, device, args.limit, work / "one")
        if one.returncode != 0:
            failures.append("single-device run failed")
            print(one.stderr[-3000:])
        print(f"[{'ok' if one.returncode == 0 else 'FAIL'}] one {device}: {args.limit} items in "
              f"{seconds:.1f} s ({args.limit / seconds:.1f} items/s, model loading included)")

        ranks = max(gpus, 2)
        launcher = ([str(BIN / "accelerate"), "launch", "--num_processes", str(ranks)]
                    + (["--cpu"] if args.cpu else ["--multi_gpu"] if gpus > 1 else []))
        if shutil.which(launcher[0]) or Path(launcher[0]).exists():
            seconds, many = cgr_eval(launcher, model_args, "cuda" if gpus else "cpu",
                                     args.limit, work / "many")
            same = many.returncode == 0 and records(work / "one") == records(work / "many")
            if not same:
                failures.append("data-parallel records differ from one process")
                print(many.stderr[-3000:])
            print(f"[{'ok' if same else 'FAIL'}] {ranks} ranks: {args.limit} items in "
                  f"{seconds:.1f} s; records identical to one process: {same}")

        import cgr_plugin
        from cgr_plugin.models.backends import make_backend
        from cgr_plugin.run.assisted import AssistedSettings, run_assisted

        cgr_plugin.register()  # lm-eval's own model table, hf included

        solver, _ = make_backend("hf", {"pretrained": model, "batch_size": 16,
                                        "device": device})
        items = bundle_items("arc_easy", min(32, args.limit))
        programs = {f"{i.dataset}/{i.id}": ASK4_PROGRAM for i in items}
        rates = {}
        for concurrency in (1, 16):
            settings = AssistedSettings(budget=4, concurrency=concurrency,
                                        solver_batch=concurrency, batch_wait_ms=20)
            started = time.perf_counter()
            run_assisted(items, solver=solver, generator=None, programs=programs,
                         settings=settings, direct_prompt=str, direct_max_tokens=8)
            rates[concurrency] = len(items) / (time.perf_counter() - started)
        gain = rates[16] / rates[1]
        print(f"[{'ok' if gain > 1.5 else 'FAIL'}] batching: {rates[1]:.1f} programs/s at "
              f"concurrency 1, {rates[16]:.1f} at 16 ({gain:.1f}x)")
        if gain <= 1.5:
            failures.append("batched solver calls are not faster than one at a time")
    print("all checks passed" if not failures else "FAILED: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
