"""The virtual device firmware: a sans-IO core in virtual or real time.

It speaks the protocol through ``firmware_bridge.DeviceSession`` and knows
nothing of the controller. Feed it received bytes (``receive_data``), move its
time (``advance_to``), and send what ``data_to_send`` returns. It streams
SAMPLES from a pluggable ``SignalSource``, enforces its own hard limits (any
out-of-range STIM_SET is NACKed and changes nothing), slews amplitude at no
more than its maximum ramp rate, runs a watchdog that ramps stimulation to zero
when the controller goes silent, honours ESTOP at once in every state (the latch
clears only by ESTOP_CLEAR), ends the session on BYE, sends STATUS at once on every
change of its fault flags, and models a battery and electrode impedances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.events import (
    ByeRequested,
    ControllerReturned,
    EstopClearRequested,
    EstopRequested,
    Event,
    HandshakeCompleted,
    MarkerReceived,
    StimSetRequested,
    WatchdogExpired,
)
from firmware_bridge.framing import PROTOCOL_MAJOR, PROTOCOL_MINOR
from firmware_bridge.messages import (
    ChannelInfo,
    DeviceInfo,
    DeviceLimits,
    DeviceState,
    Fault,
    FaultCode,
    MsgType,
    NackReason,
    Status,
)
from firmware_bridge.session import DeviceSession
from simulator.devices import DEFAULT_DEVICE, DevicePreset, device_preset, skin_impedance_ohm
from simulator.quantise import wire_counts
from simulator.signals import SignalSource, StimulationInput
from simulator.stimulator import OutputStage, check_hard_limits


def default_limits() -> DeviceLimits:
    """Hard limits of the default simulated stimulator: the external supraorbital e-TNS
    preset (Cefaly waveform, at most 16 mA; sources in ``simulator.devices``)."""
    return device_preset(DEFAULT_DEVICE).limits


_FORBIDDING_FAULTS = frozenset({FaultCode.IMPEDANCE, FaultCode.BATTERY_EMPTY})
#: Faults that stop or forbid stimulation: the heartbeat then says state 3 (fault).
_STATE_FAULTS = frozenset(
    {FaultCode.WATCHDOG, FaultCode.ESTOP, FaultCode.IMPEDANCE, FaultCode.BATTERY_EMPTY}
)


@dataclass(frozen=True)
class _ImpedanceView:
    """What the firmware derives from one impedance reading (recomputed only when the
    reading changes: impedances move only when the source's sensor faults do)."""

    reading: bytes | None  # the source's override as bytes; None: the nominal impedances
    stim_mean_ohm: float  # mean over the stimulation electrodes
    stim_out_of_window: bool  # a stimulation electrode outside the impedance window
    status_ohm: tuple[int, ...]  # as STATUS carries them: whole ohms, clamped to u32


@dataclass(frozen=True)
class FirmwareConfig:
    device_id: str = "SIM-0001"
    firmware_version: str = "sim-0.1.0"
    samples_per_frame: int = 10  # 40 ms frames at 250 Hz
    heartbeat_interval_ms: int = 250
    watchdog_ms: int = 1000
    scale_uv_per_count: float = 0.5  # ±16.4 mV full scale: room for CSD DC shifts
    stim_channels: tuple[int, ...] = (0,)
    #: The device preset (simulator.devices) whose electrode impedance and battery
    #: recharge this firmware models; the fields below default to its values.
    device: str = DEFAULT_DEVICE
    electrode_area_cm2: float = device_preset(DEFAULT_DEVICE).electrode_area_cm2
    limits: DeviceLimits = field(default_factory=default_limits)
    status_interval_s: float = 1.0
    stim_state_interval_s: float = 1.0
    #: Samples asked from the signal source at once (a multiple of samples_per_frame);
    #: larger blocks are faster but the signal sees stimulation changes later.
    source_block_samples: int = 10
    impedance_window_ohm: tuple[float, float] = device_preset(DEFAULT_DEVICE).impedance_window_ohm
    battery_capacity_j: float = device_preset(DEFAULT_DEVICE).battery_capacity_j
    idle_power_w: float = device_preset(DEFAULT_DEVICE).idle_power_w
    battery_start_pct: float = 100.0
    signing_key: bytes | None = None
    seed: int = 0


def firmware_config_for(device: str, **overrides: object) -> FirmwareConfig:
    """A FirmwareConfig with ``device``'s limits, electrode, impedance window and battery."""
    preset = device_preset(device)
    values: dict[str, object] = {
        "device": preset.name,
        "electrode_area_cm2": preset.electrode_area_cm2,
        "limits": preset.limits,
        "impedance_window_ohm": preset.impedance_window_ohm,
        "battery_capacity_j": preset.battery_capacity_j,
        "idle_power_w": preset.idle_power_w,
    }
    values.update(overrides)
    return FirmwareConfig(**values)  # type: ignore[arg-type]


#: The stimulation electrode's drying impedance is re-evaluated once per this interval.
_SKIN_IMPEDANCE_UPDATE_S = 3600.0


class VirtualFirmware:
    """The simulated device, driven by injected time."""

    def __init__(
        self, source: SignalSource, config: FirmwareConfig = FirmwareConfig(), start_s: float = 0.0
    ) -> None:
        """``start_s``: the clock reading at power-up (sample 0 is acquired then)."""
        if config.source_block_samples % config.samples_per_frame:
            raise ValueError("source_block_samples must be a multiple of samples_per_frame")
        self.config = config
        self.source = source
        fs = source.sampling_rate_hz
        if fs != int(fs):
            raise ValueError(f"sampling rate must be a whole number of Hz, got {fs}")
        self.sampling_rate_hz = int(fs)
        self._samples_per_frame = config.samples_per_frame  # read at every step
        self.info = DeviceInfo(
            major=PROTOCOL_MAJOR,
            minor=PROTOCOL_MINOR,
            device_id=config.device_id,
            firmware_version=config.firmware_version,
            sampling_rate_hz=self.sampling_rate_hz,
            samples_per_frame=config.samples_per_frame,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            watchdog_ms=config.watchdog_ms,
            channels=tuple(
                ChannelInfo(s.label, config.scale_uv_per_count, s.x_mm, s.y_mm)
                for s in source.sites
            ),
            stim_channels=config.stim_channels,
            n_electrodes=len(source.sites),
            electrode_area_cm2=config.electrode_area_cm2,
            limits=config.limits,
        )
        self.session = DeviceSession(self.info, key=config.signing_key)
        self.start_s = start_s
        self.output = OutputStage(config.limits.max_ramp_rate_ma_per_s, t_s=start_s)
        rng = np.random.default_rng(config.seed)
        # Lead impedance 500-1500 Ω (the DBS and RNS safety literature).
        self._nominal_impedance_ohm = rng.uniform(500.0, 1500.0, len(source.sites))
        self._stim_index = list(config.stim_channels)
        self._preset: DevicePreset = device_preset(config.device)
        self._skin_update = -1
        self._skin_ohm = 0.0
        self._update_skin_impedance(start_s)
        recharge_h = self._preset.recharge_interval_h
        self._recharge_every_s = None if recharge_h is None else recharge_h * 3600.0
        self._next_recharge_s = (
            math.inf if self._recharge_every_s is None else start_s + self._recharge_every_s
        )
        self._impedance_view: _ImpedanceView | None = None
        lo, hi = config.impedance_window_ohm
        self._impedance_fault_text = f"stim electrode impedance outside {lo:.0f}-{hi:.0f} Ω"
        self._sample_bytes = 2 * len(source.sites)  # one sample of every channel, int16
        self.battery_pct = config.battery_start_pct
        self._battery_t = start_s
        self._battery_j = config.battery_capacity_j * config.battery_start_pct / 100.0
        self.now_s = start_s
        self.samples_acquired = 0  # sets _samples_acquired and _frame_end_s
        self._block_wire = b""  # the current source block's counts in SAMPLES wire order
        self._block_samples = 0  # samples in it
        self._block_first = 0
        self._block_stim = StimulationInput()  # what the last source block was told
        self._block_stim_key = (0.0, 0.0, 0.0)
        self._next_status_s: float | None = None
        self._next_state_report_s: float | None = None
        self._faults_active: set[FaultCode] = set()
        self._fault_flags = 0  # _faults_active as STATUS carries it: bit 1 << code
        #: The condition faults' (impedance, battery low, battery empty) last evaluation:
        #: they change nowhere else, so an equal evaluation changes no fault.
        self._condition_seen = (False, False, False)
        self._status_due = False  # the fault flags changed since the last STATUS
        self._status: Status | None = None  # the last STATUS sent
        self.goodbyes = 0  # BYEs received: sessions the controller ended on purpose
        self.markers_received: list[MarkerReceived] = []
        self.commands_applied = 0
        self.commands_refused = 0

    # -- the sans-IO surface -----------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        # advance_to(now) first unless the device is already at ``now`` (advance_to(now) ran,
        # or it was powered up then) and nothing can be due again at ``now``: no ramp moving
        # the output and no STATUS owed. Every timer served at ``now`` is rescheduled strictly
        # after it, and no event received since (ack, heartbeat, HELLO, BYE) sets one at or
        # before it, so running advance_to(now) again would change nothing.
        out = self.output
        if (
            now != self.now_s
            or self._status_due
            or out.t_s != now
            or self._battery_t != now
            or out.ramping
        ):
            self.advance_to(now)
        events = self.session.receive_data(data, now)
        if events:  # rarely: nearly all it hears is a heartbeat
            for event in events:
                self._on_event(event, now)
        if self._status_due:
            self._send_status(now)

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def next_deadline(self) -> float:
        """The next instant the firmware has something to do (a frame is always due)."""
        # The first smallest of: frame end, session, status, state report, ramp end.
        due = self._frame_end_s
        d = self.session.next_deadline()
        if d is not None and d < due:
            due = d
        d = self._next_status_s
        if d is not None and d < due:
            due = d
        d = self._next_state_report_s
        if d is not None and d < due:
            due = d
        out = self.output
        if out.amplitude_ma != out.target_ma:  # ramping: ramp_end_s() is None otherwise
            d = out.ramp_end_s()
            if d is not None and d < due:
                due = d
        return due

    def advance_to(self, now: float) -> None:
        """Run the device up to ``now``: acquire and send samples, ramps, timers."""
        if now < self.now_s:
            return
        out = self.output
        if (
            now != self.now_s
            or out.t_s != now
            or self._battery_t != now
            or out.ramping
        ):
            # Otherwise (called again at the same instant, output not ramping) no frame can be
            # due and a step of the output to ``now`` would change nothing: skip both.
            while True:
                t_frame = self._frame_end_s
                frame_due = t_frame <= now
                if frame_due:
                    t = t_frame
                elif out.t_s != now or self._battery_t != now or out.ramping:
                    t = now
                else:
                    # Output and battery are already at ``now`` (a frame ended there) and
                    # nothing ramps: another step would find no time passed, nothing to snap.
                    break
                # The output stage moves to ``t``; the battery drains by what the device used
                # since the last step: idle power plus the stimulation's TEED at the step's
                # mean amplitude.
                before = out.amplitude_ma
                finished = out.advance_to(t)
                dt = t - self._battery_t
                self._battery_t = t
                if dt > 0.0:
                    amp = 0.5 * (before + out.amplitude_ma)
                    teed_w = 0.0
                    if amp > 0.0:
                        imp = self._impedances().stim_mean_ohm
                        # TEED per second = I² R f PW (Koss 2005), twice for the biphasic pulse.
                        amp2 = (amp * 1e-3) ** 2
                        teed_w = amp2 * imp * out.frequency_hz * out.pulse_width_us * 1e-6 * 2
                    config = self.config
                    left_j = self._battery_j - (config.idle_power_w + teed_w) * dt
                    self._battery_j = left_j if left_j > 0.0 else 0.0  # max(0.0, left_j)
                    if t >= self._next_recharge_s:  # the wearable is recharged (overnight)
                        self._battery_j = config.battery_capacity_j
                        while self._next_recharge_s <= t:
                            self._next_recharge_s += self._recharge_every_s or math.inf
                    self.battery_pct = 100.0 * self._battery_j / config.battery_capacity_j
                if finished:
                    self._report_state(t)
                if not frame_due:
                    break
                self._acquire_frame(t_frame)
        events = self.session.handle_timeout(now)
        if events:
            for event in events:
                self._on_event(event, now)
        if self._status_due or (self._next_status_s is not None and now >= self._next_status_s):
            self._send_status(now)
        if self._next_state_report_s is not None and now >= self._next_state_report_s:
            self._report_state(now)
        self.now_s = now

    # -- internals ---------------------------------------------------------------------

    def _index_time(self, index: int) -> float:
        return self.start_s + index / self.sampling_rate_hz

    @property
    def samples_acquired(self) -> int:
        """Sample index of the next sample to acquire (counts from power-up)."""
        return self._samples_acquired

    @samples_acquired.setter
    def samples_acquired(self, index: int) -> None:
        # The end of the frame that sample is in, kept with it: read at every step
        # (next_deadline, advance_to), changed twice a second.
        self._samples_acquired = index
        spf = self._samples_per_frame
        self._frame_end_s = self._index_time((index // spf + 1) * spf)

    def _acquire_frame(self, t_frame: float) -> None:
        spf = self._samples_per_frame
        first = self._samples_acquired
        offset = first - self._block_first
        if offset >= self._block_samples:
            # Wire order once per block: each frame is then a slice of it, byte for byte what
            # session.send_samples(first, counts[:, offset : offset + spf]) would send.
            self._block_wire = self._read_block()
            self._block_samples = len(self._block_wire) // self._sample_bytes
            self._block_first = first
            offset = 0
        self.samples_acquired = first + spf
        if self.session.handshaken:
            step = self._sample_bytes
            self.session.send_samples_interleaved(
                first, self._block_wire[offset * step : (offset + spf) * step], t_frame
            )

    def _read_block(self) -> bytes:
        """The next source block, quantised to counts in SAMPLES wire order."""
        out = self.output
        delivered = (
            out.amplitude_ma if out.delivering else 0.0,
            float(out.pulse_width_us),
            out.frequency_hz,
        )
        stim = self._block_stim
        if delivered != self._block_stim_key:  # frozen: the last one serves while equal
            stim = self._block_stim = StimulationInput(*delivered)
            self._block_stim_key = delivered
        uv = self.source.read(self.config.source_block_samples, stim)
        return wire_counts(uv, self.config.scale_uv_per_count)

    def _impedances(self) -> _ImpedanceView:
        override = self.source.impedance_ohm()
        raw = None if override is None else np.asarray(override, float)
        reading = None if raw is None else raw.tobytes()
        view = self._impedance_view
        if view is None or view.reading != reading:
            # The view also depends on the skin electrode's impedance: its hourly update
            # drops the view (_update_skin_impedance), so the source's reading is the key.
            impedances = self._nominal_impedance_ohm if raw is None else raw
            if raw is not None and self._skin_update >= 0:
                # The source reports its recording electrodes; the stimulation electrode is
                # the skin electrode, never below its drying impedance (a sensor fault may
                # raise it).
                impedances = impedances.copy()
                stim = impedances[self._stim_index]
                impedances[self._stim_index] = np.maximum(stim, self._skin_ohm)
            lo, hi = self.config.impedance_window_ohm
            stim = impedances[self._stim_index]
            view = self._impedance_view = _ImpedanceView(
                reading,
                float(np.mean(stim)),
                bool(np.any((stim < lo) | (stim > hi))),
                tuple(int(min(max(v, 0.0), 0xFFFFFFFF)) for v in impedances.tolist()),
            )
        return view

    def _set_fault(self, code: FaultCode, active: bool, text: str, now: float) -> None:
        if active == (code in self._faults_active):
            return
        if active:
            self._faults_active.add(code)
            self._fault_flags |= 1 << int(code)
        else:
            self._faults_active.discard(code)
            self._fault_flags &= ~(1 << int(code))
        self.session.send_fault(Fault(int(code), active, text), now)
        self._status_due = True  # STATUS follows every change of the fault flags
        self.session.device_state = self._device_state()  # and the heartbeat's state

    def _update_condition_faults(self, now: float, view: _ImpedanceView | None = None) -> None:
        """Raise or clear the faults that follow the device's condition: the impedances
        (``view``, when the caller holds the reading of now) and the battery as last drained."""
        bad = (self._impedances() if view is None else view).stim_out_of_window
        pct = self.battery_pct
        condition = (bad, pct < 15.0, pct < 2.0)
        if condition != self._condition_seen:
            self._condition_seen = condition
            self._set_fault(FaultCode.IMPEDANCE, bad, self._impedance_fault_text, now)
            self._set_fault(FaultCode.BATTERY_LOW, condition[1], "battery below 15 %", now)
            self._set_fault(FaultCode.BATTERY_EMPTY, condition[2], "battery below 2 %", now)
        if self._forbids_stimulation() and (self.output.enabled or self.output.amplitude_ma > 0):
            self.output.ramp_down(watchdog=False)
            self._report_state(now)

    def _forbids_stimulation(self) -> bool:
        return not self._faults_active.isdisjoint(_FORBIDDING_FAULTS)

    def _update_skin_impedance(self, now: float) -> None:
        """A skin electrode's impedance rises as its gel dries (simulator.devices); the
        nominal value of the stimulation electrodes follows it, updated hourly."""
        preset = self._preset
        if preset.impedance_start_ohm == preset.impedance_dry_ohm:
            return  # no drying model (an implanted lead keeps its nominal impedance)
        update = int((now - self.start_s) // _SKIN_IMPEDANCE_UPDATE_S)
        if update == self._skin_update:
            return
        self._skin_update = update
        t_s = update * _SKIN_IMPEDANCE_UPDATE_S
        self._skin_ohm = skin_impedance_ohm(preset, t_s)
        self._nominal_impedance_ohm[self._stim_index] = self._skin_ohm
        self._impedance_view = None

    def _send_status(self, now: float) -> None:
        self._update_skin_impedance(now)
        view = self._impedances()  # nothing below changes the reading or the skin
        self._update_condition_faults(now, view)
        self._status_due = False
        self.session.send_status(
            self._status_of(math.floor(self.battery_pct), self._fault_flags, view.status_ohm),
            now,
        )
        # Scheduled STATUS only within a session (none before a handshake or after BYE).
        self._next_status_s = (
            now + self.config.status_interval_s if self.session.handshaken else None
        )

    def _status_of(
        self, battery_pct: int, fault_flags: int, impedance_ohm: tuple[int, ...]
    ) -> Status:
        """The STATUS of these values: the last one again while they are equal (they change
        a few times a day, and a frozen message encodes the same bytes), else a new one."""
        status = self._status
        if (
            status is None
            or status.battery_pct != battery_pct
            or status.fault_flags != fault_flags
            or status.impedance_ohm != impedance_ohm
        ):
            status = self._status = Status(battery_pct, fault_flags, impedance_ohm)
        return status

    def _report_state(self, now: float) -> None:
        self.session.device_state = self._device_state()
        self.session.send_stim_state(self.output.snapshot(), now)
        out = self.output
        periodic = out.enabled or out.ramping
        self._next_state_report_s = now + self.config.stim_state_interval_s if periodic else None

    def _device_state(self) -> int:
        if not self._faults_active.isdisjoint(_STATE_FAULTS):
            return int(DeviceState.FAULT)
        if self.output.delivering:
            return int(DeviceState.STIMULATING)
        return int(DeviceState.STREAMING if self.session.handshaken else DeviceState.IDLE)

    def _on_event(self, event: Event, now: float) -> None:
        if isinstance(event, HandshakeCompleted):
            # The state reports every handshake is followed by: the latch, the output and
            # the fault flags are what a reconnecting controller must see first.
            self._report_state(now)
            self._send_status(now)
        elif isinstance(event, StimSetRequested):
            self._on_stim_set(event, now)
        elif isinstance(event, EstopRequested):
            self.output.stop_now(event.command_id)
            self.session.ack(event.command_id, MsgType.ESTOP, now)
            self._set_fault(FaultCode.ESTOP, True, "emergency stop", now)
            self._report_state(now)
        elif isinstance(event, EstopClearRequested):
            self.output.estop_latched = False
            self.session.ack(event.command_id, MsgType.ESTOP_CLEAR, now)
            self._set_fault(FaultCode.ESTOP, False, "cleared by ESTOP_CLEAR", now)
            self._report_state(now)
        elif isinstance(event, ByeRequested):
            self.goodbyes += 1
            self._next_status_s = None  # the session is over: nothing scheduled
            if self.output.enabled or self.output.amplitude_ma > 0:
                self.output.ramp_down(watchdog=False)  # "already off" was not true
            self.session.ack(event.command_id, MsgType.BYE, now)
            self.output.watchdog_tripped = False
            self._set_fault(FaultCode.WATCHDOG, False, "controller said goodbye", now)
            self._report_state(now)
        elif isinstance(event, WatchdogExpired):
            self.output.ramp_down()
            self._set_fault(
                FaultCode.WATCHDOG, True, f"controller silent for {event.silent_s:.3f} s", now
            )
            self._report_state(now)
        elif isinstance(event, ControllerReturned):
            self.output.watchdog_tripped = False
            self._set_fault(FaultCode.WATCHDOG, False, "controller heard again", now)
            self._report_state(now)
        elif isinstance(event, MarkerReceived):
            self.markers_received.append(event)

    def _on_stim_set(self, event: StimSetRequested, now: float) -> None:
        setting = event.setting
        reason = check_hard_limits(setting, self.config.limits, self.config.electrode_area_cm2)
        if reason is None and setting.enabled:
            if self.output.estop_latched:
                reason = NackReason.ESTOP_LATCHED
            else:
                self._update_condition_faults(now)
                if self._forbids_stimulation():
                    reason = NackReason.FAULT_ACTIVE
        if reason is not None:
            self.commands_refused += 1
            self.session.nack(event.command_id, MsgType.STIM_SET, reason, now)
            return
        self.output.apply(event.command_id, setting)
        self.commands_applied += 1
        self.session.ack(event.command_id, MsgType.STIM_SET, now)
        self._report_state(now)

    @property
    def on_time(self) -> Callable[[float], None]:
        """Lockstep hook (firmware_bridge.lockstep): ``advance_to`` itself, that of a subclass
        too (the pump looks it up once per run, then calls it at every step: one call fewer
        than a method that calls it)."""
        return self.advance_to
