"""Server-rendered HTML for the exports page: no JavaScript framework, no CDN (the UI may have no
internet), a plain inline SVG for the trend chart. Every value from a report or the warehouse is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from mailchimp_provider.export.summary import MAIN_COUNTS

COLOURS = {
    "created": "#2e7d32",
    "updated": "#1565c0",
    "unchanged": "#9e9e9e",
    "planned": "#8e24aa",
    "rejected": "#ef6c00",
    "failed": "#c62828",
}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1a202c;font-size:14px}
h1{font-size:20px;margin:0 0 12px} h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;margin:4px 0 12px} th,td{border-bottom:1px solid #e2e8f0;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#f7fafc;font-weight:600} td.n{text-align:right;
font-variant-numeric:tabular-nums} .muted{color:#718096} .badge{display:inline-block;border-radius:4px;
padding:0 6px;font-size:12px;background:#edf2f7} .dry{background:#faf089} .success{background:#c6f6d5}
.failed{background:#fed7d7} .running,.queued{background:#bee3f8} .note{background:#fffbea;border:1px solid
#f6e05e;padding:8px;max-width:900px} a{color:#2b6cb0} .breakdown{font-size:12px;min-width:170px;max-width:280px} .when{white-space:nowrap} .scroll{overflow-x:auto}
nav{margin-bottom:8px}
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else escape(str(value))


def _state(run: dict[str, Any]) -> str:
    state = run.get("state") or "none"
    badge = f'<span class="badge {escape(state)}">{escape(state)}</span>'
    return badge + (' <span class="badge dry">dry run</span>' if run.get("dry_run") else "")


def _breakdown(value: Any) -> str:
    """A mapping of counts (or of mappings, e.g. per segment) as short lines."""
    if not isinstance(value, dict):
        return _n(value)
    lines = []
    for key, inner in sorted(value.items(), key=lambda kv: str(kv[0])):
        if isinstance(inner, dict):
            inner_text = ", ".join(f"{escape(str(k))} {_n(v)}" for k, v in inner.items())
            lines.append(f"{escape(str(key))}: {inner_text}")
        else:
            lines.append(f"{escape(str(key))} <b>{_n(inner)}</b>")
    return "<br>".join(lines) or '<span class="muted">none</span>'


def _breakdown_table(value: Any) -> str:
    """A mapping of counts as a two-column table; nested mappings (e.g. per segment) one row each."""
    if not isinstance(value, dict) or not value:
        return '<p class="muted">none</p>'
    rows = []
    for key, inner in sorted(value.items(), key=lambda kv: str(kv[0])):
        shown = (
            ", ".join(f"{escape(str(k))} {_n(v)}" for k, v in inner.items())
            if isinstance(inner, dict)
            else _n(inner)
        )
        rows.append(f'<tr><td>{escape(str(key))}</td><td class="n">{shown}</td></tr>')
    return f"<table>{''.join(rows)}</table>"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{value:.1f}s"


def _count_keys(runs: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for run in runs:
        for key in (run.get("report") or {}).get("counts", {}):
            if key not in keys:
                keys.append(key)
    main = [k for k in MAIN_COUNTS if k in keys]
    return main + sorted(k for k in keys if k not in main)


def _breakdown_keys(runs: list[dict[str, Any]]) -> list[str]:
    keys = {k for run in runs for k in (run.get("report") or {}).get("breakdowns", {})}
    first = [k for k in ("rejected_locally", "failed_at_mailchimp") if k in keys]
    return first + sorted(keys - set(first))


LABELS = {
    "rejected_locally": "Rejected locally, by reason",
    "failed_at_mailchimp": "Failed at Mailchimp, by cause",
    "dropped_values": "Values left out (field:reason)",
    "planned": "would send",
}
DURATION_ORDER = (
    "check_audience",
    "extract",
    "validate_and_map",
    "plan",
    "chunk",
    "mailchimp_batches",
    "reconcile",
)


def _label(key: str) -> str:
    return escape(LABELS.get(key, key.replace("_", " ")))


def _when(iso: str | None) -> str:
    """An ISO timestamp as '2026-11-29 20:04:23 UTC' (Airflow stores UTC)."""
    return escape(f"{iso[:10]} {iso[11:19]} UTC") if iso else ""


def _shown_counts(report: dict[str, Any]) -> dict[str, int]:
    """A real run plans nothing and a dry run sends nothing: leave out what cannot apply."""
    hidden = ("created", "updated", "failed") if report["dry_run"] else ("planned",)
    return {k: v for k, v in report["counts"].items() if k not in hidden}


def error_page(status: int, message: str) -> str:
    return _page("Mailchimp exports", f"<h1>Mailchimp exports</h1><p>{status}: {escape(message)}</p>")


def exports_page(exports: list[dict[str, Any]]) -> str:
    rows = []
    for export in exports:
        last, reported = export["last_run"], export["last_report"]
        counts = (reported or {}).get("report") or {}
        schedule = export["schedule"]
        when = " or ".join(
            part
            for part in (
                f"cron {escape(schedule['cron'])}" if schedule["cron"] else "",
                ("after " + ", ".join(escape(a) for a in schedule["after_assets"]))
                if schedule["after_assets"]
                else "",
            )
            if part
        )
        summary = (
            ", ".join(
                f"{_label(k)} {_n(v)}" for k, v in _shown_counts(counts).items() if v or k in MAIN_COUNTS[:3]
            )
            if counts
            else ""
        )
        rows.append(
            "<tr>"
            f'<td><a href="{escape(export["page_url"])}">{escape(export["export"])}</a>'
            f'<div class="muted">{escape(export["description"])}</div></td>'
            f"<td>{escape(export['audience_id'])}</td><td>{when or 'manual only'}</td>"
            + (
                f"<td>{_state(last)}<div class='muted'>{_when(last['run_after'])}</div></td>"
                f"<td>{summary or '<span class=muted>no report</span>'}"
                + (
                    f"<div class='muted'>from the run of {_when(reported['run_after'])}"
                    f"{' (dry run)' if reported['dry_run'] else ''}</div>"
                    if reported and reported is not last and reported["run_id"] != last["run_id"]
                    else ""
                )
                + "</td>"
                if last
                else "<td class='muted'>never ran</td><td></td>"
            )
            + "</tr>"
        )
    table = (
        "<table><tr><th>Export</th><th>Audience</th><th>Schedule</th><th>Last run</th><th>Latest counts</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else "<p>No export definitions that you may read.</p>"
    )
    return _page("Mailchimp exports", f"<h1>Mailchimp exports</h1>{table}")


def trend_chart(runs: list[dict[str, Any]], width: int = 760, height: int = 220) -> str:
    """Counts per run, oldest on the left, as an inline SVG line chart."""
    reported = [r for r in reversed(runs) if r.get("report")]
    if not reported:
        return '<p class="muted">No reports yet to chart.</p>'
    series = [k for k in COLOURS if any(r["report"]["counts"].get(k) for r in reported)]
    top = max([r["report"]["counts"].get(k, 0) for r in reported for k in series] + [1])
    left, right, up, down = 56, 48, 12, 40
    span_x = width - left - right
    span_y = height - up - down
    step = span_x / max(len(reported) - 1, 1)

    def xy(i: int, value: int) -> tuple[float, float]:
        return left + i * step, up + span_y * (1 - value / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 24}" role="img" '
        f'aria-label="Counts per run">',
        f'<line x1="{left}" y1="{up + span_y}" x2="{width - right}" y2="{up + span_y}" stroke="#a0aec0"/>',
        f'<text x="{left - 6}" y="{up + 4}" text-anchor="end" font-size="11">{top:,}</text>',
        f'<text x="{left - 6}" y="{up + span_y}" text-anchor="end" font-size="11">0</text>',
    ]
    for key in series:
        points = [xy(i, r["report"]["counts"].get(key, 0)) for i, r in enumerate(reported)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline fill="none" stroke="{COLOURS[key]}" stroke-width="2" points="{path}"/>')
        for (x, y), run in zip(points, reported, strict=True):
            value = run["report"]["counts"].get(key, 0)
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLOURS[key]}">'
                f"<title>{escape(run['run_id'])}: {key} {value:,}</title></circle>"
            )
    for i, run in enumerate(reported):
        x, _ = xy(i, 0)
        label = (run.get("run_after") or "")[5:16].replace("T", " ") + (" dry" if run.get("dry_run") else "")
        parts.append(
            f'<text x="{x:.1f}" y="{up + span_y + 14}" text-anchor="middle" font-size="10">'
            f"{escape(label)}</text>"
        )
    for i, key in enumerate(series):
        x = left + i * 110
        parts.append(
            f'<rect x="{x}" y="{height + 8}" width="10" height="10" fill="{COLOURS[key]}"/>'
            f'<text x="{x + 14}" y="{height + 17}" font-size="11">{_label(key)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def history_page(history: dict[str, Any]) -> str:
    export, runs = history["export"], history["runs"]
    count_keys, breakdown_keys = _count_keys(runs), _breakdown_keys(runs)
    head = (
        "<tr><th>Run</th><th>State</th><th>Started</th><th>Duration</th><th>Rows read</th>"
        "<th>Profiles read</th>"
        + "".join(f"<th>{_label(k)}</th>" for k in count_keys)
        + "".join(f"<th>{_label(k)}</th>" for k in breakdown_keys)
        + "<th></th></tr>"
    )
    rows = []
    for run in runs:
        report = run.get("report")
        if report:
            cells = (
                f'<td class="n">{_n(report["read"].get("rows_read", ""))}</td>'
                f'<td class="n">{_n(report["read"].get("profiles_read", ""))}</td>'
                + "".join(f'<td class="n">{_n(report["counts"].get(k, ""))}</td>' for k in count_keys)
                + "".join(
                    f'<td class="breakdown">{_breakdown(report["breakdowns"].get(k, {}))}</td>'
                    for k in breakdown_keys
                )
            )
        else:
            cells = f'<td colspan="{2 + len(count_keys) + len(breakdown_keys)}" class="muted">no report</td>'
        rows.append(
            f'<tr><td><a href="{escape(run["page_url"])}">{escape(run["run_id"])}</a></td>'
            f'<td>{_state(run)}</td><td class="when">{_when(run["start_date"])}</td>'
            f"<td>{_seconds(run['duration_s'])}</td>{cells}"
            f'<td><a href="{escape(run["dag_run_url"])}" target="_top">DAG run</a></td></tr>'
        )
    offset, limit, total = history["offset"], history["limit"], history["total_entries"]
    base = export["page_url"]
    pager = []
    if offset > 0:
        pager.append(f'<a href="{escape(base)}?offset={max(offset - limit, 0)}&limit={limit}">newer</a>')
    if offset + limit < total:
        pager.append(f'<a href="{escape(base)}?offset={offset + limit}&limit={limit}">older</a>')
    body = (
        '<nav><a href="../">All exports</a></nav>'
        f"<h1>{escape(export['export'])}</h1>"
        f"<p>Audience <b>{escape(export['audience_id'])}</b>, segments "
        f"{escape(', '.join(export['segments']))}. "
        f'<a href="{escape(export["dag_url"])}" target="_top">DAG</a></p>'
        f"<h2>Trend</h2>{trend_chart(runs)}"
        f"<h2>Runs {offset + 1 if runs else 0}&ndash;{offset + len(runs)} of {total}</h2>"
        + (
            f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'
            if rows
            else "<p>No runs yet.</p>"
        )
        + " ".join(pager)
    )
    return _page(f"Mailchimp export {export['export']}", body)


def _key_values(values: dict[str, Any]) -> str:
    return "".join(f'<tr><th>{_label(k)}</th><td class="n">{_n(v)}</td></tr>' for k, v in values.items())


def run_page(detail: dict[str, Any], rejects: list[dict[str, Any]] | None) -> str:
    report = detail.get("report")
    parts = [
        '<nav><a href="../../">All exports</a> / <a href="../">this export</a></nav>',
        f"<h1>Run {escape(detail['run_id'])}</h1>",
        f"<p>{_state(detail)} started {_when(detail['start_date'])}, "
        f"took {_seconds(detail['duration_s'])}. "
        f'<a href="{escape(detail["dag_run_url"])}" target="_top">Open the DAG run</a></p>',
    ]
    if not report:
        parts.append("<p class='muted'>No report: the run has not reached reconcile, or was purged.</p>")
        return _page(f"Run {detail['run_id']}", "".join(parts))
    parts.append(
        "<h2>Counts</h2><table>" + _key_values({**report["read"], **_shown_counts(report)}) + "</table>"
    )
    for key in _breakdown_keys([detail]):
        parts.append(f"<h2>{_label(key)}</h2>{_breakdown_table(report['breakdowns'][key])}")
    if report["warnings"]:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{escape(w)}</li>" for w in report["warnings"]))
        parts.append("</ul>")
    if report["durations_s"]:
        steps = sorted(
            report["durations_s"],
            key=lambda k: (k not in DURATION_ORDER, DURATION_ORDER.index(k) if k in DURATION_ORDER else 0, k),
        )
        durations = {k: _seconds(report["durations_s"][k]) for k in steps}
        parts.append("<h2>Durations</h2><table>" + _key_values(durations) + "</table>")
    not_sent = report["counts"].get("rejected", 0) + report["counts"].get("failed", 0)
    parts.append(
        f"<h2>Rejected profiles ({not_sent:,}: {report['counts'].get('rejected', 0):,} rejected locally, "
        f"{report['counts'].get('failed', 0):,} failed at Mailchimp)</h2>"
    )
    if rejects is None:
        parts.append(
            "<p class='muted'>Only counts are shown: looking at rejected profiles (personal data) needs "
            "edit access to this export's DAG.</p>"
        )
    else:
        parts.append(f'<p class="note">{escape(detail["rejects_note"])}</p>')
        parts.append(
            f'<p><a id="download-rejects" href="{escape(detail["rejects_csv_url"])}">Download CSV</a></p>'
        )
        if rejects:
            parts.append(
                "<table><tr><th>profile id</th><th>email</th><th>stage</th><th>reason</th><th>detail</th></tr>"
                + "".join(
                    "<tr>" + "".join(f"<td>{escape(str(r[c] or ''))}</td>" for c in r) + "</tr>"
                    for r in rejects
                )
                + "</table>"
                + (f"<p class='muted'>The first {len(rejects)} shown; the CSV has them all.</p>")
            )
    return _page(f"Run {detail['run_id']}", "".join(parts))
