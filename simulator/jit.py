"""The simulator's one numba switch: whether numba is importable, and how kernels compile.

numba is optional at import time; without it every kernel module's numpy path runs. Each
part that has a compiled path takes ``use_numba`` and asks :func:`numba_enabled`, so
``use_numba=False`` selects numpy everywhere in that part (the reference the compiled
kernels are tested against), not only where a caller remembered to check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

try:
    from numba import njit

    NUMBA_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    NUMBA_AVAILABLE = False

F = TypeVar("F", bound=Callable[..., Any])


def jit(function: F) -> F:
    """Compile with numba (cached on disk, no GIL) when available; else leave as Python.

    ``error_model="numpy"``: a float division by zero gives inf or nan, as in numpy,
    instead of raising. The kernels never divide by zero (their denominators are sums
    with 1 or counts >= 1); without the check on every division the loops compile to
    straight-line code. It changes no result of a division by a non-zero number.
    """
    if not NUMBA_AVAILABLE:
        return function
    return cast(F, njit(cache=True, nogil=True, error_model="numpy")(function))


def jit_inline(function: F) -> F:
    """A helper of compiled kernels: inlined into each kernel that calls it (so the
    compiler optimises it together with the caller's loops); else left as Python."""
    if not NUMBA_AVAILABLE:
        return function
    return cast(F, njit(inline="always", error_model="numpy")(function))


def numba_enabled(use_numba: bool) -> bool:
    """True when the compiled path is asked for and numba is importable."""
    return use_numba and NUMBA_AVAILABLE
