"""The few scipy.stats / scipy.signal results the run's start-up path computes without
importing those packages (each costs about half a second at every command's start): the
same numbers, bit for bit, as the scipy functions they replace."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats
from scipy.special._ufuncs import _beta_ppf

from controller.features.layout import periodic_hann


def test_periodic_hann_is_scipys_hann_window() -> None:
    for n_samples in range(1, 2049):
        expected = scipy.signal.get_window("hann", n_samples)
        assert np.array_equal(periodic_hann(n_samples), expected), n_samples


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    q=st.floats(0.0, 1.0),
    a=st.floats(0.05, 50.0),
    b=st.floats(0.05, 50.0),
)
def test_beta_cdf_and_quantile_are_scipy_stats_beta(q: float, a: float, b: float) -> None:
    assert float(special.betainc(a, b, q)) == float(stats.beta.cdf(q, a, b))
    assert float(_beta_ppf(q, a, b)) == float(stats.beta.ppf(q, a, b))


@pytest.mark.filterwarnings("ignore:Error in function boost:RuntimeWarning")
def test_the_public_beta_inverse_is_not_the_quantile_function_for_tiny_quantiles() -> None:
    """Why the patient uses scipy's private _beta_ppf: betaincinv gives up (NaN) here."""
    assert np.isnan(special.betaincinv(2.0, 4.0, 1.1e-201))
    assert float(_beta_ppf(1.1e-201, 2.0, 4.0)) == float(stats.beta.ppf(1.1e-201, 2.0, 4.0))


def test_t_and_normal_quantiles_are_scipy_stats() -> None:
    for dof in range(1, 200):
        assert float(special.stdtrit(dof, 0.975)) == float(stats.t.ppf(0.975, dof))
    assert float(special.ndtri(0.975)) == float(stats.norm.ppf(0.975))


def test_the_command_line_and_the_simulation_do_not_import_scipy_stats_or_signal() -> None:
    """The cost this file's equivalents exist for: checked in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import sys, neurostim_cli.main, insilico.runner, simulator.physiology.patient\n"
        "print(sorted(m for m in ('scipy.stats', 'scipy.signal') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
