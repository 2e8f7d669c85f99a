"""The audience mirrors the segments (issue 9), end to end with dag.test(): a warehouse on SQLite and on
PostgreSQL, the local Mailchimp server, the export DAG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mailchimp_provider.export.validate import subscriber_hash
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mirror_support import (
    add_by_hand,
    audience,
    expected_tags,
    mirror_definition,
    postgres_warehouse,
    sqlite_warehouse,
    tag_by_hand,
)
from support import latest_report, run_export

LIST = "demo0audience"
FIRST = [
    ("P1", "alpha", "p1@gmail.com", "Ann"),
    ("P1", "beta", "p1@gmail.com", "Ann"),
    ("P2", "alpha", "p2@gmail.com", "Bo"),
    ("P3", "beta", "p3@gmail.com", "Cy"),
    ("P4", "alpha", "p4@gmail.com", "Di"),
    ("P5", "alpha", "p5@gmail.com", "Ed"),
    ("P5", "beta", "p5@gmail.com", "Ed"),
    ("P6", "beta", "p6@gmail.com", "Flo"),
]
SECOND = [
    ("P1", "alpha", "p1@gmail.com", "Ann"),  # left beta
    # P2 left every segment, P3 was deleted from the warehouse
    ("P4", "alpha", "p4.new@gmail.com", "Di"),  # changed address
    ("P5", "alpha", "p5@gmail.com", "Eddie"),  # changed name
    ("P5", "beta", "p5@gmail.com", "Eddie"),
    ("P6", "beta", "p6@gmail.com", "Flo"),
    ("P7", "alpha", "p7@gmail.com", "Gus"),  # joined
]


@pytest.fixture(params=["sqlite", "postgres"])
def table(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
        return sqlite_warehouse(tmp_path / "w.db", monkeypatch)
    target = request.getfixturevalue("postgres_warehouse")
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    return postgres_warehouse(target)


def mirrored(server) -> dict[str, frozenset[str]]:
    """The audience's subscribed members and their tags, without what people added by hand."""
    return {
        email: m.tags - {"by-hand"}
        for email, m in audience(server, LIST).items()
        if email != "hand@gmail.com" and m.status == "subscribed"
    }


@pytest.mark.slow
def test_the_audience_mirrors_the_segments(table, mailchimp_conn, airflow_db, tmp_path, monkeypatch) -> None:
    definition = mirror_definition(monkeypatch, tmp_path / "exports")
    table.create(FIRST)
    first = run_export(definition)
    assert first["created"] == 6 and first["segments"]["alpha"]["joined"] == 4
    assert mirrored(mailchimp_conn) == expected_tags(FIRST)

    # people add things by hand in Mailchimp: a tag on an exported member, a member with a segment's tag
    tag_by_hand(LIST, "p1@gmail.com", "by-hand")
    add_by_hand(LIST, "hand@gmail.com")
    tag_by_hand(LIST, "hand@gmail.com", "alpha")

    table.replace(SECOND)
    second = run_export(definition)
    members = audience(mailchimp_conn, LIST)
    assert mirrored(mailchimp_conn) == {
        **expected_tags(SECOND),
        "p2@gmail.com": frozenset(),
        "p3@gmail.com": frozenset(),
    }
    assert "p4@gmail.com" not in members  # the address changed: the same member, no second one
    assert members["p5@gmail.com"].first_name == "Eddie"
    assert members["p1@gmail.com"].tags == {"alpha", "by-hand"}  # hand-added tags stay
    assert members["hand@gmail.com"].tags == {"alpha"}  # so do members the export never added
    assert (second["untagged"], second["email_changed"], second["created"]) == (2, 1, 1)
    assert (second["updated"], second["unchanged"]) == (2, 1)  # P1 lost a tag, P5 renamed; P6 as before
    assert second["leavers"] == 2 and second["profiles_read"] == 5
    assert second["segments"]["beta"] == {"joined": 0, "left": 2, "stayed": 2, "rows": 2}  # P1, P3 left

    batches = mailchimp_conn.stats()["batches_submitted"]
    third = run_export(definition)
    assert mailchimp_conn.stats()["batches_submitted"] == batches  # nothing to send
    assert third["unchanged"] == 5 and third["leavers"] == 0
    assert audience(mailchimp_conn, LIST) == members


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["untag", "archive", "keep"])
def test_on_leave_policies(policy, tmp_path, monkeypatch, mailchimp_conn, airflow_db) -> None:
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    table = sqlite_warehouse(tmp_path / "w.db", monkeypatch)
    definition = mirror_definition(monkeypatch, tmp_path / "exports", on_leave=policy)
    add_by_hand(LIST, "existing@gmail.com")  # in the audience before the export: not created by it
    rows = [
        ("P1", "alpha", "p1@gmail.com", "Ann"),
        ("P2", "alpha", "p2@gmail.com", "Bo"),
        ("P3", "beta", "existing@gmail.com", "Cy"),
        ("P4", "beta", "unsub@gmail.com", "Di"),
    ]
    table.create(rows)
    run_export(definition)
    MailchimpHook().call(
        "PATCH", f"lists/{LIST}/members/{subscriber_hash('unsub@gmail.com')}", body={"status": "unsubscribed"}
    )
    table.replace([rows[0], ("P4", "beta", "unsub@gmail.com", "Dina")])  # P2, P3 leave everything
    report = run_export(definition)
    members = audience(mailchimp_conn, LIST)
    unsubscribed = members["unsub@gmail.com"]
    assert (unsubscribed.status, unsubscribed.tags, unsubscribed.first_name) == (
        "unsubscribed",
        {"beta"},
        "Dina",
    )
    if policy == "untag":
        assert members["p2@gmail.com"].tags == set() and members["p2@gmail.com"].status == "subscribed"
        assert members["existing@gmail.com"].tags == set() and report["untagged"] == 2
    elif policy == "archive":  # only what the export created is archived; the rest is untagged
        assert members["p2@gmail.com"].status == "archived" and report["archived"] == 1
        assert (
            members["existing@gmail.com"].status == "subscribed"
            and members["existing@gmail.com"].tags == set()
        )
        assert report["untagged"] == 1
    else:
        assert members["p2@gmail.com"].tags == {"alpha"} and members["existing@gmail.com"].tags == {"beta"}
        assert report["left_kept"] == 2 and report["untagged"] == 0
    assert members["p1@gmail.com"].tags == {"alpha"}

    # everyone comes back: an archived member is never restored, an unsubscribed one never re-subscribed
    table.replace(rows)
    third = run_export(definition)
    members = audience(mailchimp_conn, LIST)
    assert members["unsub@gmail.com"].status == "unsubscribed"
    if policy == "archive":
        assert members["p2@gmail.com"].status == "archived"
        assert third["rejected_locally"]["archived_in_audience"] == 1
    else:
        assert (members["p2@gmail.com"].status, members["p2@gmail.com"].tags) == ("subscribed", {"alpha"})


