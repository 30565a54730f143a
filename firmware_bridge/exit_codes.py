"""Exit codes of every ``neurostim`` command, in one place so scripts can rely on them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a check failed (audit verify, hil)
    USAGE = 2  # bad arguments, configuration or input file
    UNREACHABLE = 3  # the device cannot be reached
    PROTOCOL = 4  # the device speaks another major protocol version
    ENVELOPE = 5  # the configuration asks for more than the device allows
