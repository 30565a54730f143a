"""``neurostim console``: the bench console on one device (default: the embedded simulated
patient, fast-forwarded through the detector's calibration, then in real time)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from controller.config import ConfigError, ControllerConfig, load_config
from controller.envelope import EnvelopeConflict
from controller.run import build_node
from firmware_bridge.clock import AsyncioClock, Clock, ScaledClock
from firmware_bridge.errors import DeviceUnreachable, ProtocolMismatch
from firmware_bridge.exit_codes import ExitCode
from firmware_bridge.keys import KeyFileError, load_key
from firmware_bridge.transports.registry import transports
from firmware_bridge.url import DeviceURLError, SimURL, parse_broker_url, parse_device_url

if TYPE_CHECKING:
    from tui.app import ConsoleApp
    from tui.fleet import PresenceListener

#: The demo patient: a compressed cycle whose 1 h prodrome starts a minute in.
DEFAULT_DEVICE = "sim://console-demo?seed=1"
#: The demo patient's own calibration (``neurostim calibrate`` on its run-in; made by
#: ``tui/demo/make-calibration.sh``): the detector starts calibrated.
DEMO_CALIBRATION = "console-demo-calibration.json"
#: How much of the demo's prodrome is fast-forwarded: its build-up (the signature's
#: expression ramps in over the first 30 min, then the detector's 5 min smoothing and
#: most of its 10 min onset time), so that the operator arrives in SUSPECT and the
#: detection and the stimulation session it starts come in the first minutes of real time.
DEMO_FAST_FORWARD_S = 52 * 60.0

#: Set by the composition root: hands the clock to the simulated devices behind sim://.
SimClockSetter = Callable[[Clock], None]
#: Broker URL -> the listener that feeds a fleet view's board.
PresenceListenerFactory = Callable[[str], "PresenceListener"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "console",
        help="the bench console: watch and command one device live (Textual)",
        description=(
            "A terminal console on the closed loop: device and link, live traces, "
            "features, detector, stimulation against the safety envelope, the audit "
            "log; E-stop on e. Without --device it runs the embedded simulated patient, "
            "fast-forwarded through the detector's calibration, then in real time."
        ),
    )
    parser.add_argument("--device", default=DEFAULT_DEVICE, help="device URL (sim://, serial://…)")
    parser.add_argument(
        "--broker",
        help="open on the fleet view: devices announcing presence on this MQTT broker "
        "(mqtt://HOST:PORT); enter opens one",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="a simulated device runs this many times faster than real time (sim:// only)",
    )
    parser.add_argument(
        "--no-fast-forward",
        action="store_true",
        help="run the calibration in real time too (sim:// only)",
    )
    parser.add_argument("--config", type=Path, help="controller configuration TOML")
    parser.add_argument("--record", type=Path, help="write an EDF+ recording here")
    parser.add_argument("--audit", type=Path, help="append the hash-chained audit log here")
    parser.add_argument("--key-file", help="sign commands with the key from this key file")
    parser.add_argument("--device-id", help="which key of the key file to use")
    parser.set_defaults(handler=_console_command)


def _console_command(args: argparse.Namespace) -> int:
    from tui.app import ConsoleApp
    from tui.session import ConsoleSession

    demo = args.device == DEFAULT_DEVICE and not args.config and not args.broker
    try:
        config = (
            load_config(args.config)
            if args.config
            else demo_config()
            if demo
            else ControllerConfig()
        )
        key = load_key(args.key_file, args.device_id) if args.key_file else None
        url = parse_device_url(args.device)
    except (ConfigError, KeyFileError, DeviceURLError) as exc:
        print(f"neurostim console: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if args.broker:
        from tui.presence import mqtt_presence_listener

        try:
            parse_broker_url(args.broker)
        except DeviceURLError as exc:
            print(f"neurostim console: {exc}", file=sys.stderr)
            return ExitCode.USAGE
        return _fleet(args, mqtt_presence_listener)
    if not args.speed > 0:
        print("neurostim console: --speed must be > 0", file=sys.stderr)
        return ExitCode.USAGE
    simulated = isinstance(url, SimURL)
    set_sim_clock: SimClockSetter | None = getattr(args, "use_sim_clock", None)
    sim_clock: ScaledClock | None = None
    clock: Clock = AsyncioClock()
    if simulated and set_sim_clock is not None:
        sim_clock = ScaledClock(rate=args.speed)
        set_sim_clock(sim_clock)
        clock = sim_clock
    elif args.speed != 1.0:
        print("neurostim console: --speed paces a simulated device only", file=sys.stderr)
        return ExitCode.USAGE
    audit_path = args.audit or _optional_path(config.recording.audit_path)
    record_path = args.record or _optional_path(config.recording.edf_path)
    node = build_node(
        config,
        audit_path,
        record_path,
        datetime.now(UTC),
        getattr(args, "annotation_source", None),
        threaded_writes=True,
        key=key,
        client_name="neurostim console",
    )
    session = ConsoleSession(
        str(url),
        node,
        clock,
        transports,
        sim_clock,
        ramp_up_ma_per_s=config.envelope.ramp_up_ma_per_s,
        ramp_down_ma_per_s=config.envelope.ramp_down_ma_per_s,
        impedance_window_ohm=(config.envelope.impedance_min_ohm, config.envelope.impedance_max_ohm),
    )
    fast_forward = simulated and not args.no_fast_forward
    app = ConsoleApp(
        session,
        fast_forward_calibration=fast_forward,
        fast_forward_after_s=DEMO_FAST_FORWARD_S if demo and fast_forward else 0.0,
    )
    root = logging.getLogger()
    saved = root.handlers[:]
    # The terminal belongs to the console: log lines go to its status line instead.
    root.handlers = [ConsoleLogHandler(app)]
    try:
        app.run()
    finally:
        root.handlers = saved
    return _exit_report(app.failure, session)


class ConsoleLogHandler(logging.Handler):
    """Warnings (link lost, reconnect failed, device misbehaves) as the console's note."""

    def __init__(self, app: ConsoleApp) -> None:
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        self.app.note = f"{record.levelname.lower()}: {record.getMessage()}"


