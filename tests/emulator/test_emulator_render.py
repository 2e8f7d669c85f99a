"""Batch subscribe's member entries: a renderer that reuses what members share renders each one as a
renderer seeing it alone does, and as the member's own fields say."""

from __future__ import annotations

import json

from mailchimp_emulator.model import Member
from mailchimp_emulator.render import MemberRenderer
from mailchimp_emulator.rules import subscriber_hash

BLANK = {"FNAME": "", "LNAME": ""}
TAG_IDS = {"vip": 11, "all": 12, "Ünï": 13}
INTERESTS = ("int0000001", "int0000002")


def member(email: str, **fields: object) -> Member:
    values: dict = {
        "seq": None,
        "hash": subscriber_hash(email),
        "email": email,
        "status": "subscribed",
        "archived_from": None,
        "email_type": "html",
        "merge_fields": {**BLANK, "FNAME": email[:3]},
        "tags": ["all"],
        "language": "",
        "vip": False,
        "ip_signup": "",
        "timestamp_signup": "",
        "ip_opt": "",
        "timestamp_opt": "2026-01-01T00:00:00+00:00",
        "last_changed": "2026-01-02T00:00:00+00:00",
    }
    values.update(fields)
    return Member(**values)


def renderer(interests: tuple[str, ...] = INTERESTS) -> MemberRenderer:
    return MemberRenderer("list0001", BLANK, "http://x", TAG_IDS, interests)


MEMBERS = [
    member("ann@shop.dev"),
    member("bob@shop.dev"),  # shares everything after the merge fields with ann
    member("cy@shop.dev", tags=["all", "vip"]),
    member("dee@shop.dev", tags=[]),
    member("eve@shop.dev", tags=["Ünï"], language="fr", vip=True),
    member("fay@shop.dev", interests={"int0000002": True}),
    member("gus@shop.dev", interests={"int0000001": True}),  # same tail key as fay but other choices
    member("hal@shop.dev", timestamp_opt="", status="pending"),
    member("ivy@shop.dev", last_changed="2026-02-02T00:00:00+00:00", email_type="text"),
    member("jo@shop.dev"),
    member("kim@shop.dev", merge_fields={"FNAME": "Kim"}),  # written before LNAME was added
]


def test_entries_match_a_fresh_renderer_and_the_members() -> None:
    for interests in (INTERESTS, ()):
        shared = renderer(interests)
        for m in MEMBERS:
            text = shared.subscribed_json(m)
            assert text == renderer(interests).subscribed_json(m)
            entry = json.loads(text)
            assert (entry["id"], entry["email_address"], entry["status"]) == (m.hash, m.email, m.status)
            assert entry["merge_fields"] == {**BLANK, **m.merge_fields}
            assert [t["name"] for t in entry["tags"]] == m.tags
            assert [t["id"] for t in entry["tags"]] == [TAG_IDS[name] for name in m.tags]
            assert entry["tags_count"] == len(m.tags)
            assert (entry["language"], entry["vip"]) == (m.language, m.vip)
            assert (entry["timestamp_opt"], entry["last_changed"]) == (m.timestamp_opt, m.last_changed)
            expected = {i: m.interests.get(i, False) for i in interests}
            assert entry.get("interests", {}) == expected
