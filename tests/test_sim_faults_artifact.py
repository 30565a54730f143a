"""Stimulation artifact (aliasing, phase continuity) and sensor faults."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from simulator.physiology.artifact import (
    ArtifactParams,
    StimulationArtifact,
    aliased_frequency_hz,
    signed_alias_hz,
)
from simulator.physiology.sensor_faults import (
    ActiveSensorFault,
    SensorFaultInjector,
    SensorFaultKind,
    SensorParams,
    _NormalStream,
)
from simulator.signals import NO_STIMULATION, StimulationInput

FS_HZ = 250.0


def _stim(amplitude_ma: float, frequency_hz: float) -> StimulationInput:
    return StimulationInput(
        amplitude_ma=amplitude_ma, pulse_width_us=90.0, frequency_hz=frequency_hz
    )


# ------------------------------------------------------------------ artifact
@pytest.mark.parametrize(
    ("f_hz", "fs_hz", "expected_hz"),
    [
        (130.0, 250.0, 120.0),
        (60.0, 250.0, 60.0),
        (125.0, 250.0, 125.0),
        (250.0, 250.0, 0.0),
        (400.0, 250.0, 100.0),
        (130.0, 1000.0, 130.0),
        (5000.0, 1000.0, 0.0),
        (2030.0, 1000.0, 30.0),
    ],
)
def test_aliased_frequency(f_hz: float, fs_hz: float, expected_hz: float) -> None:
    assert aliased_frequency_hz(f_hz, fs_hz) == pytest.approx(expected_hz)


def test_signed_alias_reproduces_the_true_samples() -> None:
    n = np.arange(1000)
    true = np.sin(2 * np.pi * 130.0 * n / FS_HZ + 0.3)
    alias = np.sin(2 * np.pi * signed_alias_hz(130.0, FS_HZ) * n / FS_HZ + 0.3)
    np.testing.assert_allclose(alias, true, atol=1e-9)


def test_artifact_shows_at_the_aliased_frequency_with_amplitude_per_ma() -> None:
    art = StimulationArtifact(3, FS_HZ, ArtifactParams(uv_per_ma=40.0))
    x = art.render(round(20 * FS_HZ), _stim(2.5, 130.0))
    f, p = signal.welch(x, fs=FS_HZ, nperseg=1000)
    assert np.all(np.abs(f[np.argmax(p, axis=1)] - 120.0) <= 0.25)
    np.testing.assert_allclose(np.abs(x).max(axis=1), 40.0 * 2.5, rtol=5e-3)  # sampled peak
    np.testing.assert_allclose(x.std(axis=1), 40.0 * 2.5 / np.sqrt(2), rtol=1e-2)


def test_artifact_phase_is_continuous_across_blocks() -> None:
    whole = StimulationArtifact(2, FS_HZ).render(3000, _stim(1.0, 130.0))
    art = StimulationArtifact(2, FS_HZ)
    pieces = [art.render(n, _stim(1.0, 130.0)) for n in (1, 7, 492, 1000, 1500)]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, atol=1e-9)


def test_artifact_scales_with_amplitude_is_zero_when_off_and_uses_site_gain() -> None:
    art = StimulationArtifact(2, FS_HZ, site_gain=np.array([1.0, 0.25]))
    assert np.all(art.render(100, NO_STIMULATION) == 0.0)
    strong = StimulationArtifact(2, FS_HZ).render(500, _stim(4.0, 60.0))
    weak = StimulationArtifact(2, FS_HZ).render(500, _stim(1.0, 60.0))
    np.testing.assert_allclose(strong, 4.0 * weak, atol=1e-9)
    x = art.render(500, _stim(1.0, 60.0))
    np.testing.assert_allclose(x[1], 0.25 * x[0], atol=1e-12)


# -------------------------------------------------------------- sensor faults
def _quiet_injector(n: int = 4, seed: int = 0) -> SensorFaultInjector:
    return SensorFaultInjector(n, FS_HZ, seed, SensorParams(noise_floor_uv_rms=0.0))


def _eeg(n_ch: int, n: int, seed: int = 1) -> np.ndarray:
    return 20.0 * np.random.default_rng(seed).standard_normal((n_ch, n))


def test_no_fault_and_no_noise_leaves_the_signal_unchanged() -> None:
    x = _eeg(4, 500)
    assert np.array_equal(_quiet_injector().apply(x), x)


def test_noise_floor_has_the_configured_rms() -> None:
    inj = SensorFaultInjector(4, FS_HZ, 0, SensorParams(noise_floor_uv_rms=0.25))
    y = inj.apply(np.zeros((4, 50_000)))
    np.testing.assert_allclose(y.std(axis=1), 0.25, rtol=0.02)


def test_flatline_holds_the_last_sample_on_its_channel_only() -> None:
    inj = _quiet_injector()
    first = inj.apply(_eeg(4, 100, seed=2))
    inj.activate(ActiveSensorFault(SensorFaultKind.FLATLINE, (1,)))
    x = _eeg(4, 200, seed=3)
    y = inj.apply(x)
    assert np.all(y[1] == first[1, -1])
    assert np.array_equal(y[[0, 2, 3]], x[[0, 2, 3]])


def test_flatline_with_a_value() -> None:
    inj = _quiet_injector()
    inj.activate(ActiveSensorFault(SensorFaultKind.FLATLINE, (0, 2), flat_value_uv=0.0))
    y = inj.apply(_eeg(4, 50))
    assert np.all(y[[0, 2]] == 0.0)


def test_clipping_saturates_at_the_rail() -> None:
    inj = _quiet_injector()
    inj.activate(ActiveSensorFault(SensorFaultKind.CLIPPING, (0,), rail_uv=15.0))
    x = _eeg(4, 1000)
    y = inj.apply(x)
    assert y[0].max() == 15.0 and y[0].min() == -15.0
    inside = np.abs(x[0]) < 15.0
    assert np.array_equal(y[0, inside], x[0, inside])
    assert np.array_equal(y[1:], x[1:])


@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_line_noise_adds_mains_frequency_continuously(mains_hz: float) -> None:
    inj = _quiet_injector()
    fault = ActiveSensorFault(
        SensorFaultKind.LINE_NOISE, (3,), line_frequency_hz=mains_hz, line_amplitude_uv=30.0
    )
    inj.activate(fault)
    y = np.concatenate([inj.apply(np.zeros((4, n))) for n in (100, 37, 2363)], axis=1)
    assert np.all(y[:3] == 0.0)
    t = np.arange(y.shape[1]) / FS_HZ
    np.testing.assert_allclose(y[3], 30.0 * np.sin(2 * np.pi * mains_hz * t), atol=1e-6)


def test_electrode_pop_is_a_step_that_decays_exponentially() -> None:
    inj = _quiet_injector()
    inj.apply(np.zeros((4, 10)))
    inj.activate(
        ActiveSensorFault(SensorFaultKind.ELECTRODE_POP, (2,), pop_step_uv=300.0, pop_decay_s=0.2)
    )
    y = np.concatenate([inj.apply(np.zeros((4, 50))) for _ in range(4)], axis=1)
    assert y[2, 0] == pytest.approx(300.0)
    assert y[2, 50] == pytest.approx(300.0 * np.exp(-50 / FS_HZ / 0.2))
    assert y[2, -1] < 0.05 * 300.0
    assert np.all(y[[0, 1, 3]] == 0.0)


def test_impedance_rise_is_reported_and_raises_noise() -> None:
    inj = SensorFaultInjector(4, FS_HZ, 7)
    nominal = inj.impedance_ohm()
    assert np.all((nominal >= 500.0) & (nominal <= 1500.0))
    handle = inj.activate(
        ActiveSensorFault(SensorFaultKind.IMPEDANCE_RISE, (0,), impedance_ohm=20_000.0)
    )
    z = inj.impedance_ohm()
    assert z[0] == 20_000.0 and np.array_equal(z[1:], nominal[1:])
    y = inj.apply(np.zeros((4, 20_000)))
    params = SensorParams()
    excess = params.excess_noise_uv_rms_per_kohm * (20_000.0 - nominal[0]) / 1000.0
    expected = np.hypot(params.noise_floor_uv_rms, excess)
    assert y[0].std() == pytest.approx(expected, rel=0.03)
    assert np.all(y[1:].std(axis=1) < 0.3)
    inj.deactivate(handle)
    assert np.array_equal(inj.impedance_ohm(), nominal)


def test_injector_is_deterministic_by_seed() -> None:
    def run(seed: int) -> np.ndarray:
        inj = SensorFaultInjector(3, FS_HZ, seed)
        inj.activate(ActiveSensorFault(SensorFaultKind.IMPEDANCE_RISE, (1,)))
        return inj.apply(np.zeros((3, 300)))

    assert np.array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_faults_combine_in_a_fixed_order_and_clear() -> None:
    inj = _quiet_injector()
    inj.activate(ActiveSensorFault(SensorFaultKind.CLIPPING, (0,), rail_uv=50.0))
    inj.activate(ActiveSensorFault(SensorFaultKind.ELECTRODE_POP, (0,), pop_step_uv=400.0))
    y = inj.apply(np.zeros((4, 10)))
    assert y[0, 0] == 50.0  # the pop is clipped by the rail, whatever the activation order
    assert len(inj.active_faults) == 2
    inj.clear()
    assert inj.active_faults == ()
    x = _eeg(4, 10)
    assert np.array_equal(inj.apply(x), x)


def test_invalid_faults_are_rejected() -> None:
    with pytest.raises(ValueError):
        ActiveSensorFault(SensorFaultKind.CLIPPING, (), rail_uv=10.0)
    with pytest.raises(ValueError):
        ActiveSensorFault(SensorFaultKind.CLIPPING, (0,), rail_uv=-1.0)
    inj = _quiet_injector(n=2)
    with pytest.raises(ValueError, match="outside"):
        inj.activate(ActiveSensorFault(SensorFaultKind.FLATLINE, (5,)))
    with pytest.raises(KeyError):
        inj.deactivate(99)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=6),
    noise_uv_rms=st.sampled_from([0.0, 0.25, 3.0]),
)
def test_fault_free_fast_path_gives_the_samples_of_the_full_stage(
    seed: int, sizes: list[int], noise_uv_rms: float
) -> None:
    """Without an active fault ``apply`` skips the fault machinery; the samples, the
    noise stream and the state a later fault starts from are those of the full stage."""
    params = SensorParams(noise_floor_uv_rms=noise_uv_rms)
    fast = SensorFaultInjector(4, FS_HZ, seed, params)
    full = SensorFaultInjector(4, FS_HZ, seed, params)
    signal_rng = np.random.default_rng(seed)
    for n in sizes:
        block = 30.0 * signal_rng.standard_normal((4, n))
        original = block.copy()
        got = fast.apply(block)
        assert np.array_equal(got, full._apply_all(block))
        assert np.array_equal(block, original)  # the input is never written to
        assert got is not block
    for fault in (
        ActiveSensorFault(SensorFaultKind.FLATLINE, (2,)),  # holds the last sample
        ActiveSensorFault(SensorFaultKind.LINE_NOISE, (1,)),  # phase from the sample clock
    ):
        fast.activate(fault)
        full.activate(fault)
    block = np.ones((4, 50))
    assert np.array_equal(fast.apply(block), full.apply(block))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    counts=st.lists(st.integers(0, 5000), min_size=1, max_size=12),
    chunk=st.sampled_from([1, 7, 4000, 32_768]),
)
def test_normal_stream_hands_out_the_generators_own_draws_in_order(
    seed: int, counts: list[int], chunk: int
) -> None:
    """Drawn ahead (compiled when numba is there) and cut into pieces of any size, the
    stream is numpy's standard_normal of the same generator, value for value."""
    stream = _NormalStream(np.random.default_rng(seed), chunk=chunk)
    got = np.concatenate([stream.take(n) for n in counts])
    expected = np.random.default_rng(seed).standard_normal(sum(counts))
    assert np.array_equal(got, expected)
