"""``neurostim calibrate RECORDING.edf [--attacks FILE] --out FILE``: a per-patient detector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.calibrate import read_attacks_file, recording_feature_log, truth_attack_onsets
from controller.config import ConfigError, ControllerConfig, load_config
from controller.detector.calibration import CalibrationSettings, calibrate
from firmware_bridge.exit_codes import ExitCode
from firmware_bridge.units import SECONDS_PER_DAY


def register_calibrate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="learn a patient's detector (signature, thresholds, baseline) from a run-in",
        description=(
            "Calibrate the prodrome detector on a patient's own run-in recording: the "
            "signature's features, directions and weights, the thresholds at the chosen time "
            "in warning on the run-in's ROC, and the baseline (which leaves out the 48 h "
            "before every attack). Load the result with [detector] calibration_file."
        ),
    )
    parser.add_argument("recording", type=Path, help="EDF/EDF+ run-in recording")
    parser.add_argument(
        "--attacks",
        type=Path,
        help="attack onsets, s from the recording start (text: one per line; or JSON); "
        "default: the recording's 'truth attack_onset' annotations (a sim run-in)",
    )
    parser.add_argument("--out", type=Path, required=True, help="calibration file to write")
    parser.add_argument("--config", type=Path, help="controller configuration TOML")
    parser.add_argument(
        "--time-in-warning",
        type=float,
        default=0.30,
        help="largest time in warning on the run-in (0-1, default 0.30)",
    )
    parser.add_argument("--min-attacks", type=int, default=5, help="attacks the run-in needs")
    parser.add_argument(
        "--exclude-before-h",
        type=float,
        default=48.0,
        help="hours before each onset the baseline never learns from (default 48)",
    )
    parser.add_argument(
        "--exclude-after-h",
        type=float,
        default=24.0,
        help="hours after each onset the baseline never learns from (default 24)",
    )
    parser.add_argument(
        "--occurrence-periods-h",
        default="12,24,48",
        help="comma-separated occurrence periods to try, h (default 12,24,48)",
    )
    parser.add_argument(
        "--horizon-min", type=float, default=30.0, help="least useful warning, min (default 30)"
    )
    parser.set_defaults(handler=_calibrate_command)


def _fail(message: str) -> int:
    print(f"neurostim calibrate: {message}", file=sys.stderr)
    return ExitCode.USAGE


def _hours(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"--occurrence-periods-h {text!r}: expected numbers like 12,24,48"
        ) from None


def _calibrate_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config) if args.config is not None else ControllerConfig()
        settings = CalibrationSettings(
            target_time_in_warning=args.time_in_warning,
            min_attacks=args.min_attacks,
            baseline_exclusion_before_h=args.exclude_before_h,
            baseline_exclusion_after_h=args.exclude_after_h,
            occurrence_periods_h=_hours(args.occurrence_periods_h),
            horizon_min=args.horizon_min,
        )
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    if not args.recording.is_file():
        return _fail(f"{args.recording}: no such recording")
    try:
        if args.attacks is not None:
            onsets = read_attacks_file(args.attacks)
        else:
            onsets = truth_attack_onsets(args.recording)
            if not onsets:
                return _fail(
                    f"{args.recording} has no 'truth attack_onset' annotations; give --attacks"
                )
        if len(onsets) < settings.min_attacks:
            return _fail(
                f"{len(onsets)} attack onset(s) given; calibration needs at least "
                f"{settings.min_attacks} (--min-attacks)"
            )
        log = recording_feature_log(args.recording, config)
        signature = calibrate(log, onsets, config.detector, settings)
    except OSError as exc:  # pyedflib: not an EDF file
        return _fail(f"{args.recording}: cannot read as EDF/EDF+: {exc}")
    except ValueError as exc:  # includes CalibrationError
        return _fail(str(exc))
    signature.save(args.out)
    fit = signature.run_in
    features = ", ".join(f"{f.name} {f.direction} {f.weight:.2f}" for f in signature.features)
    print(
        f"calibrated on {fit.duration_s / SECONDS_PER_DAY:.2f} days, {fit.attacks} attacks: "
        f"{features}; "
        f"upper {signature.upper_threshold:.3f}, lower {signature.lower_threshold:.3f}; "
        f"occurrence period {signature.occurrence_period_h:g} h; run-in sensitivity "
        f"{(fit.sensitivity or 0.0):.2f} at time in warning {fit.time_in_warning:.2f} "
        f"(p = {fit.p_value if fit.p_value is not None else float('nan'):.3g}); wrote {args.out}"
    )
    return ExitCode.OK
