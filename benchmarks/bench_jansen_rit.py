"""Benchmark of the Jansen-Rit network kernel alone (printed, not asserted).

One call integrates one 2 s block of the default 8 sites at 250 Hz (Heun, dt 1 ms: 2000
steps), as a run calls it. Each repeat starts from the same state (the one after the
burn-in), so every call does the same work; the figure is the best of ``--repeat`` calls,
the least disturbed one on a shared machine. Run from the repository root::

    .venv/bin/python -m benchmarks.bench_jansen_rit [--repeat 300] [--numpy]

The arguments are read from a network's own state (its private attributes) and the
kernel is called through its signature, both unchanged since the kernel was written, so
the same script measures an older checkout (``PYTHONPATH=/path/to/checkout python
/path/to/bench_jansen_rit.py``) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from simulator.physiology import jansen_rit
from simulator.physiology.jansen_rit import JansenRitNetwork
from simulator.signals import DEFAULT_SITES

FS_HZ = 250.0
BLOCK_SAMPLES = 500  # 2 s, one call of a run


def kernel_arguments(seed: int = 3, stim_per_s: float = 20.0) -> tuple[object, ...]:
    """The arguments of one block's call, from a network just past its burn-in."""
    net = JansenRitNetwork(DEFAULT_SITES, FS_HZ, seed)
    p = net.params
    n = len(DEFAULT_SITES)
    return (
        net._y.copy(),
        net._keys,
        net._next_draw,
        net._draws_per_step,
        float(p.input_low_per_s),
        float(p.input_high_per_s - p.input_low_per_s),
        np.full(n, stim_per_s),
        net._weights * p.coupling_gain,
        net._constants,
        p.method == "heun",
        net._sos,
        net._zi.copy(),
        net._steps_per_sample,
        np.empty((n, BLOCK_SAMPLES)),
    )


def best_call_s(kernel: object, args: tuple[object, ...], repeat: int) -> float:
    """Best wall time of ``repeat`` calls, each from a fresh copy of the state."""
    y0, zi0 = args[0], args[11]
    best = float("inf")
    for _ in range(repeat):
        y = np.array(y0, copy=True)
        zi = np.array(zi0, copy=True)
        call = (y, *args[1:11], zi, *args[12:])
        start = time.perf_counter()
        kernel(*call)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--numpy", action="store_true", help="also time the numpy fallback")
    ns = parser.parse_args()
    args = kernel_arguments()
    block_s = BLOCK_SAMPLES / FS_HZ
    kernels = [("numba", jansen_rit.network_kernel_numba)]
    if ns.numpy:
        kernels.append(("numpy", jansen_rit.network_kernel_numpy))
    for name, kernel in kernels:
        if kernel is None:
            print(f"{name}: not available")
            continue
        best_call_s(kernel, args, 2)  # compile or load from the cache
        best = best_call_s(kernel, args, ns.repeat if name == "numba" else 3)
        print(
            f"{name}: {best * 1e6:9.1f} µs per {block_s:g} s block of {len(DEFAULT_SITES)} sites"
            f"  ({best * 1e6 / block_s:7.1f} µs per virtual second,"
            f" {block_s / best:8.0f}x real time)"
        )


if __name__ == "__main__":
    main()
