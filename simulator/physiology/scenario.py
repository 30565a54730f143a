"""Scenarios: a patient, a duration, a model and timed events, as TOML.

Example (see ``simulator/scenarios/*.toml`` for the built-ins)::

    name = "aura-demo"
    duration_s = "2h"              # seconds, or "36h" / "30min" / "1h30min" / "2d"
    model = "spectral"             # or "jansen-rit"
    seed = 0                       # run seed: cycle noise and signal noise

    [patient]
    phenotype = "episodic-with-aura"
    seed = 7                       # optional; defaults to the run seed
    [patient.overrides.csd]
    speed_mm_per_min = 3.0

    [[events]]
    kind = "force_attack"          # force_prodrome | force_attack | sensor_fault | link_fault
    at_s = "5min"
    aura = true

Validation is done by pydantic; errors are re-raised as ``ScenarioError`` whose
message names the field (``events[2].duration_s``), the value and what is allowed.
Link faults are only parsed here (``Scenario.link_faults``); the device's link layer
applies them (``link_fault_settings_at``).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.link_faults import LinkFaultSettings
from simulator.physiology.patient import PatientSimulation, Phenotype, VirtualPatient
from simulator.physiology.sensor_faults import ActiveSensorFault, SensorFaultKind
from simulator.signals import DEFAULT_SITES, Site

_UNIT_S = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PLAIN_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|sec|min|s|m|h|d)\s*")


class ScenarioError(ValueError):
    """A scenario that cannot be loaded or built; the message names the field."""


def parse_duration_s(value: str | float | int) -> float:
    """Seconds from a number or a plain number string (seconds), or a string like "36h",
    "30min", "1h30min", "2d"."""
    if isinstance(value, bool):
        raise ValueError(f"expected seconds or a duration string, got {value!r}")
    if isinstance(value, int | float) or _PLAIN_SECONDS.fullmatch(value.strip()):
        seconds = float(value)
    else:
        text = value.strip().lower()
        pos, seconds, parts = 0, 0.0, 0
        while pos < len(text):
            match = _DURATION_PART.match(text, pos)
            if match is None:
                raise ValueError(
                    f"cannot parse duration {value!r}: use seconds or e.g. '36h', '30min', "
                    "'1h30min', '2d', '90s', '500ms'"
                )
            seconds += float(match.group(1)) * _UNIT_S[match.group(2)]
            pos, parts = match.end(), parts + 1
        if parts == 0:
            raise ValueError(f"empty duration {value!r}")
    if not math.isfinite(seconds) or seconds < 0.0:
        raise ValueError(f"duration must be finite and >= 0, got {value!r}")
    return seconds


DurationS = Annotated[float, Field(ge=0.0)]


class _Timed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: DurationS

    @field_validator("at_s", mode="before")
    @classmethod
    def _parse_at(cls, value: Any) -> float:
        return parse_duration_s(value)


class _Windowed(_Timed):
    duration_s: DurationS

    @field_validator("duration_s", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float:
        seconds = parse_duration_s(value)
        if seconds <= 0.0:
            raise ValueError("duration must be > 0")
        return seconds


class ForceProdromeSpec(_Timed):
    kind: Literal["force_prodrome"]


class ForceAttackSpec(_Timed):
    kind: Literal["force_attack"]
    aura: bool = False


class SensorFaultSpec(_Windowed):
    """A sensor fault; the optional fields are those of ``ActiveSensorFault`` for its kind."""

    kind: Literal["sensor_fault"]
    fault: SensorFaultKind
    channel: int | str = Field(description="channel index (0-based) or site label")
    rail_uv: float | None = Field(default=None, gt=0.0, le=1e6, description="clipping")
    line_frequency_hz: Literal[50, 60] | None = Field(default=None, description="line_noise")
    line_amplitude_uv: float | None = Field(default=None, ge=0.0, le=1e6, description="line_noise")
    pop_step_uv: float | None = Field(default=None, ge=-1e6, le=1e6, description="electrode_pop")
    pop_decay_s: float | None = Field(default=None, gt=0.0, le=3600.0, description="electrode_pop")
    impedance_ohm: float | None = Field(default=None, gt=0.0, le=1e8, description="impedance_rise")
    flat_value_uv: float | None = Field(default=None, ge=-1e6, le=1e6, description="flatline")

    @field_validator("channel")
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"channel index must be >= 0, got {value}")
        return value


class LinkFaultKind(StrEnum):
    CORRUPTION = "corruption"
    DROP = "drop"
    DELAY = "delay"
    DISCONNECT = "disconnect"


class LinkFaultSpec(_Windowed):
    kind: Literal["link_fault"]
    fault: LinkFaultKind
    byte_corruption_rate: float = Field(default=1e-3, ge=0.0, le=1.0, description="corruption")
    frame_drop_rate: float = Field(default=0.1, ge=0.0, le=1.0, description="drop")
    delay_s: float = Field(default=0.05, ge=0.0, le=60.0, description="delay")
    jitter_s: float = Field(default=0.0, ge=0.0, le=60.0, description="delay")


EventSpec = Annotated[
    ForceProdromeSpec | ForceAttackSpec | SensorFaultSpec | LinkFaultSpec,
    Field(discriminator="kind"),
]


class PatientSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    phenotype: Phenotype = Phenotype.EPISODIC_WITHOUT_AURA
    seed: int | None = Field(default=None, ge=0, description="defaults to the scenario seed")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ScenarioSpec(BaseModel):
    """The TOML document, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "unnamed"
    description: str = ""
    duration_s: DurationS = 3600.0
    model: Literal["spectral", "jansen-rit"] = "spectral"
    seed: int = Field(default=0, ge=0)
    start_time_of_day_h: float = Field(default=8.0, ge=0.0, lt=24.0)
    patient: PatientSpec = Field(default_factory=PatientSpec)
    events: list[EventSpec] = Field(default_factory=list)

    @field_validator("duration_s", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float:
        seconds = parse_duration_s(value)
        if seconds <= 0.0:
            raise ValueError("duration must be > 0")
        return seconds


#: SensorFaultSpec fields passed on to ActiveSensorFault when set.
_SENSOR_FAULT_OPTIONS = (
    "rail_uv",
    "line_frequency_hz",
    "line_amplitude_uv",
    "pop_step_uv",
    "pop_decay_s",
    "impedance_ohm",
    "flat_value_uv",
)


@dataclass(frozen=True)
class SensorFaultEvent:
    """A sensor fault on one channel during [start_s, start_s + duration_s).

    ``options`` are ActiveSensorFault fields given in the scenario (others keep the
    injector's defaults).
    """

    kind: SensorFaultKind
    channel: int | str
    start_s: float
    duration_s: float
    options: tuple[tuple[str, float], ...] = ()

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def to_active(self, channel_index: int) -> ActiveSensorFault:
        return ActiveSensorFault(self.kind, (channel_index,), **dict(self.options))


@dataclass(frozen=True)
class LinkFaultEvent:
    """A link impairment during [start_s, start_s + duration_s), applied by the device's link.

    Only the rate/delay that belongs to ``kind`` is meaningful: ``byte_corruption_rate``
    (corruption, per byte), ``frame_drop_rate`` (drop, per frame), ``delay_s`` and
    ``jitter_s`` (delay); a disconnect has no parameter.
    """

    kind: LinkFaultKind
    start_s: float
    duration_s: float
    byte_corruption_rate: float = 0.0
    frame_drop_rate: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


def link_fault_settings_at(events: list[LinkFaultEvent], t_s: float) -> LinkFaultSettings:
    """The combined ``LinkFaultSettings`` in force at ``t_s`` (disconnect windows: all)."""
    corruption = drop = delay = jitter = 0.0
    for event in events:
        if not event.active(t_s):
            continue
        corruption = max(corruption, event.byte_corruption_rate)
        drop = max(drop, event.frame_drop_rate)
        delay = max(delay, event.delay_s)
        jitter = max(jitter, event.jitter_s)
    disconnects = tuple(
        (e.start_s, e.duration_s) for e in events if e.kind is LinkFaultKind.DISCONNECT
    )
    return LinkFaultSettings(
        byte_corruption_rate=corruption,
        frame_drop_rate=drop,
        delay_s=delay,
        jitter_s=jitter,
        disconnects=disconnects,
    )


@dataclass(frozen=True)
class Scenario:
    """A loaded, validated scenario; ``build_source`` makes the signal source."""

    spec: ScenarioSpec
    source: str = "<memory>"
    sensor_faults: list[SensorFaultEvent] = field(default_factory=list)
    link_faults: list[LinkFaultEvent] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def duration_s(self) -> float:
        return self.spec.duration_s

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def seed(self) -> int:
        return self.spec.seed

    def patient(self, seed_override: int | None = None) -> VirtualPatient:
        """The virtual patient (patient seed, else the run seed / its override)."""
        patient = self.spec.patient
        run_seed = self.spec.seed if seed_override is None else seed_override
        seed = patient.seed if patient.seed is not None else run_seed
        return VirtualPatient.from_phenotype(patient.phenotype, seed, patient.overrides)

    def build_source(
        self,
        seed_override: int | None = None,
        model_override: str | None = None,
        sites: tuple[Site, ...] = DEFAULT_SITES,
        sampling_rate_hz: float = 250.0,
    ) -> PatientSimulation:
        """A fresh ``PatientSimulation`` with the scenario's forced events and sensor faults."""
        model = self.spec.model if model_override is None else model_override
        if model not in ("spectral", "jansen-rit"):
            raise ScenarioError(f"model: {model!r} is not one of 'spectral', 'jansen-rit'")
        seed = self.spec.seed if seed_override is None else seed_override
        try:
            simulation = PatientSimulation(
                self.patient(seed_override),
                model_name=model,
                sites=sites,
                sampling_rate_hz=sampling_rate_hz,
                seed=seed,
                start_time_of_day_h=self.spec.start_time_of_day_h,
            )
        except ValueError as exc:  # e.g. a csd.origin that is not a site of this montage
            raise ScenarioError(f"scenario {self.source}: {exc}") from None
        labels = [s.label for s in sites]
        for index, event in enumerate(self.spec.events):
            if isinstance(event, ForceProdromeSpec):
                simulation.force_prodrome(event.at_s)
            elif isinstance(event, ForceAttackSpec):
                simulation.force_attack(event.at_s, event.aura)
            elif isinstance(event, SensorFaultSpec):
                fault = _sensor_fault_event(event)
                channel = _channel_index(fault.channel, labels, f"events[{index}].channel")
                simulation.schedule_sensor_fault(
                    fault.to_active(channel), fault.start_s, fault.duration_s
                )
        return simulation


def _sensor_fault_event(spec: SensorFaultSpec) -> SensorFaultEvent:
    options = tuple(
        (name, float(getattr(spec, name)))
        for name in _SENSOR_FAULT_OPTIONS
        if getattr(spec, name) is not None
    )
    return SensorFaultEvent(spec.fault, spec.channel, spec.at_s, spec.duration_s, options)


def _link_fault_event(spec: LinkFaultSpec) -> LinkFaultEvent:
    kind = spec.fault
    return LinkFaultEvent(
        kind,
        spec.at_s,
        spec.duration_s,
        byte_corruption_rate=spec.byte_corruption_rate if kind is LinkFaultKind.CORRUPTION else 0.0,
        frame_drop_rate=spec.frame_drop_rate if kind is LinkFaultKind.DROP else 0.0,
        delay_s=spec.delay_s if kind is LinkFaultKind.DELAY else 0.0,
        jitter_s=spec.jitter_s if kind is LinkFaultKind.DELAY else 0.0,
    )


def _channel_index(channel: int | str, labels: list[str], where: str) -> int:
    if isinstance(channel, str):
        if channel not in labels:
            raise ScenarioError(f"{where}: site label {channel!r} not in {labels}")
        return labels.index(channel)
    if not 0 <= channel < len(labels):
        raise ScenarioError(f"{where}: channel {channel} out of range 0-{len(labels) - 1}")
    return channel


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid scenario {source}:"]
    for item in error.errors():
        loc = ""
        for part in item["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {loc or '<root>'}: {item['msg']}{shown}")
    return "\n".join(lines)


def scenario_from_dict(document: dict[str, Any], source: str = "<memory>") -> Scenario:
    """Validate a parsed TOML document into a ``Scenario`` (raises ``ScenarioError``)."""
    try:
        spec = ScenarioSpec.model_validate(document)
    except ValidationError as exc:
        raise ScenarioError(_format_validation_error(exc, source)) from None
    try:  # validate the patient overrides now, not when the source is built
        Scenario(spec, source).patient()
    except ValidationError as exc:
        message = _format_validation_error(exc, source).replace("\n  ", "\n  patient.overrides.")
        raise ScenarioError(message) from None
    sensor_faults = [_sensor_fault_event(e) for e in spec.events if isinstance(e, SensorFaultSpec)]
    link_faults = [_link_fault_event(e) for e in spec.events if isinstance(e, LinkFaultSpec)]
    return Scenario(spec, source, sensor_faults, link_faults)


def builtin_scenario_names() -> list[str]:
    """Names of the TOML files shipped in ``simulator/scenarios``."""
    folder = resources.files("simulator.scenarios")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name (``default``, ``aura-demo``, ``faults``) or a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ScenarioError(f"scenario file {str(path)!r} not found")
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        resource = resources.files("simulator.scenarios") / f"{name_or_path}.toml"
        if not resource.is_file():
            raise ScenarioError(
                f"unknown scenario {str(name_or_path)!r}; built-ins: {builtin_scenario_names()} "
                "(or give a path to a .toml file)"
            )
        text, source = resource.read_text(encoding="utf-8"), f"built-in '{name_or_path}'"
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"invalid TOML in scenario {source}: {exc}") from None
    return scenario_from_dict(document, source)
