"""Device URLs: one string picks the transport everywhere (command line, configuration,
console, rig), so a new transport is a new scheme and nothing else changes.

- ``sim://`` or ``sim://SCENARIO?seed=N&model=spectral`` — the embedded simulated device
- ``serial:///dev/ttyUSB0?baud=921600``, a bare path (``/dev/ttyUSB0``, ``COM3``), or a
  pyserial URL (``loop://``, ``socket://host:port``, ``rfc2217://…``, ``spy://…``)
- ``mqtt://[user:pass@]host[:port]/DEVICE_ID[?tls=1&ca=FILE&password_file=FILE]``
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from firmware_bridge.errors import DeviceURLError
from firmware_bridge.transports.serial_link import DEFAULT_BAUD

_PYSERIAL_SCHEMES = ("loop", "socket", "rfc2217", "spy", "hwgrep", "alt", "cp2110")


@dataclass(frozen=True)
class SimURL:
    scenario: str = "default"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        raw = self.params.get("seed")
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise DeviceURLError(f"sim:// seed must be an integer, got {raw!r}") from None

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"sim://{self.scenario}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class SerialURL:
    port: str  # a device path or a pyserial URL
    baud: int = DEFAULT_BAUD

    def __str__(self) -> str:
        if "://" in self.port:
            return self.port
        return f"serial://{self.port}?baud={self.baud}"


@dataclass(frozen=True)
class MqttBroker:
    """Where and how to reach an MQTT broker (no device): ``mqtt://[user[:pass]@]host[:port]``."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    password_file: str | None = None

    def __str__(self) -> str:  # never shows the password
        auth = f"{self.username}@" if self.username else ""
        tls = "?tls=1" if self.tls else ""
        return f"mqtt://{auth}{self.host}:{self.port}{tls}"


@dataclass(frozen=True)
class MqttURL:
    host: str
    device_id: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    password_file: str | None = None

    @property
    def broker(self) -> MqttBroker:
        return MqttBroker(
            self.host,
            self.port,
            self.username,
            self.password,
            self.tls,
            self.ca_file,
            self.password_file,
        )

    def __str__(self) -> str:
        auth = f"{self.username}@" if self.username else ""
        tls = "?tls=1" if self.tls else ""
        return f"mqtt://{auth}{self.host}:{self.port}/{self.device_id}{tls}"


DeviceURL = SimURL | SerialURL | MqttURL


def _single_params(query: str, url: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if len(values) != 1:
            raise DeviceURLError(f"{url}: parameter {key!r} given {len(values)} times")
        params[key] = values[0]
    return params


def _baud(params: dict[str, str], url: str) -> int:
    raw = params.pop("baud", str(DEFAULT_BAUD))
    try:
        baud = int(raw)
    except ValueError:
        raise DeviceURLError(f"{url}: baud must be an integer, got {raw!r}") from None
    if not 50 <= baud <= 20_000_000:
        raise DeviceURLError(f"{url}: baud {baud} outside 50-20000000")
    return baud


def parse_device_url(url: str) -> DeviceURL:
    """Parse a device URL; raises DeviceURLError naming the problem."""
    text = url.strip()
    if not text:
        raise DeviceURLError("empty device URL")
    if "://" not in text:
        if text.startswith("/") or text.upper().startswith("COM"):
            return SerialURL(text)
        raise DeviceURLError(
            f"{url!r} is not a device URL: use sim://, serial:///dev/…, a device path, or mqtt://"
        )
    scheme = text.split("://", 1)[0].lower()
    if scheme in _PYSERIAL_SCHEMES:
        return SerialURL(text)
    parts = urlsplit(text)
    params = _single_params(parts.query, url)
    if scheme == "sim":
        # sim://NAME, sim://NAME/ or sim:///absolute/path/to/scenario.toml
        name = (parts.netloc + parts.path).rstrip("/") if parts.netloc else parts.path
        name = name if name not in ("", "/") else "default"
        return SimURL(unquote(name), params)
    if scheme == "serial":
        path = unquote(parts.netloc + parts.path) if parts.netloc else unquote(parts.path)
        if not path:
            raise DeviceURLError(f"{url}: serial URL needs a device path")
        baud = _baud(params, url)
        if params:
            raise DeviceURLError(f"{url}: unknown serial parameter(s) {sorted(params)}")
        return SerialURL(path, baud)
    if scheme in ("mqtt", "mqtts"):
        broker = _mqtt_broker(parts, params, scheme, url)
        device_id = parts.path.strip("/")
        if not device_id or "/" in device_id or "+" in device_id or "#" in device_id:
            raise DeviceURLError(f"{url}: MQTT URL needs one DEVICE_ID path segment (no / + #)")
        return MqttURL(
            broker.host,
            device_id,
            broker.port,
            broker.username,
            broker.password,
            broker.tls,
            broker.ca_file,
            broker.password_file,
        )
    raise DeviceURLError(f"{url}: unknown scheme {scheme!r} (sim, serial, mqtt)")


def _mqtt_broker(parts: SplitResult, params: dict[str, str], scheme: str, url: str) -> MqttBroker:
    if not parts.hostname:
        raise DeviceURLError(f"{url}: MQTT URL needs a broker host")
    tls_raw = params.pop("tls", "1" if scheme == "mqtts" else "0")
    if tls_raw not in ("0", "1", "true", "false"):
        raise DeviceURLError(f"{url}: tls must be 0 or 1, got {tls_raw!r}")
    ca_file = params.pop("ca", None)
    password_file = params.pop("password_file", None)
    if params:
        raise DeviceURLError(f"{url}: unknown MQTT parameter(s) {sorted(params)}")
    try:
        port = parts.port
    except ValueError as exc:
        raise DeviceURLError(f"{url}: {exc}") from None
    tls = tls_raw in ("1", "true")
    if ca_file is not None and not tls:
        raise DeviceURLError(f"{url}: ca= needs tls=1")
    return MqttBroker(
        host=parts.hostname,
        port=port if port is not None else (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
        ca_file=ca_file,
        password_file=password_file,
    )


def parse_broker_url(url: str) -> MqttBroker:
    """Parse ``mqtt://[user[:pass]@]host[:port][?tls=1&ca=FILE&password_file=FILE]``."""
    text = url.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in ("mqtt", "mqtts"):
        raise DeviceURLError(f"{url!r} is not a broker URL: use mqtt://host[:port]")
    parts = urlsplit(text)
    if parts.path.strip("/"):
        raise DeviceURLError(f"{url}: a broker URL has no path (the device id goes elsewhere)")
    return _mqtt_broker(parts, _single_params(parts.query, url), scheme, url)


def scheme_of(url: DeviceURL) -> str:
    """The transport registry's key for a parsed URL (pyserial URLs are serial)."""
    if isinstance(url, SimURL):
        return "sim"
    if isinstance(url, SerialURL):
        return "serial"
    return "mqtt"
