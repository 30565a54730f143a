"""The closed-loop controller: features, detector, policy, safety envelope, loop.

Imports only ``firmware_bridge``; it meets the simulated device only through the protocol.
"""
