"""The export benchmark runs at a small N on every test run, so it cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "export_bench.py"


def _postgres_reachable() -> bool:
    import psycopg2

    try:
        psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        ).close()
    except psycopg2.OperationalError:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required under CI")
        return False
    return True


def test_benchmark_prints_every_figure(tmp_path) -> None:
    args = ["--profiles", "20000", "--naive-sample", "50", "--write", str(tmp_path / "bench.md")]
    if not _postgres_reachable():
        args.append("--skip-postgres")
    out = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    text = (tmp_path / "bench.md").read_text()
    for kind in ["sqlite"] + ([] if "--skip-postgres" in args else ["postgres"]):
        assert f"## {kind}" in text
    for stage in (
        "extract",
        "validate and map",
        "chunk",
        "upload and poll (0 ms)",
        "upload and poll (20 ms)",
        "reconcile (0 ms)",
    ):
        assert f"| {stage} |" in text
    assert "x the floor" in text and "naive client loop, 20 ms" in text and "faster" in text
    warehouses = 1 if "--skip-postgres" in args else 2
    assert text.count("- target:") == 5 * warehouses  # each figure beside its target, met or missed
