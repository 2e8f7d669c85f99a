"""Small helpers shared by test modules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mailchimp_provider.export.definition import ExportDefinition

ROOT = Path(__file__).resolve().parent.parent
DEMO_DEFINITION = ROOT / "include" / "exports" / "demo_vip_and_churn.yaml"


def mailchimp_connection(server: Any, **extra: Any) -> str:
    """An AIRFLOW_CONN_* value for a Mailchimp connection to the local server."""
    extra = {"privacy_consent": True, "allowed_exports": "*", **extra}
    return json.dumps(
        {"conn_type": "mailchimp", "host": server.base_url, "password": server.api_key, "extra": extra}
    )


def write_definition(monkeypatch: Any, folder: Path, **changes: Any) -> ExportDefinition:
    """A variant of the demo export, written where MAILCHIMP_EXPORTS_DIR points: dag.test() parses the
    DAG from its bundle, so the definition must be on disk, not only in memory."""
    import yaml

    raw = yaml.safe_load(DEMO_DEFINITION.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw[section][field] = value
        else:
            raw[section] = value
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{raw['export']}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MAILCHIMP_EXPORTS_DIR", str(folder))
    return ExportDefinition.model_validate(raw)


def run_export(definition: ExportDefinition, source: Path = DEMO_DEFINITION, **conf) -> dict:
    from mailchimp_exports import build_export_dag

    dag = build_export_dag(definition, source)
    run = dag.test(run_conf=conf or None)
    assert run.state == "success", f"export run ended {run.state}"
    return latest_report()


def latest_report() -> dict:
    base = Path(os.environ["MAILCHIMP_EXPORT_BASE_PATH"])
    reports = sorted(base.glob("*/runs/*/report.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(reports[-1].read_text())
