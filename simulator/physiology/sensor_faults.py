"""Sensor faults and the sensor noise floor, applied to blocks of µV samples.

The physiology models produce what the cortex does; this module is what the
electrodes and the amplifier then do to it. Scenarios switch faults on and off
(``activate`` / ``deactivate``); ``apply`` transforms each block and advances the
injector's own sample clock, so line noise stays phase-continuous and an electrode pop
decays across blocks. ``impedance_ohm`` reports per-electrode impedance for STATUS.

Order inside a block: noise floor and impedance-driven noise, line noise, electrode
pops, clipping at the rails, flatline (a dead channel overrides everything).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from simulator.jit import NUMBA_AVAILABLE, jit
from simulator.physiology.artifact import signed_alias_hz


class SensorFaultKind(StrEnum):
    FLATLINE = "flatline"
    CLIPPING = "clipping"
    LINE_NOISE = "line_noise"
    ELECTRODE_POP = "electrode_pop"
    IMPEDANCE_RISE = "impedance_rise"


@dataclass(frozen=True)
class ActiveSensorFault:
    """One fault on one or more channels; fields other than kind/channels are per kind.

    Defaults are assumptions sized to be clearly visible in tens-of-µV EEG.
    """

    kind: SensorFaultKind
    channels: tuple[int, ...]
    #: clipping: the amplifier saturates at +-rail_uv.
    rail_uv: float = 150.0
    #: line_noise: mains frequency (50 or 60 Hz) and sinusoid peak amplitude.
    line_frequency_hz: float = 50.0
    line_amplitude_uv: float = 20.0
    #: electrode_pop: step at onset decaying exponentially with time constant pop_decay_s.
    pop_step_uv: float = 400.0
    pop_decay_s: float = 0.5
    #: impedance_rise: electrode impedance while the fault is active (Ω). Clinical EEG
    #: wants < 5 kΩ (IFCN, Nuwer et al. 1998), so 20 kΩ is a clearly failing contact.
    impedance_ohm: float = 20_000.0
    #: flatline: value held (µV); None holds the channel's last sample before onset.
    flat_value_uv: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", SensorFaultKind(self.kind))
        channels = (self.channels,) if isinstance(self.channels, int) else self.channels
        object.__setattr__(self, "channels", tuple(int(c) for c in channels))
        if not self.channels or min(self.channels) < 0:
            raise ValueError("a sensor fault needs one or more channel indices >= 0")
        if self.rail_uv <= 0 or self.pop_decay_s <= 0 or self.impedance_ohm <= 0:
            raise ValueError("rail_uv, pop_decay_s and impedance_ohm must be > 0")
        if self.line_frequency_hz <= 0 or self.line_amplitude_uv < 0:
            raise ValueError("line_frequency_hz must be > 0 and line_amplitude_uv >= 0")


@dataclass(frozen=True)
class SensorParams:
    """The healthy sensor: nominal impedances and noise."""

    #: Nominal electrode/lead impedance range (Ω); each channel draws one value
    #: uniformly. Lead impedance 500-1500 Ω (Koss 2005, TEED for DBS).
    nominal_impedance_low_ohm: float = 500.0
    nominal_impedance_high_ohm: float = 1500.0
    #: White amplifier noise floor (µV rms). IFCN (Nuwer et al. 1998) requires < 1.5 µV
    #: peak-to-peak added noise (0.5-100 Hz); 0.25 µV rms is ~1.5 µV p-p at +-3 sigma.
    noise_floor_uv_rms: float = 0.25
    #: Extra white noise per kΩ of impedance above nominal (µV rms / kΩ). Assumption:
    #: noise rises with electrode impedance (Huigen et al. 2002, Med. Biol. Eng. Comput.
    #: 40:332); linear scaling and the slope are ours.
    excess_noise_uv_rms_per_kohm: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.nominal_impedance_low_ohm <= self.nominal_impedance_high_ohm:
            raise ValueError("need 0 < nominal_impedance_low_ohm <= nominal_impedance_high_ohm")
        if self.noise_floor_uv_rms < 0 or self.excess_noise_uv_rms_per_kohm < 0:
            raise ValueError("noise levels must be >= 0")


@dataclass
class _Activation:
    fault: ActiveSensorFault
    onset_sample: int
    held_uv: np.ndarray | None = None


class SensorFaultInjector:
    """Applies the sensor noise floor and the active faults to blocks, deterministically."""

    def __init__(
        self,
        n_channels: int,
        sampling_rate_hz: float,
        seed: int,
        params: SensorParams | None = None,
    ) -> None:
        if n_channels <= 0 or sampling_rate_hz <= 0:
            raise ValueError("n_channels and sampling_rate_hz must be > 0")
        self._n = n_channels
        self._fs = float(sampling_rate_hz)
        self._params = params if params is not None else SensorParams()
        self._rng = np.random.default_rng(seed)
        p = self._params
        self._nominal_ohm = self._rng.uniform(
            p.nominal_impedance_low_ohm, p.nominal_impedance_high_ohm, n_channels
        )
        self._normals = _NormalStream(self._rng)  # the noise draws, in order
        self._active: dict[int, _Activation] = {}
        self._noise_rms_cache: np.ndarray | None = None  # depends only on the active faults
        self._impedance_cache: np.ndarray | None = None  # likewise
        self._ordered: list[_Activation] | None = None  # active faults in application order
        self._handles = itertools.count(1)
        self._sample = 0
        self._last_uv = np.zeros(n_channels)

    @property
    def active_faults(self) -> tuple[ActiveSensorFault, ...]:
        return tuple(a.fault for a in self._active.values())

    @property
    def nominal_impedance_ohm(self) -> np.ndarray:
        return self._nominal_ohm.copy()

    def activate(self, fault: ActiveSensorFault) -> int:
        """Start ``fault`` at the next sample; returns a handle for ``deactivate``."""
        if max(fault.channels) >= self._n:
            raise ValueError(f"fault channels {fault.channels} outside 0..{self._n - 1}")
        handle = next(self._handles)
        held = None
        if fault.kind is SensorFaultKind.FLATLINE:
            idx = list(fault.channels)
            held = (
                self._last_uv[idx].copy()
                if fault.flat_value_uv is None
                else np.full(len(idx), float(fault.flat_value_uv))
            )
        self._active[handle] = _Activation(fault, self._sample, held)
        self._changed()
        return handle

    def deactivate(self, handle: int) -> None:
        if handle not in self._active:
            raise KeyError(f"no active sensor fault with handle {handle}")
        del self._active[handle]
        self._changed()

    def clear(self) -> None:
        self._active.clear()
        self._changed()

    def _changed(self) -> None:
        """The active faults changed: drop everything derived from them."""
        self._noise_rms_cache = None
        self._impedance_cache = None
        self._ordered = None

    def impedance_ohm(self) -> np.ndarray:
        """Per-electrode impedance now (Ω): nominal, raised where an impedance fault is active."""
        z = self._impedance_cache
        if z is None:
            z = self._nominal_ohm.copy()
            for act in self._active.values():
                if act.fault.kind is SensorFaultKind.IMPEDANCE_RISE:
                    idx = list(act.fault.channels)
                    z[idx] = np.maximum(z[idx], act.fault.impedance_ohm)
            self._impedance_cache = z
        return z.copy()  # the caller's own array, as before the cache

    def apply(self, block_uv: np.ndarray) -> np.ndarray:
        """Return the block as recorded (new array, µV) and advance the sample clock."""
        if (
            not self._active
            and type(block_uv) is np.ndarray
            and block_uv.dtype == np.float64
            and block_uv.ndim == 2
            and block_uv.shape[0] == self._n
            and block_uv.shape[1]
        ):
            return self._apply_noise_only(block_uv)
        return self._apply_all(block_uv)

    def _apply_noise_only(self, block_uv: np.ndarray) -> np.ndarray:
        """``_apply_all`` without a fault: the noise floor added to a fresh array, in one
        compiled pass when numba is there (the same products and sums)."""
        n = block_uv.shape[1]
        noise_rms = self._noise_rms()
        if not self._any_noise:
            x = block_uv.copy()
        else:
            draws = self._normals.take(self._n * n)
            if _add_noise_numba is not None:
                x = np.empty((self._n, n))
                _add_noise_numba(block_uv, draws, noise_rms, x)
            else:
                x = draws.reshape(self._n, n) * noise_rms[:, None]
                x += block_uv
        self._sample += n
        self._last_uv = x[:, -1].copy()
        return x

    def _apply_all(self, block_uv: np.ndarray) -> np.ndarray:
        """Noise floor and every active fault, in the documented order."""
        x = np.array(block_uv, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != self._n:
            raise ValueError(f"block must have shape ({self._n}, n_samples), got {x.shape}")
        n = x.shape[1]
        if n == 0:
            return x
        noise_rms = self._noise_rms()
        if self._any_noise:
            x += self._normals.take(self._n * n).reshape(self._n, n) * noise_rms[:, None]
        ordered = self._ordered
        if ordered is None:
            ordered = self._ordered = sorted(
                self._active.values(), key=lambda a: _ORDER[a.fault.kind]
            )
        if ordered:
            t_index = self._sample + np.arange(n)
            for act in ordered:
                self._apply_one(x, act, t_index)
        self._sample += n
        self._last_uv = x[:, -1].copy()
        return x

    def _noise_rms(self) -> np.ndarray:
        """Amplifier floor plus excess noise of raised impedances (cached between changes)."""
        if self._noise_rms_cache is None:
            p = self._params
            excess_kohm = np.maximum(self.impedance_ohm() - self._nominal_ohm, 0.0) / 1000.0
            self._noise_rms_cache = np.sqrt(
                p.noise_floor_uv_rms**2 + (p.excess_noise_uv_rms_per_kohm * excess_kohm) ** 2
            )
            self._any_noise = bool(np.any(self._noise_rms_cache > 0))
        return self._noise_rms_cache

    def _apply_one(self, x: np.ndarray, act: _Activation, t_index: np.ndarray) -> None:
        fault, idx = act.fault, list(act.fault.channels)
        if fault.kind is SensorFaultKind.LINE_NOISE:
            f_alias = signed_alias_hz(fault.line_frequency_hz, self._fs)
            x[idx] += fault.line_amplitude_uv * np.sin(2.0 * np.pi * f_alias / self._fs * t_index)
        elif fault.kind is SensorFaultKind.ELECTRODE_POP:
            t_s = (t_index - act.onset_sample) / self._fs
            x[idx] += fault.pop_step_uv * np.exp(-t_s / fault.pop_decay_s)
        elif fault.kind is SensorFaultKind.CLIPPING:
            x[idx] = np.clip(x[idx], -fault.rail_uv, fault.rail_uv)
        elif fault.kind is SensorFaultKind.FLATLINE:
            assert act.held_uv is not None
            x[idx] = act.held_uv[:, None]
        # IMPEDANCE_RISE acts through the noise level and impedance_ohm().


class _NormalStream:
    """A generator's standard normal draws, drawn ahead in large chunks and handed out in
    order: the same numbers as drawing each block's on its own (``standard_normal`` keeps
    no state between calls beyond the bit generator's), for one call per chunk instead of
    one per block.

    With numba the chunk is drawn by numba's ``Generator.standard_normal``, numpy's
    ziggurat on the same bit generator (the same draws, tested), ~3x faster than numpy's
    own loop here; its dispatch with a Generator argument (~7 µs) is paid once a chunk."""

    def __init__(self, rng: np.random.Generator, chunk: int = 32_768) -> None:
        self._rng = rng
        self._chunk = chunk
        self._buffer = np.empty(0)
        self._next = 0

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` draws (a read-only view of the buffer when it holds them)."""
        start = self._next
        end = start + count
        if end > self._buffer.size:
            rest = self._buffer[start:]
            fresh = np.empty(max(self._chunk, count - rest.size))
            if _standard_normal_numba is not None:
                _standard_normal_numba(self._rng, fresh)
            else:
                self._rng.standard_normal(out=fresh)
            self._buffer = np.concatenate((rest, fresh)) if rest.size else fresh
            self._buffer.flags.writeable = False
            start, end = 0, count
        self._next = end
        return self._buffer[start:end]


