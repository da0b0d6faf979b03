"""Item-level statistics for paired channels. The item is the unit everywhere.

- accuracy with a Wilson score interval (scipy's ``binomtest(...).proportion_ci``);
- assisted - direct with a paired percentile bootstrap over items (seeded);
- an exact McNemar test: a two-sided binomial test on the discordant pairs;
- macro averages over datasets with a stratified bootstrap (items resampled within datasets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest

__all__ = ["Accuracy", "PairedDifference", "accuracy", "macro_difference", "paired_difference"]

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 20240519


@dataclass(frozen=True)
class Accuracy:
    correct: int
    n: int
    value: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(outcomes: Sequence[bool], confidence: float = 0.95) -> Accuracy:
    """Share correct with a Wilson interval; ``None`` values when there are no items."""
    n, k = len(outcomes), int(sum(bool(x) for x in outcomes))
    if n == 0:
        return Accuracy(0, 0, None, None, None)
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Accuracy(k, n, k / n, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class PairedDifference:
    n: int
    difference: float | None  # mean(assisted) - mean(direct)
    low: float | None
    high: float | None
    rescued: int  # assisted right, direct wrong
    harmed: int  # assisted wrong, direct right
    mcnemar_p: float | None
    resamples: int
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def _bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``resamples`` item resamples, drawn as multinomial counts of the distinct values.

    Same distribution as drawing item indices with replacement, in O(resamples) memory: the
    per-item differences take only the values -1, 0 and 1.
    """
    distinct, counts = np.unique(values, return_counts=True)
    draws = rng.multinomial(len(values), counts / len(values), size=resamples)
    return draws @ distinct / len(values)


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(treated: Sequence[bool], control: Sequence[bool], *,
                      resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                      confidence: float = 0.95) -> PairedDifference:
    """treated - control accuracy on the same items, with bootstrap interval and McNemar p."""
    a = np.asarray(treated, dtype=float)
    b = np.asarray(control, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired outcomes need the same items in both channels")
    n = len(a)
    rescued, harmed = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    if n == 0:
        return PairedDifference(0, None, None, None, 0, 0, None, resamples, seed)
    diff = a - b
    low, high = _percentiles(_bootstrap_means(diff, resamples, np.random.default_rng(seed)),
                             confidence)
    discordant = rescued + harmed
    p = binomtest(rescued, discordant, 0.5).pvalue if discordant else 1.0
    return PairedDifference(n, float(diff.mean()), low, high, rescued, harmed, float(p),
                            resamples, seed)


def macro_difference(strata: Mapping[str, tuple[Sequence[bool], Sequence[bool]]], *,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                     confidence: float = 0.95) -> dict:
    """Macro (mean over strata) treated, control and difference, with a stratified bootstrap.

    Each resample redraws items within every stratum, so each dataset keeps its weight.
    """
    strata = {k: v for k, v in strata.items() if len(v[0])}
    if not strata:
        return {"strata": 0, "treated": None, "control": None, "difference": None,
                "low": None, "high": None, "resamples": resamples, "seed": seed}
    rng = np.random.default_rng(seed)
    treated_means, control_means, boot = [], [], np.zeros(resamples)
    for treated, control in strata.values():
        a, b = np.asarray(treated, dtype=float), np.asarray(control, dtype=float)
        treated_means.append(a.mean())
        control_means.append(b.mean())
        boot += _bootstrap_means(a - b, resamples, rng)
    boot /= len(strata)
    low, high = _percentiles(boot, confidence)
    t, c = float(np.mean(treated_means)), float(np.mean(control_means))
    return {"strata": len(strata), "treated": t, "control": c, "difference": t - c,
            "low": low, "high": high, "resamples": resamples, "seed": seed}
