"""Ceilings for a closed-loop trial, in the physiology tier, for the same patients and seeds.

Every closed-loop result is shown next to two references a detector-driven policy has to
be judged against:

* ``ceiling: open-loop`` - the labelled daily session (the open-loop policy's schedule
  and setting) with no detector at all;
* ``ceiling: perfect detector`` - one labelled session at every true prodrome onset
  (ground truth), with the prodrome-session policy's lockout: what a detector with
  sensitivity 1 and no false alarm would allow.

Both run the patient's migraine cycle and therapy response only (no signals, no
controller), so they cost a fraction of a second per patient-month. After a run-in (the
entries' ``run_in_days``) the ceilings run the same run-in without stimulation and are
scored, like the arms, on the period after it; the patient counts dose in the trial
device's labelled sessions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from controller.config import ControllerConfig
from firmware_bridge.units import SECONDS_PER_DAY
from insilico import scoring
from insilico.device_setup import merged_overrides, resolve_device
from insilico.physiology_tier import Schedule, SessionPlan, migraine_days, run_course
from insilico.report import MeanCI, TrialAggregate, TrialEntry
from simulator.devices import DEFAULT_DEVICE
from simulator.physiology.patient import VirtualPatient

#: The full simulation's cycle step: the migraine cycle is chaotic in its step (a coarser
#: step gives the same patient other attack times), so at this step the ceilings' `off`
#: course is the full-loop arms' own patient, attack for attack (tier agreement).
CEILING_STEP_S = 2.0
#: The trial's scenarios start the patient's clock at 08:00 (the scenario default).
START_TIME_OF_DAY_H = 8.0
TIER = "physiology"


def ceiling_schedules(
    config: ControllerConfig, treatment_start_s: float = 0.0
) -> dict[str, Schedule]:
    policy, env = config.policy, config.envelope
    therapy = policy.stimulation
    plan = SessionPlan(
        therapy.amplitude_ma,
        therapy.pulse_width_us,
        therapy.frequency_hz,
        policy.open_loop.session_s,
        env.ramp_up_ma_per_s,
        env.ramp_down_ma_per_s,
    )
    # The runner aligns the open-loop day to the patient's clock unless the configuration
    # sets the offset; the tier's times are the patient's.
    open_loop = policy.open_loop
    shift = 0.0
    if "day_start_offset_s" in open_loop.model_fields_set:
        shift = START_TIME_OF_DAY_H * 3600.0 - open_loop.day_start_offset_s
    times = tuple((t + shift) % SECONDS_PER_DAY for t in open_loop.session_times_of_day_s)
    return {
        "ceiling: open-loop": Schedule(
            "daily", plan, times_of_day_s=times, treatment_start_s=treatment_start_s
        ),
        "ceiling: perfect detector": Schedule(
            "prodrome",
            SessionPlan(
                therapy.amplitude_ma,
                therapy.pulse_width_us,
                therapy.frequency_hz,
                policy.prodrome_session.session_s,
                env.ramp_up_ma_per_s,
                env.ramp_down_ma_per_s,
            ),
            lockout_s=policy.prodrome_session.lockout_s,
            treatment_start_s=treatment_start_s,
        ),
    }


def ceiling_aggregates(
    entries: Sequence[TrialEntry],
    config: ControllerConfig,
    *,
    device: str = DEFAULT_DEVICE,
    patient_overrides: dict[str, dict[str, Any]] | None = None,
    step_s: float = CEILING_STEP_S,
) -> list[TrialAggregate]:
    """Per ceiling and phenotype group, for the patients (and seeds) of ``entries``."""
    patients = sorted({(e.patient, e.phenotype, e.seed, e.days, e.run_in_days) for e in entries})
    preset = resolve_device(device)
    overrides = merged_overrides(patient_overrides or {}, preset)
    rows: dict[str, list[tuple[str, float, float, float, float]]] = {}
    for _patient, phenotype, seed, days, run_in_days in patients:
        patient = VirtualPatient.from_phenotype(phenotype, seed, overrides)
        start_s = run_in_days * SECONDS_PER_DAY
        end_s = start_s + days * SECONDS_PER_DAY
        schedules = {"off": Schedule.none(), **ceiling_schedules(config, start_s)}
        off_mmd = 0.0
        for name, schedule in schedules.items():
            result = run_course(
                patient, seed, run_in_days + days, schedule, step_s=step_s, device=preset
            )
            attacks = [a for a in result.attacks if start_s <= a[0] < end_s]
            mmd = migraine_days(result.attacks, start_s, end_s) * 30.0 / days
            if name == "off":
                off_mmd = mmd
                continue
            stim_s = result.stim_time_s  # no session before the treatment start
            rows.setdefault(name, []).append(
                (phenotype, len(attacks) * 30.0 / days, mmd, stim_s, off_mmd)
            )
    groups = ["all", *sorted({p for _, p, _, _, _ in patients})]
    out = []
    for name, values in rows.items():
        for group in groups if len(groups) > 2 else ["all"]:
            chosen = [v for v in values if group in ("all", v[0])]
            if not chosen:
                continue
            rate = scoring.mean_ci95([v[1] for v in chosen])
            change = scoring.mean_ci95([v[2] - v[4] for v in chosen])
            responders = sum(1 for v in chosen if v[4] > 0 and v[2] <= 0.5 * v[4])
            out.append(
                TrialAggregate(
                    policy=name,
                    phenotype=group,
                    patients=len(chosen),
                    attacks_per_30d=MeanCI(
                        mean=rate[0], ci95_low=rate[1], ci95_high=rate[2], n=len(chosen)
                    ),
                    reduction_vs_off=None,
                    responder_rate=None,
                    teed_vs_open_loop=None,
                    sensitivity=None,
                    chance_sensitivity=None,
                    false_alarms_per_day=None,
                    tier=TIER,
                    change_mmd_vs_off=MeanCI(
                        mean=change[0], ci95_low=change[1], ci95_high=change[2], n=len(chosen)
                    ),
                    mmd_responder_rate=responders / len(chosen),
                    mmd_responder_ci95=scoring.wilson_ci95(responders, len(chosen)),
                    stim_time_h_per_patient=float(np.mean([v[3] for v in chosen])) / 3600.0,
                )
            )
    return out
