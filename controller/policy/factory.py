"""Build the configured policy by name."""

from __future__ import annotations

from typing import get_args

from controller.policy.config import PolicyConfig, PolicyName
from controller.policy.dual_threshold import DualThresholdPolicy
from controller.policy.off import OffPolicy
from controller.policy.open_loop import OpenLoopPolicy
from controller.policy.prodrome_session import ProdromeSessionPolicy
from controller.policy.single_threshold import SingleThresholdPolicy
from controller.policy.types import Policy

POLICY_NAMES: tuple[str, ...] = get_args(PolicyName)


def build_policy(config: PolicyConfig) -> Policy:
    """A fresh policy for ``config.name`` with its own section and the therapy setting."""
    therapy = config.stimulation
    match config.name:
        case "off":
            return OffPolicy()
        case "open-loop":
            return OpenLoopPolicy(config.open_loop, therapy)
        case "sham":
            return OpenLoopPolicy(config.open_loop, config.sham.stimulation, name="sham")
        case "single-threshold":
            return SingleThresholdPolicy(config.single_threshold, therapy)
        case "dual-threshold":
            return DualThresholdPolicy(config.dual_threshold, therapy)
        case "prodrome-session":
            return ProdromeSessionPolicy(config.prodrome_session, therapy)
    raise ValueError(f"unknown policy {config.name!r}; choose one of {', '.join(POLICY_NAMES)}")
