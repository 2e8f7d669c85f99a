"""The connection-UI workarounds (mailchimp_provider/connection_ui.py) against the real API server, with
the requests Airflow 3.3.2's UI sends. A connection of another type shows the Airflow bug they work around."""

from __future__ import annotations

import json

import pytest
from deployment import AirflowDeployment
from mailchimp_provider.connection_ui import EXTRA_FIELDS

pytestmark = pytest.mark.services


def _test(deployment: AirflowDeployment, body: dict) -> tuple[int, dict]:
    answer = deployment.request("POST", "connections/test", json=body)
    return answer.status_code, answer.json()


def test_the_ui_test_request_for_a_mailchimp_connection_passes(airflow_services: AirflowDeployment) -> None:
    stored = airflow_services.api("GET", "connections/mailchimp_default")
    assert stored["port"] is None and stored["password"] == "***"
    ui_request = {**stored, "port": 0}  # the list's Test button: port Number(null), masked password

    status, answer = _test(airflow_services, ui_request)

    assert (status, answer["status"]) == (200, True), answer


def test_airflow_still_refuses_the_same_request_for_other_connection_types(
    airflow_services: AirflowDeployment,
) -> None:
    """The day this fails, the installed Airflow has PR 73298: drop the Test-button workaround."""
    airflow_services.api(
        "POST", "connections", json={"connection_id": "plain", "conn_type": "generic", "password": "s3cret"}
    )
    stored = airflow_services.api("GET", "connections/plain")

    status, answer = _test(airflow_services, {**stored, "port": 0})

    assert status == 400 and "differs from the stored connection" in answer["detail"], answer


def test_a_cli_created_mailchimp_connection_reads_with_every_field(
    airflow_services: AirflowDeployment,
) -> None:
    extra = json.loads(airflow_services.api("GET", "connections/mailchimp_default")["extra"])
    assert set(extra) == set(EXTRA_FIELDS)
    assert extra["privacy_consent"] is True and extra["allowed_exports"] == "*"
    assert extra["oauth_token"] is None
    listed = airflow_services.api("GET", "connections")["connections"]
    (mailchimp,) = [c for c in listed if c["connection_id"] == "mailchimp_default"]
    assert set(json.loads(mailchimp["extra"])) == set(EXTRA_FIELDS)
