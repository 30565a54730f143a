"""Benchmark of the streaming feature pipeline (printed, not asserted).

Run from the repository root: ``.venv/bin/python -m benchmarks.bench_features [--json]``.
"""

from __future__ import annotations

import json
import sys

from controller.features.bench import bench_features_rows, format_rows


def bench_features(json_out: bool = False) -> int:
    """Print time per hop, real-time factor and speed-up against scipy; return exit code."""
    rows = bench_features_rows()
    if json_out:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(bench_features(json_out="--json" in sys.argv[1:]))
