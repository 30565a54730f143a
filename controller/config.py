"""The controller's configuration root: one TOML file, validated by pydantic (DESIGN principle 5).

``load_config(path)`` reads and validates it; every problem is reported as a ConfigError
naming the field path, the given value and the allowed range. ``default_config_toml()``
writes the complete default configuration as commented TOML (``neurostim config show``).
Field by field documentation, with sources: docs/configuration.md.
"""

from __future__ import annotations

import enum
import textwrap
import tomllib
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from controller.detector.config import DetectorConfig
from controller.envelope.config import EnvelopeConfig
from controller.features.config import FeaturesConfig
from controller.policy.config import PolicyConfig


class ConfigError(ValueError):
    """An unreadable or invalid configuration; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid configuration ({len(problems)} problem(s)):\n{body}")


class LoopConfig(BaseModel):
    """The async loop. Heartbeats follow the device (DEVICE_INFO heartbeat_interval_ms)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_queue_size: int = Field(
        default=1024,
        ge=16,
        le=1_000_000,
        description="capacity of each bounded queue; drops are counted",
    )
    reconnect_backoff_initial_s: float = Field(
        default=0.5, gt=0.0, le=60.0, description="first wait before reconnecting"
    )
    reconnect_backoff_max_s: float = Field(
        default=30.0, gt=0.0, le=3600.0, description="longest wait between reconnect attempts"
    )
    shutdown_ramp_down_timeout_s: float = Field(
        default=120.0,
        gt=0.0,
        le=3600.0,
        description="wait this long for the device to confirm the ramp down at shutdown",
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> LoopConfig:
        if self.reconnect_backoff_initial_s > self.reconnect_backoff_max_s:
            raise ValueError(
                f"reconnect_backoff_initial_s={self.reconnect_backoff_initial_s} must be <= "
                f"reconnect_backoff_max_s={self.reconnect_backoff_max_s}"
            )
        return self


class RecordingConfig(BaseModel):
    """Where the EDF+ recording and the JSONL audit log go (command-line flags override)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edf_path: str | None = Field(default=None, description="EDF+ recording file (unset: none)")
    audit_path: str | None = Field(default=None, description="JSONL audit log (unset: none)")
    audit_flush_interval_s: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="flush the audit log at least this often (a crash loses at most 1 s)",
    )


class ControllerConfig(BaseModel):
    """The whole ``neurostim run`` configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: FeaturesConfig = Field(
        default_factory=FeaturesConfig, description="streaming features (docs/features.md)"
    )
    detector: DetectorConfig = Field(
        default_factory=DetectorConfig, description="prodrome detector (docs/detector.md)"
    )
    policy: PolicyConfig = Field(
        default_factory=PolicyConfig, description="stimulation policy (docs/controller.md)"
    )
    envelope: EnvelopeConfig = Field(
        default_factory=EnvelopeConfig, description="safety envelope (docs/controller.md)"
    )
    loop: LoopConfig = Field(default_factory=LoopConfig, description="the async loop")
    recording: RecordingConfig = Field(
        default_factory=RecordingConfig, description="recording and audit log"
    )

    @model_validator(mode="after")
    def _check_sections_agree(self) -> ControllerConfig:
        problems = [
            *_therapy_outside_envelope(self.policy, self.envelope),
            *_shutdown_too_short(self.loop, self.envelope),
        ]
        try:
            self.detector.check_features(tuple(self.features.bands_hz), self.features.phase_measure)
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _therapy_outside_envelope(policy: PolicyConfig, envelope: EnvelopeConfig) -> list[str]:
    """The policy's waveform must lie in the configured ranges (charge rules need the device)."""
    therapy = policy.stimulation
    problems = []
    if not envelope.min_amplitude_ma <= therapy.amplitude_ma <= envelope.max_amplitude_ma:
        problems.append(
            f"policy.stimulation.amplitude_ma={therapy.amplitude_ma} is outside envelope "
            f"{envelope.min_amplitude_ma}-{envelope.max_amplitude_ma} mA"
        )
    if not envelope.min_pulse_width_us <= therapy.pulse_width_us <= envelope.max_pulse_width_us:
        problems.append(
            f"policy.stimulation.pulse_width_us={therapy.pulse_width_us} is outside envelope "
            f"{envelope.min_pulse_width_us}-{envelope.max_pulse_width_us} µs"
        )
    if not envelope.min_frequency_hz <= therapy.frequency_hz <= envelope.max_frequency_hz:
        problems.append(
            f"policy.stimulation.frequency_hz={therapy.frequency_hz} is outside envelope "
            f"{envelope.min_frequency_hz}-{envelope.max_frequency_hz} Hz"
        )
    dual = policy.dual_threshold
    if dual.max_amplitude_ma > envelope.max_amplitude_ma:
        problems.append(
            f"policy.dual_threshold.max_amplitude_ma={dual.max_amplitude_ma} exceeds "
            f"envelope.max_amplitude_ma={envelope.max_amplitude_ma}"
        )
    return problems


def _shutdown_too_short(loop: LoopConfig, envelope: EnvelopeConfig) -> list[str]:
    """Shutdown must wait for a full ramp down from the maximum at the configured rate."""
    ramp_s = envelope.max_amplitude_ma / envelope.ramp_down_ma_per_s
    if loop.shutdown_ramp_down_timeout_s < ramp_s:
        return [
            f"loop.shutdown_ramp_down_timeout_s={loop.shutdown_ramp_down_timeout_s} is shorter "
            f"than a ramp down from envelope.max_amplitude_ma={envelope.max_amplitude_ma} mA at "
            f"envelope.ramp_down_ma_per_s={envelope.ramp_down_ma_per_s} ({ramp_s:.1f} s)"
        ]
    return []


def parse_config(data: dict[str, Any], source: str = "<config>") -> ControllerConfig:
    """Validate already-parsed TOML data; ConfigError names field, value and allowed range."""
    try:
        return ControllerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc, ControllerConfig)) from None


