"""A directory of finished trial jobs, so that a killed trial restarted with the same
arguments runs only the jobs it is missing.

Each result is one JSON file named by the SHA-256 of the job's full specification
(patient, phenotype, seed, policy, days, model, controller configuration) together with the
model version: a fingerprint of the source of every package that shapes a run's numbers
(controller, simulator, firmware_bridge, insilico). Any change to that code gives new keys,
so results of older code are never mixed into a new trial. Files are written to a temporary
name and renamed, so a kill leaves either the whole result or nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Packages whose code decides what a run reports.
MODEL_PACKAGES = ("controller", "simulator", "firmware_bridge", "insilico")
STORE_FORMAT = "neurostim-trial-result/1"


@lru_cache(maxsize=1)
def model_version() -> str:
    """SHA-256 over the source files (``.py``, ``.toml``) of MODEL_PACKAGES."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in MODEL_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix not in (".py", ".toml") or "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def spec_key(spec: dict[str, Any]) -> str:
    """The key of a job: SHA-256 of its canonical JSON specification and the model version."""
    document = {"format": STORE_FORMAT, "model_version": model_version(), "spec": spec}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResultStore:
    """Finished results under ``directory``, one ``KEY.json`` per job."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """The stored result of ``spec``, None when it was never finished."""
        path = self.path(spec_key(spec))
        if not path.exists():
            return None
        document = json.loads(path.read_text(encoding="utf-8"))
        result: dict[str, Any] = document["result"]
        return result

    def save(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        key = spec_key(spec)
        document = {
            "format": STORE_FORMAT,
            "model_version": model_version(),
            "spec": spec,
            "result": result,
        }
        temporary = self.directory / f".{key}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, self.path(key))

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.json"))
