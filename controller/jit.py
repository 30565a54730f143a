"""The controller's one numba switch: whether numba is importable, and how kernels compile.

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
    from numba.core.types import StructRef as StructType
    from numba.experimental.structref import StructRefProxy as StructProxy

    NUMBA_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    NUMBA_AVAILABLE = False

    class StructType:  # type: ignore[no-redef]
        """Stands in for numba's StructRef type where numba is missing."""

    class StructProxy:  # type: ignore[no-redef]
        """Stands in for numba's StructRefProxy where numba is missing."""

F = TypeVar("F", bound=Callable[..., Any])


def jit(function: F) -> F:
    """Compile with numba (cached on disk, no GIL) when available; else leave as Python."""
    if not NUMBA_AVAILABLE:
        return function
    return cast(F, njit(cache=True, nogil=True)(function))


def numba_enabled(use_numba: bool) -> bool:
    """True when the compiled path is asked for and numba is importable."""
    return use_numba and NUMBA_AVAILABLE


def compiled_struct(
    proxy: type[StructProxy], type_class: type[StructType], field_names: tuple[str, ...]
) -> None:
    """Make ``proxy`` (a StructProxy subclass) a numba structref of ``field_names``, whose
    numba type is ``type_class`` (a StructType subclass); both are module-level classes
    so that cached kernels find them again.  Does nothing without numba (no compiled
    kernel then reads the struct).

    Why: numba checks and unboxes every argument of a call (~70 ns an array); a kernel
    that reads thirty arrays from one struct is given one object, whose numba type the
    proxy carries, instead of thirty arguments.
    """
    if not NUMBA_AVAILABLE:
        return
    from numba.core import types
    from numba.experimental import structref

    def preprocess_fields(self: Any, fields: Any) -> tuple[Any, ...]:
        # Python ints, floats and bools arrive as literal types: keep their plain types.
        return tuple((name, types.unliteral(typ)) for name, typ in fields)

    setattr(type_class, "preprocess_fields", preprocess_fields)  # noqa: B010
    structref.register(type_class)
    structref.define_proxy(proxy, type_class, list(field_names))
