"""Shared test settings: hypothesis runs derandomized so CI is deterministic."""

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200)
settings.register_profile("dev", derandomize=True, deadline=None, max_examples=100)
settings.load_profile("ci")


# -- a real Mosquitto broker per test (tests/mosquitto.py) ------------------------------

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.mosquitto import Mosquitto  # noqa: E402


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """``broker_factory(auth=, tls=, persistence=)`` starts a broker; all stop afterwards."""
    started: list[Mosquitto] = []

    def start(**options: bool) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"broker{len(started)}", **options)
        started.append(broker)
        broker.start()
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def mosquitto(broker_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """An anonymous broker on a free port."""
    return broker_factory()
