"""The alerts section of a definition, the conditions on a run's report, and the channels."""

from __future__ import annotations

import sys

import pytest
import yaml
from mailchimp_provider.export.alerts import Alerts, blocked_removals
from mailchimp_provider.export.definition import DefinitionError, load_definition
from mailchimp_provider.export.summary import RunSummary
from mailchimp_provider.notify import counts_lines, send
from support import DEMO_DEFINITION

EMAIL = {"type": "email", "to": ["ops@company.test"]}


def report(**changes) -> RunSummary:
    base = {
        "export": "e",
        "run_id": "r",
        "audience_id": "a",
        "dry_run": False,
        "rows_read": 1200,
        "profiles_read": 1000,
        "rejected_locally": {"invalid_email": 30, "duplicate_email": 20},
        "unchanged": 100,
        "planned": 0,
        "created": 800,
        "updated": 40,
        "failed_at_mailchimp": {"<email> looks fake or invalid": 10},
        "durations_s": {"extract": 1.0},
        "totals": {"rejected_locally": 50, "failed_at_mailchimp": 10},
    }
    return RunSummary.from_report({**base, **changes})


def write(tmp_path, alerts: dict):
    raw = yaml.safe_load(DEMO_DEFINITION.read_text())
    raw["alerts"] = alerts
    path = tmp_path / f"{raw['export']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_definition_names_channels_and_conditions(tmp_path) -> None:
    alerts = {
        "notify": [
            EMAIL,
            {
                "type": "notifier",
                "class": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
                "message_arg": "html_content",
                "kwargs": {"to": "oncall@company.test"},
            },
        ],
        "rejected_share_above": 0.05,
        "failed_at_mailchimp_share_above": 0.01,
        "slower_than_minutes": 90,
    }
    definition = load_definition(write(tmp_path, alerts))
    assert [c.type for c in definition.alerts.notify] == ["email", "notifier"]
    assert definition.alerts.notify[1].class_ == "airflow.providers.smtp.notifications.smtp.SmtpNotifier"
    assert definition.alerts.run_failed and definition.alerts.removals_blocked
    assert load_definition(DEMO_DEFINITION).alerts is None


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ({"notify": []}, "field 'alerts.notify'"),
        ({"notify": [EMAIL], "rejected_share_above": 1.5}, "field 'alerts.rejected_share_above'"),
        ({"notify": [{"type": "pager"}]}, "field 'alerts.notify.0'"),
        ({"notify": [{"type": "email"}]}, "field 'alerts.notify.0.email.to'"),
        ({"notify": [{"type": "notifier", "class": "not a path"}]}, "alerts.notify.0.notifier.class"),
        ({"notify": [{"type": "notifier", "class": "no_such.Notifier"}]}, "no module 'no_such'"),
        ({"notify": [EMAIL], "on_failure": True}, "field 'alerts.on_failure': unknown field"),
    ],
)
def test_a_mistake_names_the_field(tmp_path, alerts, message) -> None:
    with pytest.raises(DefinitionError, match=message.replace(".", r"\.")):
        load_definition(write(tmp_path, alerts))


def test_slack_without_its_provider_is_a_clear_mistake(tmp_path, monkeypatch) -> None:
    for name in [n for n in sys.modules if n.startswith("airflow.providers.slack.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "airflow.providers.slack", None)  # as if it were not installed
    with pytest.raises(DefinitionError, match="pip install apache-airflow-providers-slack"):
        load_definition(write(tmp_path, {"notify": [{"type": "slack", "channel": "#ops"}]}))


def test_each_condition_at_its_threshold() -> None:
    run = report()  # 50 of 1,000 rejected (5%); 10 of 850 sent failed (1.18%)
    assert Alerts(notify=[EMAIL], rejected_share_above=0.05).triggered(run, 10) == []
    (line,) = Alerts(notify=[EMAIL], rejected_share_above=0.049).triggered(run, 10)
    assert line.startswith("50 of 1,000 profiles read (5.0%) were rejected")
    assert Alerts(notify=[EMAIL], failed_at_mailchimp_share_above=0.012).triggered(run, 10) == []
    (line,) = Alerts(notify=[EMAIL], failed_at_mailchimp_share_above=0.011).triggered(run, 10)
    assert line.startswith("Mailchimp refused 10 of 850 profiles sent (1.2%)")
    assert Alerts(notify=[EMAIL], slower_than_minutes=2).triggered(run, 120) == []
    (line,) = Alerts(notify=[EMAIL], slower_than_minutes=2).triggered(run, 121)
    assert "more than the expected 2" in line
    assert Alerts(notify=[EMAIL]).triggered(run, 10_000) == []  # only what is asked for


def test_blocked_removals_come_from_the_reports_guard_section() -> None:
    assert blocked_removals(report()) == 0
    guarded = report(removal_guard={"blocked": True, "removals": 412, "owned": 9000, "max_share": 0.1})
    assert blocked_removals(guarded) == 412
    (line,) = Alerts(notify=[EMAIL]).triggered(guarded, 1)
    assert line == "the removal guard held back 412 removals: check the segment's source"
    assert Alerts(notify=[EMAIL], removals_blocked=False).triggered(guarded, 1) == []


def test_counts_lines_name_reasons_but_no_address() -> None:
    run = report(failed_at_mailchimp={"ann@shop.de looks fake or invalid": 1})
    text = "\n".join(counts_lines(run))
    assert "Read 1,000 profiles (1,200 rows)" in text and "invalid_email 30" in text
    assert "ann@shop.de" not in text


def test_any_notifier_class_by_import_path(smtp) -> None:
    alerts = Alerts(
        notify=[
            {
                "type": "notifier",
                "class": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
                "message_arg": "html_content",
                "kwargs": {"to": "ops@company.test", "subject": "from a notifier class"},
            }
        ]
    )
    send(alerts, "Export e: 1 alert(s)", "the text")
    (message,) = smtp.messages
    assert (
        message["subject"] == "from a notifier class"
        and "the text" in message.get_body(("html",)).get_content()
    )


def test_a_broken_channel_does_not_silence_the_others(smtp) -> None:
    broken = {"type": "notifier", "class": "airflow.providers.smtp.notifications.smtp.NoSuchNotifier"}
    alerts = Alerts(notify=[broken, EMAIL])
    with pytest.raises(ImportError):
        send(alerts, "Export e: run failed", "the text")
    assert [m["subject"] for m in smtp.messages] == ["Export e: run failed"]
