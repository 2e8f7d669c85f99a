"""Tags as static segments, a member's tags, sync_tags, address changes and permanent deletion, through
the official `mailchimp_marketing` client where it has a method (checked against Mailchimp's shapes)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
import requests
from mailchimp_emulator.testing import read_results
from mailchimp_marketing.api_client import ApiClientError

JANE, JOHN, ANN = "jane@acme-mail.net", "john@acme-mail.net", "ann@acme-mail.net"


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def refused(call: Any, status: int) -> dict[str, Any]:
    with pytest.raises(ApiClientError) as caught:
        call()
    assert caught.value.status_code == status, caught.value.text
    body: dict[str, Any] = json.loads(caught.value.text)
    return body


def subscribe(client: Any, emu: Any, *emails: str, tags: list[str] | None = None, **flags: Any) -> Any:
    members = [{"email_address": e, "status_if_new": "subscribed", "tags": tags or []} for e in emails]
    return client.lists.batch_list_members(emu.list_id, {"members": members, **flags})


def segment_named(client: Any, emu: Any, name: str) -> dict[str, Any]:
    found = [s for s in client.lists.list_segments(emu.list_id, count=1000)["segments"] if s["name"] == name]
    assert len(found) == 1, found
    return found[0]


class TestSegments:
    def test_create_with_static_segment_ignores_strangers(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE, JOHN)
        created = client.lists.create_segment(
            emu.list_id, {"name": "churn risk", "static_segment": [JANE, "nobody@acme-mail.net"]}
        )
        assert (created["name"], created["type"], created["member_count"]) == ("churn risk", "static", 1)
        assert isinstance(created["id"], int) and created["list_id"] == emu.list_id
        assert client.lists.get_segment(emu.list_id, created["id"]) == created
        tags = client.lists.get_list_member(emu.list_id, md5(JANE))["tags"]
        assert tags == [{"id": created["id"], "name": "churn risk"}]

    def test_a_tag_is_a_static_segment(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE, JOHN, tags=["vip"])
        segment = segment_named(client, emu, "vip")
        assert segment["member_count"] == 2
        member_tags = client.lists.get_list_member_tags(emu.list_id, md5(JANE))
        assert [(t["id"], t["name"]) for t in member_tags["tags"]] == [(segment["id"], "vip")]
        assert member_tags["total_items"] == 1 and member_tags["tags"][0]["date_added"]
        client.lists.update_list_member_tags(
            emu.list_id, md5(JOHN), {"tags": [{"name": "vip", "status": "inactive"}]}
        )
        assert client.lists.get_segment(emu.list_id, segment["id"])["member_count"] == 1

    def test_type_filter_and_paging(self, client: Any, emu: Any) -> None:
        for name in ("a", "b", "c"):
            client.lists.create_segment(emu.list_id, {"name": name, "static_segment": []})
        page = client.lists.list_segments(emu.list_id, type="static", count=2, offset=1)
        assert page["total_items"] == 3 and [s["name"] for s in page["segments"]] == ["b", "c"]
        assert client.lists.list_segments(emu.list_id, type="saved")["total_items"] == 0

    def test_duplicate_name_and_unknown_segment(self, client: Any, emu: Any) -> None:
        client.lists.create_segment(emu.list_id, {"name": "x", "static_segment": []})
        body = refused(lambda: client.lists.create_segment(emu.list_id, {"name": "x"}), 400)
        assert body["title"] == "Invalid Resource" and body["errors"][0]["field"] == "name"
        assert refused(lambda: client.lists.get_segment(emu.list_id, 999999), 404)["title"] == (
            "Resource Not Found"
        )

    def test_saved_segments_are_not_served(self, http: requests.Session, emu: Any) -> None:
        body = {"name": "saved", "options": {"match": "any", "conditions": []}}
        response = http.post(f"{emu.api_url}/lists/{emu.list_id}/segments", json=body)
        assert response.status_code == 501 and "local Mailchimp server" in response.json()["title"]

    def test_batch_add_and_remove(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE, JOHN, ANN)
        segment = client.lists.create_segment(emu.list_id, {"name": "s", "static_segment": [ANN]})
        answer = client.lists.batch_segment_members(
            {"members_to_add": [JANE, JOHN, "ghost@acme-mail.net"], "members_to_remove": [ANN]},
            emu.list_id,
            segment["id"],
        )
        assert sorted(m["email_address"] for m in answer["members_added"]) == [JANE, JOHN]
        assert [m["email_address"] for m in answer["members_removed"]] == [ANN]
        assert (answer["total_added"], answer["total_removed"], answer["error_count"]) == (2, 1, 1)
        assert answer["errors"][0]["email_addresses"] == ["ghost@acme-mail.net"]
        assert answer["members_added"][0]["tags"] == [{"id": segment["id"], "name": "s"}]
        assert client.lists.get_segment(emu.list_id, segment["id"])["member_count"] == 2
        again = client.lists.batch_segment_members(
            {"members_to_add": [JANE], "members_to_remove": [ANN]}, emu.list_id, segment["id"]
        )
        assert (again["total_added"], again["total_removed"], again["error_count"]) == (0, 0, 0)
        assert {m["email_address"]: m["tags"] for m in emu.members()}[ANN] == []

    @pytest.mark.parametrize("field", ["members_to_add", "members_to_remove"])
    def test_at_most_500_items(self, client: Any, emu: Any, field: str) -> None:
        segment = client.lists.create_segment(emu.list_id, {"name": "s", "static_segment": []})
        emails = [f"m{i}@acme-mail.net" for i in range(501)]
        body = refused(
            lambda: client.lists.batch_segment_members({field: emails}, emu.list_id, segment["id"]), 400
        )
        assert body["detail"] == (
            "Maximum allowed member items exceeded, please provide at most 500 items in members_to_add "
            "field or members_to_remove field"
        )

    def test_archived_contacts_are_not_segment_members(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE, JOHN, tags=["t"])
        client.lists.delete_list_member(emu.list_id, md5(JOHN))
        segment = segment_named(client, emu, "t")
        assert segment["member_count"] == 1
        answer = client.lists.batch_segment_members({"members_to_add": [JOHN]}, emu.list_id, segment["id"])
        assert answer["error_count"] == 1

    def test_rename_and_replace_members(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE, JOHN, tags=["old"])
        segment = segment_named(client, emu, "old")
        renamed = client.lists.update_segment(
            emu.list_id, segment["id"], {"name": "new", "static_segment": [ANN, JOHN]}
        )
        assert (renamed["id"], renamed["name"], renamed["member_count"]) == (segment["id"], "new", 1)
        assert {m["email_address"]: m["tags"] for m in emu.members()} == {JANE: [], JOHN: ["new"]}

    def test_delete_removes_the_tag_everywhere(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE, tags=["gone", "kept"])
        client.lists.delete_segment(emu.list_id, segment_named(client, emu, "gone")["id"])
        assert emu.members()[0]["tags"] == ["kept"]
        assert [s["name"] for s in client.lists.list_segments(emu.list_id)["segments"]] == ["kept"]

    def test_segment_calls_run_in_batches(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE)
        segment = client.lists.create_segment(emu.list_id, {"name": "s", "static_segment": []})
        batch = client.batches.start(
            {
                "operations": [
                    {
                        "method": "POST",
                        "path": f"/lists/{emu.list_id}/segments/{segment['id']}",
                        "operation_id": "tag",
                        "body": json.dumps({"members_to_add": [JANE]}),
                    }
                ]
            }
        )
        deadline = time.monotonic() + 20
        while (status := client.batches.status(batch["id"]))["status"] != "finished":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [result] = read_results(requests.get(status["response_body_url"]).content)
        assert result["status_code"] == 200 and json.loads(result["response"])["total_added"] == 1


class TestSyncTags:
    def test_sync_tags_replaces_only_with_update_existing(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE, tags=["a", "b"])
        subscribe(client, emu, JANE, tags=["c"], sync_tags=True)  # no update_existing: an error, no change
        assert emu.members()[0]["tags"] == ["a", "b"]
        subscribe(client, emu, JANE, tags=["b", "c"], sync_tags=True, update_existing=True)
        assert emu.members()[0]["tags"] == ["b", "c"]
        counts = {s["name"]: s["member_count"] for s in client.lists.list_segments(emu.list_id)["segments"]}
        assert counts == {"a": 0, "b": 1, "c": 1}
        subscribe(client, emu, JANE, tags=["d"], update_existing=True)  # without sync_tags: added
        assert emu.members()[0]["tags"] == ["b", "c", "d"]


class TestEmailChange:
    @pytest.mark.parametrize("method", ["update_list_member", "set_list_member"])
    def test_change_on_the_old_hash(self, client: Any, emu: Any, method: str) -> None:
        subscribe(client, emu, JANE, tags=["t"])
        changed = getattr(client.lists, method)(
            emu.list_id, md5(JANE), {"email_address": "jane.new@acme-mail.net", "status_if_new": "subscribed"}
        )
        assert (changed["id"], changed["email_address"]) == (
            md5("jane.new@acme-mail.net"),
            "jane.new@acme-mail.net",
        )
        assert changed["tags"][0]["name"] == "t"
        assert refused(lambda: client.lists.get_list_member(emu.list_id, md5(JANE)), 404)
        assert (
            client.lists.get_list_member(emu.list_id, md5("jane.new@acme-mail.net"))["status"] == "subscribed"
        )
        assert [m["email_address"] for m in emu.members()] == ["jane.new@acme-mail.net"]
        assert client.lists.get_list(emu.list_id)["stats"]["member_count"] == 1
        subscribe(client, emu, JANE)  # the old address is free again
        assert len(emu.members()) == 2

    def test_new_address_taken_is_refused(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE, JOHN)
        client.lists.delete_list_member(emu.list_id, md5(JOHN))  # archived still holds the address
        body = refused(
            lambda: client.lists.update_list_member(emu.list_id, md5(JANE), {"email_address": JOHN}), 400
        )
        assert body["title"] == "Invalid Resource"
        assert body["errors"] == [
            {
                "field": "email_address",
                "message": f'"{JOHN}" is already in this list with a status of "archived".',
            }
        ]
        assert sorted(m["email_address"] for m in emu.members()) == [JANE, JOHN]

    def test_put_on_an_unknown_hash_must_match(self, http: requests.Session, emu: Any) -> None:
        response = http.put(
            f"{emu.api_url}/lists/{emu.list_id}/members/{md5(JANE)}",
            json={"email_address": JOHN, "status_if_new": "subscribed"},
        )
        assert response.status_code == 400 and response.json()["title"] == "Invalid Resource"

    def test_change_inside_a_failed_transaction_is_undone(self, http: requests.Session, emu: Any) -> None:
        """A refused write after the rename (bad merge field) leaves the member findable under its old id."""
        http.post(
            f"{emu.api_url}/lists/{emu.list_id}/members", json={"email_address": JANE, "status": "subscribed"}
        )
        response = http.patch(
            f"{emu.api_url}/lists/{emu.list_id}/members/{md5(JANE)}",
            json={"email_address": JOHN, "merge_fields": {"NOPE": 1}},
        )
        assert response.status_code == 400
        assert http.get(f"{emu.api_url}/lists/{emu.list_id}/members/{md5(JANE)}").status_code == 200


class TestDeletePermanent:
    def test_forgotten_address_cannot_come_back(self, client: Any, emu: Any, http: requests.Session) -> None:
        subscribe(client, emu, JANE, JOHN, tags=["t"])
        assert client.lists.delete_list_member_permanent(emu.list_id, md5(JANE)).status_code == 204
        assert [m["email_address"] for m in emu.members()] == [JOHN]
        assert segment_named(client, emu, "t")["member_count"] == 1
        assert client.lists.get_list(emu.list_id)["stats"]["member_count"] == 1
        body = refused(
            lambda: client.lists.set_list_member(
                emu.list_id, md5(JANE), {"email_address": JANE, "status_if_new": "subscribed"}
            ),
            400,
        )
        assert body["title"] == "Forgotten Email Not Subscribed"
        assert body["detail"].startswith(f"{JANE} was permanently deleted and cannot be re-imported.")
        answer = subscribe(client, emu, JANE, update_existing=True)
        assert answer["error_count"] == 1 and "permanently deleted" in answer["errors"][0]["error"]
        post = http.post(
            f"{emu.api_url}/lists/{emu.list_id}/members", json={"email_address": JANE, "status": "subscribed"}
        )
        assert post.status_code == 400 and post.json()["title"] == "Forgotten Email Not Subscribed"
        changed = http.patch(
            f"{emu.api_url}/lists/{emu.list_id}/members/{md5(JOHN)}", json={"email_address": JANE}
        )
        assert changed.status_code == 400 and changed.json()["title"] == "Forgotten Email Not Subscribed"

    def test_unknown_member(self, client: Any, emu: Any) -> None:
        assert refused(lambda: client.lists.delete_list_member_permanent(emu.list_id, md5(JANE)), 404)

    def test_reset_forgets_the_forgotten(self, client: Any, emu: Any) -> None:
        subscribe(client, emu, JANE)
        client.lists.delete_list_member_permanent(emu.list_id, md5(JANE))
        emu.reset()
        assert subscribe(client, emu, JANE)["total_created"] == 1
