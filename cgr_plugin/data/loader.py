"""Dataset specs and readers: from a ``dataset_kwargs`` block to normalized items.

One code path serves a run and ``cgr validate-dataset``: :func:`dataset_spec` checks the
``dataset_kwargs`` block and :func:`split_items` reads and normalizes one split, both adding
every problem they find to a :class:`Problems`. A run stops on the first problem (naming how
many more there are); the validator prints them all.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .._paths import DATA_DIR
from .items import ItemError, MCQAItem
from .normalize import FieldMapping, Normalizer, closest, did_you_mean, parse_letters

__all__ = ["DATASET_KWARGS", "SPLIT_KEYS", "DatasetSpec", "Problems", "TaskConfigError",
           "check_splits", "dataset_spec", "iter_rows", "read_items", "read_rows",
           "split_items"]

# Keys a CGR task may put under ``dataset_kwargs``.
DATASET_KWARGS = {
    "bundle": "name of a prepared dataset shipped with cgr-plugin (task_configs/_data/<name>)",
    "data_files": "a file, or {split: file}, relative to the task YAML; .jsonl, .json, .csv, "
                  ".tsv (each optionally .gz) or .parquet",
    "fields": "field mapping from source rows to items (docs/datasets.md)",
    "preprocess": "!function module.fn applied to each row before the field mapping",
    "normalizer": "name of a plugin row normalizer (`cgr plugins`), used like preprocess",
    "letters": "choice labels: upper (A, B, C, ...; the default), numbers (1, 2, 3, ...) or a "
               "list of labels",
    "name": "dataset name recorded on each item (default: the YAML file's stem)",
    "subset_field": "item metadata key that --metadata '{\"subsets\": [...]}' selects on",
    "revision": "Hugging Face hub revision (commit, tag or branch) of dataset_path",
}
# lm-eval's split keys, each naming one of the dataset's splits.
SPLIT_KEYS = ("test_split", "validation_split", "training_split", "fewshot_split")
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


class TaskConfigError(ItemError):
    """A task YAML whose dataset settings are wrong; names the YAML, the line and the key."""


class Problems:
    """Every problem found so far, in order; warnings never fail a dataset."""

    def __init__(self) -> None:
        self.errors: list[ItemError] = []
        self.warnings: list[ItemError] = []

    def add(self, error: ItemError) -> None:
        self.errors.append(error)

    def warn(self, warning: ItemError) -> None:
        self.warnings.append(warning)

    def __len__(self) -> int:
        return len(self.errors)

    def raise_first(self, yaml_file: str | None = None) -> None:
        """Raise the first problem, saying how many more there are (run time stops here)."""
        if not self.errors:
            return
        first, more = self.errors[0], len(self.errors) - 1
        if more:
            target = yaml_file if yaml_file and yaml_file != "inline" else "TASK.yaml"
            first = type(first)(
                f"{first.reason} (and {more} more problem{'s' if more > 1 else ''}; "
                f"`cgr validate-dataset {target}` lists them all)",
                source=first.source, item=first.item, field=first.field, line=first.line)
        raise first


# -- reading rows ------------------------------------------------------------------------------
def _kind(path: Path) -> tuple[str, bool]:
    """(format suffix, gzipped) of a data file name."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), gz


def data_file_problem(path: Path) -> str | None:
    """Why this file name cannot be read, or None."""
    kind, gz = _kind(path)
    if kind not in DATA_SUFFIXES or (gz and kind == ".parquet"):
        return (f"unsupported data file type {''.join(path.suffixes) or '(none)'}; use .jsonl, "
                ".json, .csv, .tsv (optionally .gz) or .parquet")
    return None


