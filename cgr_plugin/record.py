"""The three-channel result record: what CGR knows about one item after a run.

``cgr`` returns it as JSON from ``generate_until``; lm-eval logs it verbatim in each sample's
``resps`` and the per-channel filters read their answer from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CHANNELS", "SCHEMA", "STATUSES", "ChannelResult", "CGRRecord"]

SCHEMA = "cgr.record/1"
CHANNELS = ("direct", "assisted", "generator")
# ok: a letter was read; invalid: the model answered but no letter could be read (never guessed);
# error: the model or program failed; not_run: the channel was not part of this run.
STATUSES = ("ok", "invalid", "error", "not_run")


@dataclass
class ChannelResult:
    status: str = "not_run"
    answer: str | None = None
    raw: str | None = None
    prompt: str | None = None
    extraction_rule: str | None = None
    solver_calls: int = 0
    error: str | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown channel status {self.status!r}")
        if (self.status == "ok") != (self.answer is not None):
            raise ValueError("a channel has an answer exactly when its status is ok")


@dataclass
class CGRRecord:
    item_id: str
    dataset: str
    gold: str
    letters: list[str]
    solver: str
    generator: str | None = None
    direct: ChannelResult = field(default_factory=ChannelResult)
    assisted: ChannelResult = field(default_factory=ChannelResult)
    generator_side: ChannelResult = field(default_factory=ChannelResult)
    schema: str = SCHEMA

    def channel(self, name: str) -> ChannelResult:
        if name not in CHANNELS:
            raise KeyError(f"unknown channel {name!r}; channels: {', '.join(CHANNELS)}")
        return self.generator_side if name == "generator" else getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = {name: out.pop("generator_side" if name == "generator" else name)
                           for name in CHANNELS}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> CGRRecord:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} record")
        channels = data.pop("channels")
        return cls(**data, direct=ChannelResult(**channels["direct"]),
                   assisted=ChannelResult(**channels["assisted"]),
                   generator_side=ChannelResult(**channels["generator"]))
