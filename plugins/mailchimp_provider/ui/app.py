"""The exports page's FastAPI app, mounted by the API server under ``/mailchimp-exports``.

Every route needs a logged-in Airflow user (Airflow's own ``get_user`` dependency: the UI's session
cookie or a bearer token), reading an export needs read access to its DAG's runs, and rejected profiles
(personal data) need edit access to the export's DAG, as the auth manager decides.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.configuration import conf
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from sqlalchemy import func, select

from mailchimp_provider.export.definition import ExportDefinition, exports_dir, load_all
from mailchimp_provider.export.summary import read_summary
from mailchimp_provider.ui import pages
from mailchimp_provider.ui.rejects import iter_rejects, rejects_csv

URL_PREFIX = "/mailchimp-exports"
MAX_PAGE = 200
REJECTS_PREVIEW = 100
RECENT = 10  # runs looked at for an export's latest report
REJECTS_NOTE = (
    "Personal data: one row per profile of this run that did not reach Mailchimp, rejected locally "
    "(stage 'rejected locally', reason code such as invalid_email) or refused by Mailchimp (stage "
    "'failed at Mailchimp', Mailchimp's reason). Columns: profile_id, email as read from the warehouse, "
    "stage, reason, detail. Kept in the run's staging folder until the retention purge "
    "(MAILCHIMP_EXPORT_RETENTION_DAYS). Do not forward it outside the team."
)

app = FastAPI(title="Mailchimp exports", description="Run history of the Mailchimp export DAGs.")
# The pages run no script and load nothing from elsewhere; only Airflow's UI may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
CanReadRuns = Depends(requires_access_dag("GET", DagAccessEntity.RUN))
CanSeePersonalData = Depends(requires_access_dag("PUT"))


@app.middleware("http")
async def _security_headers(request: Request, call_next):
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    return response


def definitions() -> dict[str, ExportDefinition]:
    """The valid export definitions by DAG id, read where the DAG file reads them."""
    default = Path(conf.get("core", "dags_folder")).parent / "include" / "exports"
    return {
        loaded.definition.dag_id: loaded.definition
        for loaded in load_all(exports_dir(default))
        if loaded.definition is not None
    }


def _definition(dag_id: str) -> ExportDefinition:
    definition = definitions().get(dag_id)
    if definition is None:
        raise HTTPException(404, f"no Mailchimp export has the DAG id {dag_id!r}")
    return definition


def ui_link(path: str) -> str:
    """A link into Airflow's own UI, honouring a base URL with a path."""
    base = urlsplit(conf.get("api", "base_url", fallback="/") or "/").path.rstrip("/")
    return f"{base}{path}"


def may_see_personal_data(user: Any, dag_id: str) -> bool:
    """Edit access to the export's DAG is what allows looking at its rejected profiles."""
    details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
    return get_auth_manager().is_authorized_dag(method="PUT", details=details, user=user)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _run_json(definition: ExportDefinition, run: DagRun) -> dict[str, Any]:
    summary = read_summary(definition.export, run.run_id)
    ended = run.end_date or (None if run.start_date is None else dt.datetime.now(dt.UTC))
    return {
        "run_id": run.run_id,
        "state": str(run.state) if run.state else None,
        "run_type": str(run.run_type),
        "run_after": _iso(run.run_after),
        "start_date": _iso(run.start_date),
        "end_date": _iso(run.end_date),
        "duration_s": round((ended - run.start_date).total_seconds(), 1) if run.start_date else None,
        "dry_run": summary.dry_run if summary else bool((run.conf or {}).get("dry_run")),
        "dag_run_url": ui_link(f"/dags/{quote(run.dag_id)}/runs/{quote(run.run_id, safe='')}"),
        "page_url": f"{URL_PREFIX}/exports/{quote(run.dag_id)}/runs/{quote(run.run_id, safe='')}",
        "report": summary.to_json() if summary else None,
    }


