"""Headless closed-loop simulation and in-silico trials (docs/insilico.md).

The one package that joins the controller and the simulator: it runs the real
controller core against the virtual device in lockstep virtual time, every byte
through the real codec and sessions, and scores what happened against the
simulated patient's ground truth.
"""
