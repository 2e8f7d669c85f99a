"""The Airflow UI in headless Chromium (Debian's package, driven by Playwright), as a user would use it:
log in, test the Mailchimp connection, see every Mailchimp field in its form, trigger an export with a
chosen segment from the Trigger form, see the run succeed. Screenshots go to the test's tmp dir."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployment import ADMIN, AirflowDeployment

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root on a machine without outside network: no sandbox, no background connections.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXTRA_FIELD_LABELS = (
    "OAuth access token",
    "Data center",
    "OAuth metadata URL",
    "I agree: data privacy",
    "Who may use this connection",
)
DAG_ID = "mailchimp_export__svc_browser"
TIMEOUT_MS = 30_000


@pytest.fixture
def page(tmp_path: Path) -> Iterator:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is required under CI (.ci/run installs Debian's chromium)")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def test_connection_test_button_form_fields_and_trigger_form(
    airflow_services: AirflowDeployment, page, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base = airflow_services.base_url
    shots = iter(range(1, 100))

    def shot(name: str) -> None:
        page.screenshot(path=tmp_path / f"{next(shots):02d}-{name}.png")

    page.goto(f"{base}/")
    page.fill("input[name=username]", ADMIN[0])
    page.fill("input[name=password]", ADMIN[1])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"^{re.escape(base)}/(\?.*)?$"))

    # The Test button of a connection created from the CLI (no port, masked key in the request).
    page.goto(f"{base}/connections")
    row = page.locator("tr", has_text="mailchimp_default")
    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as tested:
        row.get_by_label("Test Connection").click()
    assert tested.value.status == 200, tested.value.text()
    assert tested.value.json()["status"] is True, tested.value.json()
    page.wait_for_timeout(500)
    shot("connection-tested")

    # Its form shows every Mailchimp field, though the CLI JSON set only two extras.
    row.get_by_label("Edit Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for label in EXTRA_FIELD_LABELS:
        expect(dialog.get_by_text(label, exact=False).first).to_be_visible()
    shot("connection-form")
    dialog.get_by_label("Close").click()

    # The Trigger form: segments is a multi-select of the export's segments only.
    page.goto(f"{base}/dags/{DAG_ID}")
    page.get_by_label("Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Clear selected options").click()
    segments = dialog.get_by_label("Select one or multiple values")
    segments.fill("no_such_segment")
    expect(dialog.get_by_text("No options")).to_be_visible()
    shot("trigger-unknown-segment")
    segments.fill("churn")
    page.keyboard.press("Enter")
    segments.blur()
    shot("trigger-form")
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/dags/{DAG_ID}/dagRuns")
    ) as triggered:
        dialog.get_by_role("button", name="Trigger", exact=True).click()
    assert triggered.value.status == 200, triggered.value.text()
    run = triggered.value.json()
    assert run["conf"]["segments"] == ["churn_risk"]

    finished = airflow_services.wait_run(DAG_ID, run["dag_run_id"], timeout=180)
    page.goto(f"{base}/dags/{DAG_ID}/runs/{run['dag_run_id']}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    shot("run-succeeded")
    assert finished["state"] == "success"
    members = airflow_services.emulator.members("svc0browser")
    assert members and {tag for member in members for tag in member["tags"]} == {"churn_risk"}
