"""The page renders report keys it has never seen (reports grow), and escapes everything it shows."""

from __future__ import annotations

from mailchimp_provider.export.summary import RunSummary
from mailchimp_provider.ui import pages

REPORT = {
    "export": "e",
    "run_id": "manual__1",
    "audience_id": "a",
    "dry_run": False,
    "rows_read": 120,
    "profiles_read": 100,
    "rejected_locally": {"invalid_email": 3},
    "unchanged": 10,
    "planned": 0,
    "created": 70,
    "updated": 10,
    "failed_at_mailchimp": {"<script>alert(1)</script>": 2},
    "durations_s": {"reconcile": 0.5, "extract": 2.0},
    "totals": {"rejected_locally": 3, "failed_at_mailchimp": 2},
    # keys a later version adds
    "untagged": 4,
    "left_kept": 1,
    "segments": {"vip": {"joined": 5, "left": 2, "stayed": 60}},
    "removal_guard": {"blocked": False, "removals": 0, "owned": 40},
    "warnings": ["segment vip shrank by 40%"],
    "batches": [{"id": "b1"}],
}


def run(report: dict, run_id: str = "manual__1") -> dict:
    return {
        "run_id": run_id,
        "state": "success",
        "run_after": "2026-11-29T06:00:00+00:00",
        "start_date": "2026-11-29T06:00:01+00:00",
        "duration_s": 75.0,
        "dry_run": report["dry_run"],
        "dag_run_url": "/dags/d/runs/x",
        "page_url": "/mailchimp-exports/exports/d/runs/x",
        "report": RunSummary.from_report(report).to_json(),
    }


def test_unknown_counts_and_breakdowns_are_shown() -> None:
    summary = RunSummary.from_report(REPORT)
    assert list(summary.counts)[:6] == ["created", "updated", "unchanged", "planned", "rejected", "failed"]
    assert summary.counts["untagged"] == 4 and summary.counts["left_kept"] == 1
    assert summary.breakdowns["segments"] == {"vip": {"joined": 5, "left": 2, "stayed": 60}}
    assert "totals" not in summary.breakdowns and "durations_s" not in summary.breakdowns
    assert summary.warnings == ["segment vip shrank by 40%"]

    export = {"export": "e", "audience_id": "a", "segments": ["vip"], "page_url": "/p", "dag_url": "/d"}
    history = pages.history_page(
        {"export": export, "runs": [run(REPORT)], "offset": 0, "limit": 25, "total_entries": 1}
    )
    assert "<th>untagged</th>" in history and "<th>left kept</th>" in history
    assert "vip: joined 5, left 2, stayed 60" in history
    detail = {**run(REPORT), "rejects_note": "note", "rejects_csv_url": "/x.csv"}
    page = pages.run_page(detail, rejects=None)
    assert "segment vip shrank by 40%" in page and "<h2>segments</h2>" in page
    assert page.index("extract") < page.index("reconcile")  # pipeline order, not alphabetical


def test_report_text_is_escaped() -> None:
    detail = {**run(REPORT), "rejects_note": "note", "rejects_csv_url": "/x.csv"}
    rejects = [
        {"profile_id": "<b>1</b>", "email": "<img src=x>", "stage": "s", "reason": "r", "detail": None}
    ]
    for html in (
        pages.run_page(detail, rejects),
        pages.trend_chart([run(REPORT)]),
        pages.history_page(
            {
                "export": {
                    "export": "e",
                    "audience_id": "a",
                    "segments": [],
                    "page_url": "/p",
                    "dag_url": "/d",
                },
                "runs": [run(REPORT)],
                "offset": 0,
                "limit": 25,
                "total_entries": 1,
            }
        ),
    ):
        assert "<script>" not in html and "<img" not in html and "<b>1</b>" not in html


def test_a_dry_run_shows_what_it_would_send() -> None:
    dry = {**REPORT, "dry_run": True, "created": 0, "updated": 0, "planned": 80, "failed_at_mailchimp": {}}
    page = pages.run_page({**run(dry), "rejects_note": "n", "rejects_csv_url": "/x"}, rejects=None)
    assert "dry run" in page and "would send" in page and "<th>created</th>" not in page
