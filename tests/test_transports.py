"""Device URLs, the in-memory link, the virtual clock and link fault injection."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from firmware_bridge.clock import AsyncioClock, VirtualClock
from firmware_bridge.connection import DeviceConnection
from firmware_bridge.events import CommandAcked, PeerLost, SamplesReceived
from firmware_bridge.lockstep import LockstepPump, RecordingPeer
from firmware_bridge.messages import StimSetting
from firmware_bridge.session import ControllerSession
from firmware_bridge.transports import LinkClosed, memory_link_pair
from firmware_bridge.transports.registry import open_link
from firmware_bridge.url import (
    DeviceURLError,
    MqttBroker,
    MqttURL,
    SerialURL,
    SimURL,
    parse_broker_url,
    parse_device_url,
)
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.link_faults import LinkFaultInjector, LinkFaultSettings
from simulator.serve import serve_firmware
from simulator.signals import NoiseSource


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sim://", SimURL("default", {})),
        ("sim://aura-demo?seed=7", SimURL("aura-demo", {"seed": "7"})),
        ("sim:///tmp/my scenario.toml", SimURL("/tmp/my scenario.toml", {})),
        ("serial:///dev/ttyUSB0?baud=115200", SerialURL("/dev/ttyUSB0", 115200)),
        ("serial:///dev/pts/3", SerialURL("/dev/pts/3", 921600)),
        ("/dev/ttyACM0", SerialURL("/dev/ttyACM0", 921600)),
        ("COM3", SerialURL("COM3", 921600)),
        ("loop://", SerialURL("loop://", 921600)),
        ("socket://localhost:7777", SerialURL("socket://localhost:7777", 921600)),
        ("mqtt://broker/dev-1", MqttURL("broker", "dev-1", 1883)),
        (
            "mqtt://alice:s3cret@broker.lab:8883/stim-7?tls=1",
            MqttURL("broker.lab", "stim-7", 8883, "alice", "s3cret", True),
        ),
    ],
)
def test_device_urls_parse(url: str, expected: object) -> None:
    assert parse_device_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("ftp://x", "unknown scheme"),
        ("serial://?baud=9600", "device path"),
        ("serial:///dev/x?baud=fast", "baud must be an integer"),
        ("serial:///dev/x?parity=E", "unknown serial parameter"),
        ("mqtt://broker", "DEVICE_ID"),
        ("mqtt:///dev", "broker host"),
        ("mqtt://b/d?tls=maybe", "tls must be"),
        ("sim://x?seed=1&seed=2", "given 2 times"),
        ("ttyUSB0", "not a device URL"),
    ],
)
def test_bad_device_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(DeviceURLError, match=message):
        parse_device_url(url)


async def test_mqtt_url_without_a_broker_fails_with_the_brokers_address() -> None:
    from tests.mosquitto import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(LinkClosed, match=f"127.0.0.1:{port}"):
        await open_link(f"mqtt://127.0.0.1:{port}/dev-1")


def test_mqtt_url_options_and_broker_urls() -> None:
    url = parse_device_url("mqtt://ctl@b:1884/dev-1?tls=1&ca=/etc/ca.crt&password_file=/run/pw")
    assert isinstance(url, MqttURL)
    assert url.broker == MqttBroker("b", 1884, "ctl", None, True, "/etc/ca.crt", "/run/pw")
    assert "pw" not in str(url.broker) and str(url) == "mqtt://ctl@b:1884/dev-1?tls=1"
    assert parse_broker_url("mqtt://u:p@h") == MqttBroker("h", 1883, "u", "p")
    assert parse_broker_url("mqtts://h/").port == 8883
    with pytest.raises(DeviceURLError, match="no path"):
        parse_broker_url("mqtt://h/dev-1")
    with pytest.raises(DeviceURLError, match="ca= needs tls=1"):
        parse_device_url("mqtt://h/d?ca=/x")
    with pytest.raises(DeviceURLError, match="not a broker URL"):
        parse_broker_url("serial:///dev/ttyUSB0")


async def test_memory_link_pair_delivers_in_order_and_closes_both_ends() -> None:
    a, b = memory_link_pair()
    for i in range(5):
        await a.send(bytes([i + 1]))
    assert [await b.receive() for _ in range(5)] == [bytes([i + 1]) for i in range(5)]
    await a.close()
    with pytest.raises(LinkClosed):
        await b.receive()
    with pytest.raises(LinkClosed):
        await a.send(b"x")


async def test_virtual_clock_wakes_sleepers_only_when_advanced() -> None:
    clock = VirtualClock(10.0)
    woke: list[float] = []

    async def sleeper(delay: float) -> None:
        await clock.sleep(delay)
        woke.append(clock.now())

    tasks = [asyncio.create_task(sleeper(d)) for d in (0.5, 0.2, 1.0)]
    await asyncio.sleep(0)
    assert clock.next_sleeper_deadline() == pytest.approx(10.2)
    clock.advance(0.3)
    await asyncio.sleep(0)
    assert woke == [pytest.approx(10.3)]
    clock.advance_to(11.0)
    await asyncio.gather(*tasks)
    assert len(woke) == 3
    with pytest.raises(ValueError):
        clock.advance_to(5.0)


async def test_device_and_connection_run_on_a_virtual_clock_over_memory_links() -> None:
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=9), FirmwareConfig(seed=9))
    ctl_end, dev_end = memory_link_pair()
    server = asyncio.create_task(serve_firmware(fw, dev_end, clock))
    async with DeviceConnection(ctl_end, clock) as conn:
        connect = asyncio.create_task(conn.connect())
        for _ in range(5):
            await asyncio.sleep(0)
        info = await connect
        assert info.device_id == "SIM-0001"
        command = asyncio.create_task(conn.set_stimulation(StimSetting(True, 1.0, 60, 100.0)))
        samples = 0
        # Drive virtual time by hand: 2 s in 10 ms steps.
        for _ in range(200):
            clock.advance(0.01)
            for _ in range(4):
                await asyncio.sleep(0)
            while True:
                try:
                    event = conn._events.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if isinstance(event, SamplesReceived):
                    samples += event.counts.shape[1]
                assert not isinstance(event, PeerLost)
        assert isinstance(await command, CommandAcked)
        assert samples == pytest.approx(500, abs=10)  # 2 s at 250 Hz
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)


def test_link_fault_injector_is_deterministic_and_counts_what_it_did() -> None:
    settings = LinkFaultSettings(byte_corruption_rate=0.01, frame_drop_rate=0.2)
    runs = []
    for _ in range(2):
        inj = LinkFaultInjector(settings, seed=42)
        runs.append([inj.process(bytes(range(1, 101)), float(t)) for t in range(200)])
        assert inj.stats.chunks_dropped > 10
        assert inj.stats.bytes_corrupted > 50
    assert runs[0] == runs[1]


def test_link_fault_delay_keeps_order_and_disconnect_loses_everything() -> None:
    inj = LinkFaultInjector(LinkFaultSettings(delay_s=0.1, jitter_s=0.05, disconnects=((5, 2),)))
    times = [inj.process(b"x", t * 0.01)[0][0] for t in range(100)]
    assert times == sorted(times)
    assert all(t >= 0.1 for t in times)
    assert inj.process(b"x", 6.0) == []
    assert inj.stats.chunks_lost_disconnected == 1


def test_corrupted_link_is_seen_as_crc_errors_and_the_session_survives() -> None:
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    ctl = RecordingPeer(ControllerSession())
    inj = LinkFaultInjector(LinkFaultSettings(byte_corruption_rate=0.002), seed=3)
    pump = LockstepPump(ctl, fw, clock, b_to_a=inj.process)
    ctl.session.connect(0.0)
    pump.run_until(20.0)
    stats = ctl.session.stats
    assert stats.crc_errors + stats.decoder.cobs_errors > 10
    assert stats.sample_gaps > 0 and stats.samples_missing > 0
    assert not ctl.of_type(PeerLost)


def test_disconnect_period_trips_the_device_watchdog_and_the_controller_reconnects() -> None:
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    ctl = RecordingPeer(ControllerSession())
    faults = LinkFaultSettings(disconnects=((2.0, 3.0),))
    down = LinkFaultInjector(faults, seed=1)
    up = LinkFaultInjector(faults, seed=2)
    pump = LockstepPump(ctl, fw, clock, a_to_b=up.process, b_to_a=down.process)
    ctl.session.connect(0.0)
    ctl.session.send_stim_set(StimSetting(True, 2.0, 60, 130.0), 0.0)
    pump.run_until(1.9)
    assert fw.output.amplitude_ma == pytest.approx(2.0)
    pump.run_until(4.9)
    assert fw.output.amplitude_ma == 0.0 and fw.output.watchdog_tripped
    assert ctl.of_type(PeerLost)
    ctl.session.connect(clock.now())  # what the controller loop does after PeerLost
    pump.run_until(6.0)
    assert ctl.session.info is not None
    assert fw.session.handshaken and not fw.session.watchdog_expired


async def test_serial_link_works_with_a_pyserial_url_without_a_file_descriptor() -> None:
    from firmware_bridge.transports.serial_link import SerialLink

    link = await SerialLink.open("loop://", 921_600)
    try:
        await link.send(b"\x01\x02\x03")
        received = b""
        while len(received) < 3:
            received += await asyncio.wait_for(link.receive(), 2)
        assert received == b"\x01\x02\x03"
    finally:
        await link.close()
    with pytest.raises(LinkClosed):
        await link.receive()


async def test_cancelled_next_event_loses_no_event() -> None:
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=9), FirmwareConfig(seed=9))
    ctl_end, dev_end = memory_link_pair()
    server = asyncio.create_task(serve_firmware(fw, dev_end, clock))
    async with DeviceConnection(ctl_end, clock) as conn:
        connect = asyncio.create_task(conn.connect())
        for _ in range(5):
            await asyncio.sleep(0)
        await connect
        while not conn._events.empty():  # nothing queued: the wait below is really waiting
            conn._events.get_nowait()
        waiting = asyncio.create_task(conn.next_event())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        conn._dispatch([PeerLost(1.0)])  # an event arriving after the cancelled wait
        received = []
        while True:
            event = await asyncio.wait_for(conn.next_event(), 1)
            received.append(event)
            if isinstance(event, PeerLost):
                break
        assert isinstance(received[-1], PeerLost)
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)


@pytest.mark.looptime
async def test_a_nowait_send_leaves_at_once_and_its_answer_can_be_awaited() -> None:
    clock = AsyncioClock()
    fw = VirtualFirmware(NoiseSource(seed=5), FirmwareConfig(seed=5), start_s=clock.now())
    ctl, dev = memory_link_pair()
    server = asyncio.create_task(serve_firmware(fw, dev, clock))
    try:
        async with DeviceConnection(ctl, clock) as conn:
            await conn.connect()
            cid = conn.send_stim_set_nowait(StimSetting(True, 0.5, 200, 40.0, 0.5))
            result = await asyncio.wait_for(conn.result_of(cid), 5.0)
            assert isinstance(result, CommandAcked) and result.command_id == cid
            assert fw.output.target_ma == pytest.approx(0.5)
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError, LinkClosed):
            await server
