"""How fast a model runs on this machine: measured once, cached, read by the plan's estimate.

:func:`measure_speed` takes any backend and times three calls: a first short one (loading the
model and answering one token), a fixed prompt of about :data:`PROMPT_TOKENS` tokens answered
with one token (prefill), and another prompt of the same length (different from its first
word, so no cached prefix helps) answered with :data:`DECODE_TOKENS` tokens (the difference is
decoding). :class:`SpeedCache` keeps the figures in ``CGR_CACHE_DIR/speeds.json``, keyed by the
model's identity and by this machine (host, processor, cores), so each model is measured once
per machine. Token counts are the backend's where it reports them, else characters / 4.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..._paths import cache_dir
from ...models.base import Backend, GenerationRequest
from ...models.registry import ModelSpec, offline_status
from .spec import ModelEntry

__all__ = ["DECODE_TOKENS", "PROMPT_TOKENS", "Speed", "SpeedCache", "machine_key",
           "measurable", "measure_speed", "model_key"]

PROMPT_TOKENS = 200
DECODE_TOKENS = 16
_SENTENCE = "The quick brown fox jumps over the lazy dog while the farmer counts his sheep. "


@dataclass(frozen=True)
class Speed:
    """One model's measured speed on one machine."""

    load_seconds: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    measured_at: str = ""

    def seconds(self, prompt_tokens: float, decoded_tokens: float) -> float:
        """The time of one call that reads ``prompt_tokens`` and writes ``decoded_tokens``."""
        return (prompt_tokens / self.prefill_tokens_per_s
                + decoded_tokens / self.decode_tokens_per_s)


def _tokens(reported: int | None, text: str | None) -> float:
    return float(reported) if reported else max(len(text or "") / 4, 1.0)


def _timed(backend: Backend, prompt: str, max_tokens: int) -> tuple[float, float, float]:
    """(seconds, prompt tokens, decoded tokens) of one greedy request."""
    started = time.perf_counter()
    (answer,) = backend.generate([GenerationRequest(prompt, max_tokens)])
    seconds = time.perf_counter() - started
    if answer.error is not None:
        raise RuntimeError(f"{backend.name}: the timing request failed: {answer.error}")
    return seconds, _tokens(answer.tokens_in, prompt), _tokens(answer.tokens_out, answer.text)


def measure_speed(backend: Backend) -> Speed:
    """Load, prefill and decode speed of ``backend`` (a few seconds for a small model).

    Decode is the difference of two requests for the same prompt right after one another, one
    reply token against ``DECODE_TOKENS``: both find (or both miss) the prompt's KV state, so
    what a backend's prefix reuse saves cancels out instead of counting as decode speed.
    """
    repeats = max(PROMPT_TOKENS * 4 // len(_SENTENCE), 1)
    prompt = "Copy this text, then stop. " + _SENTENCE * repeats
    load, _, _ = _timed(backend, "Say OK.", 1)
    prefill, prompt_tokens, _ = _timed(backend, prompt, 1)
    short, _, _ = _timed(backend, prompt, 1)
    both, _, decoded = _timed(backend, prompt, DECODE_TOKENS)
    decode_seconds = max(both - short, 0.05 * both)  # timing noise on a busy machine
    return Speed(load_seconds=round(load, 3),
                 prefill_tokens_per_s=round(prompt_tokens / max(prefill, 1e-6), 2),
                 decode_tokens_per_s=round(max(decoded - 1, 1) / decode_seconds, 2),
                 measured_at=time.strftime("%Y-%m-%d %H:%M:%S"))


def machine_key() -> str:
    """This machine, as the cache tells machines apart: host, processor and cores."""
    processor = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            processor = next((line.split(":", 1)[1].strip() for line in info
                              if line.startswith("model name")), processor)
    except OSError:
        pass
    return f"{platform.node()}|{platform.machine()}|{processor}|{os.cpu_count()} cores"


def model_key(entry: ModelEntry, spec: ModelSpec | None) -> str:
    """A model's identity for the cache: its entry, and for a registry model its file or hub
    id and backend, so a changed registry entry is measured again."""
    identity: dict[str, Any] = {"model": entry.model, "args": dict(entry.args)}
    if spec is not None:
        identity["registry"] = {"format": spec.format, "sha256": spec.source.get("sha256"),
                                "pretrained": spec.pretrained, "backend": spec.backend}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    return f"{entry.label}:{digest.hexdigest()[:16]}"


def measurable(entry: ModelEntry, spec: ModelSpec | None, plugin_models: Mapping[str, Any]
               ) -> tuple[bool, str]:
    """Whether the model can be timed here without a hub or a server, and why not."""
    if spec is not None:
        return offline_status(spec)
    if entry.model in plugin_models:
        return True, "a plugin's backend"
    local = entry.args.get("pretrained")
    if local and Path(str(local)).expanduser().is_dir():
        return True, "local folder"
    return False, f"{entry.model} with no local model folder"


class SpeedCache:
    """``{machine: {model: Speed}}`` in one JSON file, written atomically."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / "speeds.json"
        self.machine = machine_key()

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Speed | None:
        found = self._load().get(self.machine, {}).get(key)
        try:
            return Speed(**found) if isinstance(found, dict) else None
        except TypeError:  # written by another version
            return None

    def put(self, key: str, speed: Speed) -> None:
        data = self._load()
        data.setdefault(self.machine, {})[key] = asdict(speed)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False,
                                         suffix=".part", encoding="utf-8") as tmp:
            json.dump(data, tmp, indent=2, sort_keys=True)
        os.replace(tmp.name, self.path)
