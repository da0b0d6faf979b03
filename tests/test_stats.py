"""Statistics against hand-computed values and scipy references."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from cgr_plugin.analysis.stats import accuracy, macro_difference, paired_difference


def wilson(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(7, 20), (0, 5), (5, 5), (150, 300)])
def test_wilson_interval_matches_the_formula(k, n):
    result = accuracy([True] * k + [False] * (n - k))
    low, high = wilson(k, n)
    assert result.value == pytest.approx(k / n)
    assert (result.low, result.high) == (pytest.approx(low), pytest.approx(high))


def test_no_items_gives_no_numbers():
    assert accuracy([]).value is None
    assert paired_difference([], []).difference is None


def test_mcnemar_exact_p_value():
    # 10 rescued, 2 harmed: two-sided binomial p over 12 discordant pairs = 0.03857...
    treated = [1] * 10 + [0] * 2 + [1] * 5 + [0] * 3
    control = [0] * 10 + [1] * 2 + [1] * 5 + [0] * 3
    result = paired_difference(treated, control, resamples=2000)
    assert (result.rescued, result.harmed) == (10, 2)
    assert result.mcnemar_p == pytest.approx(binomtest(10, 12, 0.5).pvalue)
    assert result.mcnemar_p == pytest.approx(158 / 4096)  # 2 * sum_{i<=2} C(12, i) / 2^12
    assert result.difference == pytest.approx(8 / 20)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    a, b = rng.random(400) < 0.6, rng.random(400) < 0.5
    first = paired_difference(a, b, seed=7)
    assert first == paired_difference(a, b, seed=7)
    assert first.low < first.difference < first.high
    # the percentile interval of a paired mean difference is close to the normal one
    d = a.astype(float) - b.astype(float)
    se = d.std(ddof=1) / math.sqrt(len(d))
    assert first.high - first.low == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_identical_channels_have_a_zero_interval():
    result = paired_difference([1, 0, 1, 1], [1, 0, 1, 1], resamples=500)
    assert (result.difference, result.low, result.high, result.mcnemar_p) == (0, 0, 0, 1.0)


def test_macro_difference_weights_datasets_equally():
    strata = {"big": ([1] * 90 + [0] * 10, [1] * 50 + [0] * 50),
              "small": ([0] * 10, [1] * 10)}
    result = macro_difference(strata, resamples=1000)
    assert result["treated"] == pytest.approx((0.9 + 0.0) / 2)
    assert result["control"] == pytest.approx((0.5 + 1.0) / 2)
    assert result["difference"] == pytest.approx(-0.3)
    assert result["low"] <= -0.3 <= result["high"]
    assert macro_difference({})["difference"] is None
