"""The compiled quantiser gives the numpy reference's bytes for every block."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from simulator.jit import NUMBA_AVAILABLE
from simulator.quantise import wire_counts, wire_counts_numpy

_VALUES = st.one_of(
    st.floats(-40_000.0, 40_000.0, allow_nan=False),
    st.sampled_from([0.25, 0.5, -0.5, 1.5, -2.5, 16_383.5, -16_384.25, 1e300, -1e300]),
    st.just(np.inf),
    st.just(-np.inf),
    st.just(np.nan),
)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # NaN, numpy's own
@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    uv=hnp.arrays(np.float64, st.tuples(st.integers(1, 9), st.integers(1, 40)), elements=_VALUES),
    scale=st.sampled_from([0.5, 0.1, 1.0, 0.0305]),
)
def test_compiled_counts_are_the_reference_bytes(uv: np.ndarray, scale: float) -> None:
    assert wire_counts(uv, scale) == wire_counts_numpy(uv, scale)


@pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba not installed")
def test_a_non_contiguous_block_quantises_as_its_copy() -> None:
    uv = np.random.default_rng(3).normal(0.0, 5_000.0, (8, 1000))[:, ::2]
    assert wire_counts(uv, 0.5) == wire_counts_numpy(np.ascontiguousarray(uv), 0.5)


def test_counts_are_sample_major_little_endian_and_clipped() -> None:
    uv = np.array([[1.0, -40_000.0], [2.6, 40_000.0]])  # 2 channels x 2 samples
    counts = np.frombuffer(wire_counts(uv, 0.5), dtype="<i2")
    assert counts.tolist() == [2, 5, -32768, 32767]
