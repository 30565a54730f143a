"""The controller's per-window shortcuts against their general twins, on the same data.

Each shortcut remembers something between calls (a sum, a checked array, a resolved band
list, a relaxation rate) so that the next call does less; these tests feed the warm
object and a cold one (or the general path) the same inputs and require the same bits.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.detector.score import ScoreSmoother
from controller.envelope import RollingSum
from controller.features import FeatureExtractor

# (dt before the operation, amount added; None: ask for the total)
_OPERATIONS = st.lists(
    st.tuples(
        st.floats(0.0, 5_000.0),
        st.none() | st.floats(-1.0, 1e6, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(_OPERATIONS, st.sampled_from([600.0, 3_600.0, 86_400.0]))
def test_rolling_sum_kept_total_is_the_fresh_fsum(
    operations: list[tuple[float, float | None]], window_s: float
) -> None:
    """The total kept between additions equals the total of a sum built afresh from the
    same additions (which has nothing kept), at every query."""
    warm = RollingSum(window_s)
    added: list[tuple[float, float]] = []
    t_s = 0.0
    for dt_s, amount in operations:
        t_s += dt_s
        if amount is not None:
            warm.add(t_s, amount)
            added.append((t_s, amount))
            continue
        cold = RollingSum(window_s)
        for at_s, value in added:
            cold.add(at_s, value)
        assert warm.total(t_s) == cold.total(t_s)
        assert warm.total(t_s) == warm.total(t_s)  # asking again changes nothing


@settings(max_examples=100, derandomize=True, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-50.0, 50.0), st.sampled_from([0.0, 0.25, 0.5, 0.5, 0.5, 3.0])),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([0.0, 2.0, 30.0]),
)
def test_score_smoother_remembered_rate_changes_nothing(
    updates: list[tuple[float, float]], tau_s: float
) -> None:
    """A smoother that remembers the last hop's rate gives the bits of one that computes
    every rate afresh (a new smoother per update, carrying the state over)."""
    warm = ScoreSmoother(tau_s)
    value, weight = None, 0.0
    for raw, dt_s in updates:
        cold = ScoreSmoother(tau_s)
        cold._value, cold._weight = value, weight
        expected = cold.update(raw, dt_s)
        assert warm.update(raw, dt_s) == expected
        value, weight = cold._value, cold._weight


def _frames_equal(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.t_end_s == y.t_end_s
        assert np.array_equal(x.band_power_uv2, y.band_power_uv2)
        assert np.array_equal(x.coherence, y.coherence)
        assert np.array_equal(x.quality.good, y.quality.good)


def test_push_counts_honours_a_new_or_changed_scale() -> None:
    """The scale array checked last time is recognised by identity, so a different array
    or one changed in place must still take effect: the frames equal pushing the µV."""
    rng = np.random.default_rng(7)
    blocks = [rng.integers(-3000, 3000, (4, 125)).astype(np.int16) for _ in range(24)]
    scale = np.full(4, 0.2)
    by_counts = FeatureExtractor(4, 250.0)
    by_uv = FeatureExtractor(4, 250.0)
    for k, block in enumerate(blocks):
        if k == 8:
            scale[:] = 0.3  # changed in place
        if k == 16:
            scale = np.array([0.1, 0.2, 0.3, 0.4])  # another array
        _frames_equal(by_counts.push_counts(block, scale), by_uv.push(block * scale[:, None]))


def test_push_counts_still_checks_a_scale_that_is_not_an_array() -> None:
    extractor = FeatureExtractor(2, 250.0)
    block = np.zeros((2, 125), dtype=np.int16)
    extractor.push_counts(block, [0.1, 0.1])  # a list: converted, not remembered
    with pytest.raises(ValueError, match="2 entries"):
        extractor.push_counts(block, [0.1, 0.1, 0.1])
