"""Rebuild the prepared MCQA bundle (``task_configs/_data``) from original source files.

``recipes.yaml`` says, per dataset, where the rows come from and how they map to items. Output
is one JSONL file per dataset plus ``MANIFEST.json`` (provenance, license, sha256, items left out
and why), written with sorted keys and ``\\n`` line ends so a rebuild is byte-for-byte identical.

A recipe's ``drop_invalid: [field, ...]`` leaves out rows that are not valid MCQA upstream (a
single option, a blank option) when every problem of the row is in those source fields; each is
counted with its reason in the manifest. Any other bad row still stops the build.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import importlib
import json
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._paths import DATA_DIR
from .items import ItemError, MCQAItem, check_unique_ids
from .loader import read_rows
from .normalize import FieldMapping, Normalizer, parse_letters

__all__ = ["BundleBuild", "aqua_row", "basic_skills_pattern_row", "build_bundle", "build_items",
           "failuresensoriq_row", "load_recipes", "oe_eval_query_row", "timeseriesexam_row",
           "truthfulqa_mc1_row"]

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


_SIMPLEPERT_LABELS = ("P", "Q", "R", "S", "T")


def failuresensoriq_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The SimplePert copy labels its options "P)".."T)"; the recipe's letters are P..T, so
    check that every row uses them in that order."""
    labels = [str(label).strip().rstrip(")").strip() for label in row.get("option_ids") or []]
    if tuple(labels) != _SIMPLEPERT_LABELS[:len(labels)]:
        raise ItemError(f"option labels {labels} are not P, Q, R, ... in order",
                        field="option_ids")
    return dict(row)


PATTERN_INSTRUCTION = "Which option continues the sequence?"


def basic_skills_pattern_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Pattern items are a bare sequence ("2 4 6 8"), scored upstream as a completion; a
    lettered prompt needs the instruction, given as the item's context (the question stays
    as upstream has it)."""
    return {**row, "instruction": PATTERN_INSTRUCTION}


_SERIES_KEYS = ("ts", "ts1", "ts2")


def timeseriesexam_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The series (``ts``, or ``ts1`` and ``ts2``) become the item's payload, exact values."""
    series = {key: row[key] for key in _SERIES_KEYS if row.get(key) is not None}
    if not series:
        raise ItemError("no time series (ts, or ts1 and ts2)", field="ts")
    for key, values in series.items():
        if not isinstance(values, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ItemError("must be a list of numbers", field=key)
    return {**row, "payload": {"series": series}}


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


def _read_zip_json(path: Path, member: str | None) -> Iterator[Mapping[str, Any]]:
    """A JSON list inside a zip archive (MMLU-Pro's items ship inside a results file)."""
    with zipfile.ZipFile(path) as archive:
        names = [member] if member else [n for n in archive.namelist() if n.endswith(".json")]
        if len(names) != 1:
            raise ValueError(f"{path}: name the archive's JSON file (local.member); it holds "
                             + ", ".join(archive.namelist()))
        rows = json.loads(archive.read(names[0]))
    if not isinstance(rows, list):
        raise ValueError(f"{path}:{names[0]}: expected a JSON list of rows")
    yield from rows


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
        elif reader == "zip_json":
            yield from _read_zip_json(path, spec.get("member"))
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


@dataclass
class BundleBuild:
    """One dataset's items, and the rows left out as not valid MCQA (``drop_invalid``)."""

    items: list[MCQAItem]
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def dropped_summary(self) -> dict[str, Any]:
        """The manifest's ``dropped`` entry: how many, how many per reason, and which."""
        reasons = Counter(entry["reason"] for entry in self.dropped)
        return {"count": len(self.dropped), "reasons": dict(sorted(reasons.items())),
                "items": self.dropped}


def build_items(name: str, recipe: Mapping[str, Any], *, source_root: Path | None,
                from_hub: bool = False) -> BundleBuild:
    """Normalize one dataset's rows into items, failing on the first bad row with its place
    (rows that are bad only in the recipe's ``drop_invalid`` fields are left out and listed)."""
    fields, preprocess = recipe.get("fields"), recipe.get("preprocess")
    if from_hub:
        hub = recipe.get("hub")
        if not hub:
            raise ValueError(f"{name}: no Hugging Face hub source is known for these rows; "
                             "build it from the original files (--source)")
        if "fields" in hub:  # hub rows have their own shape: own mapping, own hook
            fields, preprocess = hub["fields"], hub.get("preprocess")
        rows = _hub_rows(hub)
        where = f"hub:{hub['path']}"
    else:
        if source_root is None:
            raise ValueError("a local build needs the source root")
        rows = _local_rows(source_root, recipe["local"])
        where = str(source_root / recipe["local"]["path"])
    letters, problem = parse_letters(recipe.get("letters"))
    if problem:
        raise ValueError(f"{RECIPES_FILE}: {name}: letters: {problem}")
    normalizer = Normalizer(dataset=name, mapping=FieldMapping.from_config(fields, source=where),
                            preprocess=_function(preprocess), split=recipe["split"],
                            letters=letters)
    droppable = set(recipe.get("drop_invalid") or ())
    build = BundleBuild(items=[])
    for index, row in enumerate(rows):
        item, problems = normalizer.check(row, index)
        if item is not None:
            build.items.append(item)
        elif droppable and all(err.field in droppable for err in problems):
            build.dropped.append({"row": index, "id": problems[0].item or str(index),
                                  "reason": f"{problems[0].field}: {problems[0].reason}"})
        else:
            raise problems[0].located(source=where, item=str(index))
    check_unique_ids(build.items, source=where)
    return build


def _dump(items: list[MCQAItem]) -> bytes:
    lines = (json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True) for item in items)
    return ("\n".join(lines) + "\n").encode("utf-8")


