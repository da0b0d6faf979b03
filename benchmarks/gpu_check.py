"""GPU check: the GPU path on real hardware, in one command, with its figures in one JSON file.

Steps (each timed; a failing step is recorded and the others still run):

1. ``environment``: torch/CUDA, the device and its memory, package versions, the sandbox's
   isolation, and the memory bandwidth a large copy reaches (read + written bytes / time);
2. ``hf_direct_replay``: ``cgr-eval`` with lm-eval's ``hf`` backend on the device, direct
   channel plus a replayed program (two ``ask()`` calls): a record for every item, no direct
   record with status ``error``, every assisted record ``ok``;
3. ``data_parallel``: two ranks on the one device (``torchrun``; NCCL first, then gloo, which
   also works where NCCL refuses two ranks on one GPU; on ``--cpu`` gloo only) give the same
   per-item records as one process. The solver runs at batch size 1 here, so that no answer
   depends on which other prompts shared its padded batch;
4. ``solver_throughput``: solver calls per second through the broker at batch sizes 1, 4, 16
   and 64 (as many programs running at once, four ``ask()`` calls each), ``hf`` backend, for a
   model of Qwen2.5-Coder-1.5B's architecture with random weights built here from its config
   (no hub: throughput does not depend on the weights' values), and each rate's ratio to
   batch 1;
5. ``generation``: greedy decoding tokens/s of the same model at batch 1, 8 and 32 with plain
   ``model.generate``, beside the memory-bandwidth bound (bytes read per decoding step, weights
   plus KV cache, over the bandwidth: H200 HBM3e 4.8 TB/s as specified, and as measured in 1).

Record checks use the tiny offline Llama of ``cgr_plugin.testing`` (or ``--pretrained PATH``).
``--cpu`` runs every step on the CPU with small sizes (a reduced-width, two-layer model of the
same architecture) to try the script where there is no GPU; ``--quick`` shrinks it further.
Exit status 0 when every step passed.

Run: python benchmarks/gpu_check.py [--cpu] [--quick] [--json PATH] [--only STEP,...]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # this checkout's cgr_plugin, whatever else is installed
    sys.path.insert(0, str(REPO))

SCHEMA = "cgr-gpu-check/1"
STEPS = ("environment", "hf_direct_replay", "data_parallel", "solver_throughput", "generation")
H200_HBM_BYTES_PER_S = 4.8e12  # H200 SXM HBM3e, as specified

# Qwen2.5-Coder-1.5B(-Instruct)'s config.json, less its hub-only fields.
QWEN15B = {
    "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
    "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "hidden_act": "silu", "tie_word_embeddings": True, "use_sliding_window": False,
    "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
}
# --cpu: the same architecture, narrower and two layers deep (vocabulary kept).
QWEN_CPU = QWEN15B | {"hidden_size": 384, "intermediate_size": 2240, "num_hidden_layers": 2,
                      "num_attention_heads": 6, "num_key_value_heads": 1}

# Replayed for the record checks: two solver calls, and an answer that depends on the replies.
REPLAY_PROGRAM = '''```python
def solve(item, solver):
    replies = [solver.ask(f"{{item.question}} (#{{i}})", max_tokens={tokens}) for i in range(2)]
    return item.letters[sum(len(r or "") for r in replies) % len(item.letters)]
```'''
# The throughput workload: four calls of a fixed length each.
ASK4_PROGRAM = '''```python
def solve(item, solver):
    replies = [solver.ask(f"{{item.question}} #{{i}}", max_tokens={tokens}) for i in range(4)]
    return item.letters[sum(len(r or "") for r in replies) % len(item.letters)]
```'''


# -- plumbing ----------------------------------------------------------------------------------
class Sizes:
    def __init__(self, cpu: bool, quick: bool) -> None:
        self.limit = 8 if quick else 16 if cpu else 64
        self.tiny = {"hidden": 32, "layers": 2} if cpu else {"hidden": 512, "layers": 8}
        self.replay_tokens = 8 if cpu else 16
        self.model = QWEN_CPU if cpu else QWEN15B
        self.broker_batches = (1, 4) if quick else (1, 4, 16, 64)
        self.ask_tokens = 8 if cpu else 32
        self.gen_batches = (1, 8) if quick else (1, 8, 32)
        self.prompt_tokens = 32 if cpu else 128
        self.new_tokens = 8 if quick else 16 if cpu else 128
        self.copy_bytes = (256 if cpu else 4096) << 20
        self.run_timeout = 900 if cpu else 240


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:] if text else ""


def cgr_eval(args: Sequence[str], *, ranks: int = 1, backend: str | None = None,
             timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    """The ``cgr-eval`` CLI in a fresh process (``torchrun`` for ``ranks`` > 1)."""
    me = [str(Path(__file__).resolve()), "--as-cgr-eval"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", str(ranks)] if ranks > 1 else [sys.executable])
    env = _env()
    if backend:
        env["CGR_GPU_CHECK_BACKEND"] = backend
    started = time.perf_counter()
    try:
        run = subprocess.run([*launcher, *me, *args], capture_output=True, text=True, env=env,
                             timeout=timeout)
    except subprocess.TimeoutExpired as err:
        run = subprocess.CompletedProcess(err.cmd, 124, _decode(err.stdout),
                                          _decode(err.stderr) + f"\n[timed out after {timeout} s]")
    return time.perf_counter() - started, run


def _decode(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def records(out: Path, task: str = "cgr_arc_easy") -> dict[str, dict[str, Any]]:
    """Per item, the fields of its record that must not depend on how the run was split."""
    from cgr_plugin.record import CGRRecord

    found = {}
    for path in sorted(out.rglob(f"samples_{task}_*.jsonl")):
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            if sample.get("filter") != "direct":
                continue
            r = CGRRecord.from_json(sample["resps"][0][0])
            found[r.item_id] = {
                "direct": [r.direct.status, r.direct.answer, r.direct.raw],
                "assisted": [r.assisted.status, r.assisted.answer, r.assisted.solver_calls]}
    return found


def statuses(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {channel: dict(collections.Counter(r[channel][0] for r in found.values()))
            for channel in ("direct", "assisted")}


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def eval_args(model: str, package: Path, device: str, limit: int, out: Path, batch: int
              ) -> list[str]:
    model_args = (f"solver=hf,solver.pretrained={model},solver.batch_size={batch},"
                  f"programs={package},channels=direct+assisted,budget=4,concurrency=16,"
                  "solver_batch=16,batch_wait_ms=10")
    return ["--model", "cgr", "--model_args", model_args, "--tasks", "cgr_arc_easy",
            "--limit", str(limit), "--device", device, "--output_path", str(out),
            "--log_samples", "--confirm_run_unsafe_code"]


class Check:
    """Shared state of one run: the temporary folder, the models built once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cpu = args.cpu
        self.sizes = Sizes(args.cpu, args.quick)
        self.device = "cpu" if args.cpu else "cuda:0"
        self.work = Path(tempfile.mkdtemp(prefix="cgr-gpu-check-"))
        self._tiny: str | None = None
        self._package: Path | None = None
        self._qwen: tuple[Any, Any] | None = None
        self.copy_bandwidth: float | None = None

    # models and programs, built on first use
    def tiny_model(self) -> str:
        if self._tiny is None:
            if self.args.pretrained:
                self._tiny = self.args.pretrained
            else:
                from cgr_plugin.testing import tiny_llama

                self._tiny = str(tiny_llama(self.work / "tiny", **self.sizes.tiny))
        return self._tiny

    def items(self, n: int) -> list[Any]:
        from _harness import bundle_items

        return bundle_items("arc_easy", n)

    def package(self) -> Path:
        if self._package is None:
            from _harness import write_package

            keys = [f"{i.dataset}/{i.id}" for i in self.items(self.sizes.limit)]
            program = REPLAY_PROGRAM.format(tokens=self.sizes.replay_tokens)
            self._package = write_package(self.work / "package", keys, program)
        return self._package

    def qwen(self) -> tuple[Any, Any]:
        """(model, tokenizer): Qwen2.5-Coder-1.5B's architecture, random weights, on the device
        (bfloat16 on a GPU, float32 on the CPU); the tokenizer is the tiny Llama's (token ids
        past its vocabulary decode to nothing, which throughput does not care about)."""
        if self._qwen is None:
            import torch
            from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

            from cgr_plugin.testing import tiny_llama

            tok = AutoTokenizer.from_pretrained(tiny_llama(self.work / "tok"))
            config = Qwen2Config(**self.sizes.model, bos_token_id=tok.bos_token_id,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            dtype = torch.float32 if self.cpu else torch.bfloat16
            torch.manual_seed(0)
            default = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                with torch.device(self.device):
                    model = Qwen2ForCausalLM(config)
            finally:
                torch.set_default_dtype(default)
            self._qwen = (model.eval(), tok)
        return self._qwen


# -- steps -------------------------------------------------------------------------------------
def step_environment(c: Check) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "torch_cuda": torch.version.cuda,
                           "cuda_available": torch.cuda.is_available(),
                           "cpu_count": os.cpu_count()}
    versions = {}
    for name in ("lm_eval", "transformers", "accelerate", "tokenizers", "datasets", "pyarrow",
                 "fsspec", "huggingface_hub", "numpy", "pandas", "dill", "multiprocess"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    out["versions"] = versions
    try:
        from cgr_plugin.sandbox import isolation_level

        out["sandbox_isolation"] = isolation_level()
    except Exception as err:  # noqa: BLE001 - a figure, not a check
        out["sandbox_isolation"] = f"unknown ({err})"
    if c.cpu:
        out["device"] = {"type": "cpu", "name": platform.processor() or platform.machine()}
    elif torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        out["device"] = {"type": "cuda", "name": props.name, "count": torch.cuda.device_count(),
                         "total_memory_gib": round(total / 2**30, 1),
                         "free_memory_gib": round(free / 2**30, 1),
                         "capability": f"{props.major}.{props.minor}",
                         "multiprocessors": props.multi_processor_count}
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=30)
            out["device"]["nvidia_smi"] = smi.stdout.strip()
    else:
        out["device"] = None
        out["status"] = "fail"
        out["failure"] = "no CUDA device (use --cpu to try the steps on the CPU)"
        return out
    out["copy_bandwidth"] = copy_bandwidth(c)
    return out


