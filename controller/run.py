"""``neurostim run``: the closed loop against one device URL, with audit log and recording."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from controller.audit import AuditLog
from controller.config import ControllerConfig
from controller.core import AnnotationSource, ControllerCore, CoreStats, RecorderFactory
from controller.loop import Backoff, ControllerLoop, LoopReport
from controller.recorder import EdfRecorder
from firmware_bridge.clock import Clock
from firmware_bridge.messages import DeviceInfo


@dataclass
class RunResult:
    loop: LoopReport
    core: CoreStats
    final_state: str | None
    audit_path: str | None
    record_path: str | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def edf_recorder_factory(path: Path, start: datetime) -> RecorderFactory:
    def build(info: DeviceInfo) -> EdfRecorder:
        return EdfRecorder(
            path,
            labels=list(info.labels),
            scales_uv_per_count=list(info.scales_uv_per_count),
            sampling_rate_hz=info.sampling_rate_hz,
            start=start,
            recording_info=f"neurostim {info.device_id} {info.firmware_version}",
        )

    return build


def build_core(
    config: ControllerConfig,
    audit_path: Path | None,
    record_path: Path | None,
    start: datetime,
    annotation_source: AnnotationSource | None = None,
) -> ControllerCore:
    audit = AuditLog(audit_path, flush_interval_s=config.recording.audit_flush_interval_s)
    factory = edf_recorder_factory(record_path, start) if record_path is not None else None
    return ControllerCore(config, audit, factory, annotation_source)


async def run_controller(
    url: str,
    config: ControllerConfig,
    clock: Clock,
    start: datetime,
    duration_s: float | None = None,
    audit_path: Path | None = None,
    record_path: Path | None = None,
    stop: asyncio.Event | None = None,
    annotation_source: AnnotationSource | None = None,
) -> RunResult:
    """``annotation_source``: extra recording annotations, e.g. a simulated device's ground
    truth supplied by the composition root (the controller never sees the simulator)."""
    core = build_core(config, audit_path, record_path, start, annotation_source)
    loop_cfg = config.loop
    loop = ControllerLoop(
        url,
        core,
        clock,
        backoff=Backoff(loop_cfg.reconnect_backoff_initial_s, loop_cfg.reconnect_backoff_max_s),
        event_queue_size=loop_cfg.event_queue_size,
        shutdown_timeout_s=loop_cfg.shutdown_ramp_down_timeout_s,
    )
    try:
        report = await loop.run(duration_s, stop)
    except BaseException:
        core.close(clock.now())
        raise
    final = core.last_output.state.value if core.last_output is not None else None
    return RunResult(
        report,
        core.stats,
        final,
        str(audit_path) if audit_path else None,
        str(record_path) if record_path else None,
    )
