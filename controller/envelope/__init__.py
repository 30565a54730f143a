"""The safety envelope: every stimulation request passes it before anything is sent."""

from controller.envelope.accounting import (
    SECONDS_PER_DAY,
    DeliveryAccounting,
    RollingCount,
    RollingSum,
)
from controller.envelope.clamp import ClampResult, clamp_off, clamp_setting
from controller.envelope.config import SHANNON_K_DAMAGE, EnvelopeConfig, FallbackProgramConfig
from controller.envelope.decision import Clamp, EnvelopeDecision, Rule
from controller.envelope.envelope import SafetyEnvelope
from controller.envelope.limits import (
    EffectiveEnvelope,
    EnvelopeConflict,
    effective_envelope,
    shannon_k,
    shannon_max_charge_uc,
    within_envelope,
)

__all__ = [
    "SECONDS_PER_DAY",
    "SHANNON_K_DAMAGE",
    "Clamp",
    "ClampResult",
    "DeliveryAccounting",
    "EffectiveEnvelope",
    "EnvelopeConfig",
    "EnvelopeConflict",
    "EnvelopeDecision",
    "FallbackProgramConfig",
    "RollingCount",
    "RollingSum",
    "Rule",
    "SafetyEnvelope",
    "clamp_off",
    "clamp_setting",
    "effective_envelope",
    "shannon_k",
    "shannon_max_charge_uc",
    "within_envelope",
]
