"""Cortical spreading depolarization: arrival times, per-site time course, recorded signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from simulator.physiology.csd import CsdParams, SpreadingDepolarization
from simulator.physiology.patient import PatientSimulation, Phenotype, VirtualPatient
from simulator.signals import DEFAULT_SITES, NO_STIMULATION, Site

FS_HZ = 250.0


def distances_mm(sites: tuple[Site, ...], origin: int) -> np.ndarray:
    xy = np.array([[s.x_mm, s.y_mm] for s in sites])
    return np.asarray(np.linalg.norm(xy - xy[origin], axis=1))


@pytest.mark.parametrize("speed_mm_per_min", [2.0, 3.5, 5.0])
def test_arrival_times_are_distance_over_speed(speed_mm_per_min: float) -> None:
    csd = SpreadingDepolarization(
        CsdParams(speed_mm_per_min=speed_mm_per_min), DEFAULT_SITES, np.random.default_rng(0)
    )
    onset = csd.start(100.0)
    assert onset[0].kind == "aura_onset" and onset[0].site == "O1"  # most posterior site
    arrivals = csd.arrivals_until(1e6)
    assert sorted(e.site for e in arrivals if e.site) == sorted(s.label for s in DEFAULT_SITES)
    origin = [s.label for s in DEFAULT_SITES].index("O1")
    expected_s = 100.0 + distances_mm(DEFAULT_SITES, origin) / (speed_mm_per_min / 60.0)
    by_site = {e.site: e.t_s for e in arrivals}
    for site, t_expected in zip(DEFAULT_SITES, expected_s, strict=True):
        assert by_site[site.label] == pytest.approx(t_expected, abs=1e-6)
    assert [e.t_s for e in arrivals] == sorted(e.t_s for e in arrivals)
    assert csd.arrivals_until(1e7) == []  # each arrival is reported once


def test_sites_beyond_the_extent_are_not_invaded() -> None:
    csd = SpreadingDepolarization(
        CsdParams(max_extent_mm=60.0, origin="C3"), DEFAULT_SITES, np.random.default_rng(0)
    )
    csd.start(0.0)
    reached = {e.site for e in csd.arrivals_until(1e6)}
    origin = [s.label for s in DEFAULT_SITES].index("C3")
    near = {
        s.label
        for s, d in zip(DEFAULT_SITES, distances_mm(DEFAULT_SITES, origin), strict=True)
        if d <= 60.0
    }
    assert reached == near and len(near) < len(DEFAULT_SITES)


def test_unknown_origin_is_rejected() -> None:
    with pytest.raises(ValueError, match="origin"):
        SpreadingDepolarization(CsdParams(origin="Cz"), DEFAULT_SITES, np.random.default_rng(0))


def test_time_course_at_a_site() -> None:
    params = CsdParams(dc_shift_uv=-3000.0, suppression_duration_s=360.0)
    sites = (Site("A", 0.0, 0.0),)
    csd = SpreadingDepolarization(params, sites, np.random.default_rng(0))
    csd.start(0.0)
    before = csd.effect(-1.0)
    assert before.suppression[0] == 0.0 and before.dc_offset_uv[0] == 0.0
    peak = csd.effect(params.dc_time_to_peak_s)
    assert peak.dc_offset_uv[0] == pytest.approx(-3000.0)  # a few mV, negative
    for t_s in (60.0, 200.0, 370.0):  # suppressed through the 5-7 min window
        assert csd.effect(t_s).suppression[0] == pytest.approx(1.0)
    end_s = params.suppression_edge_s + params.suppression_duration_s + params.recovery_s
    after = csd.effect(end_s + 1.0)
    assert after.suppression[0] == 0.0
    assert after.delta_gain[0] == pytest.approx(1.0 + params.delta_rebound_gain, rel=0.01)
    assert abs(after.dc_offset_uv[0]) < 0.02 * 3000.0  # DC shift (nearly) over by then
    late = csd.effect(end_s + 2.0 * 3600.0)
    assert late.delta_gain[0] < 1.05  # rebound fades within ~1-2 h
    csd.retire_finished(end_s + 6.0 * 3600.0)
    assert csd.active  # its arrival has not been reported yet: kept
    assert [e.kind for e in csd.arrivals_until(end_s + 6.0 * 3600.0)] == ["csd_arrival"]
    csd.retire_finished(end_s + 6.0 * 3600.0)
    assert not csd.active


def test_recorded_signal_shows_dc_shift_suppression_and_delta_rebound() -> None:
    patient = VirtualPatient.from_phenotype(
        Phenotype.EPISODIC_WITH_AURA,
        5,
        {
            "csd": {
                "speed_mm_per_min": 3.0,
                "dc_shift_uv": -2000.0,
                "suppression_duration_s": 360.0,
                "delta_rebound_gain": 2.0,
            }
        },
    )
    sim = PatientSimulation(patient, "spectral", DEFAULT_SITES, FS_HZ, seed=5)
    sim.force_attack(60.0, aura=True)
    block = int(10 * FS_HZ)
    x = np.concatenate([sim.read(block, NO_STIMULATION) for _ in range(6 * 70)], axis=1)
    events = sim.drain_ground_truth()
    o1 = [s.label for s in DEFAULT_SITES].index("O1")
    arrival = next(e.t_s for e in events if e.kind == "csd_arrival" and e.site == "O1")
    assert arrival == pytest.approx(60.0, abs=2.0)
    assert any(e.kind == "aura_onset" for e in events)

    def segment(t0_s: float, t1_s: float) -> np.ndarray:
        return x[o1, int(t0_s * FS_HZ) : int(t1_s * FS_HZ)]

    baseline = segment(0.0, 55.0)
    # Negative DC shift of about the configured size around its peak (1 min after arrival).
    assert np.mean(segment(arrival + 40.0, arrival + 80.0)) < -1500.0
    assert abs(np.mean(baseline)) < 20.0
    # Suppression: activity (after removing the slow DC course) nearly gone at 3-5 min.
    suppressed = segment(arrival + 180.0, arrival + 300.0)
    detrended = suppressed - np.polyval(
        np.polyfit(np.arange(suppressed.size), suppressed, 3), np.arange(suppressed.size)
    )
    assert np.std(detrended) < 0.2 * np.std(baseline)

    # Delta rebound after recovery: delta power well above the pre-aura baseline.
    def delta_power(seg: np.ndarray) -> float:
        f, pxx = signal.welch(seg, fs=FS_HZ, nperseg=int(4 * FS_HZ))
        band = (f >= 1.0) & (f < 4.0)
        return float(pxx[band].sum())

    pre = segment(0.0, 55.0)
    rebound = segment(arrival + 540.0, arrival + 900.0)
    assert delta_power(rebound) > 1.5 * delta_power(pre)
