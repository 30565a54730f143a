"""Build a simulated device from a scenario name and URL/CLI parameters."""

from __future__ import annotations

from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import NoiseSource, SignalSource

KNOWN_PARAMS = ("seed",)


class DeviceSpecError(ValueError):
    """A simulated-device request that cannot be built; the message says why."""


def build_source(scenario: str, seed: int) -> SignalSource:
    """The signal source for ``scenario``.

    ``noise`` (and ``default`` until the physiology model is wired in) is the seeded
    placeholder EEG of simulator.signals.
    """
    if scenario in ("default", "noise"):
        return NoiseSource(seed=seed)
    raise DeviceSpecError(f"unknown simulated-device scenario {scenario!r} (known: default, noise)")


def build_firmware(scenario: str, params: dict[str, str]) -> VirtualFirmware:
    unknown = sorted(set(params) - set(KNOWN_PARAMS))
    if unknown:
        raise DeviceSpecError(f"unknown sim:// parameter(s) {unknown}; known: {KNOWN_PARAMS}")
    try:
        seed = int(params.get("seed", "0"))
    except ValueError:
        raise DeviceSpecError(f"seed must be an integer, got {params['seed']!r}") from None
    return VirtualFirmware(build_source(scenario, seed), FirmwareConfig(seed=seed))
