"""The controller's side of a lockstep run: the real ``ControllerSession`` and
``ControllerCore`` behind the pump's peer interface (firmware_bridge.lockstep).

It does what the async loop (controller.loop) does, synchronously: commands the
core decides are sent at once, a lost link is reported to the core and the
handshake is retried with the loop's backoff. Every event is shown to an
observer first, so the runner can keep what the report needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from controller.core import ControllerCore
from controller.loop import Backoff
from firmware_bridge.events import Connected, HandshakeFailed, PeerLost, VersionRejected
from firmware_bridge.messages import StimSetting
from firmware_bridge.session import ControllerSession

Observer = Callable[[object, float], None]


class ProtocolVersionRejected(RuntimeError):
    """The simulated device refused the controller's protocol version."""


class ControllerPeer:
    def __init__(
        self,
        core: ControllerCore,
        session: ControllerSession | None = None,
        backoff: Backoff | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.core = core
        self.session = session or ControllerSession(client_name="neurostim sim")
        self.backoff = backoff or Backoff()
        self.observer = observer
        self.connects = 0
        self.link_losses = 0
        self.reconnect_attempts = 0
        self._reconnect_at: float | None = None
        self._failed_attempts = 0
        self.stopping = False

    def shut_down(self, now: float) -> int:
        """Send the ramped stop; from now on the core's decisions are audited, not sent
        (as in the async loop's ramp-down)."""
        self.stopping = True
        return self.send(self.core.shutdown_setting(now), now)

    def start(self, now: float) -> None:
        self.session.connect(now)

    def send(self, setting: StimSetting, now: float) -> int:
        command_id = self.session.send_stim_set(setting, now)
        self.core.on_command_sent(command_id, setting, now)
        return command_id

    # -- lockstep peer interface -------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        self._feed(self.session.receive_data(data, now), now)

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def next_deadline(self) -> float | None:
        deadline = self.session.next_deadline()
        if self._reconnect_at is None:
            return deadline
        return self._reconnect_at if deadline is None else min(deadline, self._reconnect_at)

    def on_time(self, now: float) -> None:
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self.session.connect(now)
        self._feed(self.session.handle_timeout(now), now)

    # -- internals ---------------------------------------------------------------------

    def _feed(self, events: Sequence[object], now: float) -> None:
        for event in events:
            if self.observer is not None:
                self.observer(event, now)
            if isinstance(event, Connected):
                self.connects += 1
                self._failed_attempts = 0
                self.core.on_connected(event.info, now)
            elif isinstance(event, PeerLost):
                self.link_losses += 1
                self.core.on_link_down(now)
                self._schedule_reconnect(now)
            elif isinstance(event, HandshakeFailed):
                self._schedule_reconnect(now)
            elif isinstance(event, VersionRejected):
                raise ProtocolVersionRejected(str(event))
            else:
                settings = self.core.on_event(event, now)
                if not self.stopping:
                    for setting in settings:
                        self.send(setting, now)

    def _schedule_reconnect(self, now: float) -> None:
        self._reconnect_at = now + self.backoff.delay_s(self._failed_attempts)
        self._failed_attempts += 1
        self.reconnect_attempts += 1