def load_config(path: str | Path) -> ControllerConfig:
    """Read and validate a TOML configuration file (missing sections take their defaults)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read the file: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    return parse_config(data, source)


_HEADER = """\
neurostim controller configuration: the complete defaults (`neurostim config show`).
Every field is optional; a missing field or section takes the default shown here.
Units are in the field names (_ma mA, _us µs, _hz Hz, _s s, _uc µC, _ohm Ω, _uv µV).
Sources of the defaults: docs/configuration.md. Validate a file: `neurostim config check FILE`.
"""


def default_config_toml() -> str:
    """The complete default configuration as commented TOML; it loads back to the defaults."""
    return model_to_commented_toml(ControllerConfig(), header=_HEADER)


# --- commented TOML writer ---------------------------------------------------------------

# Unit of a field from its name's suffix (DESIGN principle 5: units in field names).
_UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_uc_per_cm2", "µC/cm²/phase"),
    ("_ma_per_s", "mA/s"),
    ("_uv2", "µV²"),
    ("_cm2", "cm²"),
    ("_ohm", "Ω"),
    ("_pct", "%"),
    ("_ma", "mA"),
    ("_us", "µs"),
    ("_hz", "Hz"),
    ("_uc", "µC"),
    ("_uv", "µV"),
    ("_ms", "ms"),
    ("_s", "s"),
)


def field_unit(name: str) -> str | None:
    """The unit a field name announces by its suffix, or None."""
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return None


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def field_range(info: FieldInfo) -> str | None:
    """The allowed values of a field: its bounds or its choices, e.g. ``0 < value <= 600``."""
    low = high = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            low = f"{meta.ge} <="
        elif isinstance(meta, annotated_types.Gt):
            low = f"{meta.gt} <"
        elif isinstance(meta, annotated_types.Le):
            high = f"<= {meta.le}"
        elif isinstance(meta, annotated_types.Lt):
            high = f"< {meta.lt}"
    if low or high:
        return " ".join(part for part in (low, "value", high) if part)
    annotation = _strip_optional(info.annotation)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(annotation))
    if annotation is bool:
        return "true or false"
    return None


def _describe(name: str, info: FieldInfo) -> str:
    notes = [n for n in (field_unit(name), field_range(info)) if n]
    text = info.description or name
    return f"{text} ({'; '.join(notes)})" if notes else text


def _toml_value(value: Any) -> str:
    """One value in TOML syntax: arrays inline, tuples as arrays, enums as their values."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    line = tomli_w.dumps({"v": value})
    return line.split("=", 1)[1].strip()


