"""Runs that race, lose answers, lose members or read some segments (issue 10 items 3, 5, 6, 8, 12), driven
step by step against the local Mailchimp server and a SQLite warehouse, so a test can act between steps."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from mailchimp_provider.export import steps
from mailchimp_provider.export.staging import read_parquet, write_parquet
from mailchimp_provider.export.validate import subscriber_hash
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mirror_support import StepRun, audience, expected_tags, mirror_definition, sqlite_warehouse
from support import latest_report

LIST = "demo0audience"
ROWS = [
    ("P1", "alpha", "p1@gmail.com", "Ann"),
    ("P1", "beta", "p1@gmail.com", "Ann"),
    ("P2", "alpha", "p2@gmail.com", "Bo"),
    ("P3", "beta", "p3@gmail.com", "Cy"),
    ("P4", "alpha", "p4@gmail.com", "Di"),
]


@pytest.fixture
def setup(tmp_path, monkeypatch, mailchimp_conn):
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    table = sqlite_warehouse(tmp_path / "w.db", monkeypatch)
    table.create(ROWS)
    return table, mirror_definition(monkeypatch, tmp_path / "exports"), tmp_path / "staging"


def tags_now(server) -> dict[str, frozenset[str]]:
    return {e: m.tags for e, m in audience(server, LIST).items() if m.status != "archived"}


def test_a_member_archived_during_the_run_is_not_restored(setup, mailchimp_conn) -> None:
    table, definition, _ = setup
    StepRun(definition, "r1").report()
    table.replace([*ROWS, ("P5", "alpha", "late@gmail.com", "Late")])
    MailchimpHook().call(
        "PUT",
        f"lists/{LIST}/members/{subscriber_hash('late@gmail.com')}",
        body={"email_address": "late@gmail.com", "status_if_new": "subscribed"},
    )
    run = StepRun(definition, "r2").check()  # the archived snapshot is taken here
    MailchimpHook().call("DELETE", f"lists/{LIST}/members/{subscriber_hash('late@gmail.com')}")
    report = run.report()
    assert audience(mailchimp_conn, LIST)["late@gmail.com"].status == "archived"
    assert report["archived_in_audience"] == 1 and report["created"] == 0
    # never counted as sent: the next run still does not own it, and still does not restore it
    third = StepRun(definition, "r3").report()
    assert third["rejected_locally"]["archived_in_audience"] == 1
    assert audience(mailchimp_conn, LIST)["late@gmail.com"].status == "archived"


def test_answers_missing_from_the_results_are_read_back(setup, mailchimp_conn) -> None:
    table, definition, staging = setup
    run = StepRun(definition, "r1").check().extract().plan().upload().tags()
    for job in run.jobs:  # the archive lost every answer of the batch subscribe
        path = ObjectStoragePath(job["results_path"])
        results = read_parquet(path)
        write_parquet(path, results.filter(pc.equal(results["operation_id"], "none")))
    report = run.report()
    assert report["created"] == 0 and report["updated"] == 4  # read back: they are there
    assert report["totals"]["failed_at_mailchimp"] == 0 and report["outcome_unknown"] == 0
    assert StepRun(definition, "r2").report()["unchanged"] == 4  # and owned: not sent again


def test_lost_members_are_sent_again(setup, mailchimp_conn) -> None:
    table, definition, _ = setup
    StepRun(definition, "r1").report()
    mailchimp_conn.reset()  # Mailchimp lost every member
    report = StepRun(definition, "r2").report()
    assert "missing from the audience" in report["full_sync_reason"]
    assert report["created"] == 4 and tags_now(mailchimp_conn) == expected_tags(ROWS)


def test_a_run_of_some_segments_keeps_the_rest(setup, mailchimp_conn) -> None:
    table, definition, _ = setup
    StepRun(definition, "r1").report()
    # P1 leaves beta and P3 leaves beta; P2 leaves alpha: a run of alpha only sees P2's change
    table.replace([ROWS[0], ROWS[4]])
    report = StepRun(definition, "r2", segments=["alpha"]).report()
    assert report["untagged"] == 1 and report["leavers"] == 1
    now = tags_now(mailchimp_conn)
    assert now["p1@gmail.com"] == {"alpha", "beta"} and now["p3@gmail.com"] == {"beta"}
    assert now["p2@gmail.com"] == set()
    report = StepRun(definition, "r3").report()  # the full run then takes the beta leavers out
    assert report["untagged"] == 1 and report["updated"] == 1 and report["unchanged"] == 1
    assert tags_now(mailchimp_conn) == {
        **expected_tags([ROWS[0], ROWS[4]]),
        "p2@gmail.com": set(),
        "p3@gmail.com": set(),
    }


def test_overlapping_runs_leave_a_state_the_next_run_corrects(setup, mailchimp_conn) -> None:
    table, definition, staging = setup
    StepRun(definition, "r1").report()
    first = [
        ("P1", "alpha", "p1@gmail.com", "Ann1"),
        ("P1", "beta", "p1@gmail.com", "Ann1"),
        ("P2", "beta", "p2@gmail.com", "Bo"),
        *ROWS[3:],
    ]
    table.replace(first)
    older = StepRun(definition, "older").check().extract().plan()  # planned against generation 1
    latest = [("P1", "alpha", "p1@gmail.com", "Ann2"), ("P2", "alpha", "p2@gmail.com", "Bo"), *ROWS[3:]]
    table.replace(latest)
    StepRun(definition, "newer").report()  # generation 2
    report = older.report()  # lands after the newer run: its stale values reach Mailchimp
    assert report["state"]["merged_with_concurrent_run"] is True
    assert audience(mailchimp_conn, LIST)["p1@gmail.com"].first_name == "Ann1"
    state = json.loads((staging / "mirror" / "state" / LIST / "state.json").read_text())
    assert state["generation"] == 3
    StepRun(definition, "next").report()  # the members both runs touched are sent again in full
    assert tags_now(mailchimp_conn) == expected_tags(latest)
    assert audience(mailchimp_conn, LIST)["p1@gmail.com"].first_name == "Ann2"
    assert StepRun(definition, "after").report()["unchanged"] == 4  # and then nothing more to do


def test_an_unreadable_state_stops_with_a_way_forward(setup, mailchimp_conn, caplog) -> None:
    table, definition, staging = setup
    StepRun(definition, "r1").report()
    state_file = staging / "mirror" / "state" / LIST / "state.json"
    state_file.write_text('{"generation": 1, "members_fi')
    with pytest.raises(AirflowFailException) as failure:
        StepRun(definition, "r2").check()
    message = str(failure.value)
    assert str(state_file) in message and "delete the folder" in message and "Nothing was sent" in message
    assert "Traceback" not in caplog.text
    assert mailchimp_conn.stats()["batches_submitted"] == 1


def test_email_change_to_an_address_already_in_the_audience_is_a_conflict(setup, mailchimp_conn) -> None:
    table, definition, _ = setup
    StepRun(definition, "r1").report()
    MailchimpHook().call(
        "PUT",
        f"lists/{LIST}/members/{subscriber_hash('taken@gmail.com')}",
        body={"email_address": "taken@gmail.com", "status_if_new": "subscribed"},
    )
    table.replace([*ROWS[:3], ("P3", "beta", "taken@gmail.com", "Cy"), ROWS[4]])
    report = StepRun(definition, "r2").report()
    assert report["email_change_conflict"] == 1
    members = audience(mailchimp_conn, LIST)
    assert members["p3@gmail.com"].tags == {"beta"} and members["taken@gmail.com"].tags == set()
    # nothing merged silently, and the state still knows P3 by its old address
    assert StepRun(definition, "r3").report()["email_change_conflict"] == 1


def test_a_dry_run_shows_the_plan_and_sends_nothing(setup, mailchimp_conn) -> None:
    table, definition, _ = setup
    StepRun(definition, "r1").report()
    batches = mailchimp_conn.stats()["batches_submitted"]
    table.replace(ROWS[:3])
    report = StepRun(definition, "dry", dry_run=True).report()
    assert report["dry_run"] is True and report["planned"] == 2 and report["plan"]["tags"] == 2
    assert report["unchanged"] == 2 and report["leavers"] == 2
    assert mailchimp_conn.stats()["batches_submitted"] == batches
    assert tags_now(mailchimp_conn) == expected_tags(ROWS)


def test_tags_are_named_by_the_definition(tmp_path, monkeypatch, mailchimp_conn) -> None:
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    table = sqlite_warehouse(tmp_path / "w.db", monkeypatch)
    table.create(ROWS)
    definition = mirror_definition(
        monkeypatch,
        tmp_path / "exports",
        segments=["alpha", {"name": "beta", "tag": "Beta people"}],
        mailchimp={"conn_id": "mailchimp_default", "audience_id": LIST, "tag_prefix": "wh: "},
    )
    StepRun(definition, "r1").report()
    assert tags_now(mailchimp_conn)["p1@gmail.com"] == {"wh: alpha", "Beta people"}
    # renaming a tag in the definition moves members to the new tag
    renamed = mirror_definition(
        monkeypatch,
        tmp_path / "exports",
        segments=["alpha", {"name": "beta", "tag": "Beta"}],
        mailchimp={"conn_id": "mailchimp_default", "audience_id": LIST, "tag_prefix": "wh: "},
    )
    StepRun(renamed, "r2").report()
    assert tags_now(mailchimp_conn)["p1@gmail.com"] == {"wh: alpha", "Beta"}
    assert tags_now(mailchimp_conn)["p3@gmail.com"] == {"Beta"}


def test_the_state_is_committed_atomically_as_members_then_state_file(setup, mailchimp_conn) -> None:
    table, definition, staging = setup
    StepRun(definition, "r1").report()
    folder = staging / "mirror" / "state" / LIST
    state = json.loads((folder / "state.json").read_text())
    assert sorted(p.name for p in folder.glob("members-*.parquet")) == [state["members_file"]]
    owned = read_parquet(folder / state["members_file"])
    assert sorted(owned["profile_id"].to_pylist()) == ["P1", "P2", "P3", "P4"]
    assert steps.state_store(definition).load().generation == 1


def test_a_member_deleted_for_good_is_not_brought_back_and_not_owned_any_more(
    tmp_path, monkeypatch, mailchimp_conn
) -> None:
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    table = sqlite_warehouse(tmp_path / "w.db", monkeypatch)
    table.create(ROWS)
    definition = mirror_definition(monkeypatch, tmp_path / "exports", max_failed_share=0.5)
    StepRun(definition, "r1").report()
    MailchimpHook().call(
        "POST", f"lists/{LIST}/members/{subscriber_hash('p2@gmail.com')}/actions/delete-permanent"
    )
    report = StepRun(definition, "r2").report()
    assert "missing from the audience" in report["full_sync_reason"]
    assert report["totals"]["failed_at_mailchimp"] == 1 and "p2@gmail.com" not in audience(
        mailchimp_conn, LIST
    )
    assert list(report["failed_at_mailchimp"]) == [next(iter(report["failed_at_mailchimp"]))]
    # no longer owned, so no full sync every run because of it; but the segments still hold the profile
    # and Mailchimp refuses it: the only profile sent fails, so the run fails (alerting) until the
    # warehouse drops the profile too
    with pytest.raises(AirflowFailException, match="1 of 1 profiles sent failed"):
        StepRun(definition, "r3").report()
    third = latest_report()
    assert third["full_sync_reason"] is None and third["unchanged"] == 3
    assert third["totals"]["failed_at_mailchimp"] == 1
