"""Replay an EDF/EDF+ recording as the simulated device's signal source.

The recording is read once with pyedflib, the channels named by the site map are
converted to µV and resampled to the device rate (``scipy.signal.resample_poly`` with
a rational approximation of the rate ratio), and then served block by block. At the
end it either loops (with a jump at the seam) or raises :class:`ReplayExhaustedError`.
EDF+ annotations become ground-truth events at their playback time.

Assumptions (docs/simulator_models.md): the whole selection fits in memory; a
recording cannot react to stimulation, so ``stim`` is ignored (add the stimulation
artifact downstream if wanted); impedances are not known, so none are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import pyedflib

from simulator.signals import GroundTruthEvent, Site, StimulationInput

#: Physical dimension (case-folded, stripped) -> factor to µV.
_UNIT_TO_UV: dict[str, float] = {
    "nv": 1e-3,
    "uv": 1.0,
    "\u00b5v": 1.0,  # micro sign
    "\u03bcv": 1.0,  # Greek mu
    "microv": 1.0,
    "microvolt": 1.0,
    "microvolts": 1.0,
    "mv": 1e3,
    "millivolt": 1e3,
    "millivolts": 1e3,
    "v": 1e6,
    "volt": 1e6,
    "volts": 1e6,
}

#: Largest denominator accepted for the resampling ratio (keeps filters short).
MAX_RATIO_DENOMINATOR = 1000


class ReplayExhaustedError(EOFError):
    """The recording ended and the source was configured to stop, not loop."""


@dataclass(frozen=True)
class EdfAnnotation:
    onset_s: float
    duration_s: float
    description: str


def unit_to_uv_factor(dimension: str) -> float:
    """Factor converting values in ``dimension`` (e.g. 'uV', 'µV', 'mV', 'V') to µV."""
    key = dimension.strip().casefold()
    if key not in _UNIT_TO_UV:
        raise ValueError(
            f"unsupported physical dimension {dimension!r}; expected one of uV, µV, mV, V, nV"
        )
    return _UNIT_TO_UV[key]


def normalise_label(label: str) -> str:
    """Compare EDF labels loosely: case-folded, trimmed, without 'EEG ' prefix or '-REF'."""
    key = label.strip().casefold()
    if key.startswith("eeg "):
        key = key[4:].strip()
    if key.endswith("-ref"):
        key = key[:-4].strip()
    return key


def rational_ratio(target_hz: float, source_hz: float) -> tuple[int, int]:
    """(up, down) with up/down ~ target/source, denominator <= MAX_RATIO_DENOMINATOR."""
    ratio = Fraction(target_hz / source_hz).limit_denominator(MAX_RATIO_DENOMINATOR)
    if ratio <= 0:
        raise ValueError(f"cannot resample {source_hz} Hz to {target_hz} Hz")
    return ratio.numerator, ratio.denominator


class EdfReplaySource:
    """An EDF/EDF+ file as a SignalSource (see simulator.signals.SignalSource)."""

    def __init__(
        self,
        path: str | Path,
        sites_or_channel_map: Sequence[Site] | Mapping[Site, str],
        sampling_rate_hz: float,
        at_end: Literal["loop", "stop"] = "loop",
    ) -> None:
        if at_end not in ("loop", "stop"):
            raise ValueError("at_end must be 'loop' or 'stop'")
        if sampling_rate_hz <= 0:
            raise ValueError("sampling_rate_hz must be > 0")
        self._path = Path(path)
        self._fs = float(sampling_rate_hz)
        self._at_end = at_end
        if isinstance(sites_or_channel_map, Mapping):
            site_to_label = {site: str(lbl) for site, lbl in sites_or_channel_map.items()}
        else:
            site_to_label = {site: site.label for site in sites_or_channel_map}
        if not site_to_label:
            raise ValueError("need at least one site to replay")
        self._sites = tuple(site_to_label)
        self._data_uv, self._annotations, self.rate_error_ppm = self._load(site_to_label)
        self._position = 0
        self._samples_served = 0
        self._pending_events: list[GroundTruthEvent] = []

    # ------------------------------------------------------------- SignalSource
    @property
    def sites(self) -> tuple[Site, ...]:
        return self._sites

    @property
    def sampling_rate_hz(self) -> float:
        return self._fs

    @property
    def n_samples_total(self) -> int:
        """Length of the resampled recording in device samples."""
        return int(self._data_uv.shape[1])

    @property
    def remaining_samples(self) -> int:
        """Samples left before the end of the recording (this pass)."""
        return self.n_samples_total - self._position

    @property
    def annotations(self) -> tuple[EdfAnnotation, ...]:
        return self._annotations

    def read(self, n_samples: int, stim: StimulationInput) -> np.ndarray:
        """Next ``n_samples`` (µV, (n_sites, n_samples)); ``stim`` is ignored (recorded data)."""
        if n_samples < 0:
            raise ValueError("n_samples must be >= 0")
        total = self.n_samples_total
        if self._at_end == "stop" and self._position + n_samples > total:
            raise ReplayExhaustedError(
                f"EDF replay of {self._path.name} reached its end: {self.remaining_samples} of "
                f"{total} samples left ({total / self._fs:.1f} s at {self._fs:g} Hz), "
                f"{n_samples} requested; use at_end='loop' to loop the recording"
            )
        pieces = []
        need = n_samples
        start_served = self._samples_served
        while need > 0:
            take = min(need, total - self._position)
            pieces.append(self._data_uv[:, self._position : self._position + take])
            self._collect_annotations(self._position, take, self._samples_served)
            self._position += take
            self._samples_served += take
            need -= take
            if self._position == total:
                self._position = 0
        assert self._samples_served - start_served == n_samples
        if not pieces:
            return np.zeros((len(self._sites), 0))
        return np.ascontiguousarray(np.concatenate(pieces, axis=1))

    def impedance_ohm(self) -> np.ndarray | None:
        return None

    def drain_ground_truth(self) -> list[GroundTruthEvent]:
        events, self._pending_events = self._pending_events, []
        return events

    # ----------------------------------------------------------------- internals
    def _collect_annotations(self, file_start: int, n: int, served_start: int) -> None:
        """Queue annotations whose onset falls in file samples [file_start, file_start + n)."""
        t0 = file_start / self._fs
        t1 = (file_start + n) / self._fs
        for ann in self._annotations:
            if t0 <= ann.onset_s < t1:
                t_play = (served_start - file_start) / self._fs + ann.onset_s
                self._pending_events.append(
                    GroundTruthEvent(
                        t_s=t_play,
                        kind=ann.description,
                        detail={
                            "source": "edf_annotation",
                            "file_onset_s": ann.onset_s,
                            "duration_s": ann.duration_s,
                        },
                    )
                )

    def _load(
        self, site_to_label: dict[Site, str]
    ) -> tuple[np.ndarray, tuple[EdfAnnotation, ...], float]:
        reader = pyedflib.EdfReader(str(self._path))
        try:
            labels = list(reader.getSignalLabels())
            by_key: dict[str, list[int]] = {}
            for idx, lbl in enumerate(labels):
                by_key.setdefault(normalise_label(lbl), []).append(idx)
            wanted = {site: normalise_label(lbl) for site, lbl in site_to_label.items()}
            missing = [site_to_label[s] for s, key in wanted.items() if key not in by_key]
            if missing:
                raise ValueError(
                    f"{self._path.name}: no channel for site label(s) {missing}; "
                    f"the file has {labels}"
                )
            ambiguous = [site_to_label[s] for s, key in wanted.items() if len(by_key[key]) > 1]
            if ambiguous:
                raise ValueError(f"{self._path.name}: label(s) {ambiguous} match several channels")
            channels = []
            worst_ppm = 0.0
            for site in self._sites:
                ch = by_key[wanted[site]][0]
                factor = unit_to_uv_factor(reader.getPhysicalDimension(ch))
                x_uv = reader.readSignal(ch).astype(np.float64) * factor
                source_hz = float(reader.getSampleFrequency(ch))
                up, down = rational_ratio(self._fs, source_hz)
                worst_ppm = max(worst_ppm, abs(source_hz * up / down / self._fs - 1.0) * 1e6)
                if (up, down) != (1, 1):
                    from scipy import signal  # here: costs ~0.5 s to import

                    x_uv = signal.resample_poly(x_uv, up, down)
                channels.append(x_uv)
            onsets, durations, texts = reader.readAnnotations()
        finally:
            reader.close()
        length = min(len(c) for c in channels)
        if length == 0:
            raise ValueError(f"{self._path.name}: the selected channels hold no samples")
        data = np.vstack([c[:length] for c in channels])
        annotations = tuple(
            EdfAnnotation(float(o), float(d), str(t))
            for o, d, t in zip(onsets, durations, texts, strict=True)
        )
        return data, annotations, worst_ppm
