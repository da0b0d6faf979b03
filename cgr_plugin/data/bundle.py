"""Rebuild the prepared MCQA bundle (``task_configs/_data``) from original source files.

``recipes.yaml`` says, per dataset, where the rows come from and how they map to items. Output
is one JSONL file per dataset plus ``MANIFEST.json`` (provenance, license, sha256), written with
sorted keys and ``\\n`` line ends so a rebuild is byte-for-byte identical.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import importlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from .._paths import DATA_DIR
from .items import ItemError, MCQAItem, check_unique_ids
from .loader import read_rows
from .normalize import FieldMapping, Normalizer

__all__ = ["aqua_row", "build_bundle", "load_recipes", "oe_eval_query_row", "truthfulqa_mc1_row"]

RECIPES_FILE = DATA_DIR / "recipes.yaml"
MANIFEST_FILE = "MANIFEST.json"


# -- preprocess hooks for odd source shapes ----------------------------------------------------
_QUERY = re.compile(r"\AQuestion:\s*(?P<q>.*?)\s*\nAnswer:\s*\Z", re.S)
_AQUA_OPTION = re.compile(r"\A\s*([A-E])\s*\)\s*")


def oe_eval_query_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """OLMES docs keep the question only inside ``query`` ("Question: ...\\nAnswer:")."""
    match = _QUERY.match(row.get("query", ""))
    if not match:
        raise ItemError("query is not of the form 'Question: ...\\nAnswer:'", field="query")
    return {**row, "question": match.group("q")}


def aqua_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """AQuA-RAT options carry their letter ("A)21"); the item letters them itself."""
    options = []
    for i, option in enumerate(row.get("options") or []):
        match = _AQUA_OPTION.match(option)
        if not match or match.group(1) != "ABCDE"[i]:
            raise ItemError(f"option {i} {option!r} does not start with {'ABCDE'[i]})",
                            field="options")
        options.append(option[match.end():].strip() or option.strip())
    return {**row, "options": options}


def truthfulqa_mc1_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Upstream MC1 lists end in an empty wrong option on ~20 items: drop it, and count it."""
    targets = row.get("mc1_targets") or {}
    pairs = list(zip(targets.get("choices") or [], targets.get("labels") or [], strict=True))
    kept = [(c, lab) for c, lab in pairs if lab or (isinstance(c, str) and c.strip())]
    return {**row, "mc1_choices": [c for c, _ in kept], "mc1_labels": [lab for _, lab in kept],
            "dropped_empty_choices": len(pairs) - len(kept)}


# -- readers -----------------------------------------------------------------------------------
def _read_hf_arrow(folder: Path) -> Iterator[Mapping[str, Any]]:
    import pyarrow as pa

    for shard in sorted(folder.glob("data-*.arrow")):
        with pa.memory_map(str(shard)) as source:
            yield from pa.ipc.open_stream(source).read_all().to_pylist()


def _read_oe_eval_requests(path: Path) -> Iterator[Mapping[str, Any]]:
    """One request per (item, choice), plus unconditional copies: keep each doc once, in order."""
    seen: set[Any] = set()
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            request = json.loads(line)
            key = request.get("native_id", request.get("doc_id"))
            if key not in seen:
                seen.add(key)
                yield request["doc"]


def _local_rows(root: Path, spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    paths = sorted(Path(p) for p in glob.glob(str(root / spec["path"])))
    if not paths:
        raise FileNotFoundError(f"no source files match {root / spec['path']}")
    for path in paths:
        reader = spec["reader"]
        if reader == "hf_arrow":
            yield from _read_hf_arrow(path)
        elif reader == "oe_eval_requests":
            yield from _read_oe_eval_requests(path)
        elif reader in ("json", "jsonl"):
            yield from (row for _, row in read_rows(path))
        else:
            raise ValueError(f"{RECIPES_FILE}: unknown reader {reader!r}")


def _hub_rows(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    import datasets

    ds = datasets.load_dataset(spec["path"], spec.get("name"), split=spec["split"])
    yield from ds


# -- build -------------------------------------------------------------------------------------
def load_recipes(path: Path = RECIPES_FILE) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        recipes = yaml.safe_load(fh)
    if not isinstance(recipes, dict):
        raise ValueError(f"{path}: expected a mapping of dataset name to recipe")
    return recipes


def _function(dotted: str | None) -> Callable[..., Any] | None:
    if not dotted:
        return None
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build_items(name: str, recipe: Mapping[str, Any], *, source_root: Path | None,
                from_hub: bool = False) -> list[MCQAItem]:
    """Normalize one dataset's rows into items, failing on the first bad row with its place."""
    fields, preprocess = recipe.get("fields"), recipe.get("preprocess")
    if from_hub:
        hub = recipe["hub"]
        if "fields" in hub:  # hub rows have their own shape: own mapping, own hook
            fields, preprocess = hub["fields"], hub.get("preprocess")
        rows = _hub_rows(hub)
        where = f"hub:{hub['path']}"
    else:
        if source_root is None:
            raise ValueError("a local build needs the source root")
        rows = _local_rows(source_root, recipe["local"])
        where = str(source_root / recipe["local"]["path"])
    normalizer = Normalizer(dataset=name, mapping=FieldMapping.from_config(fields, source=where),
                            preprocess=_function(preprocess), split=recipe["split"])
    items = []
    for index, row in enumerate(rows):
        try:
            items.append(normalizer(row, index))
        except ItemError as err:
            raise err.located(source=where, item=str(index)) from None
    check_unique_ids(items, source=where)
    return items


def _dump(items: list[MCQAItem]) -> bytes:
    lines = (json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True) for item in items)
    return ("\n".join(lines) + "\n").encode("utf-8")


def build_bundle(out_dir: Path = DATA_DIR, *, source_root: Path | None = None,
                 names: list[str] | None = None, from_hub: bool = False,
                 check: bool = False) -> dict[str, Any]:
    """Write (or with ``check`` compare) each dataset's JSONL and the manifest.

    Returns the manifest; with ``check`` raises if any byte differs from what is in ``out_dir``.
    """
    recipes = load_recipes()
    unknown = sorted(set(names or []) - set(recipes))
    if unknown:
        raise KeyError(f"unknown dataset {unknown[0]!r}; recipes exist for: "
                       + ", ".join(sorted(recipes)))
    manifest_path = out_dir / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    mismatches = []
    for name in names or sorted(recipes):
        recipe = recipes[name]
        items = build_items(name, recipe, source_root=source_root, from_hub=from_hub)
        data = _dump(items)
        target = out_dir / name / f"{recipe['split']}.jsonl"
        digest = hashlib.sha256(data).hexdigest()
        if check:
            if not target.exists() or target.read_bytes() != data:
                mismatches.append(str(target))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        manifest[name] = {
            "title": recipe["title"], "split": recipe["split"], "items": len(items),
            "file": f"{name}/{recipe['split']}.jsonl", "sha256": digest,
            "source": recipe["source"], "license": recipe["license"],
            "commercial_use": recipe["commercial_use"],
            "hub": {k: v for k, v in recipe["hub"].items() if k != "fields"},
        }
    if check:
        if mismatches:
            raise ValueError("rebuilt bundle differs from the shipped files: "
                             + ", ".join(mismatches))
        return manifest
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
