"""The test suite's brokers: ``LocalBroker`` configured as anonymous; password file + ACL;
TLS with a CA and a server certificate made here; or with retained messages persisted."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from simulator.local_broker import LocalBroker, free_port

__all__ = ["ACL", "MOSQUITTO_PUB", "USERS", "Mosquitto", "free_port"]

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


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
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


class Mosquitto(LocalBroker):
    """``auth``: password file + ACL, no anonymous clients; ``tls``: the listener speaks
    TLS only; ``persistence``: retained messages survive a restart (saved every second,
    so they also survive a SIGKILL)."""

    def __init__(
        self, directory: Path, auth: bool = False, tls: bool = False, persistence: bool = False
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.ca_file: Path | None = None
        settings: list[str] = []
        if auth:
            passwords = directory / "passwords"
            for i, (user, password) in enumerate(USERS.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(
                    [MOSQUITTO_PASSWD, *create, "-b", str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            (directory / "acl").write_text(ACL)
            settings += [
                "allow_anonymous false",
                f"password_file {passwords}",
                f"acl_file {directory / 'acl'}",
            ]
        else:
            settings.append("allow_anonymous true")
        if tls:
            ca, cert, key = make_certificates(directory / "certs")
            self.ca_file = ca
            settings += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        if persistence:
            settings += [
                "persistence true",
                f"persistence_location {directory}/",
                "autosave_interval 1",
            ]
        super().__init__(directory, settings)

    def url(self, device_id: str = "", user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user and password else f"{user}@" if user else ""
        query = f"?tls=1&ca={self.ca_file}" if self.tls else ""
        host = "localhost" if self.tls else "127.0.0.1"
        return f"mqtt://{auth}{host}:{self.port}/{device_id}{query}"