def _run(definition, **conf):
    from mailchimp_exports import build_export_dag

    dag = build_export_dag(definition, Path("mirror.yaml"))
    return dag.test(run_conf=conf or None).state, latest_report()


@pytest.mark.slow
def test_removal_guard_stops_before_sending_and_the_param_overrides(
    tmp_path, monkeypatch, mailchimp_conn, airflow_db
) -> None:
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    table = sqlite_warehouse(tmp_path / "w.db", monkeypatch)
    definition = mirror_definition(monkeypatch, tmp_path / "exports", max_removals={"share": 0.10})
    rows = [(f"P{i}", "alpha" if i % 2 else "beta", f"p{i}@gmail.com", "X") for i in range(40)]
    table.create(rows)
    run_export(definition)
    batches = mailchimp_conn.stats()["batches_submitted"]

    table.replace([r for r in rows if r[1] == "alpha"])  # beta comes back empty
    state, report = _run(definition)
    assert state == "failed"
    assert mailchimp_conn.stats()["batches_submitted"] == batches  # nothing was sent
    assert report["removal_guard"]["blocked"] and report["removal_guard"]["removals"] == 20
    assert any("'beta' returned no rows (the last successful run found 20)" in w for w in report["warnings"])
    assert all(m.tags for m in audience(mailchimp_conn, LIST).values())

    state, report = _run(definition, allow_removals=True)
    assert state == "success" and report["untagged"] == 20
    assert sum(1 for m in audience(mailchimp_conn, LIST).values() if not m.tags) == 20


@pytest.mark.slow
def test_too_many_failures_fail_the_run_with_its_report_and_state(
    tmp_path, monkeypatch, mailchimp_conn, airflow_db
) -> None:
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    table = sqlite_warehouse(tmp_path / "w.db", monkeypatch)
    definition = mirror_definition(monkeypatch, tmp_path / "exports")
    rows = [(f"P{i}", "alpha", f"fake+{i}@gmail.com", "X") for i in range(9)]  # Mailchimp refuses these
    table.create([*rows, ("P9", "alpha", "real@gmail.com", "X")])
    state, report = _run(definition)
    assert state == "failed"
    assert report["totals"]["failed_at_mailchimp"] == 9 and report["created"] == 1
    state_file = tmp_path / "staging" / "mirror" / "state" / LIST / "state.json"
    assert json.loads(state_file.read_text())["owned_members"] == 1  # what did land is owned
