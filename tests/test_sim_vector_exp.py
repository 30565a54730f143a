"""The vectorisable exp: its table, its accuracy against the C library, its special ranges,
and the Jansen-Rit sigmoid helper that uses it (both its fast and its fallback path)."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.jit import NUMBA_AVAILABLE
from simulator.physiology.jansen_rit import (
    _F_CPL,
    _F_FILTER,
    _F_S_EXC,
    _F_S_INH,
    _F_S_PYR,
    _F_Y,
    LANES,
    _block_sigmoids,
    _couple,
    _weights_field,
    coupling_weights,
)
from simulator.physiology.vector_exp import (
    IN_RANGE_ABS_LIMIT,
    TABLE_SIZE,
    exp_any,
    exp_in_range,
    exp_table,
)
from simulator.signals import DEFAULT_SITES, Site

pytestmark = pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba not installed")


def _ulps(a: float, b: float) -> int:
    """Distance in units in the last place between two finite non-negative doubles."""
    return abs(int(np.float64(a).view(np.int64)) - int(np.float64(b).view(np.int64)))


def test_table_holds_two_to_the_k_over_128_in_head_and_tail() -> None:
    tail, scale_bits = exp_table()
    with localcontext() as ctx:
        ctx.prec = 60
        for k in range(TABLE_SIZE):
            head = float(np.uint64(scale_bits[k] + np.uint64(k << 45)).view(np.float64))
            exact = Decimal(2) ** (Decimal(k) / Decimal(TABLE_SIZE))
            assert head == float(exact)  # the nearest double
            assert abs(tail[k]) <= 2.0**-53
            # head (1 + tail) is 2^(k/128) to far better than a double's precision
            error = abs(Decimal(head) * (1 + Decimal(tail[k])) - exact) / exact
            assert error < Decimal(2) ** -104


@settings(max_examples=3000, derandomize=True, deadline=None)
@given(st.floats(-IN_RANGE_ABS_LIMIT, IN_RANGE_ABS_LIMIT, exclude_max=True, exclude_min=True))
def test_exp_in_range_is_within_one_ulp_of_the_c_library(x: float) -> None:
    assert _ulps(exp_in_range(x), math.exp(x)) <= 1
    assert exp_in_range(x) == exp_any(x)  # one formula in the range both cover


@settings(max_examples=3000, derandomize=True, deadline=None)
@given(st.floats(-800.0, 800.0))
def test_exp_any_is_within_one_ulp_of_the_c_library_up_to_overflow(x: float) -> None:
    try:
        expected = math.exp(x)
    except OverflowError:
        expected = math.inf
    got = exp_any(x)
    if math.isinf(expected):
        assert got == math.inf
    else:
        assert _ulps(got, expected) <= 1


def test_exp_any_special_values() -> None:
    assert exp_any(0.0) == 1.0 and exp_any(-0.0) == 1.0
    assert exp_any(math.inf) == math.inf and exp_any(-math.inf) == 0.0
    assert math.isnan(exp_any(math.nan))
    assert exp_any(1e300) == math.inf and exp_any(-1e300) == 0.0
    assert exp_any(-745.2) == 0.0  # below the smallest subnormal
    assert exp_any(-745.1) == 5e-324  # the smallest subnormal
    assert exp_any(2.0**-60) == 1.0


@pytest.mark.parametrize("offset_mv", [0.0, 1500.0, -1500.0])
@pytest.mark.parametrize("n_sites", [5, 8, 11, 19])
def test_block_sigmoids_and_coupling_match_the_formula_in_and_out_of_the_fast_range(
    offset_mv: float, n_sites: int
) -> None:
    """At ±1500 mV the sigmoid arguments leave the fast range: the fallback takes over.
    Below LANES sites the coupling goes term by term; from LANES sites the first LANES
    sources go in the lane loop; with 11 and 19 sites the last lane block is partly
    filled and the coupling crosses blocks."""
    extra = tuple(Site(f"X{i}", 10.0 * i, 5.0 - 3.0 * i) for i in range(n_sites))
    sites = (DEFAULT_SITES + extra)[:n_sites]
    n = len(sites)
    rng = np.random.default_rng(5)
    y = rng.normal(0.0, 5.0, (3, n))
    y[0, ::2] += offset_mv
    y[1, 1::3] -= offset_mv
    two_e0, r, v0, c1, c3 = 5.0, 0.56, 6.0, 135.0, 33.75
    coupling = coupling_weights(sites, 40.0) * 10.0
    # Lane blocks without filter sections: further weights follow the filter's output.
    more_weights = _F_FILTER + 1
    block_size = (more_weights + max(n - LANES, 0)) * LANES
    n_blocks = (n + LANES - 1) // LANES
    w = np.zeros(n_blocks * block_size)

    def field(f: int, i: int) -> int:
        return (i // LANES) * block_size + f * LANES + i % LANES

    for i in range(n):
        for c in range(3):
            w[field(_F_Y + c, i)] = y[c, i]
        for j in range(n):
            w[field(_weights_field(j, more_weights), i)] = coupling[i, j]
    for b in range(n_blocks):
        _block_sigmoids(w[b * block_size : (b + 1) * block_size], _F_Y, (two_e0, r, v0, c1, c3))
    _couple(w, block_size, n, more_weights, LANES)

    def sigmoid(x: float) -> float:
        try:
            return two_e0 / (1.0 + math.exp(x))
        except OverflowError:
            return 0.0

    s_pyr = np.array([w[field(_F_S_PYR, i)] for i in range(n)])
    for i in range(n):
        expected = [
            sigmoid(r * (v0 - (y[1, i] - y[2, i]))),
            sigmoid(r * (v0 - c1 * y[0, i])),
            sigmoid(r * (v0 - c3 * y[0, i])),
        ]
        got = [s_pyr[i], w[field(_F_S_EXC, i)], w[field(_F_S_INH, i)]]
        np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
    cpl_expected = np.array([sum(coupling[i, j] * s_pyr[j] for j in range(n)) for i in range(n)])
    np.testing.assert_array_equal([w[field(_F_CPL, i)] for i in range(n)], cpl_expected)
