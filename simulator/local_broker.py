"""A local Mosquitto broker as a child process: a generated configuration on a free port,
polled until it accepts connections (as Mosquitto's own test harness does), killed and
restarted on demand. For benchmarks and the test suite; never a public broker."""

from __future__ import annotations

import contextlib
import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalBroker:
    """``mosquitto -c DIR/mosquitto.conf`` listening on 127.0.0.1:``port``; ``settings``
    are extra configuration lines (authentication, TLS, persistence)."""

    def __init__(self, directory: Path, settings: list[str] | None = None, port: int = 0):
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            # Run as whoever runs us (as root Mosquitto would drop to a user that cannot
            # read our private directory).
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "set_tcp_nodelay true",  # frames are small and latency matters (docs/protocol.md)
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            *(settings or ["allow_anonymous true"]),
        ]
        (directory / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def start(self, timeout_s: float = 5.0) -> None:
        assert self.process is None, "already running"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.directory / "mosquitto.conf")],
                stdout=log,
                stderr=log,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto not listening on {self.port} after {timeout_s} s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no will is sent, nothing is saved beyond the last autosave."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None
