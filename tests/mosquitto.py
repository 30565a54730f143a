"""A real Mosquitto broker per test: a generated configuration on a free port (anonymous;
password file + ACL; TLS with a CA and a server certificate made here), started as a
subprocess, polled until it accepts connections, killed and restarted on demand."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"

#: Users of the password + ACL broker: devices are confined to their own topics (the user
#: name is the device id), the controller reads every device and writes every ``down``.
USERS = {"controller": "ctl-secret", "dev-a": "a-secret", "dev-b": "b-secret"}
ACL = """\
pattern read neurostim/v1/%u/down
pattern write neurostim/v1/%u/up
pattern write neurostim/v1/%u/presence
user controller
topic read neurostim/v1/+/up
topic read neurostim/v1/+/presence
topic write neurostim/v1/+/down
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=neurostim test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=directory,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
        cwd=directory,
    )
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@dataclass
class Mosquitto:
    """One broker. ``auth``: password file + ACL, no anonymous clients; ``tls``: the
    listener speaks TLS only; ``persistence``: retained messages survive a restart (saved
    every second, so they also survive a SIGKILL)."""

    directory: Path
    auth: bool = False
    tls: bool = False
    persistence: bool = False
    port: int = field(default_factory=free_port)
    ca_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        if not os.path.exists(MOSQUITTO):
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            # Run as whoever runs the tests (as root Mosquitto would drop to a user that
            # cannot read the test's private directory).
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if self.auth:
            passwords = self.directory / "passwords"
            for i, (user, password) in enumerate(USERS.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(
                    [MOSQUITTO_PASSWD, *create, "-b", str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            (self.directory / "acl").write_text(ACL)
            lines += [
                "allow_anonymous false",
                f"password_file {passwords}",
                f"acl_file {self.directory / 'acl'}",
            ]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            ca, cert, key = make_certificates(self.directory / "certs")
            self.ca_file = ca
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.directory}/",
                "autosave_interval 1",
            ]
        (self.directory / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def url(self, device_id: str = "", user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user and password else f"{user}@" if user else ""
        query = f"?tls=1&ca={self.ca_file}" if self.tls else ""
        host = "localhost" if self.tls else "127.0.0.1"
        return f"mqtt://{auth}{host}:{self.port}/{device_id}{query}"

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

    def publish(
        self, topic: str, payload: bytes, *extra: str
    ) -> subprocess.CompletedProcess[bytes]:
        """``mosquitto_pub`` one raw payload (from stdin) on ``topic``."""
        return subprocess.run(
            [
                MOSQUITTO_PUB,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-t",
                topic,
                "-q",
                "1",
                "-s",
                *extra,
            ],
            input=payload,
            capture_output=True,
            timeout=10,
        )
