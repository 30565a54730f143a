"""The physiology source alone, read as the firmware reads it: a byte guard and a timer.

``hash`` runs the default scenario's ``PatientSimulation`` in 500-sample blocks with the
stimulation switched on and off (and its settings changed) at fixed blocks, once as is
and once with a sensor fault of every kind scheduled (onsets and ends off the block and
cell grids), and prints a SHA-256 of every block's bytes, of the impedance readings and
of the ground truth per run. Run it on two checkouts (each first on ``PYTHONPATH``) and
compare the lines: a speed change must leave them equal. ``time`` prints CPU µs per
virtual second of ``read`` (best of ``--repeat``), never asserted::

    .venv/bin/python -m benchmarks.bench_source hash [--hours 24] [--jr-hours 1]
    .venv/bin/python -m benchmarks.bench_source time [--seconds 3600] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import time

from simulator.physiology.patient import PatientSimulation
from simulator.physiology.scenario import load_scenario
from simulator.physiology.sensor_faults import ActiveSensorFault, SensorFaultKind
from simulator.signals import StimulationInput

BLOCK_SAMPLES = 500
SEED = 3

#: Stimulation per block index: off, then on with one setting, off, another setting...
_STIM_SETTINGS = (
    StimulationInput(),
    StimulationInput(2.0, 250.0, 20.0),
    StimulationInput(),
    StimulationInput(3.5, 200.0, 60.0),
    StimulationInput(1.0, 300.0, 130.0),
)


def stimulation_at(block: int) -> StimulationInput:
    """On and off in runs of varying length (7, 11, 13... blocks), settings cycling."""
    return _STIM_SETTINGS[(block // 7 + block // 11 + block // 13) % len(_STIM_SETTINGS)]


def source(model: str = "spectral") -> PatientSimulation:
    return load_scenario("default").build_source(seed_override=SEED, model_override=model)


def schedule_faults(sim: PatientSimulation, hours: float) -> None:
    """One fault of every kind per virtual hour, on different channels, off the grids."""
    kinds = list(SensorFaultKind)
    for hour in range(max(1, int(hours))):
        for k, kind in enumerate(kinds):
            start_s = hour * 3600.0 + 100.0 + 311.3 * k + 0.137 * hour
            fault = ActiveSensorFault(kind, ((k + hour) % 8, (k + hour + 3) % 8), rail_uv=40.0)
            sim.schedule_sensor_fault(fault, start_s, 95.7 + 13.1 * k)


#: Read sizes of the ``odd`` runs (cycled): across cell and segment borders, 0 and 1 too.
_ODD_SIZES = (500, 137, 1000, 1, 0, 2000, 999, 3, 2500, 250)


def run_hashes(
    model: str, hours: float, faults: bool, stim: bool, odd: bool = False
) -> dict[str, str]:
    sim = source(model)
    if faults:
        schedule_faults(sim, hours)
    total = round(hours * 3600.0 * sim.sampling_rate_hz)
    sizes = _ODD_SIZES if odd else (BLOCK_SAMPLES,)
    samples, impedance, truth = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    off = StimulationInput()
    done = block = 0
    while done < total:
        n = sizes[block % len(sizes)]
        uv = sim.read(n, stimulation_at(block) if stim else off)
        done += n
        block += 1
        samples.update(uv.tobytes())
        samples.update(repr((uv.shape, uv.dtype.str, uv.flags.c_contiguous)).encode())
        reading = sim.impedance_ohm()
        impedance.update(b"-" if reading is None else reading.tobytes())
        for event in sim.drain_ground_truth():
            truth.update(repr(event).encode())
    truth.update(repr(sim.ground_truth).encode())
    return {
        "samples": samples.hexdigest(),
        "impedance": impedance.hexdigest(),
        "truth": truth.hexdigest(),
    }


def hash_main(hours: float, jr_hours: float) -> None:
    runs = [
        ("spectral", hours, False, True, False),
        ("spectral", hours, True, True, False),
        ("spectral", min(hours, 6.0), False, False, False),
        ("spectral", min(hours, 3.0), True, True, True),
        ("jansen-rit", jr_hours, False, True, False),
        ("jansen-rit", jr_hours, True, True, False),
        ("jansen-rit", jr_hours / 2, True, True, True),
    ]
    for model, run_hours, faults, stim, odd in runs:
        if run_hours <= 0:
            continue
        digests = run_hashes(model, run_hours, faults, stim, odd)
        label = f"{model} {run_hours:g}h faults={faults} stim={stim} odd={odd}"
        for name, digest in digests.items():
            print(f"{label:50s} {name:9s} {digest}")


def read_cpu_s(seconds: float, model: str) -> float:
    sim = source(model)
    blocks = round(seconds * sim.sampling_rate_hz) // BLOCK_SAMPLES
    off = StimulationInput()
    start = time.process_time()
    for _ in range(blocks):
        sim.read(BLOCK_SAMPLES, off)
    return time.process_time() - start


def time_main(seconds: float, repeat: int, model: str) -> None:
    read_cpu_s(60.0, model)  # warm-up: numba caches, imports
    best = min(read_cpu_s(seconds, model) for _ in range(repeat))
    print(f"{model} source read  {best * 1e6 / seconds:7.2f} CPU µs per virtual s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("hash")
    h.add_argument("--hours", type=float, default=24.0)
    h.add_argument("--jr-hours", type=float, default=0.5)
    t = sub.add_parser("time")
    t.add_argument("--seconds", type=float, default=3600.0)
    t.add_argument("--repeat", type=int, default=5)
    t.add_argument("--model", default="spectral")
    args = parser.parse_args()
    if args.command == "hash":
        hash_main(args.hours, args.jr_hours)
    else:
        time_main(args.seconds, args.repeat, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
