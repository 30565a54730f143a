"""Replay benchmark of the controller's hop: FeatureExtractor + Detector alone (printed).

Why a replay: in a whole simulation the hop is a fifth of the time and the machine's noise
hides changes of a few µs; replaying the same inputs through the two stages alone does not.

``record`` runs ``neurostim sim`` and stores what the controller core gives its extractor
and detector (constructor arguments, every ``push_counts`` block, every blanking call);
``replay`` times the extractor over the pushes and the detector over the frames, in chunks
of 200, keeping each chunk's fastest of ``--repeats`` runs (a preempted chunk does not
count), and prints µs per virtual second (two SAMPLES blocks per virtual second) and a
SHA-256 of every frame and output field, to compare two versions of the code.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_hop record /tmp/hop-6h.pkl --duration 6h --seed 3
    .venv/bin/python -m benchmarks.bench_hop replay /tmp/hop-6h.pkl --repeats 4
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import pickle
import sys
from collections.abc import Callable
from time import perf_counter
from typing import Any

import numpy as np

from controller.detector import Detector
from controller.detector.types import DetectorOutput
from controller.features.extractor import FeatureExtractor
from controller.features.frame import FeatureFrame

CHUNK = 200
VIRTUAL_S_PER_PUSH = 0.5


def record(path: str, duration: str, seed: int) -> None:
    """Run the simulation with the two stages' entry points wrapped; pickle their inputs."""
    from neurostim_cli.main import main

    log: dict[str, Any] = {"events": []}
    events: list[tuple[Any, ...]] = log["events"]
    extractor_init, detector_init = FeatureExtractor.__init__, Detector.__init__
    push_counts, blank = FeatureExtractor.push_counts, Detector.blank_after_change

    def new_extractor(self: FeatureExtractor, *args: Any, **kwargs: Any) -> None:
        log["extractor"] = (args, kwargs)
        extractor_init(self, *args, **kwargs)

    def new_detector(self: Detector, *args: Any, **kwargs: Any) -> None:
        log["detector"] = (args, kwargs)
        detector_init(self, *args, **kwargs)

    def push(self: FeatureExtractor, counts: np.ndarray, scale: np.ndarray) -> list[FeatureFrame]:
        events.append(("push", np.array(counts), np.array(scale)))
        return push_counts(self, counts, scale)

    def blank_after(self: Detector, t_change_s: float) -> None:
        events.append(("blank", t_change_s))
        blank(self, t_change_s)

    # setattr: mypy refuses assignments to methods
    setattr(FeatureExtractor, "__init__", new_extractor)  # noqa: B010
    setattr(Detector, "__init__", new_detector)  # noqa: B010
    setattr(FeatureExtractor, "push_counts", push)  # noqa: B010
    setattr(Detector, "blank_after_change", blank_after)  # noqa: B010
    sys.argv = ["neurostim", "sim", "--duration", duration, "--seed", str(seed)]
    with contextlib.suppress(SystemExit):
        main()
    with open(path, "wb") as file:
        pickle.dump(log, file)


def _digest(frames: list[FeatureFrame], outputs: list[DetectorOutput]) -> str:
    sha = hashlib.sha256()

    def add(value: object) -> None:
        if isinstance(value, np.ndarray):
            sha.update(repr((value.dtype, value.shape)).encode())
            sha.update(np.ascontiguousarray(value).tobytes())
        elif dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                sha.update(field.name.encode())
                add(getattr(value, field.name))
        elif isinstance(value, dict):
            for key, item in value.items():
                sha.update(repr(key).encode())
                add(item)
        elif isinstance(value, float):
            sha.update(value.hex().encode())
        else:
            sha.update(repr(value).encode())

    for item in [*frames, *outputs]:
        add(item)
    return sha.hexdigest()


def replay(path: str, repeats: int) -> None:
    """Time the recorded inputs through both stages; print µs per virtual second and digest."""
    with open(path, "rb") as file:
        log = pickle.load(file)
    pushes = [event for event in log["events"] if event[0] == "push"]
    e_args, e_kwargs = log["extractor"]
    d_args, d_kwargs = log["detector"]

    def extract(timer: Callable[[], float]) -> tuple[list[FeatureFrame], list[float], list[int]]:
        extractor = FeatureExtractor(*e_args, **e_kwargs)
        frames: list[FeatureFrame] = []
        marks: list[int] = []  # frames after each push
        times = []
        for first in range(0, len(pushes), CHUNK):
            started = timer()
            for _, counts, scale in pushes[first : first + CHUNK]:
                frames.extend(extractor.push_counts(counts, scale))
                marks.append(len(frames))
            times.append(timer() - started)
        return frames, times, marks

    def detect(
        frames: list[FeatureFrame], blank_at: dict[int, float], timer: Callable[[], float]
    ) -> tuple[list[DetectorOutput], list[float]]:
        detector = Detector(*d_args, **d_kwargs)
        outputs = []
        times = []
        for first in range(0, len(frames), CHUNK):
            started = timer()
            for i in range(first, min(first + CHUNK, len(frames))):
                if i in blank_at:
                    detector.blank_after_change(blank_at[i])
                outputs.append(detector.update(frames[i]))
            times.append(timer() - started)
        return outputs, times

    best_e: list[float] | None = None
    best_d: list[float] | None = None
    digest = ""
    for _ in range(repeats):
        frames, times_e, marks = extract(perf_counter)
        blank_at: dict[int, float] = {}
        n_pushed = 0
        for event in log["events"]:
            if event[0] == "push":
                n_pushed += 1
            elif event[0] == "blank":
                blank_at[marks[n_pushed - 1]] = event[1]
        outputs, times_d = detect(frames, blank_at, perf_counter)
        best_e = (
            times_e if best_e is None else [min(a, b) for a, b in zip(best_e, times_e, strict=True)]
        )
        best_d = (
            times_d if best_d is None else [min(a, b) for a, b in zip(best_d, times_d, strict=True)]
        )
        digest = digest or _digest(frames, outputs)
    assert best_e is not None and best_d is not None
    virtual_s = VIRTUAL_S_PER_PUSH * len(pushes)
    extractor_us, detector_us = (1e6 * sum(times) / virtual_s for times in (best_e, best_d))
    print(
        f"us per virtual second: extractor {extractor_us:.2f}  detector {detector_us:.2f}  "
        f"both {extractor_us + detector_us:.2f}  ({len(pushes)} pushes, sum of per-chunk "
        f"minima over {repeats} runs)\nsha256 of frames and outputs: {digest}"
    )


def main(argv: list[str] | None = None) -> int:
    """``record`` or ``replay`` (see the module docstring); return the exit code."""
    parser = argparse.ArgumentParser(prog="bench_hop")
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("path")
    rec.add_argument("--duration", default="6h")
    rec.add_argument("--seed", type=int, default=3)
    rep = commands.add_parser("replay")
    rep.add_argument("path")
    rep.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.path, args.duration, args.seed)
    else:
        replay(args.path, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
