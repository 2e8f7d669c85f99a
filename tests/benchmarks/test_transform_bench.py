"""The computed-field benchmark runs at a small N on every test run, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "transform_bench.py"


def test_transform_benchmark_prints_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--profiles", "5000"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for stage in (
        "read the staged parts",
        "read + transform (transforms.example:enrich)",
        "validate and map, no transform",
        "validate and map, transform + its 3 columns mapped",
    ):
        assert f"| {stage} | " in out.stdout
    assert "The transform itself: " in out.stdout
