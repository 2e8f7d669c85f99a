"""The export's state: committed members file first, then state.json; merged when runs overlap."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mailchimp_provider.export import staging
from mailchimp_provider.export.state import DIRTY, STATE_SCHEMA, StateError, StateStore


def rows(*members: tuple) -> pa.Table:
    """(profile_id, tags, fingerprint) -> state rows."""
    return pa.Table.from_pylist(
        [
            {
                "profile_id": pid,
                "subscriber_hash": f"h-{pid}",
                "email": f"{pid}@x.de",
                "fingerprint": fp,
                "tags": tags,
                "segments": tags,
                "created": True,
            }
            for pid, tags, fp in members
        ],
        schema=STATE_SCHEMA,
    )


def ids(*names: str) -> pa.Array:
    return pa.array(names, pa.string())


def by_id(store: StateStore) -> dict[str, dict]:
    return {r["profile_id"]: r for r in store.load().members.to_pylist()}


def test_commit_and_load_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load().generation == 0 and store.load().owned == 0  # a first run
    assert store.commit(
        0, ids("a", "b"), rows(("a", ["x"], 1), ("b", ["y"], 2)), {"x": 1}, {"x": "X"}, "r1"
    ) == (
        1,
        False,
    )
    assert store.commit(1, ids("b"), rows(), {"y": 0}, {}, "r2") == (2, False)  # b left
    state = store.load()
    assert (state.generation, state.segments, state.segment_tags) == (2, {"x": 1, "y": 0}, {"x": "X"})
    assert by_id(store) == {"a": {**rows(("a", ["x"], 1)).to_pylist()[0]}}
    assert sorted(p.name for p in tmp_path.glob("members-*")) == ["members-00000002.parquet"]


def test_a_commit_after_another_run_merges_what_both_touched_as_dirty(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.commit(0, ids("a", "b", "c"), rows(("a", ["x"], 1), ("b", ["x"], 2), ("c", ["x"], 3)), {}, {}, "r0")
    # two runs planned from generation 1; the newer one commits first
    store.commit(1, ids("a", "b"), rows(("a", ["y"], 10), ("b", ["x"], 20)), {}, {}, "newer")
    generation, merged = store.commit(
        1, ids("a", "b", "c"), rows(("a", ["z"], 11), ("c", ["x"], 30)), {}, {}, "older"
    )
    assert (generation, merged) == (3, True)
    state = by_id(store)
    assert state["a"]["fingerprint"] == DIRTY and state["a"]["tags"] == ["y", "z"]  # both runs' tags
    assert state["b"]["fingerprint"] == DIRTY and state["b"]["tags"] == ["x"]  # dropped by one, kept by other
    assert state["c"]["fingerprint"] == DIRTY
    assert json.loads((tmp_path / "state.json").read_text())["merged_with_concurrent_run"] is True


def test_a_crash_between_the_two_writes_keeps_the_old_state(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.commit(0, ids("a"), rows(("a", ["x"], 1)), {}, {}, "r1")
    # the next commit wrote its members file, then died before state.json
    pq.write_table(rows(("b", ["x"], 9)), tmp_path / "members-00000002.parquet")
    state = store.load()
    assert state.generation == 1 and state.members["profile_id"].to_pylist() == ["a"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / "state.json").write_text("{not json"),
        lambda d: (d / "state.json").write_text('{"generation": 1}'),
        lambda d: (d / "members-00000001.parquet").write_bytes(b"PAR1 truncated"),
        lambda d: (d / "members-00000001.parquet").unlink(),
    ],
)
def test_an_unreadable_state_names_the_file_and_the_way_forward(tmp_path: Path, damage) -> None:
    store = StateStore(tmp_path)
    store.commit(0, ids("a"), rows(("a", ["x"], 1)), {}, {}, "r1")
    damage(tmp_path)
    with pytest.raises(StateError) as error:
        store.load()
    message = str(error.value)
    assert str(tmp_path) in message and "delete the folder" in message and "\n" not in message


def test_a_retried_commit_of_the_same_run_changes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.commit(0, ids("a"), rows(("a", ["x"], 1)), {}, {}, "r1")
    assert store.commit(0, ids("a"), rows(("a", ["x"], 1)), {}, {}, "r1") == (1, False)
    assert by_id(store)["a"]["fingerprint"] == 1  # not taken for a concurrent run and made dirty


_COMMIT_IN_A_PROCESS = """
import sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from test_state import ids, rows
from mailchimp_provider.export.state import StateStore
name = sys.argv[2]
print("ready", flush=True)
StateStore(Path(sys.argv[1])).commit(1, ids(name), rows((name, [name], 1)), {name: 1}, {}, "run-" + name)
"""


def test_two_runs_committing_at_once_in_two_processes_lose_nothing(tmp_path: Path) -> None:
    """Two runs planned from the same generation commit at the same moment, as two worker processes:
    the lock serialises them, so the second sees the first's commit and merges; nothing is lost."""
    import fcntl
    import subprocess
    import sys
    import time

    from mailchimp_provider.export.state import LOCK_FILE

    store = StateStore(tmp_path)
    store.commit(0, ids("base"), rows(("base", ["x"], 1)), {}, {}, "r0")
    fd = open(tmp_path / LOCK_FILE, "a")  # noqa: SIM115 - held across the children's start
    fcntl.flock(fd, fcntl.LOCK_EX)  # both children reach the lock before either may commit
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _COMMIT_IN_A_PROCESS, str(tmp_path), name, str(Path(__file__).parent)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("p", "q")
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # both are now waiting on the lock (without one, both would have committed)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        fd.close()
    assert [child.wait(timeout=60) for child in children] == [0, 0]
    state = store.load()
    assert state.generation == 3
    assert sorted(by_id(store)) == ["base", "p", "q"]
    assert state.segments == {"p": 1, "q": 1}
    meta = json.loads((tmp_path / "state.json").read_text())
    assert meta["merged_with_concurrent_run"] is True  # the second commit saw the first


