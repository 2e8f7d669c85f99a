"""The export benchmark runs at a small N with every test run, so it cannot rot.

It runs as `make bench` runs it, in a subprocess: both warehouses when PostgreSQL is reachable (a missing
PostgreSQL fails under CI instead of being skipped), the naive loop on a small sample, the floor, and the
targets; then the output must hold every figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "export_bench.py"
PROFILES = 20_000
NUMBER = r"[\d,]+(\.\d+)?"
STAGES = (
    "extract",
    "validate and map",
    "chunk",
    "upload and poll (+0 ms)",
    "reconcile (+0 ms)",
    "upload and poll (+20 ms)",
    "reconcile (+20 ms)",
    "floor",
)
TARGETS = (
    "warehouse to finished batches, +0 ms a request",
    "warehouse to finished batches, +20 ms a request",
    "preparation vs the floor",
    "faster than the naive way, +20 ms a request",
    "task instances a run uses (5 + batch jobs)",
)

pytestmark = pytest.mark.slow


def postgres_reachable() -> bool:
    """True when PostgreSQL answers at 127.0.0.1:5432; under CI its absence fails the test."""
    import psycopg2

    try:
        psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        ).close()
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required under CI: {exc}")
        return False
    return True


@pytest.fixture(scope="module")
def warehouses() -> list[str]:
    return ["SQLite", "PostgreSQL"] if postgres_reachable() else ["SQLite"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, warehouses: list[str]) -> tuple[str, Path]:
    """Run the benchmark once for the module; returns its stdout and the markdown it wrote."""
    tmp = tmp_path_factory.mktemp("bench")
    written = tmp / "bench.md"
    args = ["--profiles", str(PROFILES), "--naive-sample", "100", "--write", str(written)]
    args += ["--workdir", str(tmp / "work")]
    if warehouses == ["SQLite"]:
        args.append("--skip-postgres")
    done = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout, written


def test_every_stage_has_time_rate_and_peak_memory(bench: tuple[str, Path], warehouses: list[str]) -> None:
    out, _ = bench
    for label in warehouses:
        assert f"### {label} warehouse" in out
    for stage in STAGES:
        # stage | seconds | rows | rows/s | peak RSS MB | RSS at start MB, once per warehouse
        row = re.compile(rf"^\| {re.escape(stage)}[^|]*" + rf"\|\s+{NUMBER}\s+" * 5 + r"\|$", re.M)
        assert len(row.findall(out)) == len(warehouses), stage


def test_naive_and_floor_ratios_are_reported(bench: tuple[str, Path], warehouses: list[str]) -> None:
    out, _ = bench
    assert len(re.findall(rf"= {NUMBER}x the floor", out)) == len(warehouses)
    for latency in ("+0 ms", "+20 ms"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {latency} "))
        assert len(re.findall(rf"{NUMBER}x / {NUMBER}x", row)) == len(warehouses), row
    assert f"extrapolated to {PROFILES:,}" in out


def test_every_target_is_judged_and_scaled(bench: tuple[str, Path], warehouses: list[str]) -> None:
    out, written = bench
    for target in TARGETS:
        rows = [line for line in out.splitlines() if line.startswith(f"| {target} ")]
        assert len(rows) == len(warehouses), target
        assert all(re.search(r"\| (MET|MISSED by .+) \|$", row) for row in rows), rows
    assert "scaled linearly" in out and "under 2.4 s" in out  # 120 s for 1M, at 20,000 profiles
    assert "the server holds" in out  # the export landed
    text = written.read_text()
    assert "### Targets" in text and "<!-- end of export_bench results -->" in text
