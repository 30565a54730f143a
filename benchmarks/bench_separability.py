"""How well 5-min averages separate late prodrome from interictal EEG, per patient.

Cohen's d (pooled SD) of 5-min log band powers (mean over sites) between interictal
windows and windows in the second half of a prodrome, for a few simulated patients. The
literature reports small group-level effects (the prodrome literature); a simulator whose
patients show d of 4-20 makes detection trivial. Runs the full signal model (spectral),
so it takes a few minutes:

    nice -n 10 .venv/bin/python benchmarks/bench_separability.py [--patients 8] [--hours 60]

Only public simulator calls are used, so the same script measures an older checkout
(``PYTHONPATH=/path/to/checkout``) for a before/after comparison.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import signal

from simulator.physiology.patient import PatientSimulation, VirtualPatient
from simulator.signals import NO_STIMULATION

FS_HZ = 250.0
WINDOW_S = 300.0
BANDS = (("delta", 1, 4), ("theta", 4, 8), ("alpha", 8, 13), ("beta", 13, 30))
FEATURES = ("delta", "theta", "alpha", "beta", "rel_delta", "rel_beta")


def window_features(x: np.ndarray) -> dict[str, float]:
    f, pxx = signal.welch(x, fs=FS_HZ, nperseg=int(4 * FS_HZ), axis=-1)
    powers = {name: pxx[:, (f >= lo) & (f < hi)].sum(axis=1) for name, lo, hi in BANDS}
    total = sum(powers.values())
    out = {name: float(np.mean(np.log(p))) for name, p in powers.items()}
    out["rel_delta"] = float(np.mean(np.log(powers["delta"] / total)))
    out["rel_beta"] = float(np.mean(np.log(powers["beta"] / total)))
    return out


def cohens_d(a: list[float], b: list[float]) -> float:
    pooled = np.sqrt(
        (np.var(a, ddof=1) * (len(a) - 1) + np.var(b, ddof=1) * (len(b) - 1))
        / (len(a) + len(b) - 2)
    )
    return float((np.mean(b) - np.mean(a)) / pooled) if pooled > 0 else float("nan")


def patient_d(seed: int, hours: float) -> dict[str, float]:
    patient = VirtualPatient.from_phenotype("episodic-without-aura", seed)
    sim = PatientSimulation(patient, "spectral", seed=seed)
    sim.force_prodrome(24 * 3600.0)
    n = int(WINDOW_S * FS_HZ)
    interictal: list[dict[str, float]] = []
    late_prodrome: list[dict[str, float]] = []
    prodrome_start: float | None = None
    for _ in range(int(hours * 3600 / WINDOW_S)):
        phase_before = sim.phase.value
        x = np.concatenate([sim.read(500, NO_STIMULATION) for _ in range(n // 500)], axis=1)
        for event in sim.drain_ground_truth():
            if event.kind == "prodrome_onset":
                prodrome_start = event.t_s
        phase = sim.phase.value
        if phase != phase_before:
            continue
        if phase == "interictal":
            interictal.append(window_features(x))
        elif phase == "prodrome" and prodrome_start is not None:
            progress = sim.cycle.phase_progress
            if progress >= 0.5:
                late_prodrome.append(window_features(x))
    if len(interictal) < 3 or len(late_prodrome) < 3:
        return {}
    return {
        k: cohens_d([w[k] for w in interictal], [w[k] for w in late_prodrome]) for k in FEATURES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--hours", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    rows = []
    for i in range(args.patients):
        d = patient_d(args.seed + i, args.hours)
        if d:
            rows.append(d)
            print(f"patient {args.seed + i}: " + "  ".join(f"{k} {v:+6.2f}" for k, v in d.items()))
    if not rows:
        print("no patient with enough windows")
        return
    print("|d| over patients (median / max):")
    for k in FEATURES:
        values = np.abs([r[k] for r in rows])
        print(f"  {k:9s} {np.median(values):6.2f} / {np.max(values):6.2f}")
    best = [max(abs(v) for v in r.values()) for r in rows]
    print(f"best feature per patient |d|: median {np.median(best):.2f}, max {np.max(best):.2f}")


if __name__ == "__main__":
    main()
