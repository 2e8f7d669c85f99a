"""State survives restarts: members, batches, and a batch that was running when the server stopped."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from mailchimp_emulator.testing import EmulatorProcess, read_results


def session(emu: EmulatorProcess) -> requests.Session:
    http = requests.Session()
    http.auth = ("x", emu.api_key)
    return http


def big_batch(emu: EmulatorProcess, operations: int, per_op: int) -> list[dict[str, Any]]:
    return [
        {
            "method": "POST",
            "path": f"/lists/{emu.list_id}",
            "operation_id": str(op),
            "body": json.dumps(
                {
                    "members": [
                        {"email_address": f"r{op}-{i}@acme-mail.net", "status": "subscribed"}
                        for i in range(per_op)
                    ]
                }
            ),
        }
        for op in range(operations)
    ]


def wait_for(http: requests.Session, url: str, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(url).json()
        if predicate(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.01)


def test_members_and_finished_batches_survive_a_restart(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path) as emu:
        http = session(emu)
        http.put(
            f"{emu.api_url}/lists/{emu.list_id}/members/jane@acme-mail.net",
            json={
                "email_address": "jane@acme-mail.net",
                "status": "subscribed",
                "merge_fields": {"FNAME": "J"},
            },
        )
        batch = http.post(f"{emu.api_url}/batches", json={"operations": big_batch(emu, 2, 10)}).json()
        url = f"{emu.api_url}/batches/{batch['id']}"
        wait_for(http, url, lambda b: b["status"] == "finished")
        before = emu.members()
        port = emu.port
        emu.restart()
        assert emu.port == port
        assert emu.members() == before and len(before) == 21
        done = http.get(url).json()
        assert done["status"] == "finished" and done["finished_operations"] == 2
        assert len(read_results(requests.get(done["response_body_url"]).content)) == 2
        # the in-memory index was rebuilt: updates find the stored rows instead of duplicating them
        again = http.put(
            f"{emu.api_url}/lists/{emu.list_id}/members/jane@acme-mail.net",
            json={"email_address": "jane@acme-mail.net", "status": "unsubscribed"},
        )
        assert again.json()["merge_fields"]["FNAME"] == "J"
        assert len(emu.members()) == 21


def test_stuck_batch_resumes_after_restart(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path) as emu:
        http = session(emu)
        emu.set_faults(stuck_in="started")  # faults are not persisted: the restarted server is healthy
        batch = http.post(f"{emu.api_url}/batches", json={"operations": big_batch(emu, 3, 5)}).json()
        url = f"{emu.api_url}/batches/{batch['id']}"
        wait_for(http, url, lambda b: b["status"] == "started")
        emu.restart()
        done = wait_for(http, url, lambda b: b["status"] == "finished")
        assert (done["finished_operations"], done["errored_operations"]) == (3, 0)
        assert len(emu.members()) == 15


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_batch_interrupted_mid_run_finishes_exactly_once(tmp_path: Path, how: str) -> None:
    with EmulatorProcess(tmp_path) as emu:
        http = session(emu)
        operations, per_op = 160, 200
        batch = http.post(
            f"{emu.api_url}/batches", json={"operations": big_batch(emu, operations, per_op)}
        ).json()
        url = f"{emu.api_url}/batches/{batch['id']}"
        midway = wait_for(http, url, lambda b: b["finished_operations"] > 0 or b["status"] == "finished")
        assert midway["status"] == "started"  # caught mid-run: some operations done, others not
        emu.stop() if how == "stop" else emu.kill()
        emu.start()
        done = wait_for(http, url, lambda b: b["status"] == "finished", timeout=60)
        assert (done["finished_operations"], done["errored_operations"]) == (operations, 0)
        results = read_results(requests.get(done["response_body_url"]).content)
        assert sorted(int(r["operation_id"]) for r in results) == list(range(operations))
        created = sum(json.loads(r["response"])["total_created"] for r in results)
        assert (
            created == operations * per_op
        )  # no operation ran twice (a re-run would report existing members)
        assert len(emu.members()) == operations * per_op
        assert (
            http.get(f"{emu.api_url}/lists/{emu.list_id}").json()["stats"]["member_count"]
            == operations * per_op
        )
        assert midway["status"] != "finished" or how == "stop"  # normally we caught it mid-run


def test_one_process_per_state_file(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path) as first:
        second = EmulatorProcess(tmp_path)
        with pytest.raises(RuntimeError, match="in use by another emulator process"):
            second.start()
        assert requests.get(f"{first.api_url}/ping", auth=("x", first.api_key)).status_code == 200


def test_segments_forgotten_addresses_and_renamed_members_survive(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path) as emu:
        http = session(emu)
        members = [
            {"email_address": f"{name}@acme-mail.net", "status": "subscribed", "tags": ["t"]}
            for name in ("ann", "bob", "cy")
        ]
        http.post(f"{emu.api_url}/lists/{emu.list_id}", json={"members": members})
        base = f"{emu.api_url}/lists/{emu.list_id}/members"
        http.post(f"{base}/bob@acme-mail.net/actions/delete-permanent")
        http.patch(f"{base}/cy@acme-mail.net", json={"email_address": "cy.new@acme-mail.net"})
        emu.restart()
        segments = http.get(f"{emu.api_url}/lists/{emu.list_id}/segments").json()["segments"]
        assert [(s["name"], s["member_count"]) for s in segments] == [("t", 2)]
        again = http.put(
            f"{base}/bob@acme-mail.net", json={"email_address": "bob@acme-mail.net", "status": "subscribed"}
        )
        assert again.json()["title"] == "Forgotten Email Not Subscribed"
        assert http.get(f"{base}/cy.new@acme-mail.net").json()["email_address"] == "cy.new@acme-mail.net"
        assert http.get(f"{base}/cy@acme-mail.net").status_code == 404


def test_tags_of_an_older_state_file_become_segments(tmp_path: Path) -> None:
    """A state file written before tags were segments gets segment rows (and counts) at startup."""
    with EmulatorProcess(tmp_path) as emu:
        http = session(emu)
        members = [
            {"email_address": f"{name}@acme-mail.net", "status": "subscribed", "tags": ["a", "b"]}
            for name in ("ann", "bob")
        ]
        http.post(f"{emu.api_url}/lists/{emu.list_id}", json={"members": members})
        http.delete(f"{emu.api_url}/lists/{emu.list_id}/members/bob@acme-mail.net")
        emu.stop()
        with sqlite3.connect(emu.state_path) as conn:
            conn.execute("DELETE FROM segments")
        emu.start()
        segments = http.get(f"{emu.api_url}/lists/{emu.list_id}/segments").json()["segments"]
        assert sorted((s["name"], s["member_count"]) for s in segments) == [("a", 1), ("b", 1)]
