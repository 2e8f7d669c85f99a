"""The official `mailchimp_marketing` 3.0.80 client, unchanged, against the emulator; every answer is
validated against the official OpenAPI subset."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
import requests
from mailchimp_emulator.testing import read_results
from mailchimp_marketing.api_client import ApiClientError


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def wait_finished(client: Any, batch_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.batches.status(batch_id)
        if status["status"] == "finished":
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_ping(client: Any, validate: Any) -> None:
    body = client.ping.get()
    assert body == {"health_status": "Everything's Chimpy!"}
    validate(body, path="/3.0/ping")


def test_get_audience(client: Any, emu: Any, validate: Any) -> None:
    body = client.lists.get_list(emu.list_id)
    validate(body, "ListsLists")
    assert (body["id"], body["name"], body["double_optin"]) == ("demo0audience", "Demo audience", False)
    assert body["stats"]["member_count"] == 0
    assert {link["rel"] for link in body["_links"]} >= {"self", "members", "merge-fields"}


def test_default_merge_fields(client: Any, emu: Any, validate: Any) -> None:
    body = client.lists.get_list_merge_fields(emu.list_id)
    validate(body, path="/3.0/lists/{list_id}/merge-fields")
    assert [(f["tag"], f["type"]) for f in body["merge_fields"]] == [
        ("FNAME", "text"),
        ("LNAME", "text"),
        ("ADDRESS", "address"),
        ("PHONE", "phone"),
    ]
    for field in body["merge_fields"]:
        validate(field, "ListsMergeFieldsMergeFields")


def test_batch_subscribe_then_set_member_then_tags(client: Any, emu: Any, validate: Any) -> None:
    body = client.lists.batch_list_members(
        emu.list_id,
        {
            "members": [
                {
                    "email_address": "Ann.Lee@acme-mail.net",
                    "status": "subscribed",
                    "merge_fields": {"FNAME": "Ann"},
                    "tags": ["vip"],
                    "language": "fr",
                    "vip": True,
                },
                {"email_address": "bob@acme-mail.net", "status_if_new": "pending"},
                {"email_address": "test@example.com", "status": "subscribed"},
            ],
        },
    )
    validate(body, path="/3.0/lists/{list_id}", method="post")
    assert (body["total_created"], body["total_updated"], body["error_count"]) == (2, 0, 1)
    ann = body["new_members"][0]
    assert (ann["id"], ann["status"], ann["language"], ann["vip"]) == (
        md5("ann.lee@acme-mail.net"),
        "subscribed",
        "fr",
        True,
    )
    assert [t["name"] for t in ann["tags"]] == ["vip"]
    assert body["errors"][0]["email_address"] == "test@example.com"
    assert body["errors"][0]["error_code"] == "ERROR_GENERIC"

    member = client.lists.set_list_member(
        emu.list_id,
        md5("bob@acme-mail.net"),
        {
            "email_address": "bob@acme-mail.net",
            "status_if_new": "subscribed",
            "merge_fields": {"LNAME": "Ray"},
        },
    )
    validate(member, "ListsMembersMembers")
    assert member["status"] == "pending"  # status_if_new only applies when creating
    assert member["merge_fields"]["LNAME"] == "Ray"

    client.lists.update_list_member_tags(
        emu.list_id,
        md5("ann.lee@acme-mail.net"),
        {"tags": [{"name": "vip", "status": "inactive"}, {"name": "churn-risk", "status": "active"}]},
    )
    member = client.lists.get_list_member(emu.list_id, md5("ann.lee@acme-mail.net"))
    validate(member, "ListsMembersMembers")
    assert [t["name"] for t in member["tags"]] == ["churn-risk"]
    assert client.lists.get_list(emu.list_id)["stats"]["member_count"] == 1  # Ann; Bob is pending


def test_errors_reach_the_client_as_problem_documents(client: Any, validate: Any) -> None:
    with pytest.raises(ApiClientError) as raised:
        client.lists.get_list("doesnotexist")
    assert raised.value.status_code == 404
    problem = json.loads(raised.value.text)
    validate(problem, "AccountExports")
    assert problem["title"] == "Resource Not Found"


def test_batch_start_poll_download(client: Any, emu: Any, validate: Any) -> None:
    entries = [{"email_address": f"user{i}@acme-mail.net", "status": "subscribed"} for i in range(3)]
    started = client.batches.start(
        {
            "operations": [
                {"method": "GET", "path": "/ping", "operation_id": "ping"},
                {
                    "method": "POST",
                    "path": f"/lists/{emu.list_id}",
                    "operation_id": "subscribe",
                    "body": json.dumps({"members": entries}),
                },
                {
                    "method": "GET",
                    "path": f"/lists/{emu.list_id}/members",
                    "params": {"count": 2},
                    "operation_id": "page",
                },
                {"method": "GET", "path": "/lists/nope", "operation_id": "missing"},
            ]
        }
    )
    validate(started, "BatchesBatches")
    assert (started["status"], started["total_operations"], started["response_body_url"]) == (
        "pending",
        4,
        "",
    )

    done = wait_finished(client, started["id"])
    validate(done, "BatchesBatches")
    assert (done["finished_operations"], done["errored_operations"]) == (4, 1)
    assert done["completed_at"] and done["response_body_url"]

    listing = client.batches.list(count=10)
    validate(listing, path="/3.0/batches")
    assert listing["total_items"] == 1 and listing["batches"][0]["id"] == started["id"]

    results = {r["operation_id"]: r for r in read_results(requests.get(done["response_body_url"]).content)}
    assert {k: v["status_code"] for k, v in results.items()} == {
        "ping": 200,
        "subscribe": 200,
        "page": 200,
        "missing": 404,
    }
    assert json.loads(results["subscribe"]["response"])["total_created"] == 3
    assert len(json.loads(results["page"]["response"])["members"]) == 2
    validate(json.loads(results["missing"]["response"]), "AccountExports")


def test_merge_field_create(client: Any, emu: Any, validate: Any) -> None:
    created = client.lists.add_list_merge_field(
        emu.list_id,
        {"tag": "TIER", "name": "Tier", "type": "dropdown", "options": {"choices": ["Bronze", "Gold"]}},
    )
    validate(created, "ListsMergeFieldsMergeFields")
    assert (created["tag"], created["merge_id"]) == ("TIER", 5)
    page = client.lists.get_list_merge_fields(emu.list_id, count=2, offset=4)
    assert page["total_items"] == 5 and [f["tag"] for f in page["merge_fields"]] == ["TIER"]
    with pytest.raises(ApiClientError) as raised:
        client.lists.add_list_merge_field(emu.list_id, {"tag": "TOOLONGTAG11", "name": "x", "type": "text"})
    assert raised.value.status_code == 400
