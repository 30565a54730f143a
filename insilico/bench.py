"""``neurostim bench headless``: real-time factor of whole lockstep runs (numbers, no asserts).

The default scenario (8 sites @ 250 Hz, default controller) for each signal model, every
sample through the real codec and sessions, best of ``repeats`` runs; with ``--profile``
one more profiled run per model, its time split into the loop's stages (insilico/profile.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from controller.config import ControllerConfig
from insilico.profile import StageTime, profile_stages
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


def profile_headless(virtual_s: float) -> dict[str, list[StageTime]]:
    """One profiled run per model (after an unprofiled warm-up that compiles the kernels)."""
    scenario = load_scenario("default")
    out: dict[str, list[StageTime]] = {}
    for model in MODELS:

        def run(model: str = model) -> float:
            spec = SimSpec(scenario, virtual_s, ControllerConfig(), model=model)
            return run_sim(spec).virtual_s

        run_sim(SimSpec(scenario, 60.0, ControllerConfig(), model=model))
        out[model] = profile_stages(run)
    return out


def main_bench_headless(virtual_s: float, repeats: int, json_out: bool, profile: bool) -> int:
    rows = bench_headless(virtual_s, repeats)
    profiles = profile_headless(virtual_s) if profile else {}
    if json_out:
        document: dict[str, object] = {"runs": rows}
        if profile:
            document["profile"] = {m: [asdict(s) for s in p] for m, p in profiles.items()}
        print(json.dumps(document if profile else rows, indent=2))
        return 0
    print(f"headless lockstep run, default scenario, {virtual_s:g} virtual s, best of {repeats}")
    print(f"{'model':<12} {'wall s':>8} {'x real time':>12} {'s per virtual day':>18}")
    for row in rows:
        print(
            f"{row['model']:<12} {row['wall_s']:>8.2f} {row['realtime_factor']:>12,.0f} "
            f"{row['wall_s_per_virtual_day']:>18.1f}"
        )
    for model, stages in profiles.items():
        total_us = sum(s.us_per_virtual_s for s in stages)
        print(f"\n{model}: profiled run, µs per virtual second by stage (total {total_us:,.0f})")
        for s in stages:
            print(f"  {s.stage:<14} {s.us_per_virtual_s:>8,.0f}  {100 * s.share:>5.1f} %")
    return 0
