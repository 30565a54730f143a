"""Every case of the rig; importing this package registers them in catalog order."""

from hil.cases import (  # noqa: F401
    device_info,
    faults,
    handshake,
    idempotence,
    latency,
    nacks,
    output,
    robustness,
    safety,
    signing,
    stream,
)
