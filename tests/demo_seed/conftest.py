"""Shared warehouses for the demo warehouse tests.

The PostgreSQL fixture creates and drops its own uniquely named database on the server at
DEMO_WAREHOUSE_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres). It skips when
the server is unreachable, except under CI=true, where a missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from demo_warehouse.db import connect, redact
from demo_warehouse.seed import seed_warehouse

PG_ADMIN_URL = os.environ.get("DEMO_WAREHOUSE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

Rows = Callable[..., list[tuple[Any, ...]]]


class Seeded(NamedTuple):
    target: str
    profiles: int
    seed: int


@pytest.fixture(scope="session")
def rows() -> Rows:
    """rows(target, query, params=()) through the module's own engine-neutral connection."""

    def run(target: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with connect(target) as warehouse:
            return warehouse.rows(query, params)

    return run


@pytest.fixture(scope="session")
def seeded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """A read-only warehouse shared by the session; tests that write seed their own.

    20,000 profiles carry every dirt kind many times over and seed in about a second.
    """
    seeded = Seeded(f"sqlite:///{tmp_path_factory.mktemp('seeded') / 'warehouse.db'}", 20_000, 7)
    seed_warehouse(seeded.target, profiles=seeded.profiles, seed=seeded.seed)
    return seeded


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[Callable[[], str]]:
    """A factory of fresh databases on the test server, all dropped at the end of the module."""
    import psycopg2
    from psycopg2 import sql

    try:
        admin = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as error:
        reason = f"PostgreSQL unreachable at {redact(PG_ADMIN_URL)}: {error}".strip()
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run)")
        pytest.skip(reason)
    admin.autocommit = True
    created: list[str] = []

    def create() -> str:
        name = f"demo_warehouse_test_{uuid.uuid4().hex[:12]}"
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return urlsplit(PG_ADMIN_URL)._replace(path=f"/{name}").geturl()

    try:
        yield create
    finally:
        with admin.cursor() as cursor:
            for name in created:
                cursor.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        admin.close()
