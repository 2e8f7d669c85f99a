"""The exports page in headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser): log in,
open the page from Airflow's navigation, see the runs of the export (real and dry), open one, download its
rejects as an editor; as a viewer see counts only and be refused the file. Screenshots go to the test's
tmp dir for a person to look at."""

from __future__ import annotations

import csv
import io
import os
import shutil
from urllib.parse import quote

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser():
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is required under CI at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def login(browser, api_server, user: str):
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{api_server.url}/auth/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(api_server.passwords[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda u: "/auth/login" not in u)
    return context, page


def test_editor_sees_runs_and_downloads_rejects(browser, api_server, export_runs, tmp_path) -> None:
    context, page = login(browser, api_server, "editor")
    page.goto(f"{api_server.url}/plugin/mailchimp-exports")
    frame = page.frame_locator("iframe")
    frame.get_by_role("link", name=export_runs.export).wait_for()
    page.screenshot(path=tmp_path / "1-exports.png", full_page=True)

    frame.get_by_role("link", name=export_runs.export).click()
    frame.get_by_role("heading", name="Trend").wait_for()
    for run_id in (export_runs.real, export_runs.dry, export_runs.failed):
        frame.get_by_role("link", name=run_id).wait_for()
    assert frame.locator("tr", has_text=export_runs.dry).get_by_text("dry run").count() == 1
    assert frame.locator("svg polyline").count() >= 3
    page.screenshot(path=tmp_path / "2-history.png", full_page=True)

    frame.get_by_role("link", name=export_runs.real).click()
    frame.get_by_role("heading", name="Rejected profiles", exact=False).wait_for()
    assert "Personal data" in frame.locator(".note").inner_text()
    page.screenshot(path=tmp_path / "3-run.png", full_page=True)
    with page.expect_download() as download_info:
        frame.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    report = export_runs.report(export_runs.real)
    assert len(rows) == report["totals"]["rejected_locally"] + report["totals"]["failed_at_mailchimp"]
    context.close()


def test_viewer_sees_counts_only_and_is_refused_the_file(browser, api_server, export_runs, tmp_path) -> None:
    context, page = login(browser, api_server, "viewer")
    run_page = f"/mailchimp-exports/exports/{export_runs.dag_id}/runs/{quote(export_runs.real, safe='')}"
    page.goto(f"{api_server.url}{run_page}")
    page.get_by_text("needs edit access").wait_for()
    assert page.get_by_role("link", name="Download CSV").count() == 0
    assert "@" not in page.locator("body").inner_text()
    page.screenshot(path=tmp_path / "4-run-as-viewer.png", full_page=True)
    answer = page.request.get(f"{api_server.url}{run_page}/rejects.csv")
    assert answer.status == 403 and "@" not in answer.text()
    context.close()
