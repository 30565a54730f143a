"""Stimulation policies: detector output and delivered state in, requested settings out."""

from controller.policy.config import (
    DualThresholdConfig,
    OpenLoopConfig,
    PolicyConfig,
    PolicyName,
    ProdromeSessionConfig,
    ShamConfig,
    SingleThresholdConfig,
    TherapySettingConfig,
)
from controller.policy.dual_threshold import DualThresholdPolicy
from controller.policy.factory import POLICY_NAMES, build_policy
from controller.policy.off import OffPolicy
from controller.policy.open_loop import OpenLoopPolicy
from controller.policy.prodrome_session import ProdromeSessionPolicy
from controller.policy.single_threshold import SingleThresholdPolicy
from controller.policy.types import Policy, StimRequest

__all__ = [
    "POLICY_NAMES",
    "DualThresholdConfig",
    "DualThresholdPolicy",
    "OffPolicy",
    "OpenLoopConfig",
    "OpenLoopPolicy",
    "Policy",
    "PolicyConfig",
    "PolicyName",
    "ProdromeSessionConfig",
    "ProdromeSessionPolicy",
    "ShamConfig",
    "SingleThresholdConfig",
    "SingleThresholdPolicy",
    "StimRequest",
    "TherapySettingConfig",
    "build_policy",
]
