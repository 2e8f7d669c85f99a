"""No single warehouse value can exhaust a worker: the warehouse cuts every value it sends (issue 10,
item 11), and a value longer than what Mailchimp could take is left out and counted, not cut silently."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow.compute as pc
import pytest
from mailchimp_provider.export import pipeline, staging
from mailchimp_provider.export.extract import ID_READ_LIMIT, SQLITE_QUOTE
from mailchimp_provider.export.mapping import VALUE_READ_LIMIT
from mailchimp_provider.export.staging import RunPaths
from mailchimp_provider.export.validate import EMAIL_READ_LIMIT
from value_cap_probe import AUDIENCE, DEFINITION

PROBE = Path(__file__).with_name("value_cap_probe.py")
HUGE = 80_000_000  # characters: far more than any worker should hold several copies of
FIXED_MB = 70  # what the pipeline costs on a handful of rows (pyarrow, Parquet, zstd); about 55 MB
CREATE = "CREATE TABLE profiles (customer_id TEXT, segment TEXT, email TEXT, first_name TEXT, city TEXT)"


def profiles(huge: str) -> list[tuple]:
    """Ordinary profiles and one with a huge value in each column; ``huge`` is an SQL expression."""
    return [
        ("'C1'", "'vip'", "'anna@gmail.com'", "'Anna'", "'Oslo'"),
        ("'C2'", "'vip'", "'bo@gmail.com'", huge, "'Rome'"),  # huge first name
        ("'C3'", "'vip'", "'cy@gmail.com'", "'Cy'", f"'{'k' * VALUE_READ_LIMIT}'"),  # at the limit: kept
        ("'C4'", "'vip'", f"'{'d' * (VALUE_READ_LIMIT + 1)}'", "'Di'", "'Oslo'"),  # email just too long
        ("'C5'", "'vip'", huge, "'Eve'", "'Oslo'"),  # huge email
        (f"'C6' || {huge}", "'vip'", "'fay@gmail.com'", "'Fay'", "'Oslo'"),  # huge profile id
    ]


def fill(execute, huge: str) -> None:
    execute(CREATE)
    for row in profiles(huge):
        execute(f"INSERT INTO profiles VALUES ({', '.join(row)})")


SQLITE_HUGE = "replace(hex(zeroblob({n})), '0', 'x')"  # 2n characters, made inside SQLite


def test_values_are_cut_at_the_warehouse_and_counted(tmp_path) -> None:
    conn = sqlite3.connect(tmp_path / "w.db")
    fill(conn.execute, SQLITE_HUGE.format(n=1_000_000))  # 2 MB values
    conn.commit()
    paths = RunPaths(tmp_path / "run")
    pipeline.extract_to_staging(paths, DEFINITION, ["vip"], conn.cursor(), "?", SQLITE_QUOTE)
    extracted = staging.read_parquet(paths.part(paths.extract_dir, 0))
    longest = {name: max(pc.utf8_length(extracted[name]).to_pylist()) for name in extracted.column_names}
    assert longest == {
        "customer_id": ID_READ_LIMIT,
        "email": EMAIL_READ_LIMIT + 1,
        "segment": 3,
        "first_name": VALUE_READ_LIMIT + 1,
        "city": VALUE_READ_LIMIT,
    }

    result = pipeline.prepare_in_staging(paths, DEFINITION, AUDIENCE)
    assert result.dropped_values == {"FNAME:value too long": 1}
    assert result.rejected == {"invalid_email": 2}
    rejects = [r for part in pipeline.read_parts(paths.rejects_dir) for r in part.to_pylist()]
    assert {r["profile_id"]: r["detail"] for r in rejects} == {
        "C4": f"email is longer than {EMAIL_READ_LIMIT} characters",
        "C5": f"email is longer than {EMAIL_READ_LIMIT} characters",
    }
    members = {
        m["profile_id"][:2]: json.loads(m["data_json"])
        for part in pipeline.read_parts(paths.members_dir)
        for m in part.to_pylist()
    }
    assert members["C2"]["merge_fields"] == {"CITY": "Rome"}  # sent, without the first name
    assert len(members["C3"]["merge_fields"]["CITY"]) == 255  # a long but possible value is cut as before
    assert members["C1"]["merge_fields"] == {"FNAME": "Anna", "CITY": "Oslo"}
    assert result.profiles_read == 6 and result.accepted == 4


def probe(target: str, staging_dir: Path) -> dict:
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"}  # see test_memory_bound.probe
    out = subprocess.run(
        [sys.executable, str(PROBE), target, str(staging_dir)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def check(result: dict, allowed_mb: float) -> None:
    assert result["peak_mb"] - result["baseline_mb"] < allowed_mb, result
    assert result["rows"] == 6 and result["accepted"] == 4, result
    assert result["dropped_values"] == {"FNAME:value too long": 1}, result
    assert result["rejected"] == {"invalid_email": 2}, result


def test_a_huge_sqlite_value_costs_one_read_by_sqlite_not_copies(tmp_path) -> None:
    conn = sqlite3.connect(tmp_path / "w.db")
    fill(conn.execute, SQLITE_HUGE.format(n=HUGE // 2))
    conn.commit()
    conn.close()
    # SQLite runs in the worker's process: to cut a value it reads it whole, and each column it reads
    # keeps a buffer as large as the largest value it has read (as bytes, see extract.capped): here the
    # id, the email twice (value and sort key) and the first name, 4 x 76 MiB; nothing else may hold it.
    check(probe(f"sqlite:///{tmp_path / 'w.db'}", tmp_path / "run"), allowed_mb=FIXED_MB + 4 * HUGE / 2**20)


@pytest.mark.postgres
def test_a_huge_postgresql_value_never_reaches_the_worker(tmp_path) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        )
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required under CI: {exc}")
        pytest.skip(f"no PostgreSQL server reachable at 127.0.0.1:5432 ({str(exc).strip()})")
    admin.autocommit = True
    name = f"mailchimp_caps_{uuid.uuid4().hex[:10]}"
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    target = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        with psycopg2.connect(target) as conn:
            fill(conn.cursor().execute, f"repeat('x', {HUGE})")
        conn.close()
        check(probe(target, tmp_path / "run"), allowed_mb=FIXED_MB)
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_sqlite_values_holding_a_nul_are_read_whole_or_cut_by_characters(tmp_path) -> None:
    """SQLite's text functions stop at a NUL character: substr() read ' Ann\\x00Lee' as ' Ann', so the
    name was sent cut, an address with a NUL in it was sent without it, and a 2,000-character value
    with an early NUL looked short enough to send. Found by tests/integration/test_audience_oracle.py."""
    long_city = "é\x00" + "é" * 2_000
    conn = sqlite3.connect(tmp_path / "w.db")
    conn.execute(CREATE)
    conn.executemany(
        "INSERT INTO profiles VALUES (?, ?, ?, ?, ?)",
        [
            ("C1", "vip", "ann@gmail.com", " Ann\x00Lee\t", "Oslo"),
            ("C2", "vip", "bo@gmail.com\x00", "Bo", "Oslo"),
            ("C3\x00" + "i" * 300, "vip", "cy@gmail.com", "Cy", long_city),
            ("Da", "vip", "dee@gmail.com", "Dee", "Oslo"),  # one address, three profiles: the first id
            ("D\x00b", "vip", "dee@gmail.com", "Dee", "Oslo"),  # in text order is kept
            ("D\x00a", "vip", "dee@gmail.com", "Dee", "Oslo"),
        ],
    )
    conn.commit()
    paths = RunPaths(tmp_path / "run")
    pipeline.extract_to_staging(paths, DEFINITION, ["vip"], conn.cursor(), "?", SQLITE_QUOTE)
    extracted = staging.read_parquet(paths.part(paths.extract_dir, 0))
    assert extracted["customer_id"].to_pylist() == [
        "C1",
        "C2",
        ("C3\x00" + "i" * 300)[:ID_READ_LIMIT],
        "D\x00a",
        "D\x00b",
        "Da",
    ]
    assert extracted["first_name"][0].as_py() == " Ann\x00Lee\t"
    assert extracted["email"][1].as_py() == "bo@gmail.com\x00"
    assert extracted["city"][2].as_py() == long_city[: VALUE_READ_LIMIT + 1]

    result = pipeline.prepare_in_staging(paths, DEFINITION, AUDIENCE)
    assert result.rejected == {"invalid_email": 1, "duplicate_email": 2}
    assert result.dropped_values == {"CITY:value too long": 1}
    members = {
        m["profile_id"]: json.loads(m["data_json"])["merge_fields"]
        for part in pipeline.read_parts(paths.members_dir)
        for m in part.to_pylist()
    }
    assert members == {
        "C1": {"FNAME": "AnnLee", "CITY": "Oslo"},
        ("C3\x00" + "i" * 300)[:ID_READ_LIMIT]: {"FNAME": "Cy"},
        "D\x00a": {"FNAME": "Dee", "CITY": "Oslo"},
    }
