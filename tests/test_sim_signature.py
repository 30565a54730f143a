"""The prodromal signature's compiled state arithmetic against its array version."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.jit import NUMBA_AVAILABLE
from simulator.physiology import signature
from simulator.physiology.signature import ProdromalSignature, draw_signature_params

_EXPRESSION = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 1e-300, 0.5]))


@pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba not installed")
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**16),
    e_p=_EXPRESSION,
    e_a=_EXPRESSION,
    e_pd=_EXPRESSION,
    jitter=st.floats(-8.0, 8.0),
)
def test_compiled_state_is_the_numpy_state_bit_for_bit(
    seed: int, e_p: float, e_a: float, e_pd: float, jitter: float
) -> None:
    """Band gains, alpha peaks (clipped at 6 and 14 Hz included) and input drive of the
    compiled path equal the array version's to the last bit."""
    rng = np.random.default_rng(seed)
    sig = ProdromalSignature(draw_signature_params(rng), 8, rng)
    sig.prodrome_expression, sig.attack_expression, sig.postdrome_expression = e_p, e_a, e_pd
    sig._jitter = jitter
    assert signature._state_numba is not None
    compiled, reference = sig.state(), sig._state_numpy()
    for name in ("band_gain", "alpha_peak_hz", "suppression", "dc_offset_uv", "input_drive"):
        got, want = getattr(compiled, name), getattr(reference, name)
        assert got.shape == want.shape and got.tobytes() == want.tobytes(), name
    assert compiled.coherence_gain == reference.coherence_gain