def test_a_commit_streams_tables_in_row_groups_and_keeps_the_order(tmp_path: Path, monkeypatch) -> None:
    """The new members file is written a few rows at a time: the kept members first, in their order,
    then this run's rows, in theirs; a concurrent commit's rows are merged across row groups."""
    monkeypatch.setattr(staging, "ROW_GROUP_ROWS", 2)
    store = StateStore(tmp_path)
    first = [(name, ["x"], i + 1) for i, name in enumerate("abcdefg")]
    assert store.commit(0, ids(*"abcdefg"), (rows(m) for m in first), {}, {}, "r1") == (1, False)
    assert pq.ParquetFile(tmp_path / "members-00000001.parquet").num_row_groups == 4
    assert [r["profile_id"] for r in store.load().members.to_pylist()] == list("abcdefg")
    store.commit(1, ids("b", "f"), iter([rows(("f", ["y"], 60)), rows(("h", ["y"], 80))]), {}, {}, "r2")
    assert [(r["profile_id"], r["fingerprint"]) for r in store.load().members.to_pylist()] == [
        ("a", 1),
        ("c", 3),
        ("d", 4),
        ("e", 5),
        ("g", 7),
        ("f", 60),
        ("h", 80),
    ]
    # planned from generation 1 as well: merged with r2's commit
    assert store.commit(1, ids("a", "f"), iter([rows(("a", ["z"], 10))]), {}, {}, "r3") == (3, True)
    state = by_id(store)
    assert sorted(state) == list("acdefgh")
    assert (state["a"]["fingerprint"], state["f"]["fingerprint"], state["c"]["fingerprint"]) == (
        DIRTY,
        DIRTY,
        3,
    )
    assert state["f"]["tags"] == ["y"] and state["a"]["tags"] == ["x", "z"]


def test_a_sample_of_owned_hashes_reads_the_row_groups_holding_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(staging, "ROW_GROUP_ROWS", 3)
    store = StateStore(tmp_path)
    assert store.sample_hashes(20, random.Random(1)) == (0, [])  # a first run owns nobody
    names = [f"p{i}" for i in range(10)]
    store.commit(0, ids(*names), (rows((n, ["x"], 1)) for n in names), {}, {}, "r1")
    owned, sample = store.sample_hashes(4, random.Random(7))
    expected = random.Random(7).sample(range(10), 4)
    assert (owned, sample) == (10, [f"h-p{i}" for i in expected])
    assert store.sample_hashes(20, random.Random(7))[1] == [
        f"h-p{i}" for i in random.Random(7).sample(range(10), 10)
    ]
    (tmp_path / "members-00000001.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(StateError):
        store.sample_hashes(4, random.Random(7))
