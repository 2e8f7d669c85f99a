"""Run the demo export DAG with dag.test() for a fixed logical date, so a second call continues the same
DAG run. Used by test_worker_crash.py, which kills this process in the middle of an upload."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from mailchimp_exports import build_export_dag
from mailchimp_provider.export.definition import load_definition
from support import DEMO_DEFINITION

LOGICAL_DATE = datetime(2026, 11, 1, tzinfo=UTC)

if __name__ == "__main__":
    run = build_export_dag(load_definition(DEMO_DEFINITION), DEMO_DEFINITION).test(logical_date=LOGICAL_DATE)
    sys.exit(0 if run.state == "success" else 1)
