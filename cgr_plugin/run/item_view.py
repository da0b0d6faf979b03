"""What a program (and the generator prompt) sees of an item: no gold, no real id.

Bundled datasets shuffle options with a public seed keyed by the item id (``shuffle_seed``), so
the real id plus public code predicts the gold. Programs therefore get an opaque id, and the
seed of their ``solver.pick`` RNG, both HMAC-SHA256 of the real ``dataset/id`` under a secret
key that is not in the repository: a per-installation random key created once at
``cache_dir()/item-key`` (``CGR_CACHE_DIR`` moves it). Runs on one machine stay deterministic;
copy the key file to reproduce tie-breaks on another machine. The parent keeps the real item:
records, the journal and replayed program packages are keyed by the real id as before.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._paths import cache_dir
from ..data.items import MCQAItem

__all__ = ["KEY_FILE", "item_for_program", "item_for_prompt", "item_key", "opaque_id",
           "program_seed"]

log = logging.getLogger(__name__)
KEY_FILE = "item-key"
_KEY_BYTES = 32
_lock = threading.Lock()
_keys: dict[Path, bytes] = {}


def _read_or_create(path: Path) -> bytes:
    """The key at ``path``; created atomically (link of a private temp file) when missing, so
    concurrent first runs agree on one key."""
    try:
        key = path.read_bytes()
        if len(key) >= _KEY_BYTES:
            return key
        raise ValueError(f"{path} holds {len(key)} bytes, not a key of {_KEY_BYTES}")
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(_KEY_BYTES))
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        temp.unlink(missing_ok=True)
    return path.read_bytes()


def item_key() -> bytes:
    """This installation's secret item key (a per-process one, with a warning, when the cache
    folder cannot hold it: programs stay blind, tie-breaks then differ between runs)."""
    path = cache_dir() / KEY_FILE
    with _lock:
        if path not in _keys:
            try:
                _keys[path] = _read_or_create(path)
            except (OSError, ValueError) as err:
                log.warning("cgr: cannot keep the item key at %s (%s); using a key for this "
                            "process only, so solver.pick tie-breaks differ between runs",
                            path, err)
                _keys[path] = secrets.token_bytes(_KEY_BYTES)
        return _keys[path]


def _digest(*parts: str) -> bytes:
    return hmac.new(item_key(), "\0".join(parts).encode("utf-8"), hashlib.sha256).digest()


def opaque_id(item: MCQAItem) -> str:
    """The id a program sees: stable on this machine, unrelated to the real one without the key."""
    return "item-" + _digest("id", item.dataset, item.id).hex()[:20]


def program_seed(seed: int, item: MCQAItem) -> int:
    """The seed of the program's ``solver.pick`` RNG (32 bits, as before)."""
    return int.from_bytes(_digest("seed", str(seed), item.dataset, item.id)[:4], "big")


def item_for_program(item: MCQAItem) -> dict[str, Any]:
    """What the sandbox gets: the item without its gold answer and with its opaque id."""
    return {"id": opaque_id(item), "question": item.question, "letters": list(item.letters),
            "choices": list(item.choices), "context": item.context, "payload": item.payload,
            "metadata": dict(item.metadata)}


def item_for_prompt(item: MCQAItem) -> MCQAItem:
    """The item the generator prompt is rendered from: its id is the opaque one, so a template
    that shows ``item.id`` cannot hand the real id to the program it asks for."""
    return replace(item, id=opaque_id(item))