def _fleet(args: argparse.Namespace, listener_for: PresenceListenerFactory) -> int:
    """The fleet view; each device opened runs in the console, then back to the fleet."""
    from tui.fleet import FleetApp, PresenceBoard

    board = PresenceBoard(stale_after_s=None)  # the broker's Last Will says offline
    while True:
        chosen = FleetApp(board, args.broker, listener=listener_for(args.broker)).run()
        if chosen is None:
            return 0
        args.device, args.broker = chosen, None
        code = _console_command(args)
        if code:
            return code


def _exit_report(failure: BaseException | None, session: object) -> int:
    from tui.session import ConsoleSession

    assert isinstance(session, ConsoleSession)
    if isinstance(failure, DeviceURLError):
        print(f"neurostim console: {failure}", file=sys.stderr)
        return ExitCode.USAGE
    if isinstance(failure, ProtocolMismatch):
        print(f"neurostim console: protocol version mismatch: {failure}", file=sys.stderr)
        return ExitCode.PROTOCOL
    if isinstance(failure, DeviceUnreachable):
        print(f"neurostim console: cannot reach the device: {failure}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    if isinstance(failure, EnvelopeConflict):
        print(f"neurostim console: configuration exceeds the device: {failure}", file=sys.stderr)
        return ExitCode.ENVELOPE
    if failure is not None:
        print(f"neurostim console: {failure}", file=sys.stderr)
        return ExitCode.FAILED
    outcome = session.node.stop_outcome
    if outcome is not None:
        print(
            f"neurostim console: stopped by the {outcome.reason}, ramped down: "
            f"{outcome.ramped_down}" + (f" ({outcome.error})" if outcome.error else "")
        )
    return 0


def demo_config() -> ControllerConfig:
    """The defaults, with the demo patient's calibration."""
    calibration = resources.files("tui.demo").joinpath(DEMO_CALIBRATION)
    return ControllerConfig.model_validate({"detector": {"calibration_file": str(calibration)}})


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None
