"""A run journal: every finished item's record, saved as soon as it is finished.

``--model_args journal=PATH`` (an SQLite file). A key covers everything that decides a record:
the cgr-plugin version, the models and settings (``CGRLM.get_model_info()``), the prompt
templates, the task and the item. Rerunning the same command after an interruption (Ctrl-C,
kill -9) takes finished items from the journal and computes only the rest; changing a model or a
setting changes the keys, so stale records are never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..prompts import environment
from ..record import valid_utf8

__all__ = ["Journal", "identity_hash", "written_with"]

log = logging.getLogger(__name__)


def identity_hash(info: Mapping[str, Any], template_dirs: Iterable[str] = ()) -> str:
    templates = {}
    for folder in environment(list(template_dirs)).loader.searchpath:  # as prompts search
        for path in sorted(Path(folder).glob("*.j2")):
            templates.setdefault(path.name, hashlib.sha256(path.read_bytes()).hexdigest())
    blob = json.dumps({"cgr": __version__, "info": info, "templates": templates},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Journal:
    """``info`` (the settings the identity hashes) is kept beside the records, one row per
    identity, so another run can tell with what settings they were made (``cache_from=``)."""

    def __init__(self, path: str | Path, identity: str,
                 info: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.identity = identity
        self.write_failures = 0
        # autocommit: a record is on disk before the next item starts
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, "
                         "record TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS runs (identity TEXT PRIMARY KEY, "
                         "info TEXT NOT NULL)")
        if info is not None:
            self._db.execute("INSERT OR REPLACE INTO runs (identity, info) VALUES (?, ?)",
                             (identity, _settings_text(info)))

    def key(self, task: str, item: Mapping[str, Any]) -> str:
        blob = json.dumps([self.identity, task, item], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT record FROM records WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, record: str) -> None:
        """Save one record (lone surrogates as U+FFFD); a record that cannot be stored (a full
        disk, anything SQLite refuses) costs resumability, never the run (logged once)."""
        try:
            self._db.execute("INSERT OR REPLACE INTO records (key, record) VALUES (?, ?)",
                             (key, valid_utf8(record)))
        except (sqlite3.Error, UnicodeError, ValueError, OverflowError, MemoryError) as err:
            if not self.write_failures:
                log.error("cgr: cannot write the journal %s (%s: %s): the run goes on, but "
                          "items finished from now on may be recomputed after an interruption",
                          self.path, type(err).__name__, err)
            self.write_failures += 1

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    @staticmethod
    def count(path: str | Path) -> int:
        """Records in the journal at ``path``, read without writing (a journal a running cell
        is filling, or one committed to git, is left as it is); 0 for none or unreadable."""
        try:
            db = _read_only(path)
        except sqlite3.Error:
            return 0
        try:
            return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        except sqlite3.Error:
            return 0
        finally:
            db.close()

    @staticmethod
    def records(path: str | Path) -> Iterator[dict[str, Any]]:
        """Every record in the journal at ``path`` whatever run wrote it, read without writing;
        a record that is not JSON is skipped (counted in the log). Raises ``sqlite3.Error``
        for a file that is not a journal."""
        db = _read_only(path)
        bad = 0
        try:
            for (text,) in db.execute("SELECT record FROM records"):
                try:
                    yield json.loads(text)
                except ValueError:
                    bad += 1
        finally:
            db.close()
            if bad:
                log.warning("cgr: %d records of the journal %s are not JSON; skipped", bad, path)


def written_with(path: str | Path, settings: Mapping[str, Any]) -> bool | None:
    """Whether a run that wrote the journal at ``path`` had ``settings`` (some of the keys of
    ``CGRLM.get_model_info()``, compared as the journal stores them); None for a journal
    written before runs' settings were kept. Raises ``sqlite3.Error`` for a file that is not
    a journal."""
    wanted = json.loads(_settings_text(settings))
    db = _read_only(path)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
            return None
        return any(all(run.get(key) == value for key, value in wanted.items())
                   for run in (json.loads(info) for (info,) in db.execute("SELECT info FROM runs")))
    finally:
        db.close()


def _settings_text(settings: Mapping[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _read_only(path: str | Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{Path(path).expanduser().resolve().as_uri()}?mode=ro", uri=True)
