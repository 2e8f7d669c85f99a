"""One run's report reduced to what the exports page, asset events and alerts need.

Report keys grow over time: every whole-number field is a count and every mapping a breakdown, so a
new outcome shows up without a change here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mailchimp_provider.export import staging
from mailchimp_provider.export.staging import RunPaths

READ_KEYS = ("rows_read", "profiles_read")
# Shown first, in this order; any other count follows in alphabetical order.
MAIN_COUNTS = ("created", "updated", "unchanged", "planned", "rejected", "failed")
TOTALS = {"rejected_locally": "rejected", "failed_at_mailchimp": "failed"}
NOT_BREAKDOWNS = frozenset({"durations_s", "totals"})


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunSummary:
    """One run's report reduced to what tables and charts need."""

    dry_run: bool
    read: dict[str, int]
    counts: dict[str, int]
    breakdowns: dict[str, dict[str, Any]]
    durations_s: dict[str, float]
    warnings: list[str]
    report: dict[str, Any]

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> RunSummary:
        counts: dict[str, int] = {}
        breakdowns: dict[str, dict[str, Any]] = {}
        for key, value in report.items():
            if key in READ_KEYS:
                continue
            if _is_count(value):
                counts[key] = value
            elif isinstance(value, dict) and key not in NOT_BREAKDOWNS:
                breakdowns[key] = value
        for key, label in TOTALS.items():
            if isinstance(report.get(key), dict):
                counts[label] = sum(v for v in report[key].values() if _is_count(v))
        ordered = {k: counts[k] for k in MAIN_COUNTS if k in counts}
        ordered.update(sorted((k, v) for k, v in counts.items() if k not in ordered))
        warnings = report.get("warnings")
        return cls(
            dry_run=bool(report.get("dry_run")),
            read={k: report[k] for k in READ_KEYS if _is_count(report.get(k))},
            counts=ordered,
            breakdowns=breakdowns,
            durations_s={
                k: float(v)
                for k, v in (report.get("durations_s") or {}).items()
                if isinstance(v, int | float)
            },
            warnings=[str(w) for w in warnings] if isinstance(warnings, list) else [],
            report=report,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "read": self.read,
            "counts": self.counts,
            "breakdowns": self.breakdowns,
            "durations_s": self.durations_s,
            "warnings": self.warnings,
        }


def run_paths(export: str, run_id: str) -> RunPaths:
    return RunPaths.for_run(staging.base_path(), export, run_id)


def read_summary(export: str, run_id: str) -> RunSummary | None:
    """The run's report, or None while it runs, when it failed before reconcile, or after the purge."""
    path = run_paths(export, run_id).report
    try:
        text = staging.read_text(path)
    except FileNotFoundError:
        return None
    return RunSummary.from_report(json.loads(text))
