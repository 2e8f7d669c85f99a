"""Create and fill the demo warehouse: the `seed-demo-warehouse` command.

Why a command and not a fixture: the docker-compose init container, the Makefile and
developers all seed the same warehouse the same way. Without --drop an already seeded
warehouse is left alone, so the command is safe to run on every start.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter

from demo_warehouse.db import Target, connect, redact, segment_sizes
from demo_warehouse.generate import (
    REFERENCE_DATE,
    SEGMENTS,
    Membership,
    dirt_counts,
    format_timestamp,
    generate,
)
from demo_warehouse.refresh import refresh_segments

__all__ = ["main", "refresh_segments", "seed_warehouse"]  # refresh_segments: the refresh DAG imports it here

DEFAULT_TARGET = "sqlite:///var/warehouse.db"
_LOAD_BATCH = 50_000  # rows per executemany / COPY: big enough to be fast, small enough for memory


@dataclass(frozen=True)
class SeedResult:
    target: str
    profiles: int
    segment_sizes: dict[str, int]
    dirt: dict[str, int]
    seconds: float
    created: bool  # False when the warehouse already held profiles and drop was not asked for

    def summary(self) -> str:
        if not self.created:
            return (
                f"{redact(self.target)} already holds {self.profiles:,} profiles; "
                "left as is (pass --drop to recreate it)"
            )
        width = max(map(len, self.segment_sizes), default=0)
        segments = "\n".join(f"  {name:<{width}}  {size:>9,}" for name, size in self.segment_sizes.items())
        dirt = ", ".join(f"{kind}={count:,}" for kind, count in self.dirt.items())
        return "\n".join(
            [
                f"Seeded {redact(self.target)}: {self.profiles:,} profiles in {self.seconds:.1f} s",
                "Segments:",
                segments,
                "Dirt (profiles):",
                textwrap.fill(dirt, width=100, initial_indent="  ", subsequent_indent="  "),
            ]
        )


def seed_warehouse(
    target: str = DEFAULT_TARGET, *, profiles: int = 100_000, seed: int = 42, drop: bool = False
) -> SeedResult:
    """Create the schema from include/sql/ and load generated rows, all in one transaction."""
    started = perf_counter()
    with connect(target) as warehouse:
        if drop:
            warehouse.run_script("demo_warehouse_drop.sql")
        warehouse.run_script("demo_warehouse_{dialect}.sql")
        if warehouse.scalar("SELECT COUNT(*) FROM segments"):  # seeded before, maybe with 0 profiles
            existing = int(warehouse.scalar("SELECT COUNT(*) FROM customer_profiles"))
            sizes = segment_sizes(warehouse)
            return SeedResult(target, existing, sizes, {}, perf_counter() - started, created=False)
        refreshed = format_timestamp(datetime.combine(REFERENCE_DATE, datetime.min.time(), UTC))
        warehouse.load("segments", [(name, text, refreshed) for name, text in SEGMENTS.items()])
        # Memberships wait until the end and go in segment by segment, in primary-key order:
        # appending to the key's b-tree is several times faster than inserting all over it.
        memberships: dict[str, list[Membership]] = {name: [] for name in SEGMENTS}
        for chunk in generate(profiles, seed):
            warehouse.load("customer_profiles", chunk.profiles)
            for membership in chunk.memberships:
                memberships[membership[0]].append(membership)
        for rows in memberships.values():
            for start in range(0, len(rows), _LOAD_BATCH):
                warehouse.load("segment_memberships", rows[start : start + _LOAD_BATCH])
        warehouse.execute("ANALYZE")
        sizes = segment_sizes(warehouse)
    return SeedResult(target, profiles, sizes, dirt_counts(profiles), perf_counter() - started, created=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seed-demo-warehouse",
        description="Create the demo customer warehouse with dirty, realistic data.",
    )
    parser.add_argument(
        "--target",
        default=DEFAULT_TARGET,
        help=f"sqlite:///PATH or postgresql://USER@HOST:PORT/DB (default {DEFAULT_TARGET}, relative to CWD)",
    )
    parser.add_argument("--profiles", type=_count, default=100_000, help="customer profiles (default 100000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed; same seed, same rows (default 42)")
    parser.add_argument("--drop", action="store_true", help="drop and recreate the warehouse tables")
    args = parser.parse_args(argv)
    try:
        Target.parse(args.target)
    except ValueError as error:
        parser.error(str(error))
    result = seed_warehouse(args.target, profiles=args.profiles, seed=args.seed, drop=args.drop)
    print(result.summary())
    return 0


def _count(text: str) -> int:
    value = int(text)  # accepts 1_000_000 too
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
