"""Peak memory of extract -> validate and map -> chunk grows with the chunk size, not the segment size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("memory_probe.py")
BIN = Path(sys.executable).parent
CHUNK_ROWS = 2_000
# What one chunk may cost: Arrow tables, row dicts and JSON of CHUNK_ROWS rows, with generous slack
# for Parquet writer buffers; plus a fixed allowance for pyarrow's allocator and the interpreter.
PER_ROW_BYTES = 20_000
FIXED_MB = 60


def probe(warehouse: Path, staging: Path) -> dict:
    # Arrow's default pool (jemalloc/mimalloc) keeps freed memory for reuse, by an amount that varies from
    # run to run; the system allocator makes the peak the pipeline's own.
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"}
    out = subprocess.run(
        [sys.executable, str(PROBE), str(warehouse), str(staging), str(CHUNK_ROWS)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory) -> dict[int, Path]:
    made = {}
    for profiles in (15_000, 120_000):
        path = tmp_path_factory.mktemp("mem") / f"w{profiles}.db"
        subprocess.run(
            [str(BIN / "seed-demo-warehouse"), "--target", f"sqlite:///{path}", "--profiles", str(profiles)],
            check=True,
            capture_output=True,
        )
        made[profiles] = path
    return made


def test_peak_memory_is_bounded_by_the_chunk_not_the_segment(warehouses, tmp_path) -> None:
    small = probe(warehouses[15_000], tmp_path / "small")
    large = probe(warehouses[120_000], tmp_path / "large")
    assert large["profiles"] > 7 * small["profiles"] > 0
    bound_mb = FIXED_MB + CHUNK_ROWS * PER_ROW_BYTES / 2**20
    for result in (small, large):
        assert result["peak_mb"] - result["baseline_mb"] < bound_mb, result
    # 8x the profiles may add the duplicate check's few bytes per address, nothing like 8x the memory
    assert large["peak_mb"] - small["peak_mb"] < 20, (small, large)


# Plans a first export of 500,000 profiles read (none owned yet) with Arrow's allocations counted; the
# process ends without tearing down, as arrays allocated through the counting pool outlive it.
FIRST_PLAN_PROBE = """
import os
import pyarrow as pa
from mailchimp_provider.export.plan import Planner, PlanSettings
from mailchimp_provider.export.state import ExportState

read = pa.array([f"P{i:07d}" for i in range(500_000)])
counted = pa.proxy_memory_pool(pa.default_memory_pool())
pa.set_memory_pool(counted)
Planner(PlanSettings(["a"], {"a": "a"}, True, "untag"), ExportState(), lambda i, t: None).run([], read, read)
print(counted.max_memory(), flush=True)
os._exit(0)
"""


def test_planning_a_first_export_takes_no_memory_per_profile_read() -> None:
    """Finding the owned members not read this run must not index every profile read when nothing is
    owned: a hash table of 10,000,000 ids took 0.7 GB of the plan task (a 6 MB column here)."""
    out = subprocess.run([sys.executable, "-c", FIRST_PLAN_PROBE], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) < 1_000_000


RECONCILE_PROBE = Path(__file__).with_name("reconcile_memory_probe.py")


def reconcile_probe(folder: Path, profiles: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(RECONCILE_PROBE), str(folder), str(profiles)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path, str(Path(__file__).parent)])},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_reconcile_holds_a_part_of_the_outcomes_and_state_rows_not_the_run(tmp_path) -> None:
    """Reconcile settles and commits a plan part at a time: what it holds for the whole run is the phase
    1 answers (a profile id and two codes, about 22 bytes a profile, with 24 bytes of sorted keys in
    numpy), not every profile's outcome and state row. Before, the task held both whole, then the new
    state whole: 195 bytes of Arrow a profile (2.4 GB of the reconcile task at 10,000,000 profiles)."""
    small, large = (reconcile_probe(tmp_path / str(n), n) for n in (50_000, 400_000))
    assert (small["created"], small["owned"], large["created"], large["owned"]) == (50_000,) * 2 + (
        400_000,
    ) * 2
    per_profile = {key: (large[key] - small[key]) / 350_000 for key in ("arrow_bytes", "python_bytes")}
    assert per_profile["arrow_bytes"] < 60, (small, large)
    assert per_profile["python_bytes"] < 40, (small, large)
