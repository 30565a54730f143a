"""``neurostim run``: the closed loop against one device URL, with audit log and recording."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from controller.audit import AuditLog
from controller.config import ControllerConfig
from controller.core import ControllerCore, CoreStats
from controller.loop import ControllerLoop, LoopReport
from controller.node import AnnotationSource, ControllerNode, RecordingFactory, RecordingOpener
from controller.recorder import EdfRecorder
from controller.recording_sink import RecordingSink
from controller.writer_thread import WriterThread
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


def edf_recording_factory(path: Path, start: datetime, threaded: bool) -> RecordingFactory:
    """The recording, built once the device has said what it records."""

    def build(info: DeviceInfo) -> RecordingSink:
        recorder = EdfRecorder(
            path,
            labels=list(info.labels),
            scales_uv_per_count=list(info.scales_uv_per_count),
            sampling_rate_hz=info.sampling_rate_hz,
            start=start,
            recording_info=f"neurostim {info.device_id} {info.firmware_version}",
        )
        return RecordingSink(recorder, WriterThread("edf-writer") if threaded else None)

    return build


def build_node(
    config: ControllerConfig,
    audit_path: Path | None,
    record_path: Path | None,
    start: datetime,
    annotation_source: AnnotationSource | None = None,
    *,
    threaded_writes: bool = False,
    key: bytes | None = None,
    client_name: str = "neurostim controller",
    retry_first_connect: bool = False,
    recording_start: Callable[[], datetime] | None = None,
) -> ControllerNode:
    """A node with its audit log and recording; ``threaded_writes`` moves the file writes
    off the caller's thread (the async shell); lockstep runs keep them inline.
    ``recording_start``: the date in the header of a recording the operator starts later
    (``ControllerNode.start_recording``); default ``start``."""
    writer = WriterThread("audit-writer") if threaded_writes and audit_path else None
    audit = AuditLog(
        audit_path, flush_interval_s=config.recording.audit_flush_interval_s, writer=writer
    )
    factory = (
        edf_recording_factory(record_path, start, threaded_writes)
        if record_path is not None
        else None
    )
    started = recording_start or (lambda: start)

    def open_recording(path: Path) -> RecordingFactory:
        return edf_recording_factory(path, started(), threaded_writes)

    opener: RecordingOpener = open_recording
    return ControllerNode(
        ControllerCore(config),
        audit,
        recording_factory=factory,
        annotation_source=annotation_source,
        key=key,
        client_name=client_name,
        retry_first_connect=retry_first_connect,
        recording_opener=opener,
    )


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
    key: bytes | None = None,
) -> RunResult:
    """``annotation_source``: extra recording annotations, e.g. a simulated device's ground
    truth supplied by the composition root (the controller never sees the simulator)."""
    node = build_node(
        config,
        audit_path,
        record_path,
        start,
        annotation_source,
        threaded_writes=True,
        key=key,
    )
    loop = ControllerLoop(url, node, clock)
    try:
        report = await loop.run(duration_s, stop)
    except BaseException:
        node.close(clock.now())
        raise
    core = node.core
    final = core.last_output.state.value if core.last_output is not None else None
    return RunResult(
        report,
        core.stats,
        final,
        str(audit_path) if audit_path else None,
        str(record_path) if record_path else None,
    )
