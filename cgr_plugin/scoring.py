"""lm-eval filter and per-item scoring for the CGR channels.

One filter pipeline per channel reads that channel's letter out of the JSON record; an item whose
channel did not yield a letter gets a sentinel that never equals a gold letter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lm_eval.api.filter import Filter

from .record import CHANNELS, CGRRecord

__all__ = ["INVALID", "ChannelFilter", "process_results"]

INVALID = "[invalid]"  # lm-eval's own fallback sentinel
SENTINELS = {"invalid": INVALID, "error": "[error]", "not_run": "[not_run]"}


class ChannelFilter(Filter):
    """``resps -> channel letter`` for one channel of the cgr record."""

    def __init__(self, channel: str = "direct", **kwargs: Any) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"cgr channel filter: unknown channel {channel!r}; "
                             f"one of {', '.join(CHANNELS)}")
        self.channel = channel

    def _letter(self, response: Any) -> str:
        try:
            result = CGRRecord.from_json(response).channel(self.channel)
        except (TypeError, ValueError, KeyError):
            return "[not_cgr_record]"
        return result.answer if result.status == "ok" else SENTINELS[result.status]

    def apply(self, resps: Iterable[list[Any]], docs: Iterable[dict]) -> list[list[str]]:
        return [[self._letter(r) for r in inst] for inst in resps]


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """acc: the channel's letter is the gold letter; invalid: it gave no letter at all."""
    answer = results[0]
    return {"acc": float(answer == doc["answer"]),
            "invalid": float(answer not in doc["letters"])}
