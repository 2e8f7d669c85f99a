"""The member index follows the store's transactions: members inserted in a rolled-back savepoint or
transaction are not found afterwards, the others are."""

from __future__ import annotations

from pathlib import Path

import pytest
from mailchimp_emulator.model import Member
from mailchimp_emulator.rules import subscriber_hash
from mailchimp_emulator.store import Database


def new_member(email: str) -> Member:
    now = "2026-01-01T00:00:00+00:00"
    return Member(
        None,
        subscriber_hash(email),
        email,
        "subscribed",
        None,
        "html",
        {},
        [],
        "",
        False,
        "",
        "",
        "",
        now,
        now,
    )


def test_rolled_back_inserts_leave_the_index(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    store = db.connect()
    kept, undone = ["a1@shop.dev", "a2@shop.dev"], ["b1@shop.dev", "b2@shop.dev", "b3@shop.dev"]
    with store.transaction():
        store.insert_members(1, [new_member(e) for e in kept])
        with pytest.raises(RuntimeError), store.transaction():
            store.insert_members(1, [new_member(e) for e in undone[:2]])
            store.insert_members(1, [new_member(e) for e in undone[2:]])
            raise RuntimeError
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_members(1, [new_member("c1@shop.dev")])
        raise RuntimeError
    found = store.find_members(1, [subscriber_hash(e) for e in [*kept, *undone, "c1@shop.dev"]])
    assert sorted(m.email for m in found.values()) == kept
    assert set(db.index.lookup(1)) == {subscriber_hash(e) for e in kept}
    store.close()
    db.close()
