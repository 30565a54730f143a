"""The software-in-the-loop device: virtual firmware plus a physiology model.

Imports only ``firmware_bridge``; it meets the controller only through the protocol.
"""
