"""Program packages: the files ``cgr export`` writes, read back for replay.

``--model_args programs=PKG`` runs each item's stored generator output against a new solver; no
generator model is loaded. A package whose contents differ from its manifest is refused. The
generator prompt family its programs were written with travels with them, so a replay's records
name it as the writing run's do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import CGRError

__all__ = ["PACKAGE_SCHEMA", "PackageError", "ProgramPackage", "load_package", "load_programs",
           "output_sha256", "outputs_digest", "program_key", "write_programs"]

PACKAGE_SCHEMA = "cgr.programs/1"


class PackageError(CGRError):
    """A folder that is not a readable program package; names the file and what is wrong."""


def output_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def outputs_digest(entries: Iterable[tuple[str, str, str]]) -> str:
    """One sha256 for a set of generated programs, from (task, item id, ``output_sha256`` of
    the generator's output): a package's manifest and the report of the runs that wrote or
    replayed it give the same value, whatever the order of items."""
    lines = sorted(f"{task}\t{item}\t{digest}\n" for task, item, digest in entries)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def program_key(item: Mapping[str, Any]) -> str:
    return f"{item.get('dataset', '')}/{item.get('id', '')}"


def write_programs(out: Path, programs: Mapping[str, str], generator: str = "hand-written"
                   ) -> Path:
    """A replayable package from ``{item key (dataset/id): program text}``: run programs you
    wrote yourself (benchmarks, tests, a fixed scaffold) with ``--model_args programs=OUT``."""
    out.mkdir(parents=True, exist_ok=True)
    body = "".join(json.dumps({"key": key, "generator": generator, "generator_output": text},
                              sort_keys=True) + "\n" for key, text in programs.items())
    (out / "programs.jsonl").write_text(body, encoding="utf-8")
    manifest = {"schema": PACKAGE_SCHEMA, "cgr_plugin": __version__, "programs": len(programs),
                "generators": [generator],
                "programs_sha256": hashlib.sha256(body.encode()).hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


@dataclass(frozen=True)
class ProgramPackage:
    programs: dict[str, str]  # item key (dataset/id) -> generator output
    # the family every program was written with ({"name", "sha256"}), None when the package
    # does not say (hand-written, exported before cgr-plugin recorded it, or mixed)
    generator_prompt: dict[str, str] | None = None


def load_programs(package: str | Path) -> dict[str, str]:
    """``{item key: generator output}`` from a package folder, checked against its manifest."""
    return load_package(package).programs


def load_package(package: str | Path) -> ProgramPackage:
    """A package folder's programs and family, checked against its manifest."""
    folder = Path(package).expanduser()
    manifest_path, programs_path = folder / "manifest.json", folder / "programs.jsonl"
    if not manifest_path.is_file() or not programs_path.is_file():
        raise PackageError(f"{folder}: not a cgr program package (no manifest.json and "
                                "programs.jsonl; write one with `cgr export`)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("schema") != PACKAGE_SCHEMA:
        raise PackageError(f"{folder}: package schema {manifest.get('schema')!r}, this cgr-plugin "
                         f"reads {PACKAGE_SCHEMA!r}")
    body = programs_path.read_text(encoding="utf-8")
    if hashlib.sha256(body.encode()).hexdigest() != manifest.get("programs_sha256"):
        raise PackageError(f"{programs_path}: contents differ from the manifest's sha256")
    programs: dict[str, str] = {}
    families: set[str] = set()
    for line in body.splitlines():
        row = json.loads(line)
        if programs.get(row["key"], row["generator_output"]) != row["generator_output"]:
            raise PackageError(f"{programs_path}: item {row['key']} has two different programs "
                           "(export one generator per package)")
        programs[row["key"]] = row["generator_output"]
        families.add(json.dumps(row.get("generator_prompt"), sort_keys=True))
    family = json.loads(families.pop()) if len(families) == 1 else None
    return ProgramPackage(programs, family if isinstance(family, dict) else None)
