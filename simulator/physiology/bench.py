"""``neurostim bench sim``: real-time factor of the signal models.

Real-time factor = virtual seconds generated per wall-clock second, single process
(best of ``repeats`` runs), measured with ``time.perf_counter`` (benchmarks may read
the wall clock; library code may not). Each model is warmed up first (numba
compilation and caches do not count), then generates consecutive 1 s blocks with a
baseline state.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

from simulator.physiology.jansen_rit import JansenRitNetwork
from simulator.physiology.spectral import SpectralModel
from simulator.physiology.state import ModulationState
from simulator.signals import DEFAULT_SITES, NO_STIMULATION, Site

#: Issue 3 targets for 8 sites @ 250 Hz (x real time).
TARGET_RTF_8_SITES_250_HZ: dict[str, float] = {"spectral": 20_000.0, "jansen-rit": 1_000.0}


@dataclass(frozen=True)
class BenchRow:
    model: str
    n_sites: int
    sampling_rate_hz: float
    block_s: float
    virtual_s: float
    wall_s: float
    realtime_factor: float
    target_rtf: float | None


def grid_sites(n_sites: int, spacing_mm: float = 10.0) -> tuple[Site, ...]:
    """``n_sites`` on a square-ish grid (row-major), e.g. 64 sites as 8 x 8 at 10 mm."""
    columns = math.ceil(math.sqrt(n_sites))
    return tuple(
        Site(f"G{k:02d}", (k % columns) * spacing_mm, (k // columns) * spacing_mm)
        for k in range(n_sites)
    )


def _measure(
    step: Callable[[], object], n_blocks: int, block_s: float, repeats: int
) -> tuple[float, float]:
    """(virtual_s, best wall_s) over ``repeats`` runs of ``n_blocks`` consecutive blocks.

    The best of several runs is reported (as ``timeit`` does) because the machine may be
    shared; the first call is a warm-up (JIT compilation, FFT plans, first segment).
    """
    step()
    best_wall_s = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n_blocks):
            step()
        best_wall_s = min(best_wall_s, time.perf_counter() - t0)
    return n_blocks * block_s, best_wall_s


def bench_models(
    spectral_virtual_s: float = 1800.0,
    jansen_rit_virtual_s: float = 120.0,
    block_s: float = 1.0,
    seed: int = 0,
    repeats: int = 3,
) -> list[BenchRow]:
    """Measure each model at 8 sites @ 250 Hz and 64 sites @ 1 kHz.

    The 64-site runs generate a tenth of the virtual time of the 8-site runs (at least
    one block) to keep the whole bench within tens of seconds.
    """
    rows: list[BenchRow] = []
    configs: tuple[tuple[tuple[Site, ...], float, float], ...] = (
        (DEFAULT_SITES, 250.0, 1.0),
        (grid_sites(64), 1000.0, 0.1),
    )
    for sites, fs, share in configs:
        n = len(sites)
        n_block = round(block_s * fs)
        state = ModulationState.baseline(n)
        target_for = TARGET_RTF_8_SITES_250_HZ if (n, fs) == (8, 250.0) else {}

        spectral = SpectralModel(sites, fs, seed)
        n_blocks = max(1, round(spectral_virtual_s * share / block_s))
        virt, wall = _measure(
            partial(spectral.generate, n_block, state), n_blocks, block_s, repeats
        )
        rows.append(_row("spectral", n, fs, block_s, virt, wall, target_for.get("spectral")))

        network = JansenRitNetwork(sites, fs, seed)
        n_blocks = max(1, round(jansen_rit_virtual_s * share / block_s))
        virt, wall = _measure(
            partial(network.generate, n_block, state, NO_STIMULATION),
            n_blocks,
            block_s,
            repeats,
        )
        rows.append(_row("jansen-rit", n, fs, block_s, virt, wall, target_for.get("jansen-rit")))
    return rows


def _row(
    model: str,
    n_sites: int,
    fs: float,
    block_s: float,
    virtual_s: float,
    wall_s: float,
    target: float | None,
) -> BenchRow:
    rtf = virtual_s / wall_s if wall_s > 0 else float("inf")
    return BenchRow(model, n_sites, fs, block_s, virtual_s, wall_s, rtf, target)


def format_bench_table(rows: list[BenchRow]) -> str:
    """A fixed-width table: model, sites, rate, virtual and wall time, real-time factor."""
    header = (
        f"{'model':<11} {'sites':>5} {'rate Hz':>8} {'virtual s':>10} {'wall s':>8} "
        f"{'x real time':>12} {'target':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        target = f"{r.target_rtf:>8,.0f}" if r.target_rtf is not None else f"{'-':>8}"
        verdict = ""
        if r.target_rtf is not None:
            verdict = "  ok" if r.realtime_factor >= r.target_rtf else "  BELOW TARGET"
        lines.append(
            f"{r.model:<11} {r.n_sites:>5} {r.sampling_rate_hz:>8.0f} {r.virtual_s:>10.0f} "
            f"{r.wall_s:>8.3f} {r.realtime_factor:>12,.0f} {target}{verdict}"
        )
    return "\n".join(lines)


def main_bench_sim(json_out: bool) -> int:
    """Print the bench table (and the rows as JSON if asked). Returns a process exit code."""
    rows = bench_models()
    print(format_bench_table(rows))
    if json_out:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover - manual use: python -m simulator.physiology.bench
    raise SystemExit(main_bench_sim(json_out=False))


__all__ = [
    "TARGET_RTF_8_SITES_250_HZ",
    "BenchRow",
    "bench_models",
    "format_bench_table",
    "grid_sites",
    "main_bench_sim",
]
