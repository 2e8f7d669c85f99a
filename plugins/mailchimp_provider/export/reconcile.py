"""Reconcile: give every profile read exactly one outcome and add them up into the run report."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from mailchimp_provider.hooks.errors import mask_emails_in

OUTCOME_SCHEMA = pa.schema(
    [
        ("profile_id", pa.string()),
        ("email", pa.string()),
        ("subscriber_hash", pa.string()),
        ("outcome", pa.string()),
        ("error", pa.string()),
    ]
)
CREATED, UPDATED, FAILED = "created", "updated", "failed"


class AccountingError(RuntimeError):
    """Profiles went missing between reading and outcomes: the run must fail loudly."""


def _error_title(response: str) -> str:
    try:
        problem = json.loads(response)
    except ValueError:
        return "Unreadable response"
    if isinstance(problem, dict):
        return str(problem.get("title") or problem.get("detail") or "Unknown error")
    return "Unknown error"


def _member_error(error: dict) -> str:
    """Mailchimp's message for one member, with the address taken out so reports group by cause and
    carry no personal data."""
    text = str(error.get("error") or error.get("error_code") or "Unknown error")
    text = re.sub(re.escape(error["email_address"]), "<email>", text, flags=re.IGNORECASE)
    return mask_emails_in(text)


def job_outcomes(index: pa.Table, results: pa.Table) -> pa.Table:
    """Per-profile outcomes of one batch job, from its operation index and its results archive.

    A failed operation fails all its members with Mailchimp's error title; a member an operation's
    answer does not mention is failed too, so nothing is silently counted as sent.
    """
    by_operation = {
        op: (code, response)
        for op, code, response in zip(
            results["operation_id"].to_pylist(),
            results["status_code"].to_pylist(),
            results["response"].to_pylist(),
            strict=True,
        )
    }
    parsed: dict[str, tuple[set[str], set[str], dict[str, str]] | str] = {}
    for op, (code, response) in by_operation.items():
        if code >= 400:
            parsed[op] = _error_title(response)
            continue
        try:
            answer = json.loads(response)
            created = {m["email_address"].lower() for m in answer.get("new_members") or []}
            updated = {m["email_address"].lower() for m in answer.get("updated_members") or []}
            errors = {
                e["email_address"].lower(): _member_error(e)
                for e in answer.get("errors") or []
                if e.get("email_address")
            }
            parsed[op] = (created, updated, errors)
        except (ValueError, AttributeError, KeyError, TypeError):
            parsed[op] = "Unreadable response"
    outcomes: list[str] = []
    errors_out: list[str | None] = []
    for op, email in zip(index["operation_id"].to_pylist(), index["email"].to_pylist(), strict=True):
        result = parsed.get(op, "Missing from batch results")
        key = email.lower()
        if isinstance(result, str):
            outcome, error = FAILED, result
        elif key in result[0]:
            outcome, error = CREATED, None
        elif key in result[1]:
            outcome, error = UPDATED, None
        else:
            outcome, error = FAILED, result[2].get(key, "Not mentioned in Mailchimp's answer")
        outcomes.append(outcome)
        errors_out.append(error)
    return pa.Table.from_arrays(
        [
            index["profile_id"],
            index["email"],
            index["subscriber_hash"],
            pa.array(outcomes, pa.string()),
            pa.array(errors_out, pa.string()),
        ],
        schema=OUTCOME_SCHEMA,
    )


@dataclass
class RunReport:
    """What happened to every profile of one run; ``check`` enforces that nothing was lost."""

    export: str
    run_id: str
    audience_id: str
    dry_run: bool
    rows_read: int = 0
    profiles_read: int = 0
    rejected_locally: dict[str, int] = field(default_factory=dict)
    dropped_values: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    planned: int = 0
    created: int = 0
    updated: int = 0
    failed_at_mailchimp: dict[str, int] = field(default_factory=dict)
    batches: list[dict] = field(default_factory=list)
    durations_s: dict[str, float] = field(default_factory=dict)

    def add_outcomes(self, outcomes: pa.Table) -> None:
        counts = Counter(outcomes["outcome"].to_pylist())
        self.created += counts[CREATED]
        self.updated += counts[UPDATED]
        failed = Counter(
            e
            for o, e in zip(outcomes["outcome"].to_pylist(), outcomes["error"].to_pylist(), strict=True)
            if o == FAILED
        )
        for error, count in failed.items():
            self.failed_at_mailchimp[error] = self.failed_at_mailchimp.get(error, 0) + count

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected_locally.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed_at_mailchimp.values())

    def check(self) -> None:
        accounted = (
            self.rejected_total
            + self.unchanged
            + (self.planned if self.dry_run else self.created + self.updated + self.failed_total)
        )
        if accounted != self.profiles_read:
            raise AccountingError(
                f"profiles read ({self.profiles_read}) != rejected ({self.rejected_total}) + unchanged "
                f"({self.unchanged}) + "
                + (
                    f"planned ({self.planned})"
                    if self.dry_run
                    else f"created ({self.created}) + updated ({self.updated}) + failed at Mailchimp "
                    f"({self.failed_total})"
                )
                + f" = {accounted}; see the run's staging folder"
            )

    def to_json(self) -> str:
        data = dict(vars(self))
        data["totals"] = {"rejected_locally": self.rejected_total, "failed_at_mailchimp": self.failed_total}
        return json.dumps(data, indent=2, sort_keys=True)

    def summary(self) -> str:
        """The readable block printed in the task log."""
        lines = [
            f"Mailchimp export '{self.export}' -> audience {self.audience_id}"
            + (" (DRY RUN: nothing uploaded)" if self.dry_run else ""),
            f"  rows read            {self.rows_read:>10,}",
            f"  profiles read        {self.profiles_read:>10,}",
            f"  rejected locally     {self.rejected_total:>10,}",
            *(f"    {reason:<20} {count:>8,}" for reason, count in sorted(self.rejected_locally.items())),
            f"  unchanged (skipped)  {self.unchanged:>10,}",
        ]
        if self.dry_run:
            lines.append(f"  would send           {self.planned:>10,}")
        else:
            lines += [
                f"  created              {self.created:>10,}",
                f"  updated              {self.updated:>10,}",
                f"  failed at Mailchimp  {self.failed_total:>10,}",
                *(
                    f"    {error[:40]:<40} {count:>8,}"
                    for error, count in sorted(self.failed_at_mailchimp.items())
                ),
            ]
        if self.dropped_values:
            lines.append("  values left out (field:reason):")
            lines += [f"    {key:<40} {count:>8,}" for key, count in sorted(self.dropped_values.items())]
        if self.durations_s:
            lines.append("  durations: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.durations_s.items()))
        return "\n".join(lines)
