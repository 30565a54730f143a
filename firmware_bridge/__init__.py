"""The device protocol: messages, framing, codec, sans-IO sessions, transports, device URLs.

Imports nothing else of neurostim, so a device maker or a rig can use it alone.
"""
