"""(d) Direct-channel wall time against plain lm-eval with the same backend on the same items.

Both sides run lm-eval's own ``hf`` backend on the same model (a random-weight Llama built
offline, see cgr_plugin.testing), the same items (ARC-Easy test) and the same prompt (cgr's
direct prompt under the chat template, greedy, 8 new tokens): plain lm-eval through the task in
benchmarks/plain_lm_eval/ with --apply_chat_template, cgr through ``--model cgr`` with
``solver=hf,channels=direct``. Runs alternate, several times each; loading is not timed.
Prints both medians, the ratio (target <= 1.10) and whether the two produced identical text.

Run: python benchmarks/direct_vs_lm_eval.py [--limit 50] [--repeats 3] [--hidden 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cgr_plugin

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256, help="width of the random model")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()

    cgr_plugin.register()
    from lm_eval.api.registry import get_model
    from lm_eval.evaluator import evaluate
    from lm_eval.tasks import TaskManager

    from cgr_plugin.record import CGRRecord
    from cgr_plugin.run.model import CGRLM
    from cgr_plugin.testing import tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_llama(Path(tmp) / "model", hidden=args.hidden, layers=args.layers)
        hf_args = {"pretrained": str(model), "dtype": "float32", "device": "cpu",
                   "batch_size": args.batch_size}
        plain_lm = get_model("hf").create_from_arg_obj(hf_args)
        cgr_lm = CGRLM(solver="hf", channels="direct", direct_style="letter",
                       direct_max_tokens=8, **{f"solver.{k}": v for k, v in hf_args.items()})
        manager = TaskManager(include_path=[str(cgr_plugin.TASKS_DIR),
                                            str(HERE / "plain_lm_eval")], include_defaults=False)
        plain_task = manager.load(["plain_direct_arc_easy"])
        cgr_task = manager.load(["cgr_arc_easy"])

        def plain() -> list[str]:
            out = evaluate(plain_lm, plain_task, limit=args.limit, log_samples=True,
                           apply_chat_template=True, verbosity="WARNING", bootstrap_iters=0)
            return [s["resps"][0][0] for s in out["samples"]["plain_direct_arc_easy"]]

        def cgr() -> list[str]:
            out = evaluate(cgr_lm, cgr_task, limit=args.limit, log_samples=True,
                           confirm_run_unsafe_code=True, verbosity="WARNING", bootstrap_iters=0)
            return [CGRRecord.from_json(s["resps"][0][0]).direct.raw
                    for s in out["samples"]["cgr_arc_easy"] if s["filter"] == "direct"]

        cgr()  # loads the solver inside cgr once, untimed; plain_lm is loaded already
        times: dict[str, list[float]] = {"plain lm-eval": [], "cgr direct": []}
        texts = {}
        for _ in range(args.repeats):
            for name, run in (("plain lm-eval", plain), ("cgr direct", cgr)):
                started = time.perf_counter()
                texts[name] = run()
                times[name].append(time.perf_counter() - started)

    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name:14} median {median:6.2f} s over {args.repeats} runs of {args.limit} items "
              f"({', '.join(f'{t:.2f}' for t in times[name])})")
    ratio = medians["cgr direct"] / medians["plain lm-eval"]
    same = sum(a == b for a, b in zip(texts["plain lm-eval"], texts["cgr direct"], strict=True))
    print(f"cgr / plain: {ratio:.3f} (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'}); "
          f"identical outputs {same}/{args.limit}")


if __name__ == "__main__":
    main()
