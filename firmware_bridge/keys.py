"""Pre-shared signing keys (docs/protocol.md section 1.4): the key file and its loader.

A key file is text, one key per line: a device id, white space, the key in hex (16-64
bytes, so 32-128 hex digits). ``#`` starts a comment; blank lines are skipped. The device
id ``*`` matches any device without a line of its own. Keys are secrets: the file must not
be readable or writable by group or others (``chmod 600``), and a key is never taken from
the command line or a configuration file, where it would end up in shell histories,
process lists and audit logs.

    # neurostim signing keys
    SIM-0001  6b0f...e1
    *         9a4c...07
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 32  # what keygen writes: the HMAC-SHA256 block-size half, well inside 16-64
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
ANY_DEVICE = "*"


class KeyFileError(ValueError):
    """A key file that is missing, unsafe or malformed, or has no key for the device."""


def check_permissions(path: Path) -> None:
    """Refuse a key file that group or others may read or write."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"keys are secrets: run `chmod 600 {path}`"
        )


def parse_keys(text: str, source: str = "key file") -> dict[str, bytes]:
    """Device id -> key from key-file text; raises KeyFileError naming the bad line."""
    keys: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise KeyFileError(f"{source} line {number}: expected `<device id> <hex key>`")
        device_id, hex_key = parts
        try:
            key = bytes.fromhex(hex_key)
        except ValueError:
            raise KeyFileError(f"{source} line {number}: the key is not hex") from None
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise KeyFileError(
                f"{source} line {number}: a key must be {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes, "
                f"got {len(key)}"
            )
        if device_id in keys:
            raise KeyFileError(f"{source} line {number}: a second key for {device_id!r}")
        keys[device_id] = key
    return keys


def load_keys(path: str | Path) -> dict[str, bytes]:
    """Every key of a key file, after the permission check."""
    path = Path(path)
    check_permissions(path)
    return parse_keys(path.read_text(encoding="utf-8"), f"key file {path}")


def load_key(path: str | Path, device_id: str | None = None) -> bytes:
    """The key for ``device_id`` (its own line, else the ``*`` line). Without a device id
    (a controller before the handshake does not know it) the file must hold one key."""
    keys = load_keys(path)
    if device_id is None:
        if len(keys) != 1:
            raise KeyFileError(
                f"key file {path} holds {len(keys)} keys: name the device (--device-id)"
            )
        return next(iter(keys.values()))
    key = keys.get(device_id, keys.get(ANY_DEVICE))
    if key is None:
        raise KeyFileError(f"key file {path} has no key for device {device_id!r} and no `*` line")
    return key


def add_key(path: str | Path, device_id: str = ANY_DEVICE, key: bytes | None = None) -> bytes:
    """Append a new key for ``device_id`` (a fresh random one unless given) to a key file,
    creating it with mode 0600; returns the key."""
    if not device_id or any(c.isspace() for c in device_id) or "#" in device_id:
        raise KeyFileError(f"device id {device_id!r} cannot be written to a key file")
    key = secrets.token_bytes(KEY_BYTES) if key is None else key
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise KeyFileError(f"a key must be {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes")
    path = Path(path)
    separator = ""
    if path.exists():
        if device_id in load_keys(path):
            raise KeyFileError(f"key file {path} already has a key for {device_id!r}")
        text = path.read_text(encoding="utf-8")
        separator = "\n" if text and not text.endswith("\n") else ""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(f"{separator}{device_id} {key.hex()}\n")
    return key