def _runs(session: Any, dag_id: str, offset: int, limit: int) -> tuple[int, list[DagRun]]:
    total = session.scalar(select(func.count()).select_from(DagRun).where(DagRun.dag_id == dag_id))
    runs = session.scalars(
        select(DagRun)
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.run_after.desc(), DagRun.id.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return total or 0, list(runs)


def _export_json(definition: ExportDefinition, recent: list[DagRun]) -> dict[str, Any]:
    """The export, its last run, and its latest run with a report (the last one may have none yet)."""
    schedule = definition.schedule
    runs = (_run_json(definition, run) for run in recent)
    last = next(runs, None)
    reported = last if last is None or last["report"] else next((r for r in runs if r["report"]), None)
    return {
        "export": definition.export,
        "dag_id": definition.dag_id,
        "description": definition.description,
        "audience_id": definition.mailchimp.audience_id,
        "segments": list(definition.segments),
        "schedule": {"cron": schedule.cron, "after_assets": list(schedule.after_assets)},
        "page_url": f"{URL_PREFIX}/exports/{quote(definition.dag_id)}",
        "dag_url": ui_link(f"/dags/{quote(definition.dag_id)}"),
        "last_run": last,
        "last_report": reported,
    }


def list_exports(user: Any, session: Any) -> list[dict[str, Any]]:
    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    exports = []
    for dag_id, definition in sorted(definitions().items()):
        if dag_id in readable:
            _, recent = _runs(session, dag_id, 0, RECENT)
            exports.append(_export_json(definition, recent))
    return exports


def export_history(dag_id: str, session: Any, offset: int, limit: int) -> dict[str, Any]:
    definition = _definition(dag_id)
    total, runs = _runs(session, dag_id, offset, limit)
    return {
        "export": _export_json(definition, []),
        "total_entries": total,
        "offset": offset,
        "limit": limit,
        "runs": [_run_json(definition, run) for run in runs],
    }


def _dag_run(session: Any, dag_id: str, run_id: str) -> DagRun:
    """Only runs Airflow knows are looked up in staging: the run id names a folder there."""
    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        raise HTTPException(404, f"{dag_id} has no run {run_id!r}")
    return run


def run_detail(dag_id: str, run_id: str, user: Any, session: Any) -> dict[str, Any]:
    definition = _definition(dag_id)
    run = _dag_run(session, dag_id, run_id)
    detail = _run_json(definition, run)
    detail["may_see_rejects"] = may_see_personal_data(user, dag_id)
    detail["rejects_csv_url"] = f"{detail['page_url']}/rejects.csv"
    detail["rejects_note"] = REJECTS_NOTE
    return detail


Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


@app.get("/api/exports")
def api_exports(user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    exports = list_exports(user, session)
    return {"exports": exports, "total_entries": len(exports)}


@app.get("/api/exports/{dag_id}/runs", dependencies=[CanReadRuns])
def api_runs(dag_id: str, session: SessionDep, offset: Offset = 0, limit: Limit = 25) -> dict[str, Any]:
    return export_history(dag_id, session, offset, limit)


@app.get("/api/exports/{dag_id}/runs/{run_id}", dependencies=[CanReadRuns])
def api_run(dag_id: str, run_id: str, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    return run_detail(dag_id, run_id, user, session)


@app.get("/api/exports/{dag_id}/runs/{run_id}/rejects", dependencies=[CanSeePersonalData])
def api_rejects(
    dag_id: str, run_id: str, session: SessionDep, offset: Offset = 0, limit: Limit = 100
) -> dict[str, Any]:
    definition = _definition(dag_id)
    _dag_run(session, dag_id, run_id)
    rows = []
    total = 0
    for row in iter_rejects(definition.export, run_id):
        if offset <= total < offset + limit:
            rows.append(row)
        total += 1
    return {"note": REJECTS_NOTE, "total_entries": total, "offset": offset, "limit": limit, "rejects": rows}


@app.get("/exports/{dag_id}/runs/{run_id}/rejects.csv", dependencies=[CanSeePersonalData])
def rejects_download(dag_id: str, run_id: str, session: SessionDep) -> StreamingResponse:
    definition = _definition(dag_id)
    _dag_run(session, dag_id, run_id)
    name = f"{definition.export}-{run_id}-rejects.csv".replace(":", "-").replace("+", "_")
    return StreamingResponse(
        rejects_csv(definition.export, run_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{quote(name)}"', "Cache-Control": "no-store"},
    )


@app.get("/", response_class=HTMLResponse)
def page_exports(user: GetUserDep, session: SessionDep) -> str:
    return pages.exports_page(list_exports(user, session))


@app.get("/exports/{dag_id}", response_class=HTMLResponse, dependencies=[CanReadRuns])
def page_export(dag_id: str, session: SessionDep, offset: Offset = 0, limit: Limit = 25) -> str:
    return pages.history_page(export_history(dag_id, session, offset, limit))


@app.get("/exports/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=[CanReadRuns])
def page_run(dag_id: str, run_id: str, user: GetUserDep, session: SessionDep) -> str:
    detail = run_detail(dag_id, run_id, user, session)
    rejects = None
    if detail["may_see_rejects"]:
        rejects = []
        for row in iter_rejects(_definition(dag_id).export, run_id):
            rejects.append(row)
            if len(rejects) == REJECTS_PREVIEW:
                break
    return pages.run_page(detail, rejects)


@app.exception_handler(HTTPException)
async def _html_errors(request: Request, exc: HTTPException):
    """Pages answer a missing login with the login page, and other refusals with a readable page."""
    wants_html = f"{URL_PREFIX}/api/" not in request.url.path
    if wants_html and exc.status_code == 401:
        target = quote(str(request.url.path), safe="/")
        return RedirectResponse(ui_link(f"/auth/login?next={target}"), status_code=303)
    if wants_html and not request.url.path.endswith(".csv"):
        return HTMLResponse(pages.error_page(exc.status_code, str(exc.detail)), status_code=exc.status_code)
    from fastapi.exception_handlers import http_exception_handler

    return await http_exception_handler(request, exc)