def iter_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any] | ItemError]]:
    """Yield ``(place, row)`` for every row of a data file, or ``(place, ItemError)`` for a row
    that cannot be read, and go on; a file that cannot be read at all raises an ItemError."""
    source = str(path)
    unsupported = data_file_problem(path)
    if unsupported:
        raise ItemError(unsupported, source=source)
    kind, gz = _kind(path)
    if kind == ".parquet":
        yield from _parquet_rows(path)
        return
    try:
        with (gzip.open if gz else open)(path, "rt", encoding="utf-8", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise ItemError(f"cannot read data file: {err}", source=source) from None
    if kind in (".csv", ".tsv"):
        yield from _delimited_rows(text, "," if kind == ".csv" else "\t", source)
        return
    if kind == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # JSON lines under a .json name (e.g. AQuA-RAT) are read below
        if isinstance(data, list):
            for n, row in enumerate(data):
                yield f"element {n}", _as_row(row, source, f"element {n}")
            return
        if isinstance(data, dict):
            raise ItemError("a .json data file must hold a list of objects (or JSON lines)",
                            source=source)
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines: \u2028 is data
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            yield f"line {n}", ItemError(f"invalid JSON: {err.msg} (column {err.colno})",
                                         source=source, line=f"line {n}")
            continue
        yield f"line {n}", _as_row(row, source, f"line {n}")


def _as_row(row: Any, source: str, where: str) -> Mapping[str, Any] | ItemError:
    if not isinstance(row, Mapping):
        return ItemError(f"expected a JSON object, got {type(row).__name__}", source=source,
                         line=where)
    return row


def _delimited_rows(text: str, delimiter: str, source: str
                    ) -> Iterator[tuple[str, Mapping[str, Any] | ItemError]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise ItemError(f"cannot parse the header: {err}", source=source, line="line 1") from None
    if not header:
        return
    header = [h.strip() for h in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise ItemError(f"column {repeated[0]!r} appears twice in the header", source=source,
                        line="line 1")
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield f"line {reader.line_num}", ItemError(f"cannot parse: {err}", source=source,
                                                       line=f"line {reader.line_num}")
            continue
        where = f"line {reader.line_num}"
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if len(record) != len(header):
            yield where, ItemError(f"{len(record)} value{'s' if len(record) != 1 else ''} "
                                   f"for {len(header)} columns",
                                   source=source, line=where)
            continue
        yield where, dict(zip(header, record, strict=True))


def _parquet_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any] | ItemError]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ItemError("reading .parquet files needs pyarrow (pip install pyarrow; it comes "
                        "with the datasets package)", source=str(path)) from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow's errors (ArrowInvalid, OSError) have no common base
        raise ItemError(f"cannot read Parquet file: {err}", source=str(path)) from None
    for n, row in enumerate(rows):
        yield f"row {n}", row


def read_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield ``(place, row)`` from a data file; the first unreadable row raises."""
    for where, row in iter_rows(path):
        if isinstance(row, ItemError):
            raise row
        yield where, row


def read_items(path: Path, normalizer: Normalizer | None = None) -> list[MCQAItem]:
    """All items of one file; a bad row raises an ItemError naming file, line, item and field
    (and how many more problems the file has)."""
    problems = Problems()
    items = _file_items(path, normalizer, problems)
    problems.raise_first()
    return items


# -- the dataset_kwargs block ------------------------------------------------------------------
@dataclass
class DatasetSpec:
    """What one task's ``dataset_kwargs`` (plus ``dataset_path``) ask for, checked."""

    where: str                            # the task YAML, for messages
    name: str                             # dataset name on every item
    kind: str                             # "bundle", "files" or "hub"
    files: dict[str, Path] = field(default_factory=dict)
    hub: dict[str, Any] = field(default_factory=dict)
    mapping: FieldMapping | None = None
    preprocess: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    letters: tuple[str, ...] | None = None
    subset_field: str | None = None
    splits: dict[str, str] = field(default_factory=dict)  # SPLIT_KEYS entry -> split name
    readable: bool = True  # False when rows cannot be read (no files, a broken mapping)
    declared: list[str] = field(default_factory=list)  # data_files splits, found or not
    bad_split_keys: set[str] = field(default_factory=set)  # split keys with a non-name value
    hub_line: str | None = None  # where dataset_path is in the YAML
    _hub_data: Any = None

    def normalizer(self, split: str) -> Normalizer | None:
        if self.mapping is None:
            return None
        return Normalizer(dataset=self.name, mapping=self.mapping, preprocess=self.preprocess,
                          split=split, letters=self.letters)

    def split_names(self, problems: Problems) -> list[str]:
        """The dataset's splits, readable or not (for a hub dataset this loads it)."""
        if self.kind != "hub":
            return list(self.declared or self.files)
        data = self.hub_data(problems) if self.readable else None
        return list(data) if data is not None else []

    def hub_data(self, problems: Problems) -> Any:
        if self._hub_data is None:
            self._hub_data = _load_hub(self, problems)
        return self._hub_data or None


def _load_hub(spec: DatasetSpec, problems: Problems) -> Any:
    import datasets

    path, name = spec.hub["path"], spec.hub.get("name")
    try:
        data = datasets.load_dataset(path, name, revision=spec.hub.get("revision"))
    except Exception as err:  # offline, unknown repo, bad config name, gated: all say why
        problems.add(TaskConfigError(
            f"cannot load {path!r}" + (f" (dataset_name {name!r})" if name else "")
            + f" with datasets.load_dataset: {type(err).__name__}: {err}. Without network "
            "access to the Hugging Face hub, download the data once and point "
            "dataset_kwargs.data_files at the files", source=spec.where,
            field="dataset_path", line=spec.hub_line))
        return False
    if not isinstance(data, Mapping):  # a single split
        data = {"test": data}
    return data


def dataset_spec(options: Mapping[str, Any], task: Mapping[str, Any], *, where: str,
                 base: Path | None, problems: Problems,
                 line_of: Callable[..., str | None] = lambda *keys: None,
                 preprocess: Any = None) -> DatasetSpec | None:
    """Check ``dataset_kwargs`` (``options``) and the task's split and hub keys (``task``).

    Every problem goes to ``problems``; None only when the task names no data at all.
    ``spec.readable`` says whether rows can be read despite the problems (the validator then
    goes on to check them).
    """

    def bad(message: str, *keys: str, top: bool = False) -> None:
        path = keys if top else ("dataset_kwargs", *keys)
        problems.add(TaskConfigError(message, source=where, field=".".join(path),
                                     line=line_of(*path)))

    for key in options:
        if key in DATASET_KWARGS:
            continue
        mapping_keys = [f.name for f in fields(FieldMapping)]
        close = closest(str(key), [*DATASET_KWARGS, *mapping_keys])
        hint = f"; did you mean {close!r}?" if close else ""
        if close in mapping_keys:
            hint = f"; did you mean fields.{close}? (it belongs under dataset_kwargs.fields)"
        bad(f"unknown key{hint} (allowed: {', '.join(DATASET_KWARGS)}; see docs/datasets.md)",
            str(key))
    name = options.get("name") or (Path(where).stem if base is not None else "custom")
    if not isinstance(name, str):
        bad(f"must be a string, got {name!r}", "name")
    hub_path = task.get("dataset_path")
    chosen = [k for k, given in (("bundle", "bundle" in options),
                                 ("data_files", "data_files" in options),
                                 ("dataset_path", hub_path is not None)) if given]
    if len(chosen) != 1:
        problems.add(TaskConfigError(
            "the data needs exactly one of dataset_kwargs.data_files (your own files), "
            "dataset_path (a Hugging Face hub dataset) or dataset_kwargs.bundle (a packaged "
            "dataset)" + (f"; this task sets {' and '.join(chosen)}" if chosen else ""),
            source=where, line=line_of("dataset_kwargs")))
        return None
    kind = {"bundle": "bundle", "data_files": "files", "dataset_path": "hub"}[chosen[0]]
    spec = DatasetSpec(where=where, name=str(name), kind=kind)

    if kind == "bundle":
        folder = DATA_DIR / str(options["bundle"])
        spec.files = {p.name.split(".")[0]: p for p in sorted(folder.glob("*.jsonl"))}
        if not spec.files:
            bad(f"no prepared dataset {options['bundle']!r} in {DATA_DIR}; packaged: "
                + ", ".join(sorted(p.name for p in DATA_DIR.iterdir() if p.is_dir())), "bundle")
            spec.readable = False
        if options.get("fields") is not None or options.get("preprocess") is not None:
            bad("a bundle holds prepared items: fields and preprocess do not apply", "bundle")
    elif kind == "files":
        raw = options["data_files"]
        raw = {"test": raw} if isinstance(raw, str) else raw
        if not isinstance(raw, Mapping) or not raw:
            bad("must be a path or a mapping {split: path}, e.g. {test: my_data.jsonl}",
                "data_files")
            spec.readable = False
        else:
            for split, value in raw.items():
                spec.declared.append(str(split))
                if not isinstance(value, str) or not value.strip():
                    bad(f"must be a file path, got {value!r}", "data_files", str(split))
                    continue
                path = _resolve(value, base)
                unsupported = data_file_problem(path)
                if unsupported:
                    bad(unsupported, "data_files", str(split))
                elif path.is_dir():
                    bad(f"{path} is a folder; name a data file", "data_files", str(split))
                elif not path.is_file():
                    bad(f"no such file {path}" + (f" (relative to {base})" if base else ""),
                        "data_files", str(split))
                else:
                    spec.files[str(split)] = path
            spec.readable = spec.readable and bool(spec.files)
    else:
        if not isinstance(hub_path, str) or not hub_path.strip():
            bad(f"must be a hub dataset name such as 'allenai/ai2_arc', got {hub_path!r}",
                "dataset_path", top=True)
            spec.readable = False
        hub_name = task.get("dataset_name")
        if hub_name is not None and not isinstance(hub_name, str):
            bad(f"must be a string, got {hub_name!r}", "dataset_name", top=True)
        revision = options.get("revision")
        if revision is not None and not isinstance(revision, str):
            bad(f"must be a string, got {revision!r}", "revision")
        spec.hub = {"path": hub_path, "name": hub_name, "revision": revision}
        spec.hub_line = line_of("dataset_path")
    if kind != "hub" and "revision" in options:
        bad("revision applies to a dataset_path (hub) dataset only", "revision")

    if kind != "bundle":
        mapping, mapping_problems = FieldMapping.parse(options.get("fields"), source=where)
        for err in mapping_problems:
            keys = ("dataset_kwargs", *(err.field or "fields").split(".")[:2])
            problems.add(TaskConfigError(err.reason, source=where,
                                         field="dataset_kwargs." + (err.field or "fields"),
                                         line=line_of(*keys) or line_of(*keys[:2])))
        spec.mapping = mapping
        spec.readable = spec.readable and mapping is not None
        hook = preprocess if preprocess is not None else options.get("preprocess")
        if hook is not None and not callable(hook):
            bad(f"must be a !function reference (preprocess: !function mymodule.fix_row), got "
                f"{hook!r}", "preprocess")
        spec.preprocess = hook if callable(hook) else None
        if options.get("normalizer") is not None:
            if hook is not None:
                bad("give preprocess or normalizer, not both", "normalizer")
            else:
                from .. import plugins

                try:
                    spec.preprocess = plugins.registry().get("normalizers",
                                                             str(options["normalizer"]))
                except plugins.PluginError as err:
                    bad(str(err), "normalizer")
    letters, letter_problem = parse_letters(options.get("letters"))
    if letter_problem:
        bad(letter_problem, "letters")
    spec.letters = letters
    subset_field = options.get("subset_field")
    if subset_field is not None:
        if not isinstance(subset_field, str):
            bad(f"must be a metadata key, got {subset_field!r}", "subset_field")
        elif spec.mapping is not None and subset_field not in {
                p.split(".")[-1] for p in spec.mapping.metadata}:
            bad(f"{subset_field!r} is not one of the item metadata fields (list it under "
                "fields.metadata)", "subset_field")
        else:
            spec.subset_field = subset_field
    for key in SPLIT_KEYS:
        value = task.get(key)
        if value is not None and not isinstance(value, str):
            bad(f"must be a split name, got {value!r}", key, top=True)
            spec.bad_split_keys.add(key)
        elif value is not None:
            spec.splits[key] = value
    return spec


def check_splits(spec: DatasetSpec, available: list[str], problems: Problems,
                 line_of: Callable[..., str | None] = lambda *keys: None) -> None:
    """Each of test_split, validation_split, training_split, fewshot_split names a split."""
    if not available:
        return
    if not ({"test_split", "validation_split"} & (set(spec.splits) | spec.bad_split_keys)):
        problems.add(TaskConfigError(
            f"no split to evaluate: set test_split (splits here: {', '.join(available)})",
            source=spec.where, field="test_split"))
    for key, split in spec.splits.items():
        if split not in available:
            hint = did_you_mean(split, available)
            problems.add(TaskConfigError(
                f"{key} {split!r} is not a split of this dataset{hint} (splits: "
                f"{', '.join(available)}); name the files per split in "
                f"dataset_kwargs.data_files, e.g. {{{split}: my_data.jsonl}}, or set {key}",
                source=spec.where, field=key, line=line_of(key)))


def _resolve(path: str, base: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p


# -- items of one split ------------------------------------------------------------------------
def split_items(spec: DatasetSpec, split: str, problems: Problems) -> list[MCQAItem]:
    """Every item of one split; every bad row, duplicate id and empty split goes to
    ``problems`` (items of bad rows are left out of the list, so check ``problems``)."""
    if not spec.readable or (spec.kind != "hub" and split not in spec.files):
        return []  # the reason is among the problems already
    if spec.kind == "hub":
        data = spec.hub_data(problems)
        if data is None:
            return []
        source = f"{spec.hub['path']}[{split}]"
        rows: Iterator[tuple[str, Any]] = (
            (f"row {n}", row) for n, row in enumerate(data[split]))
        return _collect(rows, source, spec.normalizer(split), problems, spec.letters)
    return _file_items(spec.files[split], spec.normalizer(split), problems, spec.letters)


def _file_items(path: Path, normalizer: Normalizer | None, problems: Problems,
                letters: tuple[str, ...] | None = None) -> list[MCQAItem]:
    try:
        return _collect(iter_rows(path), str(path), normalizer, problems, letters)
    except ItemError as err:  # the file as a whole cannot be read
        problems.add(err.located(source=str(path)))
        return []


def _collect(rows: Iterator[tuple[str, Any]], source: str, normalizer: Normalizer | None,
             problems: Problems, letters: tuple[str, ...] | None) -> list[MCQAItem]:
    items: list[MCQAItem] = []
    first_seen: dict[str, str] = {}
    id_field = (normalizer.mapping.id if normalizer is not None else None) or "id"
    index = seen = 0
    for where, row in rows:
        seen += 1
        if isinstance(row, ItemError):
            problems.add(row.located(source=source, line=where))
            continue
        if normalizer is not None:
            item, errors = normalizer.check(row, index)
        else:
            item, errors = _prepared_item(row, letters)
        index += 1
        for err in errors:
            problems.add(err.located(source=source, line=where))
        if item is None:
            continue
        if item.id in first_seen:
            problems.add(ItemError(f"duplicate id (first at {first_seen[item.id]})",
                                   source=source, line=where, item=item.id, field=id_field))
            continue
        first_seen[item.id] = where
        if len(set(item.choices)) < len(item.choices):
            problems.warn(ItemError("two choices have the same text", source=source,
                                    line=where, item=item.id, field="choices"))
        items.append(item)
    if seen == 0:
        problems.add(ItemError("data file holds no items", source=source))
    return items


def _prepared_item(row: Mapping[str, Any], letters: tuple[str, ...] | None
                   ) -> tuple[MCQAItem | None, list[ItemError]]:
    """A bundle row (already an item), relabelled to the task's letter scheme."""
    try:
        item = MCQAItem.from_json(row)
        if letters is not None:
            n = len(item.choices)
            if n > len(letters):
                raise ItemError(f"has {n} choices but the letter scheme has only "
                                f"{len(letters)} labels", item=item.id, field="letters")
            item = replace(item, letters=letters[:n], answer=letters[item.answer_index])
        return item, []
    except ItemError as err:
        return None, [err]
