"""Dataset specs: from a ``dataset_kwargs`` block to normalized items.

One code path serves a run and ``cgr validate-dataset``: :func:`dataset_spec` checks the
``dataset_kwargs`` block and :func:`split_items` reads and normalizes one split, both adding
every problem they find to a :class:`Problems`. A run stops on the first problem (naming how
many more there are); the validator prints them all. Reading a file's rows is :mod:`.rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .. import plugins
from .._paths import DATA_DIR
from .gold_echo import gold_echoes
from .items import ItemError, MCQAItem
from .normalize import FieldMapping, Normalizer, closest, did_you_mean, parse_letters
from .row_problems import RowShape, report_rows
from .rows import arrow_folder_problem, data_file_problem, iter_rows, read_rows

# iter_rows and read_rows live in .rows; they stay importable from here (data/bundle.py, 0.1).
__all__ = ["DATASET_KWARGS", "SPLIT_KEYS", "DatasetSpec", "GoldEchoError", "Problems",
           "TaskConfigError", "check_gold_echoes", "check_splits", "dataset_spec", "iter_rows",
           "read_items", "read_rows", "split_items"]

# Keys a CGR task may put under ``dataset_kwargs``.
DATASET_KWARGS = {
    "bundle": "name of a prepared dataset shipped with cgr-plugin (task_configs/_data/<name>)",
    "data_files": "a file, or {split: file}, relative to the task YAML; .jsonl, .json, .csv, "
                  ".tsv (each optionally .gz), .parquet, .arrow, or a Hugging Face save_to_disk "
                  "folder of one split",
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


class TaskConfigError(ItemError):
    """A task YAML whose dataset settings are wrong; names the YAML, the line and the key."""


class GoldEchoError(TaskConfigError):
    """A field programs see that equals the gold (refused) or mostly does (a warning)."""


def _no_line(*keys: str) -> str | None:
    return None


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
    line_of: Callable[..., str | None] = _no_line  # line of a key path in the task YAML
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
    check = _SpecCheck(options, task, where=where, base=base, problems=problems,
                       line_of=line_of)
    check.unknown_keys()
    spec = check.source()
    if spec is None:
        return None
    spec.line_of = line_of
    {"bundle": check.bundle, "files": check.data_files, "hub": check.hub}[spec.kind](spec)
    if spec.kind != "hub" and "revision" in options:
        check.bad("revision applies to a dataset_path (hub) dataset only", "revision")
    if spec.kind != "bundle":
        check.row_shape(spec, preprocess)
    check.letters_and_subset(spec)
    check.split_keys(spec)
    return spec


@dataclass
class _SpecCheck:
    """The checks of :func:`dataset_spec`, one method per part of the block, in the order their
    problems are reported."""

    options: Mapping[str, Any]
    task: Mapping[str, Any]
    where: str
    base: Path | None
    problems: Problems
    line_of: Callable[..., str | None]

    def bad(self, message: str, *keys: str, top: bool = False) -> None:
        path = keys if top else ("dataset_kwargs", *keys)
        self.problems.add(TaskConfigError(message, source=self.where, field=".".join(path),
                                          line=self.line_of(*path)))

    def unknown_keys(self) -> None:
        mapping_keys = [f.name for f in fields(FieldMapping)]
        for key in self.options:
            if key in DATASET_KWARGS:
                continue
            close = closest(str(key), [*DATASET_KWARGS, *mapping_keys])
            hint = f"; did you mean {close!r}?" if close else ""
            if close in mapping_keys:
                hint = f"; did you mean fields.{close}? (it belongs under dataset_kwargs.fields)"
            self.bad(f"unknown key{hint} (allowed: {', '.join(DATASET_KWARGS)}; see "
                     "docs/datasets.md)", str(key))

    def source(self) -> DatasetSpec | None:
        """The spec of the one data source the task names (bundle, files or hub), or None."""
        options = self.options
        name = options.get("name") or (Path(self.where).stem if self.base is not None
                                       else "custom")
        if not isinstance(name, str):
            self.bad(f"must be a string, got {name!r}", "name")
        chosen = [k for k, given in (("bundle", "bundle" in options),
                                     ("data_files", "data_files" in options),
                                     ("dataset_path", self.task.get("dataset_path") is not None))
                  if given]
        if len(chosen) != 1:
            self.problems.add(TaskConfigError(
                "the data needs exactly one of dataset_kwargs.data_files (your own files), "
                "dataset_path (a Hugging Face hub dataset) or dataset_kwargs.bundle (a packaged "
                "dataset)" + (f"; this task sets {' and '.join(chosen)}" if chosen else ""),
                source=self.where, line=self.line_of("dataset_kwargs")))
            return None
        kind = {"bundle": "bundle", "data_files": "files", "dataset_path": "hub"}[chosen[0]]
        return DatasetSpec(where=self.where, name=str(name), kind=kind)

    def bundle(self, spec: DatasetSpec) -> None:
        bundle = self.options["bundle"]
        folder = DATA_DIR / str(bundle)
        spec.files = {p.name.split(".")[0]: p for p in sorted(folder.glob("*.jsonl"))}
        if not spec.files:
            self.bad(f"no prepared dataset {bundle!r} in {DATA_DIR}; packaged: "
                     + ", ".join(sorted(p.name for p in DATA_DIR.iterdir() if p.is_dir())),
                     "bundle")
            spec.readable = False
        if self.options.get("fields") is not None or self.options.get("preprocess") is not None:
            self.bad("a bundle holds prepared items: fields and preprocess do not apply",
                     "bundle")

    def data_files(self, spec: DatasetSpec) -> None:
        raw = self.options["data_files"]
        raw = {"test": raw} if isinstance(raw, str) else raw
        if not isinstance(raw, Mapping) or not raw:
            self.bad("must be a path or a mapping {split: path}, e.g. {test: my_data.jsonl}",
                     "data_files")
            spec.readable = False
            return
        for split, value in raw.items():
            spec.declared.append(str(split))
            if not isinstance(value, str) or not value.strip():
                self.bad(f"must be a file path, got {value!r}", "data_files", str(split))
                continue
            path = _resolve(value, self.base)
            unsupported = (arrow_folder_problem(path) if path.is_dir()
                           else data_file_problem(path))
            if unsupported:
                self.bad(unsupported, "data_files", str(split))
            elif not path.exists():
                self.bad(f"no such file {path}" + (f" (relative to {self.base})" if self.base
                                                   else ""), "data_files", str(split))
            else:
                spec.files[str(split)] = path
        spec.readable = spec.readable and bool(spec.files)

    def hub(self, spec: DatasetSpec) -> None:
        hub_path = self.task.get("dataset_path")
        if not isinstance(hub_path, str) or not hub_path.strip():
            self.bad(f"must be a hub dataset name such as 'allenai/ai2_arc', got {hub_path!r}",
                     "dataset_path", top=True)
            spec.readable = False
        hub_name = self.task.get("dataset_name")
        if hub_name is not None and not isinstance(hub_name, str):
            self.bad(f"must be a string, got {hub_name!r}", "dataset_name", top=True)
        revision = self.options.get("revision")
        if revision is not None and not isinstance(revision, str):
            self.bad(f"must be a string, got {revision!r}", "revision")
        spec.hub = {"path": hub_path, "name": hub_name, "revision": revision}
        spec.hub_line = self.line_of("dataset_path")

    def row_shape(self, spec: DatasetSpec, preprocess: Any) -> None:
        """The field mapping, and the preprocess hook or plugin normalizer rows pass first."""
        mapping, mapping_problems = FieldMapping.parse(self.options.get("fields"),
                                                       source=self.where)
        for err in mapping_problems:
            keys = ("dataset_kwargs", *(err.field or "fields").split(".")[:2])
            self.problems.add(TaskConfigError(
                err.reason, source=self.where, field="dataset_kwargs." + (err.field or "fields"),
                line=self.line_of(*keys) or self.line_of(*keys[:2])))
        spec.mapping = mapping
        spec.readable = spec.readable and mapping is not None
        hook = preprocess if preprocess is not None else self.options.get("preprocess")
        if hook is not None and not callable(hook):
            # a !function that failed to import is reported already, at its line
            if not any(e.field == "dataset_kwargs.preprocess" for e in self.problems.errors):
                self.bad("must be a !function reference (preprocess: !function "
                         f"mymodule.fix_row), got {hook!r}", "preprocess")
            spec.readable = False  # rows read without their hook would all fail, or pass unfixed
        spec.preprocess = hook if callable(hook) else None
        normalizer = self.options.get("normalizer")
        if normalizer is None:
            return
        if hook is not None:
            self.bad("give preprocess or normalizer, not both", "normalizer")
            return
        try:
            spec.preprocess = plugins.registry().get("normalizers", str(normalizer))
        except plugins.PluginError as err:
            self.bad(str(err), "normalizer")

    def letters_and_subset(self, spec: DatasetSpec) -> None:
        letters, letter_problem = parse_letters(self.options.get("letters"))
        if letter_problem:
            self.bad(letter_problem, "letters")
        spec.letters = letters
        subset_field = self.options.get("subset_field")
        if subset_field is None:
            return
        if not isinstance(subset_field, str):
            self.bad(f"must be a metadata key, got {subset_field!r}", "subset_field")
        elif spec.mapping is not None and subset_field not in {
                p.split(".")[-1] for p in spec.mapping.metadata}:
            self.bad(f"{subset_field!r} is not one of the item metadata fields (list it under "
                     "fields.metadata)", "subset_field")
        else:
            spec.subset_field = subset_field

    def split_keys(self, spec: DatasetSpec) -> None:
        for key in SPLIT_KEYS:
            value = self.task.get(key)
            if value is not None and not isinstance(value, str):
                self.bad(f"must be a split name, got {value!r}", key, top=True)
                spec.bad_split_keys.add(key)
            elif value is not None:
                spec.splits[key] = value


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
def split_items(spec: DatasetSpec, split: str, problems: Problems,
                line_of: Callable[..., str | None] = lambda *keys: None) -> list[MCQAItem]:
    """Every item of one split; every bad row, duplicate id and empty split goes to
    ``problems`` (items of bad rows are left out of the list, so check ``problems``).

    A problem every row shares (a mapped column no row has) comes first, once, at its line of
    the task YAML (``line_of``), instead of once per row.
    """
    if not spec.readable or (spec.kind != "hub" and split not in spec.files):
        return []  # the reason is among the problems already
    normalizer = spec.normalizer(split)
    found, shape = Problems(), RowShape()
    if spec.kind == "hub":
        data = spec.hub_data(problems)
        if data is None:
            return []
        source = f"{spec.hub['path']}[{split}]"
        rows: Iterator[tuple[str, Any]] = (
            (f"row {n}", row) for n, row in enumerate(data[split]))
        items = _collect(rows, source, normalizer, found, spec.letters, shape)
    else:
        source = str(spec.files[split])
        items = _file_items(spec.files[split], normalizer, found, spec.letters, shape)
    for err in report_rows(found.errors, mapping=spec.mapping, shape=shape, source=source,
                           where=spec.where, line_of=line_of, hooked=spec.preprocess is not None,
                           root_error=TaskConfigError):
        problems.add(err)
    for warning in found.warnings:
        problems.warn(warning)
    check_gold_echoes(spec, split, items, problems)
    return items


def check_gold_echoes(spec: DatasetSpec, split: str, items: list[MCQAItem],
                      problems: Problems) -> None:
    """A field programs see that always equals the gold is refused; one that mostly does is a
    warning. Both name the mapping key and its line in the task YAML."""
    for echo in gold_echoes(items):
        key, path = _mapped_key(spec, echo.field)
        keys = ("dataset_kwargs", "bundle") if spec.kind == "bundle" else (
            "dataset_kwargs", "fields", key)
        where = f" ({path!r})" if path else ""
        if echo.refused:
            message = (f"split {split}: {echo.describe(where)}: a copy of the answer that "
                       "programs would read; leave it out of metadata, context and payload")
        else:
            message = (f"split {split}: {echo.describe(where)}: programs see it, so it may "
                       "hand them the gold; check that it is not derived from the answer")
        error = GoldEchoError(message, source=spec.where, field=".".join(keys),
                              line=spec.line_of(*keys) or spec.line_of(*keys[:2]))
        (problems.add if echo.refused else problems.warn)(error)


def _mapped_key(spec: DatasetSpec, seen_field: str) -> tuple[str, str | None]:
    """The ``fields`` key and row path a seen field (``metadata.subject``) comes from."""
    key, _, rest = seen_field.partition(".")
    if spec.mapping is None:
        return key, None
    if key == "metadata":
        path = next((p for p in spec.mapping.metadata if p.split(".")[-1] == rest), None)
        return key, path
    return key, getattr(spec.mapping, key, None)


def _file_items(path: Path, normalizer: Normalizer | None, problems: Problems,
                letters: tuple[str, ...] | None = None,
                shape: RowShape | None = None) -> list[MCQAItem]:
    try:
        return _collect(iter_rows(path), str(path), normalizer, problems, letters, shape)
    except ItemError as err:  # the file as a whole cannot be read
        problems.add(err.located(source=str(path)))
        return []


def _collect(rows: Iterator[tuple[str, Any]], source: str, normalizer: Normalizer | None,
             problems: Problems, letters: tuple[str, ...] | None,
             shape: RowShape | None = None) -> list[MCQAItem]:
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
            if shape is not None:
                shape.add(row, normalizer.raw_gold(row))
        else:
            item, errors = _prepared_item(row, letters)
        index += 1
        for err in errors:
            problems.add(err.located(source=source, line=where))
        if item is None:
            continue
        if item.id in first_seen:
            problems.add(ItemError(f"duplicate id (first at {first_seen[item.id]})",
                                   source=source, line=where, item=item.id, field=id_field,
                                   kind="duplicate id"))
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
