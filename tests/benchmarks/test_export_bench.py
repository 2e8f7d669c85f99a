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


def _bench(tmp_path: Path, *args: str) -> str:
    """The benchmark's markdown report, run at a small N with ``args``."""
    report = tmp_path / "bench.md"
    out = subprocess.run(
        [sys.executable, str(BENCH), *args, "--write", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return report.read_text()


def test_benchmark_prints_every_figure(tmp_path) -> None:
    args = ["--profiles", "20000", "--naive-sample", "50"]
    if not _postgres_reachable():
        args.append("--skip-postgres")
    text = _bench(tmp_path, *args)
    for kind in ["sqlite"] + ([] if "--skip-postgres" in args else ["postgres"]):
        assert f"## {kind}" in text
    for stage in (
        "extract",
        "validate and map",
        "chunk",
        "upload and poll (0 ms)",
        "upload and poll (20 ms)",
        "reconcile (0 ms)",
        "validate and map, 2 partitions side by side",
    ):
        assert f"| {stage} |" in text
    assert "x the floor" in text and "naive client loop, 20 ms" in text and "faster" in text
    assert "partitions side by side (2 processes" in text
    warehouses = 1 if "--skip-postgres" in args else 2
    assert text.count("- target:") == 5 * warehouses  # each figure beside its target, met or missed


def test_benchmark_measures_the_preparation_alone(tmp_path) -> None:
    """--preparation-only: the preparation's stages and the floor, nothing uploaded."""
    text = _bench(tmp_path, "--profiles", "5000", "--skip-postgres", "--preparation-only")
    assert "## sqlite: preparation only" in text
    for stage in ("extract", "validate and map", "validate and map, 2 partitions side by side", "chunk"):
        assert f"| {stage} |" in text
    assert "upload and poll" not in text and "naive" not in text
    assert text.count("- target:") == 1 and "x the floor" in text


def test_benchmark_runs_the_export_as_the_dags_tasks(tmp_path) -> None:
    """The 10,000,000-profile mode (documented, not run in CI), at a small N: every task in its own
    process, each with its peak memory, beside the 1 GB target."""
    text = _bench(tmp_path, "--profiles", "5000", "--partitions", "2", "--skip-postgres")
    assert "## sqlite: one export run as the DAG's tasks, preparation in 2 partitions" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for task in (
        "check_audience",
        "extract",
        "validate_and_map, partition 1 of 2",
        "validate_and_map, partition 2 of 2",
        "plan",
        "chunk",
        "tag_jobs",
        "upload_and_poll, 1 mapped task(s), 8 at a time (wall time, highest peak)",
        "reconcile",
    ):
        peak_mb = float(rows[task].split("|")[3])
        assert 50 < peak_mb < 1024, rows[task]  # a process of its own: its imports, not the whole run's
    assert "- target: peak memory of any one task under 1,024 MB" in text and "-> MET" in text
    assert "| upload and poll (0 ms) |" not in text  # instead of the side-by-side report
