"""Model ``spectral``: fast multi-site EEG synthesised in the frequency domain.

Why the frequency domain: the per-band power, the alpha peak and the inter-site
coherence are *spectral* targets, and a random spectrum shaped to them and
inverted with one real FFT per segment costs about one random number per output
sample, which is what makes >= 20,000x real time possible (time-domain IIR banks
need one random number and one filter per band per sample).

The signal is built from independent segments of ``N`` samples (``N`` a power of
two, ~8 s by default). Segment ``k`` covers output samples ``[k*H, k*H + N)`` with
hop ``H = N - L``; consecutive segments are cross-faded over ``L`` samples with
sine/cosine ramps whose squares sum to one, so the variance is constant and the
output has no step at any border. The output stream depends only on the segment
index, never on how callers slice it into blocks (for a constant state). Band gains,
alpha peak and coherence are read when a segment is rendered, so they take effect
within one hop (~7.7 s at 250 Hz); suppression and DC offset act on the next block.

Per segment and site ``i`` the one-sided PSD (µV²/Hz) is::

    S_i(f) = sum_b g_b,i * P_b * phi_b(f)            band components (alpha: Gaussian at f_alpha,i)
           + G_i(f) * P_bg * psi(f)                   1/f^chi background, gain of the band at f

and the cross-site structure at frequency ``f`` is
``C(f) = (1 - rho(f)) I + rho(f) K`` with ``K_ij = exp(-d_ij / lambda)``, so the
magnitude-squared coherence between sites i and j is ``(rho(f) K_ij)^2``. Slow
per-site factors (suppression and DC offset) are applied per sample with a linear
ramp from the previous block's value, so they act at once and stay continuous.

Sources for the defaults are given on each field of :class:`SpectralParams` and in
docs/simulator_models.md.
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from simulator.jit import NUMBA_AVAILABLE, jit, jit_inline
from simulator.physiology.state import BANDS_HZ, ModulationState
from simulator.signals import Site

_N_BANDS = len(BANDS_HZ)
_ALPHA_INDEX = 2  # BANDS_HZ order: delta, theta, alpha, beta, gamma


def _default_band_power_uv2() -> tuple[float, ...]:
    # Assumption (scalp-EEG-like resting spectrum, eyes closed): alpha dominant, total
    # broadband activity ~20 µV rms, i.e. "tens of µV" on the scalp (Teplan 2002, Meas.
    # Sci. Rev. 2:1-11: scalp EEG amplitude up to ~100 µV). Order: delta, theta, alpha,
    # beta, gamma; values are the band *components* on top of the 1/f background.
    return (40.0, 30.0, 150.0, 25.0, 4.0)


def _default_shared_fraction() -> tuple[float, ...]:
    # Assumption: share of each band that is spatially shared (volume conduction plus
    # genuine synchrony). Alpha is the most coherent band over long distances (Nunez et
    # al. 1997, Electroencephalogr. Clin. Neurophysiol. 103:499-515); gamma the least.
    return (0.6, 0.55, 0.75, 0.45, 0.3)


@dataclass(frozen=True)
class SpectralParams:
    """Baseline spectrum and spatial structure of the spectral model.

    Every default is a modelling assumption chosen to match the orders of magnitude
    of resting scalp EEG; sources in docs/simulator_models.md.
    """

    #: Power of each band component at baseline (µV²), BANDS_HZ order.
    band_power_uv2: tuple[float, ...] = field(default_factory=_default_band_power_uv2)
    #: Power of the aperiodic 1/f^chi background within 1-45 Hz (µV²). Assumption.
    background_power_uv2: float = 120.0
    #: Aperiodic exponent chi. EEG aperiodic exponents are typically ~1-2
    #: (Donoghue et al. 2020, Nat. Neurosci. 23:1655); 1.5 is an assumption inside that range.
    background_exponent: float = 1.5
    #: Corner of the high-pass applied to the background (Hz): recording amplifiers are
    #: AC-coupled, so the 1/f divergence at 0 Hz is not seen. Assumption.
    background_highpass_hz: float = 0.5
    #: Standard deviation of the Gaussian alpha peak (Hz): FWHM = 2.355 * sigma ~ 2 Hz,
    #: a typical alpha peak bandwidth in parameterised EEG spectra (Donoghue et al. 2020).
    alpha_sigma_hz: float = 0.85
    #: Spatially shared share rho_b of each band at baseline (0..1), BANDS_HZ order.
    shared_fraction: tuple[float, ...] = field(default_factory=_default_shared_fraction)
    #: Shared share of frequencies outside all bands (background below 1 / above 45 Hz).
    shared_fraction_outside: float = 0.4
    #: Spatial decay length of the shared component (mm): K_ij = exp(-d_ij / lambda).
    #: Assumption; scalp coherence falls over several cm (Nunez et al. 1997).
    coherence_length_mm: float = 150.0
    #: Upper bound on rho after coherence_gain, so every site keeps a local part.
    max_shared_fraction: float = 0.98
    #: Target segment length (s), rounded up to a power-of-two number of samples. Band
    #: gains, alpha peak and coherence take effect per hop (N - crossfade); longer
    #: segments amortise per-segment costs. Assumption: 8 s (an engineering choice).
    segment_s: float = 8.0
    #: Cross-fade length between segments (s).
    crossfade_s: float = 0.5

    def __post_init__(self) -> None:
        if len(self.band_power_uv2) != _N_BANDS or len(self.shared_fraction) != _N_BANDS:
            raise ValueError(f"band_power_uv2 and shared_fraction need {_N_BANDS} entries")
        if any(p < 0 for p in self.band_power_uv2) or self.background_power_uv2 < 0:
            raise ValueError("band powers must be >= 0")
        if not all(0.0 <= r <= 1.0 for r in (*self.shared_fraction, self.shared_fraction_outside)):
            raise ValueError("shared fractions must lie in 0..1")
        if not 0.0 < self.max_shared_fraction <= 1.0:
            raise ValueError("max_shared_fraction must lie in (0, 1]")
        if self.coherence_length_mm <= 0 or self.alpha_sigma_hz <= 0:
            raise ValueError("coherence_length_mm and alpha_sigma_hz must be > 0")
        if self.segment_s <= 0 or not 0 < self.crossfade_s < self.segment_s:
            raise ValueError("need 0 < crossfade_s < segment_s")


class SlowFactorRamp:
    """Per-site suppression and DC offset applied to generated blocks, ramped at steps.

    Both signal models use it: suppression scales activity by ``1 - s`` (s in 0..1) and
    the DC offset is added. When the state changes between blocks the factors ramp
    linearly across the new block from the previous values, so the output never steps;
    with a constant state they are constants, so output does not depend on block size.
    """

    def __init__(self, n_sites: int) -> None:
        self._gain = np.ones(n_sites)
        self._dc_uv = np.zeros(n_sites)
        self._key = np.zeros(n_sites).tobytes() * 2  # suppression 0, DC 0
        self._gain_active = False
        self._dc_active = False

    def apply(
        self, block_uv: np.ndarray, suppression: np.ndarray, dc_offset_uv: np.ndarray
    ) -> None:
        """Apply in place to ``block_uv`` (n_sites, n)."""
        n = block_uv.shape[1]
        if n == 0:
            return
        key = suppression.tobytes() + dc_offset_uv.tobytes()
        if key == self._key:  # unchanged since the last block: constant factors
            if self._gain_active:
                block_uv *= self._gain[:, None]
            if self._dc_active:
                block_uv += self._dc_uv[:, None]
            return
        gain_new = 1.0 - np.clip(np.asarray(suppression, dtype=np.float64), 0.0, 1.0)
        dc_new = np.array(dc_offset_uv, dtype=np.float64)
        ramp = np.arange(1, n + 1, dtype=np.float64) / n
        block_uv *= self._gain[:, None] + (gain_new - self._gain)[:, None] * ramp
        block_uv += self._dc_uv[:, None] + (dc_new - self._dc_uv)[:, None] * ramp
        self._gain, self._dc_uv, self._key = gain_new, dc_new, key
        self._gain_active = bool((gain_new != 1.0).any())
        self._dc_active = bool((dc_new != 0.0).any())


def _psd_loops(
    gains: np.ndarray,
    band_power: np.ndarray,
    flat_templates: np.ndarray,
    template_bins: np.ndarray,
    band_index: np.ndarray,
    background: np.ndarray,
    bump: np.ndarray,
    bump_area: np.ndarray,
    bump_start: int,
    psd: np.ndarray,
) -> None:
    """Fill ``psd`` (n_sites, n_bins) with ``SpectralModel._psd_numpy``'s numbers, element
    by element (numba target). ``bump`` is the alpha bump before its normalisation,
    ``bump_area`` (n_sites,) what ``_alpha_bump`` divides each row by.

    The same products and sums in the same order: the flat bands as the 5-term dot product
    of the band weights with the templates (for finite gains one non-zero term per bin,
    so any order of a matrix product gives these bits), plus the background at the gain
    of its band (1 outside all bands), plus the weighted, normalised alpha bump.

    ``template_bins[b]`` is the bin range outside which template ``b`` is zero: there a
    finite weight adds a zero, which changes no sum (a row never holds -0.0: it starts at
    +0.0 and sums of a zero and a value give the value), so only a non-finite weight (whose
    product with 0 is NaN) runs over the whole row.
    """
    n_bands, n_sites = gains.shape
    n_bins = band_index.shape[0]
    # A site's gain by band index, the last entry (index -1: outside all bands) 1.
    gain_of_band = np.ones(n_bands + 1)
    for i in range(n_sites):
        row = psd[i]
        for b in range(n_bands):
            gain_of_band[b] = gains[b, i]
        for f in range(n_bins):
            row[f] = 0.0
        for b in range(n_bands):  # the dot product's terms in order, each over the row
            weight = gains[b, i] * band_power[b]
            template = flat_templates[b]
            start, end = template_bins[b, 0], template_bins[b, 1]
            if not math.isfinite(weight):
                start, end = 0, n_bins
            for f in range(start, end):
                row[f] += weight * template[f]
        for f in range(n_bins):
            row[f] += gain_of_band[band_index[f]] * background[f]
        alpha_weight = gains[_ALPHA_INDEX, i] * band_power[_ALPHA_INDEX]
        for f in range(bump.shape[1]):
            row[bump_start + f] += alpha_weight * (bump[i, f] / bump_area[i])


_psd_numba = jit(_psd_loops) if NUMBA_AVAILABLE else None


@jit_inline
def _bisect_left(grid: np.ndarray, x: float) -> int:
    """Python's ``bisect.bisect_left`` on a sorted float grid (the same comparisons)."""
    lo, hi = 0, grid.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if grid[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@jit_inline
def _bisect_right(grid: np.ndarray, x: float) -> int:
    """Python's ``bisect.bisect_right`` on a sorted float grid (the same comparisons)."""
    lo, hi = 0, grid.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if x < grid[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _alpha_exponent_loops(
    freqs_hz: np.ndarray, peaks_hz: np.ndarray, sigma_hz: float
) -> tuple[int, np.ndarray]:
    """The first bin and the exponents -0.5 ((f - peak) / sigma)^2 of the alpha bump of
    ``SpectralModel._alpha_bump`` (its bin range from the lowest and highest peak, NaN
    propagating as numpy's min and max; numba target, the same float operations)."""
    low_peak = peaks_hz[0]
    high_peak = peaks_hz[0]
    for v in peaks_hz:
        if math.isnan(v):
            low_peak = high_peak = v
            break
        low_peak = min(low_peak, v)
        high_peak = max(high_peak, v)
    lo = _bisect_left(freqs_hz, low_peak - 6.0 * sigma_hz)
    hi = _bisect_right(freqs_hz, high_peak + 6.0 * sigma_hz)
    lo = max(lo, 1)
    hi = max(hi, lo + 1)
    exponent = np.empty((peaks_hz.shape[0], hi - lo))
    for i in range(peaks_hz.shape[0]):
        for f in range(hi - lo):
            d = (freqs_hz[lo + f] - peaks_hz[i]) / sigma_hz
            exponent[i, f] = -0.5 * (d * d)
    return lo, exponent


_alpha_exponent_numba = jit(_alpha_exponent_loops) if NUMBA_AVAILABLE else None


def _amplitude_loops(psd: np.ndarray, fft_scale: float, amp: np.ndarray) -> None:
    """``amp`` (float32) = sqrt(psd * fft_scale) per bin, 0 at DC and Nyquist (numba
    target; the products and square roots of ``SpectralModel._amplitude_numpy``)."""
    n_sites, n_bins = psd.shape
    for i in range(n_sites):
        amp[i, 0] = 0.0
        for f in range(1, n_bins - 1):
            amp[i, f] = np.float32(np.sqrt(psd[i, f] * fft_scale))
        amp[i, n_bins - 1] = 0.0


def _mixing_loops(rho_at_f: np.ndarray, eigval: np.ndarray, mix: np.ndarray) -> None:
    """``mix`` (float32) = sqrt((1 - rho) + rho * eigval) per eigenvector and bin (numba
    target; the arithmetic of ``SpectralModel._mixing_numpy``)."""
    for k in range(eigval.shape[0]):
        for f in range(rho_at_f.shape[0]):
            rho = rho_at_f[f]
            mix[k, f] = np.float32(np.sqrt((1.0 - rho) + rho * eigval[k]))


_amplitude_numba = jit(_amplitude_loops) if NUMBA_AVAILABLE else None
_mixing_numba = jit(_mixing_loops) if NUMBA_AVAILABLE else None

_BIG_ENDIAN = sys.byteorder != "little"
#: numpy's float32 uniform from a 32-bit word w: (w >> 8) * 2**-24 (exact).
_U24_SCALE_F32 = np.float32(1.0 / 16777216.0)
_TWO_PI_F32 = np.float32(2.0 * np.pi)


def _uniform_split_loops(
    words: np.ndarray, neg_radius_u: np.ndarray, phase_buffer: np.ndarray, per_half: int
) -> None:
    """The float32 uniforms ``rng.random(dtype=float32)`` makes of the 32-bit words
    ``words`` ((w >> 8) * 2**-24 each), in ``SpectralModel._complex_gaussian_numpy``'s
    layout (per segment a radius half, then a phase half of ``per_half`` each): the radius
    half negated into ``neg_radius_u``, the phase half times float32(2 pi) into the phase
    half of ``phase_buffer`` (numba target; the same float32 operations)."""
    n_segments = neg_radius_u.shape[0] // per_half
    for s in range(n_segments):
        first = 2 * s * per_half
        for k in range(per_half):
            u = np.float32(np.int32(words[first + k] >> np.uint32(8))) * _U24_SCALE_F32
            neg_radius_u[s * per_half + k] = -u
        first += per_half
        for k in range(per_half):
            u = np.float32(np.int32(words[first + k] >> np.uint32(8))) * _U24_SCALE_F32
            phase_buffer[first + k] = u * _TWO_PI_F32


def _polar_loops(
    log_term: np.ndarray, cos_part: np.ndarray, sin_part: np.ndarray, out: np.ndarray
) -> None:
    """radius = sqrt(-log_term), then interleaved (cos * radius, sin * radius) into the
    float32 view ``out`` of a complex64 array (numba target; the float32 operations of
    ``SpectralModel._complex_gaussian_numpy``)."""
    for k in range(log_term.shape[0]):
        radius = np.sqrt(-log_term[k])
        out[2 * k] = cos_part[k] * radius
        out[2 * k + 1] = sin_part[k] * radius


_uniform_split_numba = jit(_uniform_split_loops) if NUMBA_AVAILABLE else None
_polar_numba = jit(_polar_loops) if NUMBA_AVAILABLE else None


IrfftLastAxis = Callable[[np.ndarray, int], np.ndarray]


def _irfft_last_axis_function() -> IrfftLastAxis:
    """``(spectrum, n) -> scipy.fft.irfft(spectrum, n=n, axis=-1)`` for complex spectra of
    n // 2 + 1 bins.

    Why: per synthesis segment scipy.fft.irfft spends ~5 µs in backend dispatch and
    argument checks, so when scipy's pocketfft binding (the function irfft ends in) is
    importable and reproduces irfft exactly on a probe, it is called directly (backward
    normalisation, one worker: scipy.fft's defaults). Otherwise irfft itself. Same bits.
    """

    def public(spectrum: np.ndarray, n: int) -> np.ndarray:
        return np.asarray(scipy.fft.irfft(spectrum, n=n, axis=-1))

    try:
        from scipy.fft._pocketfft import pypocketfft  # private: checked below, else irfft

        def direct(spectrum: np.ndarray, n: int) -> np.ndarray:
            return np.asarray(pypocketfft.c2r(spectrum, (-1,), n, False, 2, None, 1))

        rng = np.random.default_rng(0)
        probe = rng.standard_normal((2, 3, 65)) + 1j * rng.standard_normal((2, 3, 65))
        probe = probe.astype(np.complex64)
        if direct(probe, 128).tobytes() == public(probe, 128).tobytes():
            return direct
    except Exception:  # any import or call failure means: use the public function
        pass
    return public


irfft_last_axis = _irfft_last_axis_function()


def site_distance_matrix_mm(sites: tuple[Site, ...]) -> np.ndarray:
    """Euclidean distances between sites on the cortical sheet (mm), shape (n, n)."""
    xy = np.array([[s.x_mm, s.y_mm] for s in sites], dtype=np.float64).reshape(-1, 2)
    diff = xy[:, None, :] - xy[None, :, :]
    return np.asarray(np.sqrt((diff**2).sum(axis=-1)))


class SpectralModel:
    """Multi-site EEG whose band powers, alpha peak and coherence follow a ModulationState."""

    def __init__(
        self,
        sites: tuple[Site, ...],
        sampling_rate_hz: float,
        seed: int,
        params: SpectralParams | None = None,
    ) -> None:
        if len(sites) == 0:
            raise ValueError("need at least one site")
        if sampling_rate_hz <= 2 * BANDS_HZ[-1][2]:
            raise ValueError(f"sampling rate must exceed {2 * BANDS_HZ[-1][2]} Hz")
        self._sites = tuple(sites)
        self._fs = float(sampling_rate_hz)
        self._params = params if params is not None else SpectralParams()
        self._rng = np.random.default_rng(seed)
        p = self._params
        n_sites = len(self._sites)

        self._n_fft = int(2 ** np.ceil(np.log2(p.segment_s * self._fs)))
        self._n_fade = max(1, round(p.crossfade_s * self._fs))
        self._hop = self._n_fft - self._n_fade
        self._df_hz = self._fs / self._n_fft
        self._freqs_hz = np.fft.rfftfreq(self._n_fft, d=1.0 / self._fs)
        self._freqs_list: list[float] = self._freqs_hz.tolist()
        n_bins = self._freqs_hz.size
        # irfft scale: a bin of one-sided PSD S contributes S*df of variance when
        # |X|^2 = S * fs * N / 2 (see docs/simulator_models.md).
        self._fft_scale = self._fs * self._n_fft / 2.0
        t_fade = (np.arange(self._n_fade) + 0.5) / self._n_fade
        self._fade_in = np.sin(0.5 * np.pi * t_fade)
        self._fade_out = np.cos(0.5 * np.pi * t_fade)

        # Frequency templates that do not depend on the state (each integrates to 1 µV²).
        self._band_index = np.full(n_bins, -1, dtype=np.int64)
        for b, (_, lo, hi) in enumerate(BANDS_HZ):
            self._band_index[(self._freqs_hz >= lo) & (self._freqs_hz < hi)] = b
        self._flat_templates = np.zeros((_N_BANDS, n_bins))
        for b in range(_N_BANDS):
            if b == _ALPHA_INDEX:
                continue
            in_band = self._band_index == b
            self._flat_templates[b, in_band] = 1.0 / (in_band.sum() * self._df_hz)
        # Per template: the first bin and the end of its non-zero bins ((0, 0) for none).
        self._template_bins = np.zeros((_N_BANDS, 2), dtype=np.int64)
        for b in range(_N_BANDS):
            nonzero = np.flatnonzero(self._flat_templates[b])
            if nonzero.size:
                self._template_bins[b] = nonzero[0], nonzero[-1] + 1
        f = self._freqs_hz
        shape = np.zeros_like(f)
        pos = f > 0
        shape[pos] = (
            f[pos] ** (-p.background_exponent)
            * f[pos] ** 2
            / (f[pos] ** 2 + p.background_highpass_hz**2)
        )
        in_1_45 = self._band_index >= 0
        self._background_template = shape / (shape[in_1_45].sum() * self._df_hz)
        self._background_base = p.background_power_uv2 * self._background_template

        # Spatial structure: eigen-decomposition of K so that one random stream per site
        # yields the covariance (1 - rho) I + rho K at every frequency.
        kernel = np.exp(-site_distance_matrix_mm(self._sites) / p.coherence_length_mm)
        eigval, eigvec = np.linalg.eigh(kernel)
        self._kernel = kernel
        self._eigval = np.clip(eigval, 0.0, None)
        self._eigvec = np.ascontiguousarray(eigvec, dtype=np.float32)
        self._eigvec_t = np.ascontiguousarray(eigvec.T, dtype=np.float32)

        self._band_power = np.asarray(p.band_power_uv2, dtype=np.float64)
        self._rho_base = np.append(np.asarray(p.shared_fraction), p.shared_fraction_outside)

        # Streaming state.
        self._pending = np.zeros((n_sites, 0))
        self._tail: np.ndarray | None = None
        self._slow = SlowFactorRamp(n_sites)
        self._cached_key: bytes | None = None
        self._cached_amp: np.ndarray | None = None
        self._cached_mix: np.ndarray | None = None
        self._cached_mix_gain = 0.0  # the coherence gain _cached_mix was made for

    # ----------------------------------------------------------------- properties
    @property
    def sites(self) -> tuple[Site, ...]:
        return self._sites

    @property
    def sampling_rate_hz(self) -> float:
        return self._fs

    @property
    def params(self) -> SpectralParams:
        return self._params

    @property
    def segment_samples(self) -> int:
        """Synthesis segment length N; state changes of band shape take effect per hop."""
        return self._n_fft

    @property
    def hop_samples(self) -> int:
        return self._hop

    # ------------------------------------------------------------------- targets
    def psd_uv2_per_hz(self, state: ModulationState) -> tuple[np.ndarray, np.ndarray]:
        """Model one-sided PSD before suppression: (freqs_hz (n_bins,), psd (n_sites, n_bins))."""
        self._check_state(state)
        return self._freqs_hz.copy(), self._psd(state)

    def band_power_uv2(self, state: ModulationState) -> np.ndarray:
        """Configured power per band and site (µV², (5, n_sites)) including suppression."""
        psd = self._psd(state) * ((1.0 - self._suppression(state)) ** 2)[:, None]
        out = np.empty((_N_BANDS, len(self._sites)))
        for b in range(_N_BANDS):
            out[b] = psd[:, self._band_index == b].sum(axis=1) * self._df_hz
        return out

    def coherence_target(self, state: ModulationState, band: str) -> np.ndarray:
        """Configured magnitude-squared coherence between sites in ``band``, (n_sites, n_sites)."""
        names = [name for name, _, _ in BANDS_HZ]
        if band not in names:
            raise ValueError(f"unknown band {band!r}; expected one of {names}")
        rho = self._rho(state)[names.index(band)]
        msc = (rho * self._kernel) ** 2
        np.fill_diagonal(msc, 1.0)
        return np.asarray(msc)

    # ------------------------------------------------------------------ generate
    def generate(self, n_samples: int, state: ModulationState) -> np.ndarray:
        """Next ``n_samples`` of EEG in µV, shape (n_sites, n_samples), float64."""
        if n_samples < 0:
            raise ValueError("n_samples must be >= 0")
        self._check_state(state)
        pending = self._pending
        have = pending.shape[1]
        if n_samples <= have:
            out = pending[:, :n_samples].copy()
            self._pending = pending[:, n_samples:]
        else:
            # What is left of earlier segments, then new ones; their surplus is kept.
            fresh = self._synthesise(-(-(n_samples - have) // self._hop), state)
            out = np.empty((len(self._sites), n_samples))
            out[:, :have] = pending
            out[:, have:] = fresh[:, : n_samples - have]
            self._pending = fresh[:, n_samples - have :]
        self._slow.apply(out, state.suppression, state.dc_offset_uv)
        return out

    # ------------------------------------------------------------------ internals
    def _check_state(self, state: ModulationState) -> None:
        n = len(self._sites)
        if (
            state.band_gain.shape != (_N_BANDS, n)
            or state.alpha_peak_hz.shape != (n,)
            or state.suppression.shape != (n,)
            or state.dc_offset_uv.shape != (n,)
        ):
            raise ValueError(
                f"state arrays must be band_gain ({_N_BANDS}, {n}) and per-site ({n},); got "
                f"{state.band_gain.shape}, {state.alpha_peak_hz.shape}, "
                f"{state.suppression.shape}, {state.dc_offset_uv.shape}"
            )

    @staticmethod
    def _suppression(state: ModulationState) -> np.ndarray:
        return np.clip(np.asarray(state.suppression, dtype=np.float64), 0.0, 1.0)

    def _rho(self, state: ModulationState) -> np.ndarray:
        """Shared fraction per band (+ 'outside' last), after coherence_gain, clipped."""
        gain = max(float(state.coherence_gain), 0.0)
        return np.asarray(np.clip(self._rho_base * gain, 0.0, self._params.max_shared_fraction))

    def _psd(self, state: ModulationState) -> np.ndarray:
        """One-sided PSD per site and bin (µV²/Hz, (n_sites, n_bins)): compiled when numba
        is there, else ``_psd_numpy`` (the same numbers; tested against each other)."""
        gains = np.asarray(state.band_gain, dtype=np.float64)  # (5, n_sites)
        if _psd_numba is None or _alpha_exponent_numba is None:
            lo, bump = self._alpha_bump(state)
            return self._psd_numpy(gains, lo, bump)
        # _alpha_bump's steps around numpy's exp and sum; the division is in the kernel.
        peaks_hz = np.asarray(state.alpha_peak_hz, dtype=np.float64)
        lo, bump = _alpha_exponent_numba(self._freqs_hz, peaks_hz, self._params.alpha_sigma_hz)
        np.exp(bump, out=bump)
        bump_area = bump.sum(axis=1) * self._df_hz
        psd = np.empty((gains.shape[1], self._freqs_hz.size))
        _psd_numba(
            gains,
            self._band_power,
            self._flat_templates,
            self._template_bins,
            self._band_index,
            self._background_base,
            bump,
            bump_area,
            lo,
            psd,
        )
        return psd

    def _alpha_bump(self, state: ModulationState) -> tuple[int, np.ndarray]:
        """First bin and values (n_sites, bins) of the Gaussian alpha peak of each site
        (within +-6 sigma of the peaks), normalised to unit area on the grid."""
        peak = np.asarray(state.alpha_peak_hz, dtype=np.float64)[:, None]
        sigma = self._params.alpha_sigma_hz
        # bisect on the grid as a list: np.searchsorted's result, without its call overhead.
        lo = bisect_left(self._freqs_list, float(peak.min()) - 6.0 * sigma)
        hi = bisect_right(self._freqs_list, float(peak.max()) + 6.0 * sigma)
        lo, hi = max(lo, 1), max(hi, lo + 1)
        bump = np.exp(-0.5 * ((self._freqs_hz[None, lo:hi] - peak) / sigma) ** 2)
        bump /= bump.sum(axis=1, keepdims=True) * self._df_hz
        return lo, bump

    def _psd_numpy(self, gains: np.ndarray, lo: int, bump: np.ndarray) -> np.ndarray:
        """The PSD as array operations: the reference of the compiled ``_psd_loops``."""
        weighted = gains * self._band_power[:, None]
        psd = weighted.T @ self._flat_templates  # flat bands (alpha row of templates is 0)
        # Background takes the gain of the band it lies in (1 outside all bands). Gathered
        # site-major so the product runs over contiguous rows.
        with_outside = np.ones((_N_BANDS + 1, gains.shape[1]))
        with_outside[:_N_BANDS] = gains
        gain_at_f = with_outside.T[:, self._band_index]
        psd += gain_at_f * self._background_base
        # Alpha: Gaussian at each site's peak, normalised on the grid.
        psd[:, lo : lo + bump.shape[1]] += weighted[_ALPHA_INDEX][:, None] * bump
        return np.asarray(psd)

    def _spectral_factors(self, state: ModulationState) -> tuple[np.ndarray, np.ndarray]:
        """Per-bin amplitude (n_sites, n_bins) and eigen-domain mixing (n_sites, n_bins).

        Cached: recomputed only when band_gain, alpha_peak_hz or coherence_gain change.
        """
        key = (
            state.band_gain.tobytes()
            + state.alpha_peak_hz.tobytes()
            + np.float64(state.coherence_gain).tobytes()
        )
        if key != self._cached_key or self._cached_amp is None or self._cached_mix is None:
            if state.band_gain.min() < 0:  # np.any(band_gain < 0) in one pass, NaN included
                raise ValueError("band_gain must be >= 0")
            psd = self._psd(state)
            if _amplitude_numba is None:
                amp = self._amplitude_numpy(psd)
            else:
                amp = np.empty(psd.shape, dtype=np.float32)
                _amplitude_numba(psd, self._fft_scale, amp)
            self._cached_key, self._cached_amp = key, amp
            coherence_gain = float(state.coherence_gain)
            if self._cached_mix is None or coherence_gain != self._cached_mix_gain:
                # The mixing depends on the coherence gain alone, which stays 1 outside
                # prodromes while band gains and alpha peaks move at every cell.
                rho_at_f = self._rho(state)[self._band_index]  # index -1 -> 'outside'
                if _mixing_numba is None:
                    self._cached_mix = self._mixing_numpy(rho_at_f)
                else:
                    self._cached_mix = np.empty(
                        (self._eigval.size, rho_at_f.size), dtype=np.float32
                    )
                    _mixing_numba(rho_at_f, self._eigval, self._cached_mix)
                self._cached_mix_gain = coherence_gain
        assert self._cached_mix is not None
        return self._cached_amp, self._cached_mix

    def _amplitude_numpy(self, psd: np.ndarray) -> np.ndarray:
        """Per-bin amplitude of the synthesis, float32 (the reference of the compiled
        ``_amplitude_loops``); ``psd`` is overwritten."""
        psd[:, 0] = 0.0  # no DC and no Nyquist term from the synthesis
        psd[:, -1] = 0.0
        psd *= self._fft_scale
        return np.sqrt(psd, out=psd).astype(np.float32)

    def _mixing_numpy(self, rho_at_f: np.ndarray) -> np.ndarray:
        """Eigen-domain mixing per eigenvector and bin, float32 (the reference of the
        compiled ``_mixing_loops``)."""
        mix = np.sqrt((1.0 - rho_at_f)[None, :] + rho_at_f[None, :] * self._eigval[:, None])
        return mix.astype(np.float32)

    def _complex_gaussian(self, shape: tuple[int, ...]) -> np.ndarray:
        """Circular complex Gaussian coefficients with E|X|^2 = 1 (complex64).

        Box-Muller from float32 uniforms: |X|^2 = -ln(1 - u1) is Exp(1) and the phase
        2*pi*u2 is uniform, which is exactly a circular complex Gaussian; ~2.5x faster
        than ``standard_normal`` here (the tail beyond |X| = 4.07, p < 1e-7, is cut).
        With numba the uniforms come from the bit generator's raw words and the exact
        steps (negation, scaling, square root, products, interleaving) run compiled
        around numpy's log1p, cos and sin: ``_complex_gaussian_numpy``'s numbers (tested).
        """
        bit_generator = self._rng.bit_generator
        if (
            _uniform_split_numba is None
            or _polar_numba is None
            or _BIG_ENDIAN
            or bit_generator.state["has_uint32"]  # a half word held: the raw words would skip it
        ):
            return self._complex_gaussian_numpy(shape)
        n_segments = shape[0]
        per_half = math.prod(shape[1:])
        # The (segment, [radius, phase], site, bin) layout of _complex_gaussian_numpy's
        # uniforms; only its phase half is used, so the ufuncs below see the same views.
        phase_buffer = np.empty((n_segments, 2, *shape[1:]), dtype=np.float32)
        radius = np.empty(shape, dtype=np.float32)
        # This generator draws only here and always an even number of float32 uniforms,
        # so no half word is ever buffered in it: rng.random(dtype=float32) would read
        # each raw 64-bit word's low, then high 32 bits, the order of a little-endian
        # uint32 view.
        words = bit_generator.random_raw(n_segments * per_half).view(np.uint32)
        _uniform_split_numba(words, radius.reshape(-1), phase_buffer.reshape(-1), per_half)
        np.log1p(radius, out=radius)
        phase = phase_buffer[:, 1]
        cos_part = np.cos(phase)
        sin_part = np.sin(phase)
        out = np.empty(shape, dtype=np.complex64)
        _polar_numba(
            radius.reshape(-1),
            cos_part.reshape(-1),
            sin_part.reshape(-1),
            out.reshape(-1).view(np.float32),
        )
        return out

    def _complex_gaussian_numpy(self, shape: tuple[int, ...]) -> np.ndarray:
        """``_complex_gaussian`` as array operations (the path without numba)."""
        # Draw order (segment, [radius, phase], site, bin) keeps every segment's numbers
        # the same however many segments one call renders (block-size independence).
        u = self._rng.random((shape[0], 2, *shape[1:]), dtype=np.float32)
        # The same operations as sqrt(-log1p(-u0)) and radius * cos(2 pi u1), in place.
        radius = np.negative(u[:, 0])
        np.log1p(radius, out=radius)
        np.negative(radius, out=radius)
        np.sqrt(radius, out=radius)
        phase = u[:, 1]
        phase *= _TWO_PI_F32
        out = np.empty(shape, dtype=np.complex64)
        part = np.cos(phase)
        part *= radius
        out.real = part
        np.sin(phase, out=part)
        part *= radius
        out.imag = part
        return out

    def _synthesise(self, n_segments: int, state: ModulationState) -> np.ndarray:
        """Render ``n_segments`` new segments and return their finished ``n_segments*H`` samples.

        The synthesis runs in single precision (relative error ~1e-7, far below the
        device's int16 quantisation); the output is float64.
        """
        n_sites = len(self._sites)
        amp, mix = self._spectral_factors(state)
        n_bins = amp.shape[1]
        spectrum = self._complex_gaussian((n_segments, n_sites, n_bins))
        # The eigenvectors are real, so the site mixing acts on the interleaved re/im
        # float view as one real matrix product (4x cheaper than a complex one).
        eig = (self._eigvec_t @ spectrum.view(np.float32)).view(np.complex64)
        eig *= mix
        spectrum = (self._eigvec @ eig.view(np.float32)).view(np.complex64)
        spectrum *= amp
        segments = irfft_last_axis(spectrum, self._n_fft)

        out = np.empty((n_sites, n_segments * self._hop))
        nf, hop = self._n_fade, self._hop
        for k in range(n_segments):
            seg = segments[k]
            block = out[:, k * hop : (k + 1) * hop]
            if self._tail is None:
                block[:] = seg[:, :hop]
            else:
                block[:, :nf] = self._tail * self._fade_out + seg[:, :nf] * self._fade_in
                block[:, nf:] = seg[:, nf:hop]
            self._tail = seg[:, hop:]
        return out