def _toml_key(key: str) -> str:
    return tomli_w.dumps({key: 0}).split("=", 1)[0].strip()


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, width=97, break_on_hyphens=False)]


def _emit_table(model: BaseModel, path: list[str], lines: list[str]) -> None:
    """Scalars of ``model`` first, then its sub-tables (TOML requires that order)."""
    deferred: list[tuple[str, FieldInfo, Any]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        is_table = isinstance(value, BaseModel | dict)
        is_array_of_tables = (
            isinstance(value, list) and bool(value) and all(isinstance(v, BaseModel) for v in value)
        )
        if is_table or is_array_of_tables:
            deferred.append((name, info, value))
            continue
        lines.extend(_comment(_describe(name, info)))
        if value is None:
            lines.append(f"# {name} =   (not set by default)")
        else:
            lines.append(f"{_toml_key(name)} = {_toml_value(value)}")
    for name, info, value in deferred:
        sub_path = [*path, name]
        dotted = ".".join(sub_path)
        lines.append("")
        lines.extend(_comment(_describe(name, info)))
        if isinstance(value, BaseModel):
            lines.append(f"[{dotted}]")
            _emit_table(value, sub_path, lines)
        elif isinstance(value, dict):
            lines.append(f"[{dotted}]")
            unit = field_unit(name)
            for key, item in value.items():
                lines.append(f"# {name} entry {key!r}" + (f" ({unit})" if unit else ""))
                lines.append(f"{_toml_key(key)} = {_toml_value(item)}")
        else:
            for index, item in enumerate(value):
                if index:
                    lines.append("")
                lines.append(f"[[{dotted}]]")
                _emit_table(item, sub_path, lines)


def model_to_commented_toml(model: BaseModel, header: str = "") -> str:
    """``model`` as TOML with a ``# description (unit; range)`` comment above every field."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if not isinstance(value, BaseModel):
            raise TypeError(f"top-level field {name!r} must be a section (a model)")
        lines.append("")
        lines.extend(_comment(_describe(name, info)))
        lines.append(f"[{name}]")
        _emit_table(value, [name], lines)
    return "\n".join(lines) + "\n"


# --- validation errors that name field, value and allowed range -------------------------


def _field_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, FieldInfo] | None:
    """The model field a pydantic error location ends on, or None (list items, dict keys)."""
    current: Any = root
    found: tuple[str, FieldInfo] | None = None
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            found = (str(part), info)
            current = _strip_optional(info.annotation)
            continue
        found = None
        origin = get_origin(current)
        if origin in (list, tuple, dict):
            args = get_args(current)
            current = args[-1] if args else Any
        else:
            return None
    return found


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per error: ``path = value: message (allowed: range, unit)``."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        message = str(error["msg"])
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            parent = _field_at(root, loc[:-1]) if len(loc) > 1 else None
            parent_model = _strip_optional(parent[1].annotation) if parent else root
            known = ""
            if isinstance(parent_model, type) and issubclass(parent_model, BaseModel):
                known = f" (allowed fields: {', '.join(parent_model.model_fields)})"
            problems.append(f"{path}: unknown field{known}")
            continue
        field = _field_at(root, loc)
        notes: list[str] = []
        if field is not None:
            name, info = field
            allowed_range = field_range(info)
            if allowed_range and error["type"] != "literal_error":  # pydantic lists choices
                notes.append(f"allowed: {allowed_range}")
            unit = field_unit(name)
            if unit:
                notes.append(f"unit: {unit}")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        if error["type"].startswith("value_error") and isinstance(value, dict):
            problems.append(f"{path}: {message.removeprefix('Value error, ')}")
        elif error["type"] == "missing":
            problems.append(f"{path}: required field missing{suffix}")
        else:
            problems.append(f"{path} = {value!r}: {message}{suffix}")
    return problems
