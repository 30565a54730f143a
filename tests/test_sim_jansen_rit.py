"""Jansen-Rit network: the 1995 paper's regimes, integrator validation, numba/numpy parity."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import signal

from simulator.physiology.jansen_rit import (
    NUMBA_AVAILABLE,
    JansenRitNetwork,
    JansenRitParams,
    splitmix_uniform,
)
from simulator.physiology.state import ModulationState
from simulator.signals import DEFAULT_SITES, NO_STIMULATION, Site, StimulationInput

FS_HZ = 250.0
ONE_SITE = (Site("A", 0.0, 0.0),)
N_SITES = len(DEFAULT_SITES)


def _column(seconds: float, low: float, high: float, seed: int = 1, **overrides: Any) -> np.ndarray:
    """One uncoupled column, output in µV without the recording high-pass (raw y1 - y2)."""
    params = JansenRitParams(
        input_low_per_s=low, input_high_per_s=high, highpass_hz=0.0, **overrides
    )
    net = JansenRitNetwork(ONE_SITE, FS_HZ, seed, params)
    return net.generate(round(seconds * FS_HZ), ModulationState.baseline(1), NO_STIMULATION)[0]


def _dominant_hz(x: np.ndarray) -> float:
    f, p = signal.welch(x - x.mean(), fs=FS_HZ, nperseg=min(2048, x.size))
    return float(f[np.argmax(p)])


def test_noisy_input_gives_welch_peak_in_alpha_band() -> None:
    # Jansen & Rit 1995: p uniform in 120-320 pulses/s -> alpha rhythm (~10.7 Hz).
    x = _column(60.0, 120.0, 320.0)
    f, p = signal.welch(x - x.mean(), fs=FS_HZ, nperseg=1024)
    peak = f[np.argmax(p)]
    assert 8.0 <= peak <= 13.0
    broad = (f >= 1.0) & (f <= 45.0)
    alpha = (f >= 8.0) & (f <= 13.0)
    assert p[alpha].sum() / p[broad].sum() > 0.5  # the bulk of 1-45 Hz power is alpha


@pytest.mark.parametrize("p_const", [140.0, 220.0, 300.0])
def test_constant_input_140_to_300_gives_alpha_limit_cycle(p_const: float) -> None:
    x = _column(20.0, p_const, p_const)[round(5 * FS_HZ) :]
    assert x.std() > 3.0  # a sustained oscillation of several µV (mV-scale in y1 - y2)
    assert 8.0 <= _dominant_hz(x) <= 13.0
    # A limit cycle, not a decaying transient: late and early amplitude agree.
    half = x.size // 2
    assert abs(x[half:].std() / x[:half].std() - 1.0) < 0.05


@pytest.mark.parametrize("p_const", [60.0, 110.0])
def test_constant_input_at_or_below_110_settles_to_a_fixed_point(p_const: float) -> None:
    x = _column(20.0, p_const, p_const, burn_in_s=0.0)  # start at rest to see the transient
    settled = x[round(10 * FS_HZ) :]
    assert settled.std() < 1e-3
    assert x[: round(FS_HZ)].std() > 100 * max(settled.std(), 1e-12)  # there was a transient


def test_constant_input_125_gives_slow_spike_like_cycle() -> None:
    # Jansen & Rit 1995: 114-135 pulses/s gives a 2-4 Hz spike-like rhythm.
    x = _column(20.0, 125.0, 125.0)[round(5 * FS_HZ) :]
    assert 2.0 <= _dominant_hz(x) <= 4.0
    assert x.std() > 10.0


@pytest.mark.parametrize("p_const", [140.0, 220.0])
def test_heun_1ms_matches_converged_euler_reference(p_const: float) -> None:
    """The default dt is validated against forward Euler at 0.01 ms (converged)."""
    fast = _column(12.0, p_const, p_const)[round(4 * FS_HZ) :]
    reference = _column(12.0, p_const, p_const, method="euler", dt_s=1e-5)[round(4 * FS_HZ) :]
    assert abs(_dominant_hz(fast) - _dominant_hz(reference)) <= 0.15
    assert abs(fast.std() / reference.std() - 1.0) < 0.05


def test_euler_at_0_1ms_also_gives_the_alpha_peak_with_noise() -> None:
    x = _column(30.0, 120.0, 320.0, method="euler", dt_s=1e-4)
    assert 8.0 <= _dominant_hz(x) <= 13.0


@pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize("method", ["heun", "euler"])
def test_numba_and_numpy_kernels_agree(method: str) -> None:
    state = ModulationState.baseline(N_SITES)
    state.input_drive[:] = np.linspace(-30.0, 30.0, N_SITES)
    stim = StimulationInput(amplitude_ma=2.0, pulse_width_us=100.0, frequency_hz=130.0)
    kwargs: dict[str, Any] = {"method": method, "burn_in_s": 0.5}
    if method == "euler":
        kwargs["dt_s"] = 2e-4
    fast = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 3, JansenRitParams(**kwargs))
    slow = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 3, JansenRitParams(use_numba=False, **kwargs))
    assert fast.uses_numba and not slow.uses_numba
    for n in (100, 150, 250):
        a = fast.generate(n, state, stim)
        b = slow.generate(n, state, stim)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
        assert np.abs(a).max() > 1.0


def test_input_draws_are_uniform_in_the_configured_range() -> None:
    keys = np.random.SeedSequence(0).generate_state(2, dtype=np.uint64)
    u = splitmix_uniform(keys[:, None], np.arange(200_000, dtype=np.uint64)[None, :])
    assert u.min() >= 0.0 and u.max() < 1.0
    np.testing.assert_allclose(u.mean(axis=1), 0.5, atol=0.003)
    np.testing.assert_allclose(u.var(axis=1), 1 / 12, rtol=0.01)
    assert abs(np.corrcoef(u[0], u[1])[0, 1]) < 0.01  # streams of two sites are independent


def test_same_seed_bit_identical_other_seed_differs_and_blocks_do_not_matter() -> None:
    state = ModulationState.baseline(N_SITES)
    a = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 4).generate(1000, state, NO_STIMULATION)
    net = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 4)
    b = np.concatenate([net.generate(n, state, NO_STIMULATION) for n in (1, 249, 300, 450)], axis=1)
    c = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 5).generate(1000, state, NO_STIMULATION)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_baseline_network_amplitude_is_tens_of_microvolts() -> None:
    net = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 0)
    x = net.generate(round(30 * FS_HZ), ModulationState.baseline(N_SITES), NO_STIMULATION)
    assert np.all((x.std(axis=1) > 10.0) & (x.std(axis=1) < 60.0))
    assert np.all(np.abs(x.mean(axis=1)) < 2.0)  # AC-coupled: no column DC potential


def _alpha_coherence(x: np.ndarray, i: int, j: int) -> float:
    f, c = signal.coherence(x[i], x[j], fs=FS_HZ, nperseg=512)
    return float(c[(f >= 8.0) & (f <= 13.0)].mean())


def test_coupling_raises_inter_site_coherence_and_coherence_gain_scales_it() -> None:
    n = round(60 * FS_HZ)
    base = ModulationState.baseline(N_SITES)
    uncoupled = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 6, JansenRitParams(coupling_gain=0.0))
    coupled = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 6)
    x0 = uncoupled.generate(n, base, NO_STIMULATION)
    x1 = coupled.generate(n, base, NO_STIMULATION)
    assert _alpha_coherence(x0, 1, 2) < 0.05
    assert _alpha_coherence(x1, 1, 2) > 0.15
    # coherence_gain scales the coupling: 0 decouples the sites, 2 couples them more.
    for gain, check in ((0.0, lambda c: c < 0.05), (2.0, lambda c: c > _alpha_coherence(x1, 1, 2))):
        state = ModulationState.baseline(N_SITES)
        state.coherence_gain = gain
        net = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 6)
        net.generate(round(2 * FS_HZ), state, NO_STIMULATION)  # let the burn-in state adapt
        assert check(_alpha_coherence(net.generate(n, state, NO_STIMULATION), 1, 2))


def test_stimulation_enters_as_pyramidal_input_proportional_to_amplitude() -> None:
    n = round(4 * FS_HZ)
    stim = StimulationInput(amplitude_ma=3.0, pulse_width_us=60.0, frequency_hz=60.0)
    with_stim = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 8).generate(
        n, ModulationState.baseline(N_SITES), stim
    )
    drive = ModulationState.baseline(N_SITES)
    drive.input_drive[:] = JansenRitParams().stim_input_per_s_per_ma * 3.0
    same_as_drive = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 8).generate(n, drive, NO_STIMULATION)
    none = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 8).generate(
        n, ModulationState.baseline(N_SITES), NO_STIMULATION
    )
    assert np.array_equal(with_stim, same_as_drive)
    assert not np.allclose(with_stim, none)


def test_strong_negative_input_drive_abolishes_the_alpha_rhythm() -> None:
    n = round(30 * FS_HZ)
    low = ModulationState.baseline(N_SITES)
    low.input_drive[:] = -120.0  # mean input 100 pulses/s: below the alpha regime
    x_low = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 9).generate(n, low, NO_STIMULATION)
    x_base = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 9).generate(
        n, ModulationState.baseline(N_SITES), NO_STIMULATION
    )
    f, p_low = signal.welch(x_low, fs=FS_HZ, nperseg=1024)
    _, p_base = signal.welch(x_base, fs=FS_HZ, nperseg=1024)
    alpha = (f >= 8.0) & (f <= 13.0)
    assert np.all(p_low[:, alpha].sum(axis=1) < 0.05 * p_base[:, alpha].sum(axis=1))


def test_suppression_silences_output_and_dc_offset_is_added() -> None:
    net = JansenRitNetwork(DEFAULT_SITES, FS_HZ, 10)
    state = ModulationState.baseline(N_SITES)
    state.suppression[:] = 1.0
    state.dc_offset_uv[:] = -3000.0
    net.generate(250, state, NO_STIMULATION)  # ramp block
    x = net.generate(500, state, NO_STIMULATION)
    np.testing.assert_array_equal(x, -3000.0)


def test_dt_is_rounded_to_an_integer_fraction_of_the_sample_period() -> None:
    net = JansenRitNetwork(ONE_SITE, 256.0, 0, JansenRitParams(burn_in_s=0.0))
    assert net.dt_s == pytest.approx(1.0 / (4 * 256.0))
    assert net.generate(10, ModulationState.baseline(1), NO_STIMULATION).shape == (1, 10)


def test_invalid_params_are_rejected() -> None:
    with pytest.raises(ValueError):
        JansenRitParams(input_low_per_s=300.0, input_high_per_s=100.0)
    with pytest.raises(ValueError):
        JansenRitParams(dt_s=0.01)