def copy_bandwidth(c: Check) -> dict[str, Any]:
    """Bytes read plus written per second by a large tensor copy on the device."""
    import torch

    n = c.sizes.copy_bytes
    src = torch.ones(n // 2, dtype=torch.float16, device=c.device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(c.device)
    reps = 5 if c.cpu else 20
    started = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync(c.device)
    seconds = time.perf_counter() - started
    c.copy_bandwidth = 2 * n * reps / seconds
    del src, dst
    return {"bytes_per_s": c.copy_bandwidth, "gb_per_s": round(c.copy_bandwidth / 1e9, 1),
            "buffer_bytes": n, "repeats": reps}


def step_hf_direct_replay(c: Check) -> dict[str, Any]:
    out = c.work / "replay"
    seconds, run = cgr_eval(eval_args(c.tiny_model(), c.package(), c.device, c.sizes.limit, out,
                                      batch=16), timeout=c.sizes.run_timeout)
    found = records(out) if run.returncode == 0 else {}
    counts = statuses(found)
    result: dict[str, Any] = {
        "items": c.sizes.limit, "records": len(found), "statuses": counts,
        "solver_batch_size": 16, "wall_seconds": round(seconds, 2),
        "items_per_s": round(c.sizes.limit / seconds, 2), "returncode": run.returncode,
        "model": "tiny Llama" if not c.args.pretrained else c.args.pretrained,
        "device_in_log": _device_line(run.stderr),
        "note": "a random-weight model's direct replies rarely hold a letter: direct status "
                "invalid is expected, error is a failure"}
    problems = []
    if run.returncode != 0:
        problems.append(f"cgr-eval exited {run.returncode}: {_error_line(run.stderr)}")
        result["stderr_tail"] = _tail(run.stderr)
    if len(found) != c.sizes.limit:
        problems.append(f"{len(found)} records for {c.sizes.limit} items")
    if counts["direct"].get("error"):
        problems.append(f"{counts['direct']['error']} direct records with status error")
    if found and counts["assisted"].get("ok", 0) != len(found):
        problems.append(f"assisted statuses {counts['assisted']}, not all ok")
    if problems:
        result["status"], result["failure"] = "fail", "; ".join(problems)
    return result


def _device_line(stderr: str) -> str | None:
    """What lm-eval's hf backend said about where it put the model."""
    lines = [ln[ln.index("Using device"):] for ln in stderr.splitlines() if "Using device" in ln]
    return lines[-1][:200] if lines else None


def _error_line(stderr: str) -> str | None:
    """The first line that names an error, for the JSON's summary of a failed run."""
    for line in stderr.splitlines():
        text = line.split("]: ", 1)[-1].strip() if line.startswith("[rank") else line.strip()
        if text.startswith(("Traceback", "File ", "raise ", "^")):
            continue
        if "Error" in text or "error:" in text or "Duplicate GPU" in text:
            return text[:300]
    return None


def step_data_parallel(c: Check) -> dict[str, Any]:
    model, package, limit = c.tiny_model(), c.package(), c.sizes.limit
    dp_device = "cpu" if c.cpu else "cuda"
    seconds, one = cgr_eval(eval_args(model, package, c.device, limit, c.work / "dp-one",
                                      batch=1), timeout=c.sizes.run_timeout)
    reference = records(c.work / "dp-one") if one.returncode == 0 else {}
    result: dict[str, Any] = {"items": limit, "solver_batch_size": 1,
                              "one_rank": {"returncode": one.returncode,
                                           "records": len(reference),
                                           "wall_seconds": round(seconds, 2)}}
    if one.returncode != 0 or len(reference) != limit:
        result["one_rank"]["stderr_tail"] = _tail(one.stderr)
        result["status"] = "fail"
        result["failure"] = f"the one-rank reference run failed: {_error_line(one.stderr)}"
        return result
    # (name, backend forced on the ranks): accelerate's own choice is gloo on the CPU and NCCL
    # on a GPU; gloo is forced on the GPU as the second try.
    backends = [("gloo", None)] if c.cpu else [("nccl", None), ("gloo", "gloo")]
    result["two_ranks"] = {}
    for backend, forced in backends:
        out = c.work / f"dp-two-{backend}"
        seconds, two = cgr_eval(eval_args(model, package, dp_device, limit, out, batch=1),
                                ranks=2, backend=forced,
                                timeout=90 if backend == "nccl" else c.sizes.run_timeout)
        found = records(out) if two.returncode == 0 else {}
        models = two.stderr.count("Initializing cgr model")
        entry: dict[str, Any] = {"returncode": two.returncode, "records": len(found),
                                 "models_initialized": models, "wall_seconds": round(seconds, 2),
                                 "identical_to_one_rank": bool(found) and found == reference}
        if found and found != reference:
            entry["differing_items"] = sorted(k for k in reference
                                              if found.get(k) != reference[k])[:10]
        if two.returncode != 0:
            entry["error_line"] = _error_line(two.stderr)
            entry["stderr_tail"] = _tail(two.stderr, 2000)
            if "Duplicate GPU" in two.stderr:
                entry["note"] = "NCCL refuses two ranks on one GPU (Duplicate GPU detected)"
        result["two_ranks"][backend] = entry
    passed = [b for b, e in result["two_ranks"].items()
              if e["identical_to_one_rank"] and e["models_initialized"] == 2]
    result["backends_matching"] = passed
    if not passed:
        result["status"] = "fail"
        result["failure"] = "no two-rank run gave the one-rank records"
    return result


class CountingBackend:
    """Counts the broker's batches and the wall time spent inside the backend."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.name = backend, backend.name
        self.batches: list[int] = []
        self.model_seconds = 0.0

    def generate(self, requests: Sequence[Any], *, progress: Any = False) -> list[Any]:
        started = time.perf_counter()
        try:
            return self.backend.generate(requests, progress=progress)
        finally:
            self.batches.append(len(requests))
            self.model_seconds += time.perf_counter() - started

    def judge(self, prompts: Sequence[str]) -> list[Any]:
        return self.backend.judge(prompts)

    def describe(self) -> dict[str, Any]:
        return {"backend": "counting", "inner": self.backend.name}


def step_solver_throughput(c: Check) -> dict[str, Any]:
    import torch

    import cgr_plugin
    from cgr_plugin.models.backends import GenerationRequest, make_backend
    from cgr_plugin.run.assisted import AssistedSettings, run_assisted

    cgr_plugin.register()  # lm-eval's own model table, hf included
    model, tok = c.qwen()
    top = max(c.sizes.broker_batches)
    hf, _ = make_backend("hf", {"pretrained": model, "tokenizer": tok, "batch_size": top})
    hf.generate([GenerationRequest("Warm up the kernels.", c.sizes.ask_tokens)] * 2)
    program = ASK4_PROGRAM.format(tokens=c.sizes.ask_tokens)
    items = c.items(max(4, 2 * top))
    rows = []
    for batch in c.sizes.broker_batches:
        chosen = items[:max(4, 2 * batch)]
        solver = CountingBackend(hf)
        settings = AssistedSettings(budget=4, concurrency=batch, solver_batch=batch,
                                    batch_wait_ms=50)
        sync(c.device)
        started = time.perf_counter()
        results = run_assisted(chosen, solver=solver, generator=None,
                               programs={f"{i.dataset}/{i.id}": program for i in chosen},
                               settings=settings, direct_prompt=str, direct_max_tokens=8)
        sync(c.device)
        wall = time.perf_counter() - started
        calls = sum(solver.batches)
        rows.append({"broker_batch": batch, "programs": len(chosen), "calls": calls,
                     "seconds": round(wall, 3), "calls_per_s": round(calls / wall, 2),
                     "mean_batch": round(calls / max(len(solver.batches), 1), 2),
                     "model_seconds": round(solver.model_seconds, 3),
                     "assisted_ok": sum(a.status == "ok" for a, _ in results)})
    base = rows[0]["calls_per_s"]
    for row in rows:
        row["ratio_to_batch_1"] = round(row["calls_per_s"] / base, 2)
    rendered = [tok.apply_chat_template([{"role": "user", "content": f"{i.question} #0"}],
                                        add_generation_prompt=True, tokenize=False)
                for i in items[:16]]
    lengths = [len(tok(text, add_special_tokens=False)["input_ids"]) for text in rendered]
    result: dict[str, Any] = {
        "model": _model_facts(c, model), "tokens_per_call": c.sizes.ask_tokens,
        "prompt_tokens_mean": round(sum(lengths) / len(lengths), 1),
        "calls_per_program": 4, "backend": "hf (lm-eval HFLM, model passed in)", "rows": rows}
    if not c.cpu:
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    problems = [f"batch {r['broker_batch']}: {r['assisted_ok']}/{r['programs']} programs ok"
                for r in rows if r["assisted_ok"] != r["programs"]]
    # A GPU's batched forward pass costs about what one sequence's does; a CPU's does not.
    floor = 1.2 if c.cpu else 1.5
    if len(rows) > 1 and rows[-1]["ratio_to_batch_1"] <= floor:
        problems.append(f"batch {rows[-1]['broker_batch']} is not {floor}x faster than batch 1 "
                        f"({rows[-1]['ratio_to_batch_1']}x)")
    if problems:
        result["status"], result["failure"] = "fail", "; ".join(problems)
    return result


def _model_facts(c: Check, model: Any) -> dict[str, Any]:
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"architecture": "Qwen2ForCausalLM (Qwen2.5-Coder-1.5B dimensions"
                            f"{', reduced for --cpu' if c.cpu else ''})",
            "config": c.sizes.model, "parameters": sum(p.numel() for p in model.parameters()),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "weight_bytes": weights, "weights": "random (seed 0)"}


def step_generation(c: Check) -> dict[str, Any]:
    import torch

    model, _ = c.qwen()
    facts = _model_facts(c, model)
    cfg = c.sizes.model
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    elem = next(model.parameters()).element_size()
    kv_per_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * head_dim * elem
    if c.copy_bandwidth is None:
        copy_bandwidth(c)
    bandwidths = {"measured_copy": c.copy_bandwidth}
    if not c.cpu:
        bandwidths["h200_spec"] = H200_HBM_BYTES_PER_S
    prompt, new = c.sizes.prompt_tokens, c.sizes.new_tokens
    gen = torch.Generator().manual_seed(0)

    def run(batch: int, tokens: int) -> float:
        ids = torch.randint(0, cfg["vocab_size"], (batch, prompt), generator=gen)
        ids = ids.to(c.device)
        sync(c.device)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=tokens, min_new_tokens=tokens,
                                 pad_token_id=0)
        sync(c.device)
        assert out.shape[1] == prompt + tokens, out.shape
        return time.perf_counter() - started

    rows = []
    for batch in c.sizes.gen_batches:
        run(batch, 4)  # warm-up: kernels, allocator
        first = min(run(batch, 1) for _ in range(2))  # prefill and one token
        whole = run(batch, new)
        decode = batch * (new - 1) / max(whole - first, 1e-9)
        step_bytes = facts["weight_bytes"] + batch * kv_per_token * (prompt + new / 2)
        row = {"batch": batch, "prompt_tokens": prompt, "new_tokens": new,
               "seconds": round(whole, 3), "prefill_and_first_token_seconds": round(first, 3),
               "tokens_per_s": round(batch * new / whole, 1),
               "decode_tokens_per_s": round(decode, 1), "bytes_per_decode_step": int(step_bytes)}
        for name, bw in bandwidths.items():
            bound = batch * bw / step_bytes
            row[f"bound_tokens_per_s_{name}"] = round(bound, 1)
            row[f"fraction_of_bound_{name}"] = round(decode / bound, 3)
        rows.append(row)
    result: dict[str, Any] = {
        "model": facts, "kv_bytes_per_token": kv_per_token,
        "bandwidth_bytes_per_s": bandwidths,
        "bound": "batch x bandwidth / (weight bytes + batch x KV bytes per token x mean "
                 "context), the rate if every decoding step only had to read its bytes once",
        "decoding": "greedy, model.generate, KV cache, exactly new_tokens per sequence; "
                    "decode rate = batch x (new_tokens - 1) / (whole - prefill-and-first-token)",
        "rows": rows}
    if not c.cpu:
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if any(r["fraction_of_bound_measured_copy"] > 1.5 for r in rows):
        result["status"] = "fail"
        result["failure"] = "faster than the bandwidth bound: the timing is wrong"
    return result


# -- driver ------------------------------------------------------------------------------------
def run_steps(c: Check, names: Sequence[str], write: Callable[[dict[str, Any]], None]
              ) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema": SCHEMA, "mode": "cpu" if c.cpu else "gpu", "quick": c.args.quick,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "host": platform.node(), "steps": {}}
    begun = time.perf_counter()
    for name in names:
        print(f"[....] {name}", flush=True)
        started = time.perf_counter()
        try:
            result = globals()[f"step_{name}"](c)
            result.setdefault("status", "ok")
        except Exception as err:  # noqa: BLE001 - one step's failure must not stop the others
            result = {"status": "error", "failure": f"{type(err).__name__}: {err}",
                      "traceback": _tail(traceback.format_exc(), 4000)}
        result["seconds"] = round(time.perf_counter() - started, 2)
        report["steps"][name] = result
        report["seconds"] = round(time.perf_counter() - begun, 2)
        report["all_passed"] = all(s["status"] == "ok" for s in report["steps"].values())
        write(report)
        line = f"[{'ok' if result['status'] == 'ok' else 'FAIL'}] {name} ({result['seconds']} s)"
        print(line + (f": {result['failure']}" if "failure" in result else ""), flush=True)
        print("       " + summary(name, result), flush=True)
    return report


def summary(name: str, r: dict[str, Any]) -> str:
    """One line of figures per step, for the console."""
    with contextlib.suppress(KeyError, TypeError, IndexError):
        if name == "environment":
            dev = r["device"] or {}
            return (f"torch {r['torch']}, {dev.get('name')}, "
                    f"{dev.get('total_memory_gib', '-')} GiB, copy "
                    f"{r['copy_bandwidth']['gb_per_s']} GB/s, sandbox {r['sandbox_isolation']}")
        if name == "hf_direct_replay":
            return (f"{r['records']}/{r['items']} records, {r['statuses']}, "
                    f"{r['items_per_s']} items/s")
        if name == "data_parallel":
            return ", ".join(f"{b}: identical={e['identical_to_one_rank']} rc={e['returncode']}"
                             for b, e in r["two_ranks"].items())
        if name == "solver_throughput":
            return "; ".join(f"batch {x['broker_batch']}: {x['calls_per_s']} calls/s "
                             f"({x['ratio_to_batch_1']}x, mean batch {x['mean_batch']})"
                             for x in r["rows"])
        if name == "generation":
            key = "bound_tokens_per_s_" + ("h200_spec" if r["bandwidth_bytes_per_s"].get(
                "h200_spec") else "measured_copy")
            return "; ".join(f"batch {x['batch']}: {x['decode_tokens_per_s']} tok/s decode "
                             f"(bound {x[key]})" for x in r["rows"])
    return ""


def as_cgr_eval(argv: list[str]) -> None:
    """One ``cgr-eval`` process (or torchrun rank) of this checkout. With
    ``CGR_GPU_CHECK_BACKEND`` set, the ranks' process group uses that backend (accelerate
    would choose NCCL on a GPU)."""
    backend = os.environ.get("CGR_GPU_CHECK_BACKEND")
    if backend and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate.state import PartialState

        PartialState(backend=backend)
    from cgr_plugin.cli import cgr_eval_main

    cgr_eval_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--as-cgr-eval"]:
        as_cgr_eval(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="every step on the CPU, small sizes")
    parser.add_argument("--quick", action="store_true", help="smaller still (fewer items, "
                        "broker batches 1 and 4, generation batches 1 and 8)")
    parser.add_argument("--json", type=Path, help="where the figures go (default: "
                        "benchmarks/gpu_check.json, with --cpu benchmarks/gpu_check_cpu.json)")
    parser.add_argument("--only", help=f"comma-separated steps of {', '.join(STEPS)}")
    parser.add_argument("--pretrained", help="a local HF model for the record checks "
                        "(default: the tiny offline Llama)")
    args = parser.parse_args(argv)
    names = [s for s in (args.only.split(",") if args.only else STEPS) if s]
    unknown = sorted(set(names) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; steps: {', '.join(STEPS)}")
    if args.json is None:
        args.json = Path(__file__).with_name("gpu_check_cpu.json" if args.cpu else
                                             "gpu_check.json")
    os.environ.update({k: v for k, v in _env().items() if k != "PYTHONPATH"})

    def write(report: dict[str, Any]) -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        partial = args.json.with_suffix(".partial")
        partial.write_text(json.dumps(report, indent=1, default=str) + "\n")
        partial.replace(args.json)

    check = Check(args)
    try:
        report = run_steps(check, names, write)
    finally:
        shutil.rmtree(check.work, ignore_errors=True)
    print(f"{'all steps passed' if report['all_passed'] else 'FAILED'} in {report['seconds']} s; "
          f"figures in {args.json}")
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
