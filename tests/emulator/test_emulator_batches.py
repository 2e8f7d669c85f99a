"""Batch operations: lifecycle, counters, results archive, pre-signed URL, deletion, limits, batch faults."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mailchimp_emulator.testing import EmulatorProcess, read_results


def start(http: requests.Session, emu: Any, operations: list[dict[str, Any]]) -> dict[str, Any]:
    response = http.post(f"{emu.api_url}/batches", json={"operations": operations})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def poll(
    http: requests.Session,
    emu: Any,
    batch_id: str,
    until: str = "finished",
    timeout: float = 30.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"{emu.api_url}/batches/{batch_id}").json()
        if body["status"] == until:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def subscribe_op(emu: Any, start_at: int, count: int, op_id: str) -> dict[str, Any]:
    members = [
        {"email_address": f"b{i}@acme-mail.net", "status": "subscribed"}
        for i in range(start_at, start_at + count)
    ]
    return {
        "method": "POST",
        "path": f"/lists/{emu.list_id}",
        "operation_id": op_id,
        "body": json.dumps({"members": members}),
    }


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """An emulator with visible batch states and results URLs that expire after one second."""
    with EmulatorProcess(
        tmp_path_factory.mktemp("paced"), extra_args=["--batch-pace", "0.25", "--archive-ttl", "1"]
    ) as server:
        yield server


@pytest.fixture
def paced_http(paced: EmulatorProcess) -> requests.Session:
    paced.reset()
    session = requests.Session()
    session.auth = ("x", paced.api_key)
    return session


def test_states_in_order_with_counters(
    paced: EmulatorProcess, paced_http: requests.Session, validate: Any
) -> None:
    batch = start(
        paced_http, paced, [{"method": "GET", "path": "/ping"}, {"method": "GET", "path": "/lists/x"}]
    )
    seen = [batch["status"]]
    while seen[-1] != "finished":
        body = paced_http.get(f"{paced.api_url}/batches/{batch['id']}").json()
        validate(body, "BatchesBatches")
        if body["status"] != seen[-1]:
            seen.append(body["status"])
        if body["status"] != "finished":
            assert body["completed_at"] == "" and body["response_body_url"] == ""
        time.sleep(0.03)
    assert seen == ["pending", "preprocessing", "started", "finalizing", "finished"]
    assert (body["total_operations"], body["finished_operations"], body["errored_operations"]) == (2, 2, 1)
    assert body["completed_at"] >= body["submitted_at"]


def test_results_url_expires_and_is_renewed(paced: EmulatorProcess, paced_http: requests.Session) -> None:
    batch = start(paced_http, paced, [{"method": "GET", "path": "/ping", "operation_id": "p"}])
    url = poll(paced_http, paced, batch["id"])["response_body_url"]
    assert "Expires=" in url and "Signature=" in url and "/3.0/" not in url
    assert requests.get(url).status_code == 200  # no API auth needed
    renewed = paced_http.get(f"{paced.api_url}/batches/{batch['id']}").json()["response_body_url"]
    assert renewed != url
    time.sleep(2.1)
    expired = requests.get(url)
    assert expired.status_code == 403 and b"<Code>AccessDenied</Code>" in expired.content
    fresh = paced_http.get(f"{paced.api_url}/batches/{batch['id']}").json()["response_body_url"]
    assert read_results(requests.get(fresh).content)[0]["operation_id"] == "p"
    forged = requests.get(fresh.replace("Signature=", "Signature=x"))
    assert forged.status_code == 403 and b"SignatureDoesNotMatch" in forged.content


def test_archive_layout(http: requests.Session, emu: Any) -> None:
    operations = [{"method": "GET", "path": "/ping", "operation_id": str(i)} for i in range(600)]
    operations.append({"method": "PUT", "path": f"/lists/{emu.list_id}/members/abc", "body": "{not json"})
    url = poll(http, emu, start(http, emu, operations)["id"])["response_body_url"]
    data = requests.get(url).content
    assert data[:2] == b"\x1f\x8b"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        assert names[0] == "." and all(n.endswith(".json") for n in names[1:])
    results = read_results(data)
    assert len(results) == 601
    assert all(
        set(r) == {"status_code", "operation_id", "response"} and isinstance(r["response"], str)
        for r in results
    )
    bad = next(r for r in results if r["operation_id"] is None)
    assert bad["status_code"] == 400 and json.loads(bad["response"])["title"] == "JSON Parse Exception"


def test_operations_use_the_same_rules_as_direct_calls(http: requests.Session, emu: Any) -> None:
    body = json.dumps({"email_address": "jane@example.com", "status": "subscribed"})
    operations = [
        {
            "method": "PUT",
            "path": f"/lists/{emu.list_id}/members/jane@example.com",
            "body": body,
            "operation_id": "fake",
        },
        {
            "method": "get",
            "path": f"/lists/{emu.list_id}/members?count=1",
            "params": {"status": "subscribed"},
            "operation_id": "query",
        },
        {"method": "DELETE", "path": "/ping", "operation_id": "method"},
    ]
    done = poll(http, emu, start(http, emu, operations)["id"])
    results = {r["operation_id"]: r for r in read_results(requests.get(done["response_body_url"]).content)}
    direct = http.put(f"{emu.api_url}/lists/{emu.list_id}/members/jane@example.com", data=body)
    assert results["fake"]["status_code"] == direct.status_code == 400
    assert json.loads(results["fake"]["response"])["detail"] == direct.json()["detail"]
    assert results["query"]["status_code"] == 200 and results["method"]["status_code"] == 405
    assert done["errored_operations"] == 2


def test_invalid_operations_are_refused(http: requests.Session, emu: Any) -> None:
    response = http.post(
        f"{emu.api_url}/batches",
        json={
            "operations": [
                {"method": "FETCH", "path": "/ping"},
                {"method": "GET"},
                {"method": "POST", "path": "/x", "body": {}},
            ]
        },
    )
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [
        "operations.0.method",
        "operations.1.path",
        "operations.2.body",
    ]
    assert http.post(f"{emu.api_url}/batches", json={"ops": []}).status_code == 400


def test_delete_stops_a_batch(http: requests.Session, emu: Any) -> None:
    emu.set_faults(stuck_in="preprocessing")
    batch = start(http, emu, [subscribe_op(emu, 0, 5, "a")])
    poll(http, emu, batch["id"], until="preprocessing")
    response = http.delete(f"{emu.api_url}/batches/{batch['id']}")
    assert response.status_code == 204
    emu.clear_faults()
    assert http.get(f"{emu.api_url}/batches/{batch['id']}").status_code == 404
    assert http.delete(f"{emu.api_url}/batches/{batch['id']}").status_code == 404
    time.sleep(0.3)
    assert emu.members() == []


def test_delete_finished_batch_removes_its_results(http: requests.Session, emu: Any) -> None:
    batch = start(http, emu, [{"method": "GET", "path": "/ping"}])
    url = poll(http, emu, batch["id"])["response_body_url"]
    assert http.delete(f"{emu.api_url}/batches/{batch['id']}").status_code == 204
    assert requests.get(url).status_code == 404


def test_list_batches_paging(http: requests.Session, emu: Any) -> None:
    ids = [start(http, emu, [])["id"] for _ in range(3)]
    page = http.get(f"{emu.api_url}/batches", params={"count": 2, "offset": 1}).json()
    assert page["total_items"] == 3 and [b["id"] for b in page["batches"]] == ids[::-1][1:3]
    assert http.get(f"{emu.api_url}/batches", params={"count": 1001}).status_code == 400


def test_stuck_in_started_then_released(http: requests.Session, emu: Any) -> None:
    emu.set_faults(stuck_in="started")
    batch = start(http, emu, [subscribe_op(emu, 0, 10, "a")])
    stuck = poll(http, emu, batch["id"], until="started")
    time.sleep(0.4)
    again = http.get(f"{emu.api_url}/batches/{batch['id']}").json()
    assert again["status"] == "started" and again["finished_operations"] == stuck["finished_operations"] == 0
    assert emu.fired()["stuck_in"] == 1
    emu.clear_faults()
    assert poll(http, emu, batch["id"])["finished_operations"] == 1
    assert len(emu.members()) == 10


def test_empty_url_next(http: requests.Session, emu: Any) -> None:
    batch = start(http, emu, [{"method": "GET", "path": "/ping"}])
    poll(http, emu, batch["id"])
    emu.set_faults(empty_url_next=2)
    urls = [http.get(f"{emu.api_url}/batches/{batch['id']}").json()["response_body_url"] for _ in range(3)]
    assert urls[:2] == ["", ""] and urls[2].startswith(emu.base_url)
    assert emu.fired()["empty_url_next"] == 2


def test_corrupt_archive(http: requests.Session, emu: Any) -> None:
    batch = start(http, emu, [{"method": "GET", "path": "/ping"}])
    url = poll(http, emu, batch["id"])["response_body_url"]
    good = requests.get(url).content
    emu.set_faults(corrupt_archive=True)
    bad = requests.get(url).content
    assert len(bad) == len(good) and bad != good and bad[:2] == b"\x1f\x8b"
    with pytest.raises((tarfile.TarError, OSError, EOFError)):
        read_results(bad)
    assert emu.fired()["corrupt_archive"] == 1


def test_more_than_500_pending_batches(http: requests.Session, emu: Any) -> None:
    emu.set_faults(stuck_in="pending")
    for _ in range(500):
        assert http.post(f"{emu.api_url}/batches", json={"operations": []}).status_code == 200
    refused = http.post(f"{emu.api_url}/batches", json={"operations": []})
    assert refused.status_code == 429 and refused.json()["title"] == "Too Many Requests"
    assert emu.stats()["batches_submitted"] == 500


def test_status_answers_promptly_while_a_big_batch_runs(http: requests.Session, emu: Any) -> None:
    operations = [subscribe_op(emu, i * 500, 500, str(i)) for i in range(60)]
    batch = start(http, emu, operations)
    slowest = 0.0
    while True:
        started = time.perf_counter()
        body = http.get(f"{emu.api_url}/batches/{batch['id']}").json()
        slowest = max(slowest, time.perf_counter() - started)
        if body["status"] == "finished":
            break
        time.sleep(0.02)
    assert body["errored_operations"] == 0
    assert slowest < 0.5
    assert http.get(f"{emu.api_url}/lists/{emu.list_id}").json()["stats"]["member_count"] == 30_000


def test_archives_live_beside_the_state_file(http: requests.Session, emu: Any) -> None:
    batch = start(http, emu, [{"method": "GET", "path": "/ping"}])
    poll(http, emu, batch["id"])
    folder = Path(emu.state_path).with_name("mailchimp-emulator-batches") / batch["id"]
    assert (folder / "response.tar.gz").is_file()