def _standard_normal_loops(rng: np.random.Generator, out: np.ndarray) -> None:
    """Fill ``out`` with ``rng.standard_normal()`` draws in order (numba target)."""
    for k in range(out.shape[0]):
        out[k] = rng.standard_normal()


_standard_normal_numba: Callable[[np.random.Generator, np.ndarray], None] | None = (
    jit(_standard_normal_loops) if NUMBA_AVAILABLE else None
)


def _add_noise_loops(
    block_uv: np.ndarray, draws: np.ndarray, noise_rms: np.ndarray, out: np.ndarray
) -> None:
    """out = draws (row-major, as ``block.shape``) * noise_rms[:, None] + block, in one pass
    (numba target; the products and sums of the numpy path)."""
    n_channels, n_samples = block_uv.shape
    for c in range(n_channels):
        rms = noise_rms[c]
        row = c * n_samples
        for j in range(n_samples):
            out[c, j] = draws[row + j] * rms + block_uv[c, j]


_add_noise_numba: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None] | None = (
    jit(_add_noise_loops) if NUMBA_AVAILABLE else None
)

_ORDER = {
    SensorFaultKind.IMPEDANCE_RISE: 0,
    SensorFaultKind.LINE_NOISE: 1,
    SensorFaultKind.ELECTRODE_POP: 2,
    SensorFaultKind.CLIPPING: 3,
    SensorFaultKind.FLATLINE: 4,
}
