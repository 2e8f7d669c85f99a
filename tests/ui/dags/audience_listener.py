"""A downstream DAG as a user would write one: it runs when an export updated the audience, and reads
what changed from the asset event."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import dag, task
from mailchimp_provider.assets import audience_asset

AUDIENCE = audience_asset("demo0audience")


@dag(schedule=[AUDIENCE], start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False)
def mailchimp_audience_listener():
    @task
    def read_counts(triggering_asset_events=None) -> dict:
        (event,) = triggering_asset_events[AUDIENCE]
        Path(os.environ["AUDIENCE_LISTENER_OUT"]).write_text(json.dumps(event.extra))
        return event.extra

    read_counts()


mailchimp_audience_listener()
