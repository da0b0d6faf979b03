"""The program resource: export a run's programs as a versioned package (``cgr export``).

Package layout (``cgr export RUN_DIR --out PKG``)::

    PKG/manifest.json   schema, cgr-plugin version, runs, generators, solvers, template and
                        dataset hashes, item counts, the lm-eval model configuration of each
                        run, the programs' digest and each dataset's license
    PKG/programs.jsonl  one line per item: task, item (gold included), generator and its prompt
                        family, the generator's raw output (what replay runs), the extracted
                        program, the three channels with statuses, solver-call trace and audits
    PKG/README.md       this format, for whoever receives the package

Replay: ``--model_args programs=PKG`` runs each item's stored generator output against a new
solver; no generator model is loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from .._paths import DATA_DIR, TEMPLATES_DIR
from .._version import __version__
from ..data.bundle import MANIFEST_FILE
from ..programs.packages import PACKAGE_SCHEMA, output_sha256, outputs_digest, program_key
from .runs import RunError, iter_records

__all__ = ["export_package"]

README = """# CGR program package

Written by `cgr export` (cgr-plugin {version}), schema `{schema}`.

- `manifest.json`: where the programs come from (runs, models, template and dataset hashes),
  `generator_outputs_sha256` (the digest `cgr report` gives each run's programs in
  `summary.json`'s `program_sets`) and `licenses`: each task's dataset, its license and source
  (the items and their gold letters are that dataset's: its license applies to them).
- `programs.jsonl`: one JSON object per item with keys `task`, `key`, `item` (the normalized
  MCQA item, gold letter included), `generator`, `generator_prompt` (the prompt family and its
  templates' sha256; a replay's records name it too), `generator_output` (the generator's raw text,
  which replay runs again), `program` (the code that ran), `solver`, `channels` (`direct`,
  `assisted`, `generator`: status, letter, solver calls, and for `assisted` the solver-call
  trace and audit flags).

Replay against another solver:

    cgr-eval --model cgr --model_args programs=THIS_FOLDER,solver=NAME --tasks TASKS \\
             --confirm_run_unsafe_code
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _licenses(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each task's dataset and its license, from the bundle's manifest; a dataset that is not
    one of the packaged ones says so (its own task YAML or source has the terms)."""
    path = DATA_DIR / MANIFEST_FILE
    bundle = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    out = {}
    for task in sorted({r["task"] for r in rows}):
        names = sorted({str(r["item"].get("dataset", "")) for r in rows if r["task"] == task})
        out[task] = {name: {k: bundle[name].get(k) for k in ("title", "license",
                                                              "commercial_use", "source")}
                     if name in bundle else {"license": "unknown: not a dataset packaged with "
                                             "cgr-plugin; see its task YAML and source"}
                     for name in names}
    return out


def export_package(folders: list[Path], out: Path) -> dict[str, Any]:
    rows, tasks, configs = [], Counter(), []
    for folder in folders:
        for results in sorted(folder.rglob("results_*.json")):
            config = json.loads(results.read_text()).get("config", {})
            configs.append({"file": str(results), "model": config.get("model"),
                            "model_args": config.get("model_args"),
                            **{k: v for k, v in config.items() if k.startswith("cgr_")}})
    for _, task, record in iter_records(folders):
        own, assisted = record.generator_side, record.assisted
        if own.raw is None:
            continue  # the assisted channel did not run for this item
        tasks[task] += 1
        rows.append({
            "task": task, "key": program_key(record.item), "item": record.item,
            "generator": record.generator, "generator_prompt": record.generator_prompt,
            "generator_output": own.raw,
            "program": assisted.program, "solver": record.solver,
            "channels": {name: {k: v for k, v in record.channel(name).__dict__.items()
                                if k not in ("prompt", "raw", "program", "output")}
                         for name in ("direct", "assisted", "generator")}})
    generators = {str(r["generator"]) for r in rows}
    if len(generators) > 1:
        raise RunError("runs of several generators (" + ", ".join(sorted(generators)) + "): "
                       "export one generator per package, so replay knows which program to run")
    if not rows:
        raise RunError("no generated programs in " + ", ".join(map(str, folders))
                         + " (runs need the assisted channel and --log_samples)")
    out.mkdir(parents=True, exist_ok=True)
    body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    (out / "programs.jsonl").write_text(body, encoding="utf-8")
    manifest = {
        "schema": PACKAGE_SCHEMA, "cgr_plugin": __version__,
        "runs": [str(f) for f in folders], "programs": len(rows), "tasks": dict(tasks),
        "generators": sorted({str(r["generator"]) for r in rows}),
        "generator_prompts": sorted({r["generator_prompt"]["name"] for r in rows
                                     if r["generator_prompt"]}),
        "solvers": sorted({r["solver"] for r in rows}),
        "templates": {p.name: _sha256(p) for p in sorted(TEMPLATES_DIR.glob("*.j2"))},
        "datasets": {task: hashlib.sha256("".join(
            json.dumps(r["item"], sort_keys=True) for r in rows if r["task"] == task)
            .encode()).hexdigest() for task in sorted(tasks)},
        "programs_sha256": hashlib.sha256(body.encode()).hexdigest(),
        "generator_outputs_sha256": outputs_digest(
            (r["task"], str(r["item"].get("id", "")), output_sha256(r["generator_output"]))
            for r in rows),
        "licenses": _licenses(rows),
        "model_config": configs}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(README.format(version=__version__, schema=PACKAGE_SCHEMA))
    return manifest
