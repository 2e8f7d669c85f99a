"""The ``alerts`` section of an export definition, and which of its conditions a run meets.

Plain Python: the conditions are checked on the run's report, so they are testable without Airflow.
Messages name the export and carry counts and a link only: never a profile's address, never a key.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from mailchimp_provider.export.summary import RunSummary

Share = Annotated[float, Field(gt=0, lt=1)]
ImportPath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=250)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmailChannel(_Strict):
    """Email through the SMTP provider's notifier and an Airflow SMTP connection."""

    type: Literal["email"]
    to: Annotated[list[Text], Field(min_length=1, max_length=50)]
    conn_id: Text | None = None  # default: [email] email_conn_id, else smtp_default
    from_email: Text | None = None  # default: the connection's from address


class SlackChannel(_Strict):
    """Slack through the Slack provider's notifier (install apache-airflow-providers-slack)."""

    type: Literal["slack"]
    channel: Text
    conn_id: Text = "slack_api_default"

    @field_validator("type")
    @classmethod
    def _provider_installed(cls, value: str) -> str:
        if not _module_exists("airflow.providers.slack.notifications.slack"):
            raise ValueError(
                "Slack alerts need the Slack provider: pip install apache-airflow-providers-slack"
            )
        return value


class NotifierChannel(_Strict):
    """Any Airflow notifier class, by import path; the message goes to its ``message_arg`` argument."""

    type: Literal["notifier"]
    class_: ImportPath = Field(alias="class")
    message_arg: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")] = "text"
    kwargs: dict[str, str | int | float | bool | list[str]] = Field(default_factory=dict)

    @field_validator("class_")
    @classmethod
    def _module_found(cls, value: str) -> str:
        """Fail when the DAG is parsed, not when the first alert is due."""
        if not _module_exists(value.rpartition(".")[0]):
            raise ValueError(f"no module {value.rpartition('.')[0]!r} to import {value!r} from")
        return value


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


Channel = Annotated[EmailChannel | SlackChannel | NotifierChannel, Field(discriminator="type")]


class Alerts(_Strict):
    """Who is told about what. Each condition is off unless set."""

    notify: Annotated[list[Channel], Field(min_length=1, max_length=10)]
    run_failed: bool = True
    rejected_share_above: Share | None = None  # rejected locally / profiles read
    failed_at_mailchimp_share_above: Share | None = None  # failed at Mailchimp / profiles sent
    removals_blocked: bool = True  # the removal guard held back removals
    slower_than_minutes: Annotated[float, Field(gt=0, le=7 * 24 * 60)] | None = None

    def triggered(self, summary: RunSummary, elapsed_s: float) -> list[str]:
        """The conditions this run meets, each as one readable line."""
        counts = summary.counts
        reasons = []
        read = summary.read.get("profiles_read", 0)
        rejected = counts.get("rejected", 0)
        if self.rejected_share_above is not None and read and rejected / read > self.rejected_share_above:
            reasons.append(
                f"{rejected:,} of {read:,} profiles read ({rejected / read:.1%}) were rejected, "
                f"above the {self.rejected_share_above:.1%} threshold"
            )
        failed = counts.get("failed", 0)
        sent = counts.get("created", 0) + counts.get("updated", 0) + failed
        if (
            self.failed_at_mailchimp_share_above is not None
            and sent
            and failed / sent > self.failed_at_mailchimp_share_above
        ):
            reasons.append(
                f"Mailchimp refused {failed:,} of {sent:,} profiles sent ({failed / sent:.1%}), above the "
                f"{self.failed_at_mailchimp_share_above:.1%} threshold"
            )
        blocked = blocked_removals(summary)
        if self.removals_blocked and blocked:
            reasons.append(f"the removal guard held back {blocked:,} removals: check the segment's source")
        if self.slower_than_minutes is not None and elapsed_s > self.slower_than_minutes * 60:
            reasons.append(
                f"the run took {elapsed_s / 60:.0f} minutes, more than the expected "
                f"{self.slower_than_minutes:g}"
            )
        return reasons


def blocked_removals(summary: RunSummary) -> int:
    """Removals the guard held back: the report's ``removal_guard`` (0 when it did not block the run)."""
    guard = summary.breakdowns.get("removal_guard") or {}
    value = guard.get("removals", 0) if guard.get("blocked") else 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
