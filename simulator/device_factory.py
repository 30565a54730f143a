"""Build a simulated device from a scenario name (or TOML path) and URL/CLI parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.link_faults import LinkFaultSettings
from simulator.physiology.replay import EdfReplaySource
from simulator.physiology.scenario import ScenarioError, link_fault_settings_at, load_scenario
from simulator.signals import DEFAULT_SITES, NoiseSource, Site

KNOWN_PARAMS = ("seed", "model")
MODELS = ("spectral", "jansen-rit")


class DeviceSpecError(ValueError):
    """A simulated-device request that cannot be built; the message says why."""


@dataclass
class SimulatedDevice:
    firmware: VirtualFirmware
    #: Link impairments over device time (None: a clean link).
    link_faults: Callable[[float], LinkFaultSettings] | None
    scenario: str


def replay_sites(path: str) -> tuple[Site, ...]:
    """Sites for an EDF's signal channels: known 10-20 labels keep the default montage's
    positions; other channels are laid on a 10 mm line (their true positions are unknown)."""
    import pyedflib

    known = {site.label.lower(): site for site in DEFAULT_SITES}
    with pyedflib.EdfReader(path) as reader:
        labels = [label.strip() for label in reader.getSignalLabels()]
    sites = []
    for i, label in enumerate(labels):
        site = known.get(label.lower())
        sites.append(Site(label, site.x_mm, site.y_mm) if site else Site(label, 0.0, 10.0 * i))
    return tuple(sites)


def build_device(
    scenario: str,
    params: dict[str, str],
    start_s: float = 0.0,
    signing_key: bytes | None = None,
    device_id: str | None = None,
    samples_per_frame: int | None = None,
    signal_block_frames: int = 1,
) -> SimulatedDevice:
    """``scenario`` is a built-in name, a TOML path, an EDF/BDF recording to replay (resampled
    to 250 Hz), or ``noise`` (placeholder EEG);
    ``samples_per_frame`` (None: the firmware's default) sets the SAMPLES frame length;
    ``signal_block_frames`` trades how soon the signal shows a stimulation change for CPU
    per device (the signal is made that many frames at a time);
    ``start_s`` is the clock reading at the device's power-up; ``signing_key`` makes the
    device refuse unsigned commands (docs/protocol.md section 1.4)."""
    unknown = sorted(set(params) - set(KNOWN_PARAMS))
    if unknown:
        raise DeviceSpecError(f"unknown sim:// parameter(s) {unknown}; known: {KNOWN_PARAMS}")
    raw_seed = params.get("seed")
    try:
        seed = None if raw_seed is None else int(raw_seed)
    except ValueError:
        raise DeviceSpecError(f"seed must be an integer, got {raw_seed!r}") from None
    name = FirmwareConfig.device_id if device_id is None else device_id

    def config(seed: int) -> FirmwareConfig:
        frame = FirmwareConfig.samples_per_frame if samples_per_frame is None else samples_per_frame
        return FirmwareConfig(
            device_id=name,
            seed=seed,
            signing_key=signing_key,
            samples_per_frame=frame,
            source_block_samples=frame * signal_block_frames,
        )

    model = params.get("model")
    if model is not None and model not in MODELS:
        raise DeviceSpecError(f"model must be one of {MODELS}, got {model!r}")
    if scenario == "noise":
        source = NoiseSource(seed=seed or 0)
        firmware = VirtualFirmware(source, config(seed or 0), start_s)
        return SimulatedDevice(firmware, None, "noise")
    if scenario.lower().endswith((".edf", ".bdf")):
        replay = EdfReplaySource(scenario, replay_sites(scenario), 250.0, at_end="loop")
        firmware = VirtualFirmware(replay, config(seed or 0), start_s)
        return SimulatedDevice(firmware, None, f"replay {scenario}")
    try:
        loaded = load_scenario(scenario)
        physiology = loaded.build_source(seed_override=seed, model_override=model)
    except ScenarioError as exc:
        raise DeviceSpecError(str(exc)) from None
    events = list(loaded.link_faults)
    schedule = (lambda t: link_fault_settings_at(events, t)) if events else None
    run_seed = loaded.seed if seed is None else seed
    firmware = VirtualFirmware(physiology, config(run_seed), start_s)
    return SimulatedDevice(firmware, schedule, loaded.name)