def build_bundle(out_dir: Path = DATA_DIR, *, source_root: Path | None = None,
                 names: list[str] | None = None, from_hub: bool = False,
                 check: bool = False) -> dict[str, Any]:
    """Write (or with ``check`` compare) each dataset's JSONL and the manifest.

    Returns the manifest; with ``check`` raises if any byte differs from what is in ``out_dir``
    (the data files, and the manifest's entries for the datasets rebuilt). From the hub, a
    dataset without a known hub source is skipped unless named.
    """
    recipes = load_recipes()
    unknown = sorted(set(names or []) - set(recipes))
    if unknown:
        raise KeyError(f"unknown dataset {unknown[0]!r}; recipes exist for: "
                       + ", ".join(sorted(recipes)))
    manifest_path = out_dir / MANIFEST_FILE
    shipped = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest = dict(shipped)
    mismatches = []
    todo = names or [n for n in sorted(recipes) if not from_hub or recipes[n].get("hub")]
    for name in todo:
        recipe = recipes[name]
        build = build_items(name, recipe, source_root=source_root, from_hub=from_hub)
        data = _dump(build.items)
        target = out_dir / name / f"{recipe['split']}.jsonl"
        if check:
            if not target.exists() or target.read_bytes() != data:
                mismatches.append(str(target))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        manifest[name] = _manifest_entry(name, recipe, build, data)
        if check and shipped.get(name) != manifest[name]:
            mismatches.append(f"{manifest_path} ({name})")
    if check:
        if mismatches:
            raise ValueError("rebuilt bundle differs from the shipped files: "
                             + ", ".join(mismatches))
        return manifest
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _manifest_entry(name: str, recipe: Mapping[str, Any], build: BundleBuild, data: bytes
                    ) -> dict[str, Any]:
    hub = recipe.get("hub")
    return {
        "title": recipe["title"], "split": recipe["split"], "items": len(build.items),
        "dropped": build.dropped_summary(),
        "file": f"{name}/{recipe['split']}.jsonl", "sha256": hashlib.sha256(data).hexdigest(),
        "source": recipe["source"], "license": recipe["license"],
        "commercial_use": recipe["commercial_use"],
        "hub": {k: v for k, v in hub.items() if k != "fields"} if hub else None,
    }
