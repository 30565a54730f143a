"""exp(x) in float64 written out for numba, so a loop over sites can vectorise it.

A call to the C library's ``exp`` is opaque to the compiler: a loop taking the sigmoid of
eight sites makes eight scalar calls. Written out here, the same loop becomes a few
vector instructions per four or eight sites.

Method: table-driven range reduction (Tang 1989, ACM TOMS 15:144 "Table-driven
implementation of the exponential function in IEEE floating-point arithmetic") in the
variant of Szabolcs Nagy's exp for ARM optimized-routines (2018), which is also the
GNU C library's ``exp`` since version 2.28: ``x = k ln2/128 + r`` with a Cody-Waite
two-part ln2/128 (Cody & Waite 1980, "Software manual for the elementary functions"),
``|r| <= ln2/256``; ``2^(k/128)`` from a 128-entry table as ``H (1 + T)``; ``exp(r) - 1``
from a degree-5 polynomial. Error < 0.52 ulp.

The constants are that library's (its minimax polynomial; its table, which
:func:`exp_table` rebuilds from exact arithmetic). The fused multiply-adds stand where
an FMA-enabled build of that library has them, so on an x86-64 machine with FMA this
gives the C library's ``exp`` bit for bit (checked on millions of inputs, see the tests):
a model switching to it keeps its output. A fused multiply-add is one exactly specified
IEEE 754 operation, so the result is the same on every machine (where the processor
lacks FMA, LLVM calls the C library's correctly rounded ``fma``: slower, same bits).
No fast-math: the compiler may not reorder or contract anything else.

``exp_in_range`` is valid for |x| < 512 (and NaN-free input); ``exp_any`` for every
float64 (overflow, the subnormal range, inf, NaN), for the rare lane outside that range.
Both are compiled code (the bit casts and ``fma`` are LLVM instructions); without numba
they are ``math.exp``, the C library's. They are inlined into the kernels that use them,
whose disk cache is keyed on the kernel's own file: after changing this one, touch those
(``jansen_rit.py``), or they keep the old code.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import cast

import numpy as np

from simulator.jit import NUMBA_AVAILABLE, jit_inline

TABLE_BITS = 7
TABLE_SIZE = 1 << TABLE_BITS

#: |x| below this (its top 12 bits, sign cleared, below 0x408) takes the fast path.
IN_RANGE_ABS_LIMIT = 512.0
IN_RANGE_TOP12_LIMIT = 0x408

_INV_LN2_N = float.fromhex("0x1.71547652b82fep0") * TABLE_SIZE
_SHIFT = float.fromhex("0x1.8p52")  # adding it rounds to an integer in the low bits
_NEG_LN2_HI_N = -float.fromhex("0x1.62e42fefa0000p-8")  # ln2/128, top 37 bits
_NEG_LN2_LO_N = -float.fromhex("0x1.cf79abc9e3b3ap-47")  # and the rest
_C2 = float.fromhex("0x1.ffffffffffdbdp-2")
_C3 = float.fromhex("0x1.555555555543cp-3")
_C4 = float.fromhex("0x1.55555cf172b91p-5")
_C5 = float.fromhex("0x1.1111167a4d017p-7")


def exp_table() -> tuple[np.ndarray, np.ndarray]:
    """``2^(k/128) ~= H_k (1 + T_k)``: T_k (float64) and the bits of H_k minus ``k << 45``
    (uint64), so adding ``k << 45`` (any integer k, wrapping) scales H_k by 2^(k // 128).

    H_k is 2^(k/128) rounded to the nearest double, T_k the rounded relative remainder,
    both from 60-digit decimal arithmetic.
    """
    tail = np.empty(TABLE_SIZE)
    scale_bits = np.empty(TABLE_SIZE, dtype=np.uint64)
    with localcontext() as ctx:
        ctx.prec = 60
        for k in range(TABLE_SIZE):
            exact = Decimal(2) ** (Decimal(k) / Decimal(TABLE_SIZE))
            head = float(exact)  # correctly rounded
            tail[k] = float((exact - Decimal(head)) / Decimal(head))
            scale_bits[k] = np.float64(head).view(np.uint64) - np.uint64(k << 45)
    return tail, scale_bits


_TAIL, _SCALE_BITS = exp_table()
_INDEX_MASK = np.uint64(TABLE_SIZE - 1)
_SHIFT_45 = np.uint64(52 - TABLE_BITS)
_SHIFT_52 = np.uint64(52)
_TOP12_MASK = np.uint64(0x7FF)
_SIGN_BIT = np.uint64(1 << 63)
_K_NEGATIVE = np.uint64(0x80000000)
_EXP_1009 = np.uint64(1009 << 52)
_EXP_1022 = np.uint64(1022 << 52)
_TWO_P1009 = 2.0**1009
_TWO_M1022 = 2.0**-1022


if NUMBA_AVAILABLE:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _bits_ir(typingctx, x):  # type: ignore[no-untyped-def]
        """The IEEE bits of a float64 as uint64 (a register move, no memory)."""
        if x != types.float64:
            return None

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return builder.bitcast(args[0], ir.IntType(64))

        return types.uint64(types.float64), codegen

    @intrinsic
    def _from_bits_ir(typingctx, u):  # type: ignore[no-untyped-def]
        """The float64 whose IEEE bits are ``u``."""
        if u != types.uint64:
            return None

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return builder.bitcast(args[0], ir.DoubleType())

        return types.float64(types.uint64), codegen

    @intrinsic
    def _fma_ir(typingctx, a, b, c):  # type: ignore[no-untyped-def]
        """a * b + c rounded once (IEEE 754 fusedMultiplyAdd, LLVM ``llvm.fma.f64``)."""
        if not all(t == types.float64 for t in (a, b, c)):
            return None

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            f64 = ir.DoubleType()
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(f64, [f64, f64, f64]), "llvm.fma.f64"
            )
            return builder.call(fn, args)

        return types.float64(types.float64, types.float64, types.float64), codegen

    # Typed for the checker: inside compiled code each is called as a plain function.
    _bits = cast(Callable[[float], np.uint64], _bits_ir)
    _from_bits = cast(Callable[[np.uint64], float], _from_bits_ir)
    _fma = cast(Callable[[float, float, float], float], _fma_ir)

    @jit_inline
    def _reduce(x: float) -> tuple[float, np.uint64]:
        """``exp(x) = 2^(k/128) (1 + tmp)``: returns tmp and the bits of k (low bits)."""
        kd = _fma(_INV_LN2_N, x, _SHIFT)
        ki = _bits(kd)
        kd -= _SHIFT
        r = _fma(kd, _NEG_LN2_LO_N, _fma(kd, _NEG_LN2_HI_N, x))
        r2 = r * r
        tail = _TAIL[ki & _INDEX_MASK]
        tmp = _fma(r2 * r2, _fma(r, _C5, _C4), _fma(r2, _fma(r, _C3, _C2), tail + r))
        return tmp, ki

    @jit_inline
    def exp_in_range(x: float) -> float:
        """exp(x) for |x| < 512: straight-line code, no branch, so loops vectorise."""
        tmp, ki = _reduce(x)
        scale: float = _from_bits(_SCALE_BITS[ki & _INDEX_MASK] + (ki << _SHIFT_45))
        return _fma(scale, tmp, scale)

    @jit_inline
    def top12(x: float) -> np.uint64:
        """Biased exponent of |x| (0x7ff for inf and NaN): ``< IN_RANGE_TOP12_LIMIT`` is
        the range of :func:`exp_in_range`."""
        return (_bits(x) >> _SHIFT_52) & _TOP12_MASK

    @jit_inline
    def exp_any(x: float) -> float:
        """exp(x) for every float64, as the C library's exp treats each range."""
        abstop = top12(x)
        if abstop < IN_RANGE_TOP12_LIMIT:
            return exp_in_range(x)
        if abstop >= 0x409:  # |x| >= 1024, inf, NaN
            if x == -np.inf:
                return 0.0
            if abstop == 0x7FF:
                return 1.0 + x  # inf or NaN
            return 0.0 if _bits(x) & _SIGN_BIT else np.inf
        tmp, ki = _reduce(x)
        scale_bits = _SCALE_BITS[ki & _INDEX_MASK] + (ki << _SHIFT_45)
        if (ki & _K_NEGATIVE) == 0:
            # k > 0: the scale's exponent may have overflowed; scale it down by 2^1009.
            scale_down: float = _from_bits(scale_bits - _EXP_1009)
            return _TWO_P1009 * _fma(scale_down, tmp, scale_down)
        # k < 0: scale up by 2^1022, then back down, rounding once in the subnormal range.
        # (Here the product is rounded on its own, as that library's FMA build has it:
        # its compiler fuses a product only where every use is in the same block.)
        scale_up: float = _from_bits(scale_bits + _EXP_1022)
        scaled_tmp = scale_up * tmp
        y = scale_up + scaled_tmp
        if y < 1.0:
            lo = scale_up - y + scaled_tmp
            hi = 1.0 + y
            lo = 1.0 - hi + y + lo
            y = (hi + lo) - 1.0
            if y == 0.0:
                y = 0.0  # never -0.0
        return _TWO_M1022 * y

else:  # pragma: no cover - exercised only where numba is missing

    def exp_in_range(x: float) -> float:
        return math.exp(x)

    def exp_any(x: float) -> float:
        return math.exp(x)

    def top12(x: float) -> np.uint64:
        return np.uint64((struct.unpack("<Q", struct.pack("<d", x))[0] >> 52) & 0x7FF)
