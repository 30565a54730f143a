"""Streaming EEG/LFP features for the closed loop: spectra, connectivity, signal quality.

``FeatureExtractor.push`` takes (channels, samples) µV blocks of any length and returns
one :class:`FeatureFrame` per completed hop; ``extract_features`` runs the same extractor
over a recording.  Conventions (Welch as scipy.signal.welch, band power in µV², wPLI/PLV,
quality flags, flat feature names) are documented in docs/features.md.
"""

from controller.features.config import DEFAULT_BANDS_HZ, FeaturesConfig
from controller.features.extractor import FeatureExtractor
from controller.features.frame import FeatureFrame, SignalQuality, WindowSpectra
from controller.features.layout import FeatureLayout
from controller.features.offline import extract_features

__all__ = [
    "DEFAULT_BANDS_HZ",
    "FeatureExtractor",
    "FeatureFrame",
    "FeatureLayout",
    "FeaturesConfig",
    "SignalQuality",
    "WindowSpectra",
    "extract_features",
]
