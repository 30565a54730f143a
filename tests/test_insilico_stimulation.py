"""The stimulation meter: time on and TEED from a stream of device reports."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insilico.scoring import teed_j
from insilico.stimulation import StimulationMeter


def test_constant_output_gives_i2_r_f_pw_t() -> None:
    meter = StimulationMeter()
    meter.impedance(1000.0)
    meter.report(0.0, 3.0, 60.0, 250.0)
    meter.report(10.0, 3.0, 60.0, 250.0)
    meter.finish(100.0)
    assert meter.on_s == 100.0
    # (3 mA)² x 1000 Ω x 60 Hz x 250 µs x 100 s (Koss 2005)
    assert meter.teed_j == pytest.approx(0.003**2 * 1000.0 * 60.0 * 250e-6 * 100.0)


def test_a_ramp_counts_a_third_of_the_full_energy_and_zero_output_is_off() -> None:
    meter = StimulationMeter()
    meter.impedance(500.0)
    meter.report(0.0, 0.0, 130.0, 100.0)
    meter.report(50.0, 0.0, 130.0, 100.0)  # enabled at 0 mA: nothing delivered
    meter.report(150.0, 2.0, 130.0, 100.0)  # ramp 0 -> 2 mA over 100 s
    meter.finish(150.0)
    assert meter.on_s == 100.0
    assert meter.teed_j == pytest.approx(0.002**2 * 500.0 * 130.0 * 100e-6 * 100.0 / 3.0)


def test_energy_before_the_first_impedance_report_is_priced_at_it() -> None:
    early, known = StimulationMeter(), StimulationMeter()
    known.impedance(800.0)
    for meter in (early, known):
        meter.report(0.0, 1.0, 60.0, 250.0)
        meter.report(5.0, 1.0, 60.0, 250.0)
    early.impedance(800.0)
    for meter in (early, known):
        meter.report(10.0, 1.0, 60.0, 250.0)
        meter.finish(10.0)
    assert early.teed_j == pytest.approx(known.teed_j) and early.teed_j > 0


def test_a_new_impedance_report_applies_from_then_on() -> None:
    meter = StimulationMeter()
    meter.impedance(800.0)
    meter.report(0.0, 1.0, 60.0, 250.0)
    meter.report(10.0, 1.0, 60.0, 250.0)
    meter.impedance(1600.0)
    meter.report(20.0, 1.0, 60.0, 250.0)
    assert meter.teed_j == pytest.approx(0.001**2 * 60.0 * 250e-6 * (800.0 * 10 + 1600.0 * 10))


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    t0_s=st.floats(0.0, 1e5),
    dt_s=st.floats(0.0, 1e3),
    i0_ma=st.floats(0.0, 50.0),
    i1_ma=st.floats(0.0, 50.0),
    f_hz=st.floats(0.0, 500.0),
    pw_us=st.floats(0.0, 1000.0),
)
def test_the_meter_prices_a_segment_as_teed_j_does_bit_for_bit(
    t0_s: float, dt_s: float, i0_ma: float, i1_ma: float, f_hz: float, pw_us: float
) -> None:
    """The meter prices one segment at a time with floats; teed_j works on arrays: the same
    number (reports compare TEED exactly)."""
    t1_s = t0_s + dt_s
    meter = StimulationMeter()
    meter.impedance(1.0)
    meter.report(t0_s, i0_ma, f_hz, pw_us)
    meter.report(t1_s, i1_ma, f_hz, pw_us)
    assert meter.teed_j == teed_j([t0_s, t1_s], [i0_ma, i1_ma], 1.0, f_hz, pw_us)
