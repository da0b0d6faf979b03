"""A response cache in front of any backend: SQLite, keyed by model identity, prompt and decoding.

``--model_args cache=PATH`` (``journal=PATH`` alone puts it in the journal's file). The key is
the backend's ``describe()`` (model file hash or lm-eval arguments, context size, seed) plus the
request: prompt, token limit, stop strings, temperature and per-draw seed, or the judged
statement. Failed calls are never stored, so a resume retries them. One cache file may be shared
by runs with different settings: only identical calls to identical models hit. A judgement is
stored as its P(yes), a bare number, as it was in 0.1, so older cache files still answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .base import Backend, Generation, GenerationRequest, Judgement, Progress, judgements

__all__ = ["CacheStats", "CachedBackend", "ResponseCache"]

log = logging.getLogger(__name__)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class ResponseCache:
    """The SQLite file; safe to share between threads and between data-parallel ranks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.write_failures = 0
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, "
                         "value TEXT NOT NULL)")

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = list(keys[start:start + 500])
                marks = ",".join("?" * len(part))
                for key, value in self._db.execute(
                        f"SELECT key, value FROM responses WHERE key IN ({marks})", part):
                    found[key] = json.loads(value)
        return found

    def put_many(self, entries: dict[str, Any]) -> None:
        if not entries:
            return
        with self._lock:
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in entries.items()])
            except sqlite3.Error as err:  # a full disk costs caching, never the run
                if not self.write_failures:
                    log.error("cgr: cannot write the response cache %s (%s); going on without "
                              "saving responses", self.path, err)
                self.write_failures += 1

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def _request_key(request: GenerationRequest) -> dict[str, Any]:
    """The request's fields; the decoding options only when set, so keys written before they
    existed still match requests that leave them unset."""
    fields = asdict(request)
    if fields["draft"] is None:
        del fields["draft"]
    if not fields["stop_repeats"]:
        del fields["stop_repeats"]
    return fields


class CachedBackend:
    """Answers from the cache where it can and sends only the misses, as one batch, inward."""

    def __init__(self, backend: Backend, cache: ResponseCache) -> None:
        self.backend, self.cache = backend, cache
        self.name = backend.name
        self.stats = CacheStats()
        identity = json.dumps(backend.describe(), sort_keys=True, default=str)
        self._identity = hashlib.sha256(identity.encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def _key(self, kind: str, request: Any) -> str:
        blob = json.dumps([self._identity, kind, request], sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _through(self, kind: str, requests: Sequence[Any], payloads: Sequence[Any],
                 call: Callable[[list[Any]], list[Any]], keep: Callable[[Any], bool],
                 encode: Callable[[Any], Any], decode: Callable[[Any], Any],
                 tick: Callable[[int], None] | None = None) -> list[Any]:
        keys = [self._key(kind, payload) for payload in payloads]
        found = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        self.stats.hits += len(keys) - len(missing)
        self.stats.misses += len(missing)
        if tick is not None and len(keys) > len(missing):
            tick(len(keys) - len(missing))
        answers = call([requests[i] for i in missing]) if missing else []
        fresh = {keys[i]: encode(a) for i, a in zip(missing, answers, strict=True) if keep(a)}
        self.cache.put_many(fresh)
        out = [decode(found[key]) if key in found else None for key in keys]
        for i, answer in zip(missing, answers, strict=True):
            out[i] = answer
        return out

    def seed(self, answered: Iterable[tuple[GenerationRequest, Generation]]) -> int:
        """Store answers this model gave to these requests elsewhere (another run's journal)
        as if it had just given them; an answer the cache holds already is kept. How many were
        new."""
        entries = {self._key("generate", _request_key(request)): asdict(answer)
                   for request, answer in answered if answer.error is None}
        known = self.cache.get_many(list(entries))
        fresh = {key: value for key, value in entries.items() if key not in known}
        self.cache.put_many(fresh)
        return len(fresh)

    def generate(self, requests: Sequence[GenerationRequest], *,
                 progress: Progress = False) -> list[Generation]:
        return self._through(
            "generate", requests, [_request_key(r) for r in requests],
            lambda todo: self.backend.generate(todo, progress=progress),
            keep=lambda g: g.error is None, encode=asdict,
            decode=lambda v: Generation(**{**v, "seconds": 0.0}),  # a hit costs no model time
            tick=progress if callable(progress) else None)

    def judge(self, prompts: Sequence[str]) -> list[Judgement]:
        return self._through("judge", prompts, list(prompts),
                             lambda todo: judgements(self.backend.judge(todo)),
                             keep=lambda j: j.error is None, encode=lambda j: j.p_yes,
                             decode=lambda v: Judgement(float(v)))
