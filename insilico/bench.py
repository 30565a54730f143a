"""``neurostim bench headless``: real-time factor of whole lockstep runs (numbers, no asserts).

The default scenario (8 sites @ 250 Hz, default controller) for each signal model, every
sample through the real codec and sessions, best of ``repeats`` runs.
"""

from __future__ import annotations

import json

from controller.config import ControllerConfig
from insilico.runner import SimSpec, run_sim
from simulator.physiology.scenario import load_scenario

MODELS = ("spectral", "jansen-rit")


def bench_headless(virtual_s: float, repeats: int) -> list[dict[str, float | str]]:
    scenario = load_scenario("default")
    rows: list[dict[str, float | str]] = []
    for model in MODELS:
        best_wall_s = min(
            run_sim(SimSpec(scenario, virtual_s, ControllerConfig(), model=model)).wall_s
            for _ in range(repeats)
        )
        rows.append(
            {
                "model": model,
                "virtual_s": virtual_s,
                "wall_s": best_wall_s,
                "realtime_factor": virtual_s / best_wall_s,
                "wall_s_per_virtual_day": 86400.0 * best_wall_s / virtual_s,
            }
        )
    return rows


def main_bench_headless(virtual_s: float, repeats: int, json_out: bool) -> int:
    rows = bench_headless(virtual_s, repeats)
    if json_out:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"headless lockstep run, default scenario, {virtual_s:g} virtual s, best of {repeats}")
    print(f"{'model':<12} {'wall s':>8} {'x real time':>12} {'s per virtual day':>18}")
    for row in rows:
        print(
            f"{row['model']:<12} {row['wall_s']:>8.2f} {row['realtime_factor']:>12,.0f} "
            f"{row['wall_s_per_virtual_day']:>18.1f}"
        )
    return 0
