"""Ceilings for a closed-loop trial, in the physiology tier, for the same patients and seeds.

Every closed-loop result is shown next to two references a detector-driven policy has to
be judged against:

* ``ceiling: open-loop`` - the labelled daily session (the open-loop policy's schedule
  and setting) with no detector at all;
* ``ceiling: perfect detector`` - one labelled session at every true prodrome onset
  (ground truth), with the prodrome-session policy's lockout: what a detector with
  sensitivity 1 and no false alarm would allow.

Both run the patient's migraine cycle and therapy response only (no signals, no
controller), so they cost a fraction of a second per patient-month.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controller.config import ControllerConfig
from firmware_bridge.units import SECONDS_PER_DAY
from insilico import scoring
from insilico.physiology_tier import Schedule, SessionPlan, migraine_days, run_course
from insilico.report import MeanCI, TrialAggregate, TrialEntry
from simulator.devices import DEFAULT_DEVICE, device_preset
from simulator.physiology.patient import VirtualPatient

CEILING_STEP_S = 60.0
#: The trial's scenarios start the patient's clock at 08:00 (the scenario default).
START_TIME_OF_DAY_H = 8.0
TIER = "physiology"


def ceiling_schedules(config: ControllerConfig) -> dict[str, Schedule]:
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
        "ceiling: open-loop": Schedule("daily", plan, times_of_day_s=times),
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
        ),
    }


def ceiling_aggregates(
    entries: Sequence[TrialEntry], config: ControllerConfig
) -> list[TrialAggregate]:
    """Per ceiling and phenotype group, for the patients (and seeds) of ``entries``."""
    patients = sorted({(e.patient, e.phenotype, e.seed, e.days) for e in entries})
    device = device_preset(DEFAULT_DEVICE)
    rows: dict[str, list[tuple[str, float, float, float, float]]] = {}
    off_mmd: dict[int, float] = {}
    for name, schedule in {"off": Schedule.none(), **ceiling_schedules(config)}.items():
        for index, phenotype, seed, days in patients:
            patient = VirtualPatient.from_phenotype(phenotype, seed)
            result = run_course(patient, seed, days, schedule, step_s=CEILING_STEP_S, device=device)
            mmd = migraine_days(result.attacks, 0.0, days * SECONDS_PER_DAY) * 30.0 / days
            if name == "off":
                off_mmd[index] = mmd
                continue
            rows.setdefault(name, []).append(
                (
                    phenotype,
                    len(result.attacks) * 30.0 / days,
                    mmd,
                    result.stim_time_s,
                    off_mmd[index],
                )
            )
    groups = ["all", *sorted({p for _, p, _, _ in patients})]
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
