"""Rows of a data file: .jsonl, .json, .csv, .tsv (each optionally .gz), .parquet and .arrow,
or a Hugging Face ``save_to_disk`` folder of one split (its ``data-*.arrow`` shards in order).

Each row comes with its place in the file (``line 3``, ``element 0``, ``row 7``); a row that
cannot be read is an :class:`~cgr_plugin.data.items.ItemError` in its place, so a caller can
report every bad row and go on. Turning rows into items is :mod:`.normalize`'s job.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .items import ItemError

__all__ = ["DATA_SUFFIXES", "arrow_folder_problem", "data_file_problem", "iter_rows",
           "read_rows"]

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow")


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
    if kind not in DATA_SUFFIXES or (gz and kind in (".parquet", ".arrow")):
        return (f"unsupported data file type {''.join(path.suffixes) or '(none)'}; use .jsonl, "
                ".json, .csv, .tsv (optionally .gz), .parquet, .arrow or a Hugging Face "
                "save_to_disk folder")
    return None


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("data-*.arrow")) or sorted(folder.glob("*.arrow"))


def arrow_folder_problem(folder: Path) -> str | None:
    """Why a folder is not one split saved by ``datasets`` (``save_to_disk``), or None."""
    if _shards(folder):
        return None
    splits = sorted(p.name for p in folder.iterdir() if p.is_dir() and _shards(p))
    if splits:
        return (f"{folder} holds the splits {', '.join(splits)} (a DatasetDict); name one folder "
                "per split, e.g. data_files: {test: " + f"{folder.name}/{splits[0]}" + "}")
    return (f"{folder} is a folder without .arrow files; name a data file, or a folder that "
            "datasets' save_to_disk wrote for one split")


def iter_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any] | ItemError]]:
    """Yield ``(place, row)`` for every row of a data file, or ``(place, ItemError)`` for a row
    that cannot be read, and go on; a file that cannot be read at all raises an ItemError."""
    source = str(path)
    if path.is_dir():
        problem = arrow_folder_problem(path)
        if problem:
            raise ItemError(problem, source=source)
        yield from _arrow_rows(_shards(path), source)
        return
    unsupported = data_file_problem(path)
    if unsupported:
        raise ItemError(unsupported, source=source)
    kind, gz = _kind(path)
    if kind == ".parquet":
        yield from _parquet_rows(path)
        return
    if kind == ".arrow":
        yield from _arrow_rows([path], source)
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


def _arrow_rows(shards: list[Path], source: str
                ) -> Iterator[tuple[str, Mapping[str, Any] | ItemError]]:
    """Rows of Arrow files: ``datasets`` writes the stream format, others the file format."""
    try:
        import pyarrow as pa
    except ImportError:
        raise ItemError("reading .arrow files needs pyarrow (pip install pyarrow; it comes "
                        "with the datasets package)", source=source) from None
    n = 0
    for shard in shards:
        try:
            with pa.memory_map(str(shard)) as stream:
                try:
                    table = pa.ipc.open_stream(stream).read_all()
                except pa.ArrowInvalid:
                    stream.seek(0)
                    table = pa.ipc.open_file(stream).read_all()
        except Exception as err:  # pyarrow's errors (ArrowInvalid, OSError) have no common base
            raise ItemError(f"cannot read Arrow file {shard.name}: {err}", source=source) from None
        for row in table.to_pylist():
            yield f"row {n}", row
            n += 1


def read_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield ``(place, row)`` from a data file; the first unreadable row raises."""
    for where, row in iter_rows(path):
        if isinstance(row, ItemError):
            raise row
        yield where, row
