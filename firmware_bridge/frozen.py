"""Build a frozen dataclass instance without its generated ``__init__``, for the hot path.

Why: a frozen dataclass's ``__init__`` sets every field through ``object.__setattr__``
(it must get around its own frozen ``__setattr__``), about 0.1 µs a field; the event of
every SAMPLES frame, and the controller's feature frame, its quality and the detector's
output once per hop, every hop.  Filling
the instance dictionary in one update gives the same object (fields, equality, hash,
repr) at a fraction of the cost.  Only for dataclasses without ``__post_init__`` or
slots, and the caller names every field (tests compare with the normal constructor).
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def build_frozen(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of the frozen dataclass ``cls`` whose fields are ``values`` (all of them)."""
    instance = _new(cls)
    instance.__dict__.update(values)
    return instance


_new = object.__new__
