"""The ``custom_dataset`` function every CGR task YAML points at.

lm-eval calls it as ``fn(**metadata, **dataset_kwargs)``; ``metadata`` carries ``config_source``
(the task YAML's path), so data files resolve relative to the YAML, not to the current directory.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._paths import DATA_DIR
from .items import ItemError, MCQAItem, check_unique_ids
from .normalize import FieldMapping, Normalizer

__all__ = ["TaskConfigError", "load_mcqa_dataset", "read_items", "read_rows"]

# Keys a CGR task may put under ``dataset_kwargs``.
DATASET_KWARGS = {
    "bundle": "name of a prepared dataset shipped with cgr-plugin (task_configs/_data/<name>)",
    "data_files": "a file, or {split: file}, relative to the task YAML; .jsonl/.json/.csv(.gz)",
    "fields": "field mapping from source rows to items (see README)",
    "preprocess": "!function module.fn applied to each row before the field mapping",
    "name": "dataset name recorded on each item (default: the YAML file's stem)",
    "subset_field": "item metadata key that --metadata '{\"subsets\": [...]}' selects on",
}


class TaskConfigError(ValueError):
    """A task YAML whose dataset settings are wrong; names the YAML file and the key."""


def read_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield ``(location, row)`` from a JSONL/JSON/CSV file, gzip allowed."""
    suffixes = [s.lower() for s in path.suffixes]
    opener = gzip.open if suffixes and suffixes[-1] == ".gz" else open
    kind = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (
        suffixes[-1] if suffixes else "")
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ItemError(f"cannot read data file: {err}", source=str(path)) from None
    if kind == ".csv":
        for n, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            yield f"line {n}", row
        return
    if kind == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # JSON lines under a .json name (e.g. AQuA-RAT) are read below
        if isinstance(data, list):
            for n, row in enumerate(data):
                yield f"element {n}", _as_row(row, path, f"element {n}")
            return
        if isinstance(data, dict):
            raise ItemError("a .json data file must hold a list of objects (or JSON lines)",
                            source=str(path))
    elif kind != ".jsonl":
        raise ItemError(f"unsupported data file type {''.join(suffixes) or '(none)'}; use "
                        ".jsonl, .json or .csv (optionally .gz)", source=str(path))
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines: \u2028 is data
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ItemError(f"invalid JSON: {err.msg} (column {err.colno})", source=str(path),
                            item=f"line {n}") from None
        yield f"line {n}", _as_row(row, path, f"line {n}")


def _as_row(row: Any, path: Path, where: str) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise ItemError(f"expected a JSON object, got {type(row).__name__}", source=str(path),
                        item=where)
    return row


def read_items(path: Path, normalizer: Normalizer | None = None) -> list[MCQAItem]:
    """All items of one file; any bad row raises an ItemError naming file, item and field."""
    items = []
    for index, (where, row) in enumerate(read_rows(path)):
        try:
            item = normalizer(row, index) if normalizer else MCQAItem.from_json(row)
        except ItemError as err:
            raise err.located(source=str(path), item=where) from None
        items.append(item)
    if not items:
        raise ItemError("data file holds no items", source=str(path))
    check_unique_ids(items, source=str(path))
    return items


def _task_dataset_kwargs(config_source: str | None) -> dict[str, Any] | None:
    """Re-read ``dataset_kwargs`` from the YAML so its keys are checked apart from metadata."""
    if not config_source or config_source == "inline":
        return None
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(config_source, resolve_func=True)
    kwargs = cfg.get("dataset_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise TaskConfigError(f"{config_source}: 'dataset_kwargs' must be a mapping")
    return dict(kwargs)


def _resolve(path: str, base: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p


def load_mcqa_dataset(**kwargs: Any) -> dict[str, Any]:
    """Load, normalize and validate one CGR task's items as ``{split: datasets.Dataset}``."""
    import datasets

    config_source = kwargs.get("config_source")
    where = config_source or "task config"
    declared = _task_dataset_kwargs(config_source)
    options = declared if declared is not None else {k: kwargs[k] for k in DATASET_KWARGS
                                                      if k in kwargs}
    unknown = sorted(set(options) - set(DATASET_KWARGS))
    if unknown:
        raise TaskConfigError(
            f"{where}: unknown key dataset_kwargs.{unknown[0]}; allowed: "
            + "; ".join(f"{k} ({v})" for k, v in DATASET_KWARGS.items()))
    base = Path(config_source).parent if config_source and config_source != "inline" else None
    name = options.get("name") or (Path(config_source).stem if base else "custom")

    if ("bundle" in options) == ("data_files" in options):
        raise TaskConfigError(f"{where}: dataset_kwargs needs exactly one of 'bundle' or "
                              "'data_files'")
    preprocess = kwargs.get("preprocess") if declared is None else options.get("preprocess")
    if preprocess is not None and not callable(preprocess):
        raise TaskConfigError(f"{where}: dataset_kwargs.preprocess must be a !function "
                              f"reference, got {preprocess!r}")
    if "bundle" in options:
        folder = DATA_DIR / str(options["bundle"])
        files = {p.name.split(".")[0]: p for p in sorted(folder.glob("*.jsonl"))}
        if not files:
            raise TaskConfigError(f"{where}: dataset_kwargs.bundle: no prepared dataset "
                                  f"{options['bundle']!r} in {DATA_DIR} (run 'cgr bundle')")
        make_normalizer: Callable[[str], Normalizer | None] = lambda split: None  # noqa: E731
    else:
        spec = options["data_files"]
        spec = {"test": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, Mapping) or not spec:
            raise TaskConfigError(f"{where}: dataset_kwargs.data_files must be a path or a "
                                  "mapping {split: path}")
        files = {str(split): _resolve(str(p), base) for split, p in spec.items()}
        for split, path in files.items():
            if not path.is_file():
                raise TaskConfigError(f"{where}: dataset_kwargs.data_files.{split}: no such "
                                      f"file {path}")
        mapping = FieldMapping.from_config(options.get("fields"), source=where)
        make_normalizer = lambda split: Normalizer(  # noqa: E731
            dataset=name, mapping=mapping, preprocess=preprocess, split=split)

    subsets = _requested_subsets(kwargs, options, where)
    out = {}
    for split, path in files.items():
        items = read_items(path, make_normalizer(split))
        if subsets is not None:
            items = _select(items, options["subset_field"], subsets, path)
        out[split] = datasets.Dataset.from_list([item.to_doc() for item in items])
    return out


def _requested_subsets(kwargs: Mapping[str, Any], options: Mapping[str, Any], where: str
                       ) -> list[str] | None:
    raw = kwargs.get("subsets")
    if raw is None:
        return None
    if "subset_field" not in options:
        raise TaskConfigError(f"{where}: --metadata subsets was given, but this task has no "
                              "dataset_kwargs.subset_field to select on; run it separately")
    values = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TaskConfigError(f"{where}: --metadata subsets must be a list or comma-separated "
                              f"string of names, got {raw!r}")
    return [v.strip() for v in values if v.strip()]


def _select(items: list[MCQAItem], key: str, wanted: list[str], path: Path) -> list[MCQAItem]:
    available = sorted({str(it.metadata.get(key)) for it in items})
    missing = [w for w in wanted if w not in available]
    if missing:
        raise TaskConfigError(f"{path}: unknown {key} {missing[0]!r}; available: "
                              + ", ".join(available))
    return [it for it in items if str(it.metadata.get(key)) in wanted]
