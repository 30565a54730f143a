"""Seeds of a cohort trial, from ``numpy.random.SeedSequence`` so that they do not depend on
the order, the backend or the number of workers that run the jobs.

A patient's seed (the drawn patient and its signal noise) comes from (trial seed, patient)
only, so every policy meets the same patient with the same noise: a paired comparison. A
random stream that may differ between policies (none exists today: every policy is
deterministic given its inputs) must come from :func:`job_seed` of (trial seed, patient,
policy), never from the patient's seed.
"""

from __future__ import annotations

import numpy as np


def patient_seed(trial_seed: int, patient: int) -> int:
    """The seed of patient ``patient`` of a trial seeded ``trial_seed`` (same for every policy)."""
    return int(np.random.SeedSequence([trial_seed, patient]).generate_state(1)[0])


def job_seed(trial_seed: int, patient: int, policy: str) -> int:
    """The seed of a stream that belongs to one patient under one policy."""
    code = int.from_bytes(policy.encode("utf-8"), "big")
    return int(np.random.SeedSequence([trial_seed, patient, code]).generate_state(1)[0])
