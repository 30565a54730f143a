"""Shared test settings: hypothesis runs derandomized so CI is deterministic."""

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200)
settings.register_profile("dev", derandomize=True, deadline=None, max_examples=100)
settings.load_profile("ci")
