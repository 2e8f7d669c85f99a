"""Each alert condition, end to end: an export run with dag.test() against the local Mailchimp server,
the alert received by a local SMTP server, and a scan that it holds no profile's address and no key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import SLACK_TOKEN
from support import DEMO_DEFINITION, write_definition

pytestmark = pytest.mark.slow
TEAM = "marketing-ops@company.test"


def run_export(tmp_path: Path, monkeypatch, alerts: dict, **changes) -> str:
    from mailchimp_exports import build_export_dag

    definition = write_definition(
        monkeypatch,
        tmp_path / "exports",
        segments=["newsletter_opt_in", "vip_customers"],
        retries=0,
        alerts={"notify": [{"type": "email", "to": [TEAM]}], **alerts},
        **changes,
    )
    run = build_export_dag(definition, DEMO_DEFINITION).test()
    return run.state


def profile_addresses(tmp_path: Path) -> set[str]:
    conn = sqlite3.connect(tmp_path / "warehouse.db")
    return {row[0].strip().lower() for row in conn.execute("SELECT email FROM customer_profiles") if row[0]}


def assert_nothing_leaks(message, tmp_path: Path, api_key: str) -> str:
    """The text a person reads: subject and body. It names no profile's address and no key."""
    body = message.get_body(("html", "plain")).get_content()
    text = f"{message['subject']}\n{body}"
    lowered = text.lower()
    assert api_key.lower() not in lowered and api_key.split("-")[0].lower() not in lowered
    assert not [a for a in profile_addresses(tmp_path) if a in lowered]
    assert "@" not in text  # not even a masked one
    assert message["to"] == TEAM
    return text


def test_rejected_share_above_the_threshold(export_env, smtp, tmp_path, monkeypatch) -> None:
    assert run_export(tmp_path, monkeypatch, {"rejected_share_above": 0.001}) == "success"
    (message,) = smtp.messages
    text = assert_nothing_leaks(message, tmp_path, export_env.api_key)
    assert "Mailchimp export demo_vip_and_churn: 1 alert(s)" in message["subject"]
    assert "were rejected, above the 0.1% threshold" in text and "invalid_email" in text
    assert "/mailchimp-exports/exports/mailchimp_export__demo_vip_and_churn/runs/manual__" in text


def test_failed_at_mailchimp_share_above_the_threshold(export_env, smtp, tmp_path, monkeypatch) -> None:
    assert run_export(tmp_path, monkeypatch, {"failed_at_mailchimp_share_above": 0.001}) == "success"
    (message,) = smtp.messages
    text = assert_nothing_leaks(message, tmp_path, export_env.api_key)
    assert "Mailchimp refused 5 of" in text and "looks fake or invalid" in text


def test_a_run_slower_than_expected(export_env, smtp, tmp_path, monkeypatch) -> None:
    assert run_export(tmp_path, monkeypatch, {"slower_than_minutes": 0.001}) == "success"
    (message,) = smtp.messages
    text = assert_nothing_leaks(message, tmp_path, export_env.api_key)
    assert "more than the expected 0.001" in text


def test_a_failed_run(export_env, smtp, tmp_path, monkeypatch) -> None:
    conn = sqlite3.connect(tmp_path / "warehouse.db")
    conn.execute("DROP VIEW segment_profiles")  # the extract fails
    conn.close()
    assert run_export(tmp_path, monkeypatch, {}) == "failed"
    (message,) = smtp.messages
    text = assert_nothing_leaks(message, tmp_path, export_env.api_key)
    assert message["subject"] == "Mailchimp export demo_vip_and_churn: run failed"
    assert (
        "failed: task_failure (task extract)." in text
        and "No report was written" in text
        and "/dags/mailchimp_export__demo_vip_and_churn/runs/" in text
    )


def test_a_quiet_run_sends_nothing(export_env, smtp, tmp_path, monkeypatch) -> None:
    alerts = {"rejected_share_above": 0.9, "failed_at_mailchimp_share_above": 0.9, "slower_than_minutes": 60}
    assert run_export(tmp_path, monkeypatch, alerts) == "success"
    assert smtp.messages == []


def test_removals_blocked_by_the_guard(export_env, smtp, tmp_path, monkeypatch) -> None:
    alerts = {"removals_blocked": True, "run_failed": False}
    assert run_export(tmp_path, monkeypatch, alerts) == "success"
    assert smtp.messages == []
    conn = sqlite3.connect(tmp_path / "warehouse.db")
    conn.execute("DELETE FROM segment_memberships")  # the warehouse's segments come back empty
    conn.commit()
    conn.close()
    assert run_export(tmp_path, monkeypatch, alerts) == "failed"  # stopped before anything was sent
    (message,) = smtp.messages
    text = assert_nothing_leaks(message, tmp_path, export_env.api_key)
    assert message["subject"] == "Mailchimp export demo_vip_and_churn: removals blocked"
    assert "the removal guard held back" in text and "allow_removals" in text


def test_a_failed_run_on_slack_and_by_email(export_env, smtp, slack, tmp_path, monkeypatch) -> None:
    """Slack through the Slack provider's notifier, against a local Slack Web API; email alongside."""
    conn = sqlite3.connect(tmp_path / "warehouse.db")
    conn.execute("DROP VIEW segment_profiles")  # the extract fails
    conn.close()
    alerts = {"notify": [{"type": "slack", "channel": "#marketing-ops"}, {"type": "email", "to": [TEAM]}]}
    assert run_export(tmp_path, monkeypatch, alerts) == "failed"
    (post,) = slack.posts
    assert post["channel"] == "#marketing-ops"
    text = post["text"]
    assert text.startswith("Mailchimp export demo_vip_and_churn: run failed\n")
    assert "failed: task_failure (task extract)." in text
    assert "@" not in text and export_env.api_key.split("-")[0] not in text and SLACK_TOKEN not in text
    (message,) = smtp.messages  # the other channel had its turn too
    assert message["subject"] == "Mailchimp export demo_vip_and_churn: run failed"
