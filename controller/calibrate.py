"""``neurostim calibrate``'s inputs: a recording's feature log and its attack onsets.

The recording (EDF/EDF+, as ``neurostim run --record`` or ``neurostim sim --record`` write
it) is pushed in chunks through the controller's own feature extractor, gated as the
detector gates (stimulation annotations blank as in ``neurostim analyze``), into a
:class:`FeatureLogger` of every candidate summary feature.

Attack onsets come from an attacks file, or, for a simulated run-in, from the recording's
ground-truth annotations (``truth attack_onset``).  The attacks file holds seconds from the
recording's start, either as text (one onset per line; blank lines and ``#`` comments are
ignored) or as JSON (a list of numbers, or an object with a list ``attack_onsets_s``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyedflib

from controller.analyze import (
    DEFAULT_CHUNK_SAMPLES,
    edf_signals,
    iter_frames,
    stimulation_onsets_s,
)
from controller.config import ControllerConfig
from controller.detector.feature_log import (
    FeatureLog,
    FeatureLogger,
    calibration_block_s,
    candidate_feature_names,
)
from controller.features import FeatureExtractor

TRUTH_ATTACK_ANNOTATION = "truth attack_onset"


def read_attacks_file(path: Path | str) -> list[float]:
    """Attack onsets (s from the recording start) from a text or JSON file (module docstring).

    ValueError naming the file and line when something is not a finite number >= 0.
    """
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{where}: cannot read attacks file: {exc.strerror}") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        return _attacks_from_json(where, stripped)
    onsets = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        onsets.append(_onset(where, content, f"line {number}"))
    return sorted(onsets)


def _attacks_from_json(where: Path, text: str) -> list[float]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON: {exc}") from None
    values = data.get("attack_onsets_s") if isinstance(data, dict) else data
    if not isinstance(values, list):
        raise ValueError(f"{where}: expected a list of onsets or {{'attack_onsets_s': [...]}}")
    return sorted(_onset(where, v, f"entry {i}") for i, v in enumerate(values))


def _onset(where: Path, value: object, place: str) -> float:
    try:
        onset = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {place}: {value!r} is not a number of seconds") from None
    if not (math.isfinite(onset) and onset >= 0.0):
        raise ValueError(f"{where}: {place}: onset {value!r} must be a finite number >= 0")
    return onset


def truth_attack_onsets(path: Path | str) -> list[float]:
    """Onsets of the ``truth attack_onset`` annotations of a simulated recording."""
    with pyedflib.EdfReader(str(path)) as reader:
        onsets, _durations, texts = reader.readAnnotations()
    return sorted(
        float(onset)
        for onset, text in zip(onsets, texts, strict=True)
        if str(text).strip() == TRUTH_ATTACK_ANNOTATION
    )


def recording_feature_log(
    path: Path | str,
    config: ControllerConfig,
    *,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> FeatureLog:
    """Every candidate summary feature of a recording, gated as the detector gates."""
    edf_path = Path(path)
    with pyedflib.EdfReader(str(edf_path)) as reader:
        signals = edf_signals(reader, edf_path)
        finite_clip = bool(np.isfinite(signals.clip_level_uv).all())
        extractor = FeatureExtractor(
            len(signals.labels),
            signals.sampling_rate_hz,
            config.features,
            clip_level_uv=signals.clip_level_uv if finite_clip else None,
            channel_names=signals.labels,
        )
        names = candidate_feature_names(
            tuple(config.features.bands_hz), config.features.phase_measure
        )
        logger = FeatureLogger(
            names,
            signals.labels,
            config.detector,
            block_s=calibration_block_s(config.detector, config.features.hop_s),
        )
        changes = stimulation_onsets_s(reader)
        for frame, change_s in iter_frames(reader, signals, extractor, changes, chunk_samples):
            if change_s is not None:
                logger.blank_after_change(change_s)
            logger.push(frame)
    return logger.log()
