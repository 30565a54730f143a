"""The hardware-in-the-loop rig: conformance, latency and fault suites for any device URL.

It speaks to the device through ``firmware_bridge`` only (never the controller), so a device
is judged by docs/protocol.md, not by our controller's habits.
"""
