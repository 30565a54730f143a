"""Prodrome detector: per-patient baseline, signature score, state machine with hysteresis.

``Detector(config, channel_names, baseline=None, *, stim_channels=())`` turns each
FeatureFrame into a DetectorOutput; see docs/detector.md for the algorithm and defaults.
"""

from controller.detector.baseline import Baseline, BaselineMismatchError, BaselineSettings
from controller.detector.config import (
    SUMMARY_FEATURE_PATTERNS,
    DetectorConfig,
    SignatureFeature,
    default_signature_features,
)
from controller.detector.detector import ArtifactGate, Detector
from controller.detector.score import ScoreSmoother, SignatureWeights, SummaryFeatures, z_scores
from controller.detector.state_machine import ProdromeStateMachine, Transition, WindowInput
from controller.detector.types import DetectorOutput, DetectorState

__all__ = [
    "SUMMARY_FEATURE_PATTERNS",
    "ArtifactGate",
    "Baseline",
    "BaselineMismatchError",
    "BaselineSettings",
    "Detector",
    "DetectorConfig",
    "DetectorOutput",
    "DetectorState",
    "ProdromeStateMachine",
    "ScoreSmoother",
    "SignatureFeature",
    "SignatureWeights",
    "SummaryFeatures",
    "Transition",
    "WindowInput",
    "default_signature_features",
    "z_scores",
]
