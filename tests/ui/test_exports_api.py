"""The exports page's endpoints on a real API server: login required, numbers equal to the run reports,
pagination, and rejected profiles only for users with edit access to the export's DAG."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.slow


def runs_path(export_runs, run_id: str | None = None) -> str:
    path = f"/mailchimp-exports/api/exports/{export_runs.dag_id}/runs"
    return f"{path}/{quote(run_id, safe='')}" if run_id else path


def test_every_endpoint_refuses_requests_without_a_login(api_server, export_runs) -> None:
    run = quote(export_runs.real, safe="")
    for path in (
        "/mailchimp-exports/api/exports",
        runs_path(export_runs),
        runs_path(export_runs, export_runs.real),
        f"{runs_path(export_runs, export_runs.real)}/rejects",
    ):
        status, body, _ = api_server.get(path)
        assert status == 401, (path, status, body[:200])
    # pages and the download send a browser to the login page instead
    for path in (
        "/mailchimp-exports/",
        f"/mailchimp-exports/exports/{export_runs.dag_id}",
        f"/mailchimp-exports/exports/{export_runs.dag_id}/runs/{run}",
        f"/mailchimp-exports/exports/{export_runs.dag_id}/runs/{run}/rejects.csv",
    ):
        status, body, headers = api_server.get(path)
        assert status == 303 and "/auth/login" in headers["location"] and body == b"", path
    # a forged token is refused too
    import urllib.request

    request = urllib.request.Request(
        f"{api_server.url}/mailchimp-exports/api/exports", headers={"Authorization": "Bearer not-a-jwt"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code in (401, 403)


def test_export_list_shows_the_definition_and_its_last_run(api_server, export_runs) -> None:
    answer = api_server.json("/mailchimp-exports/api/exports", "viewer")
    (export,) = [e for e in answer["exports"] if e["dag_id"] == export_runs.dag_id]
    assert export["audience_id"] == "demo0audience"
    assert export["segments"] == ["newsletter_opt_in", "vip_customers"]
    assert export["schedule"] == {"cron": None, "after_assets": ["demo_warehouse_segments"]}
    assert export["last_run"]["run_id"] == export_runs.failed
    assert export["last_run"]["state"] == "failed" and export["last_run"]["report"] is None
    # the latest counts come from the newest run with a report: the dry run
    assert export["last_report"]["run_id"] == export_runs.dry and export["last_report"]["dry_run"]


def test_run_history_counts_equal_the_reports(api_server, export_runs) -> None:
    answer = api_server.json(runs_path(export_runs), "viewer")
    assert answer["total_entries"] == 3
    by_id = {run["run_id"]: run for run in answer["runs"]}
    assert list(by_id) == [export_runs.failed, export_runs.dry, export_runs.real]  # newest first
    for run_id, dry in ((export_runs.real, False), (export_runs.dry, True)):
        report = export_runs.report(run_id)
        shown = by_id[run_id]
        assert shown["state"] == "success" and shown["dry_run"] is dry
        assert shown["report"]["read"] == {
            "rows_read": report["rows_read"],
            "profiles_read": report["profiles_read"],
        }
        counts = shown["report"]["counts"]
        assert counts["rejected"] == report["totals"]["rejected_locally"] > 0
        assert counts["failed"] == report["totals"]["failed_at_mailchimp"]
        for key in ("created", "updated", "unchanged", "planned"):
            assert counts[key] == report[key]
        assert shown["report"]["breakdowns"]["rejected_locally"] == report["rejected_locally"]
        assert shown["report"]["breakdowns"]["failed_at_mailchimp"] == report["failed_at_mailchimp"]
        assert shown["report"]["durations_s"] == report["durations_s"]
        assert shown["dag_run_url"].endswith(f"/dags/{export_runs.dag_id}/runs/{quote(run_id, safe='')}")
    real = by_id[export_runs.real]["report"]["counts"]
    assert real["created"] > 0 and real["failed"] > 0  # the demo data has addresses Mailchimp refuses
    assert by_id[export_runs.dry]["report"]["counts"]["planned"] > 0
    assert by_id[export_runs.failed]["report"] is None and by_id[export_runs.failed]["state"] == "failed"


def test_pagination(api_server, export_runs) -> None:
    pages = [api_server.json(f"{runs_path(export_runs)}?limit=2&offset={o}", "viewer") for o in (0, 2, 4)]
    assert [len(p["runs"]) for p in pages] == [2, 1, 0]
    assert all(p["total_entries"] == 3 for p in pages)
    seen = [r["run_id"] for p in pages for r in p["runs"]]
    assert seen == [export_runs.failed, export_runs.dry, export_runs.real]
    status, _, _ = api_server.get(f"{runs_path(export_runs)}?limit=0", "viewer")
    assert status == 422
    status, _, _ = api_server.get(f"{runs_path(export_runs)}?limit=100000", "viewer")
    assert status == 422


def test_unknown_export_or_run_is_a_404(api_server, export_runs) -> None:
    assert api_server.get("/mailchimp-exports/api/exports/mailchimp_export__nope/runs", "viewer")[0] == 404
    assert api_server.get(runs_path(export_runs, "manual__nope"), "viewer")[0] == 404


def _rejected_in_staging(export_runs, run_id: str) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq
    from mailchimp_provider.export.staging import safe_name

    root = export_runs.staging / export_runs.export / "runs" / safe_name(run_id)
    rows = [
        (r["profile_id"], r["reason"])
        for p in sorted((root / "rejects").glob("*.parquet"))
        for r in pq.read_table(p).to_pylist()
    ]
    if (root / "mailchimp_rejects.parquet").exists():
        rows += [
            (r["profile_id"], r["error"])
            for r in pq.read_table(root / "mailchimp_rejects.parquet").to_pylist()
        ]
    return rows


def test_rejects_for_an_editor_as_json_and_csv(api_server, export_runs) -> None:
    report = export_runs.report(export_runs.real)
    expected = _rejected_in_staging(export_runs, export_runs.real)
    assert len(expected) == report["totals"]["rejected_locally"] + report["totals"]["failed_at_mailchimp"]

    detail = api_server.json(runs_path(export_runs, export_runs.real), "editor")
    assert detail["may_see_rejects"] is True and "Personal data" in detail["rejects_note"]
    page = api_server.json(f"{runs_path(export_runs, export_runs.real)}/rejects?limit=20", "editor")
    assert page["total_entries"] == len(expected) and len(page["rejects"]) == 20

    status, body, headers = api_server.get(detail["rejects_csv_url"], "editor")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert "attachment" in headers["content-disposition"] and headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [(r["profile_id"], r["reason"]) for r in rows] == expected
    stages = {r["stage"] for r in rows}
    assert stages == {"rejected locally", "failed at Mailchimp"}
    assert all(not r["email"].startswith(("=", "+", "-", "@")) for r in rows)
    assert "'" + export_runs.formula_email in {r["email"] for r in rows}
    refused = {r["email"] for r in rows if r["stage"] == "failed at Mailchimp"}
    assert refused == set(export_runs.refused_emails)


def test_a_viewer_sees_counts_but_no_rejected_profiles(api_server, export_runs) -> None:
    detail = api_server.json(runs_path(export_runs, export_runs.real), "viewer")
    assert detail["may_see_rejects"] is False
    assert detail["report"]["counts"]["rejected"] > 0
    assert api_server.get(f"{runs_path(export_runs, export_runs.real)}/rejects", "viewer")[0] == 403
    status, body, _ = api_server.get(detail["rejects_csv_url"], "viewer")
    assert status == 403 and b"@" not in body
    status, page, _ = api_server.get(detail["page_url"], "viewer")
    assert status == 200 and b"needs edit access" in page and b"@" not in page.split(b"<body>")[1]


def test_pages_render_every_count_of_the_reports(api_server, export_runs) -> None:
    status, page, headers = api_server.get(f"/mailchimp-exports/exports/{export_runs.dag_id}", "viewer")
    assert "default-src 'none'" in headers["content-security-policy"]
    text = page.decode()
    assert status == 200 and "<svg" in text and "dry run" in text
    report = export_runs.report(export_runs.real)
    assert f"{report['created']:,}" in text and f"{report['rows_read']:,}" in text
    for reason in report["rejected_locally"]:
        assert reason in text
    status, page, _ = api_server.get("/mailchimp-exports/", "viewer")
    assert status == 200 and export_runs.export in page.decode()
    assert json.loads(api_server.get("/api/v2/plugins", "viewer")[1])["total_entries"] >= 1
