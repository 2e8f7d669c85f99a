"""Member rules over HTTP: identity, status transitions, compliance, archive, merge fields, tags, listing."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import requests

EMAIL = "jane.doe@acme-mail.net"
RICH_LIST = "rich0audience"  # configured in conftest.EMULATOR_CONFIG


def md5(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def member_url(emu: Any, email: str = EMAIL, list_id: str | None = None) -> str:
    return f"{emu.api_url}/lists/{list_id or emu.list_id}/members/{md5(email)}"


def put(
    http: requests.Session,
    emu: Any,
    body: dict[str, Any],
    email: str = EMAIL,
    **params: Any,
) -> requests.Response:
    return http.put(
        member_url(emu, email, params.pop("list_id", None)),
        json={"email_address": email, **body},
        params=params,
    )


def subscribe(
    http: requests.Session,
    emu: Any,
    members: list[dict[str, Any]],
    list_id: str | None = None,
    params: dict[str, str] | None = None,
    **flags: Any,
) -> dict[str, Any]:
    response = http.post(
        f"{emu.api_url}/lists/{list_id or emu.list_id}", json={"members": members, **flags}, params=params
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def problem(response: requests.Response, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["title"] == title
    return body


class TestIdentity:
    def test_hash_in_path_must_match_the_email(self, http: requests.Session, emu: Any) -> None:
        response = http.put(
            member_url(emu, "someone.else@acme-mail.net"),
            json={"email_address": EMAIL, "status": "subscribed"},
        )
        problem(response, 400, "Invalid Resource")

    def test_hash_is_case_and_space_insensitive(self, http: requests.Session, emu: Any) -> None:
        response = http.put(
            member_url(emu), json={"email_address": "  Jane.DOE@acme-mail.net ", "status": "subscribed"}
        )
        assert response.status_code == 200 and response.json()["id"] == md5(EMAIL)

    def test_path_may_carry_the_email_address(self, http: requests.Session, emu: Any) -> None:
        put(http, emu, {"status": "subscribed"})
        assert http.get(f"{emu.api_url}/lists/{emu.list_id}/members/{EMAIL}").json()["id"] == md5(EMAIL)

    @pytest.mark.parametrize("email", ["not-an-email", "jane@example.com", "test@gmail.com", "jane@nodot"])
    def test_fake_or_invalid_address_is_rejected(self, http: requests.Session, emu: Any, email: str) -> None:
        body = problem(put(http, emu, {"status": "subscribed"}, email=email), 400, "Invalid Resource")
        assert body["detail"] == f"{email} looks fake or invalid, please enter a real email address."

    def test_unknown_audience(self, http: requests.Session, emu: Any) -> None:
        problem(put(http, emu, {"status": "subscribed"}, list_id="nope"), 404, "Resource Not Found")


class TestStatus:
    def test_status_if_new_applies_only_on_create(self, http: requests.Session, emu: Any) -> None:
        assert put(http, emu, {"status_if_new": "pending"}).json()["status"] == "pending"
        assert put(http, emu, {"status_if_new": "unsubscribed"}).json()["status"] == "pending"
        assert put(http, emu, {"status": "subscribed"}).json()["status"] == "subscribed"

    def test_a_new_member_needs_a_status(self, http: requests.Session, emu: Any) -> None:
        problem(put(http, emu, {}), 400, "Invalid Resource")

    @pytest.mark.parametrize("locked", ["unsubscribed", "cleaned"])
    def test_compliance_state(self, http: requests.Session, emu: Any, locked: str) -> None:
        put(http, emu, {"status": locked})
        for wanted in ("subscribed", "pending"):
            body = problem(put(http, emu, {"status": wanted}), 400, "Member In Compliance State")
            assert EMAIL in body["detail"]
        # other fields still change, and the status stays
        member = put(http, emu, {"status_if_new": "subscribed", "merge_fields": {"FNAME": "Jane"}}).json()
        assert (member["status"], member["merge_fields"]["FNAME"]) == (locked, "Jane")
        batch = subscribe(http, emu, [{"email_address": EMAIL, "status": "subscribed"}], update_existing=True)
        assert batch["error_count"] == 1 and batch["total_updated"] == 0
        assert "compliance" in batch["errors"][0]["error"]

    def test_unsubscribe_is_allowed(self, http: requests.Session, emu: Any) -> None:
        put(http, emu, {"status": "subscribed"})
        assert put(http, emu, {"status": "unsubscribed"}).json()["status"] == "unsubscribed"

    def test_patch(self, http: requests.Session, emu: Any) -> None:
        problem(http.patch(member_url(emu), json={"merge_fields": {"FNAME": "J"}}), 404, "Resource Not Found")
        put(http, emu, {"status": "subscribed"})
        member = http.patch(member_url(emu), json={"merge_fields": {"FNAME": "J"}, "vip": True}).json()
        assert (member["merge_fields"]["FNAME"], member["vip"], member["status"]) == ("J", True, "subscribed")

    def test_post_member_creates_once(self, http: requests.Session, emu: Any) -> None:
        url = f"{emu.api_url}/lists/{emu.list_id}/members"
        created = http.post(url, json={"email_address": EMAIL, "status": "subscribed", "tags": ["a"]})
        assert created.status_code == 200 and created.json()["tags"][0]["name"] == "a"
        body = problem(
            http.post(url, json={"email_address": EMAIL, "status": "subscribed"}), 400, "Member Exists"
        )
        assert "Use PUT to insert or update list members" in body["detail"]


class TestArchive:
    def test_delete_archives_and_readding_restores(self, http: requests.Session, emu: Any) -> None:
        put(http, emu, {"status": "subscribed", "merge_fields": {"FNAME": "Jane"}})
        response = http.delete(member_url(emu))
        assert response.status_code == 204 and response.content == b""
        assert http.get(member_url(emu)).json()["status"] == "archived"
        problem(http.delete(member_url(emu)), 404, "Resource Not Found")
        restored = put(http, emu, {"status": "pending"}).json()
        assert (restored["status"], restored["merge_fields"]["FNAME"]) == ("pending", "Jane")

    def test_status_if_new_keeps_an_archived_contact_archived(self, http: requests.Session, emu: Any) -> None:
        put(http, emu, {"status": "subscribed", "merge_fields": {"FNAME": "Jane"}})
        http.delete(member_url(emu))
        kept = put(http, emu, {"status_if_new": "subscribed", "merge_fields": {"FNAME": "Janet"}}).json()
        assert (kept["status"], kept["merge_fields"]["FNAME"]) == ("archived", "Janet")
        lists = http.get(f"{emu.api_url}/lists/{emu.list_id}").json()["stats"]
        assert lists["member_count"] == 0

    def test_batch_subscribe_restores_archived_as_created(self, http: requests.Session, emu: Any) -> None:
        put(http, emu, {"status": "subscribed"})
        http.delete(member_url(emu))
        body = subscribe(http, emu, [{"email_address": EMAIL, "status": "subscribed"}])
        assert (body["total_created"], body["error_count"]) == (1, 0)
        assert body["new_members"][0]["status"] == "subscribed"

    @pytest.mark.parametrize("update_existing", [True, False])
    def test_batch_subscribe_answers_a_kept_archived_contact_as_updated(
        self, http: requests.Session, emu: Any, update_existing: bool
    ) -> None:
        put(http, emu, {"status": "subscribed"})
        http.delete(member_url(emu))
        body = subscribe(
            http,
            emu,
            [{"email_address": EMAIL, "status_if_new": "subscribed"}],
            update_existing=update_existing,
        )
        assert (body["total_created"], body["total_updated"], body["error_count"]) == (0, 1, 0)
        assert body["updated_members"][0]["status"] == "archived"
        assert emu.members()[0]["status"] == "archived"

    def test_archived_unsubscribed_contact_stays_unsubscribed(self, http: requests.Session, emu: Any) -> None:
        put(http, emu, {"status": "unsubscribed"})
        http.delete(member_url(emu))
        assert put(http, emu, {"status_if_new": "subscribed"}).json()["status"] == "archived"
        problem(put(http, emu, {"status": "subscribed"}), 400, "Member In Compliance State")
        assert put(http, emu, {"status": "unsubscribed"}).json()["status"] == "unsubscribed"

    def test_unknown_member(self, http: requests.Session, emu: Any) -> None:
        problem(http.delete(member_url(emu)), 404, "Resource Not Found")
        problem(http.get(member_url(emu)), 404, "Resource Not Found")


class TestMergeFields:
    def rich(
        self, http: requests.Session, emu: Any, merge: dict[str, Any], **params: Any
    ) -> requests.Response:
        return put(http, emu, {"status": "subscribed", "merge_fields": merge}, list_id=RICH_LIST, **params)

    def test_values_by_type(self, http: requests.Session, emu: Any) -> None:
        response = self.rich(
            http,
            emu,
            {
                "FNAME": "Jane",
                "SCORE": "42.5",
                "ADDRESS": {"addr1": "1 Main", "city": "Atlanta", "state": "GA", "zip": "30308"},
                "PHONE": "+1 404 555 0100",
                "USPHONE": "4045550100",
                "SINCE": "03/15/2021",
                "BIRTHDAY": "07/04",
                "SITE": "https://acme.dev",
                "AVATAR": "https://acme.dev/a.png",
                "TIER": "Gold",
                "PLAN": "pro",
                "ZIPCODE": "30308",
            },
        )
        assert response.status_code == 200, response.text
        merge = response.json()["merge_fields"]
        assert (merge["SCORE"], merge["USPHONE"], merge["SINCE"], merge["SOURCE"]) == (
            42.5,
            "404-555-0100",
            "2021-03-15",
            "warehouse",
        )
        assert merge["ADDRESS"]["country"] == "US"

    @pytest.mark.parametrize(
        ("tag", "value"),
        [
            ("SCORE", "many"),
            ("ADDRESS", {"addr1": "1 Main"}),
            ("SINCE", "2021-13-01"),
            ("BIRTHDAY", "7/40"),
            ("SITE", "acme dev"),
            ("TIER", "Platinum"),
            ("PLAN", "team"),
            ("ZIPCODE", "ABCDE"),
            ("NOSUCHTAG", "x"),
        ],
    )
    def test_invalid_value(self, http: requests.Session, emu: Any, tag: str, value: Any) -> None:
        body = problem(self.rich(http, emu, {"FNAME": "Jane", tag: value}), 400, "Invalid Resource")
        assert body["detail"] == "Your merge fields were invalid."
        assert [e["field"] for e in body["errors"]] == [tag]

    def test_required_field_unless_skipped(self, http: requests.Session, emu: Any) -> None:
        body = problem(self.rich(http, emu, {"LNAME": "Doe"}), 400, "Invalid Resource")
        assert body["errors"] == [{"field": "FNAME", "message": "Please enter a value"}]
        assert self.rich(http, emu, {"LNAME": "Doe"}, skip_merge_validation="true").status_code == 200

    def test_numbers_past_64_bits_stay_exact(self, http: requests.Session, emu: Any) -> None:
        """Bodies are read with orjson when it reads them as json does; it reads integers past 64 bits
        as floats, so such a body must still come out exact (and an overflowing float stays refused)."""
        big = 123456789012345678901234567890
        body = '{"email_address": "%s", "status": "subscribed", "merge_fields": {"FNAME": "J", "SCORE": %s}}'
        url = member_url(emu, list_id=RICH_LIST)
        response = http.put(url, data=body % (EMAIL, big), headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        assert f'"SCORE":{big}' in http.get(url).text.replace(" ", "")
        refused = http.put(url, data=body % (EMAIL, "1e400"), headers={"Content-Type": "application/json"})
        assert problem(refused, 400, "Invalid Resource")["errors"] == [
            {"field": "SCORE", "message": "Please enter a number"}
        ]

    def test_text_cut_at_255_bytes(self, http: requests.Session, emu: Any) -> None:
        member = put(http, emu, {"status": "subscribed", "merge_fields": {"FNAME": "€" * 100}}).json()
        assert member["merge_fields"]["FNAME"] == "€" * 85  # 255 bytes of 3-byte characters

    def test_batch_subscribe_reports_merge_errors_per_member(self, http: requests.Session, emu: Any) -> None:
        body = subscribe(
            http,
            emu,
            [
                {
                    "email_address": "ok@acme-mail.net",
                    "status": "subscribed",
                    "merge_fields": {"FNAME": "Ok"},
                },
                {
                    "email_address": "bad@acme-mail.net",
                    "status": "subscribed",
                    "merge_fields": {"TIER": "Iron"},
                },
                {"email_address": "missing@acme-mail.net", "status": "subscribed"},
            ],
            list_id=RICH_LIST,
        )
        assert body["total_created"] == 1
        assert [(e["email_address"], e["field"]) for e in body["errors"]] == [
            ("bad@acme-mail.net", "TIER"),
            ("missing@acme-mail.net", "FNAME"),
        ]
        assert all(
            e["error"] == "Your merge fields were invalid." and e["field_message"] for e in body["errors"]
        )
        skipped = subscribe(
            http,
            emu,
            [{"email_address": "missing@acme-mail.net", "status": "subscribed"}],
            list_id=RICH_LIST,
            params={"skip_merge_validation": "true"},
        )
        assert skipped["total_created"] == 1


class TestBatchSubscribe:
    def test_existing_member_without_update_existing(self, http: requests.Session, emu: Any) -> None:
        put(http, emu, {"status": "subscribed"})
        body = subscribe(http, emu, [{"email_address": EMAIL, "status": "subscribed"}])
        assert body["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS" and body["total_updated"] == 0
        body = subscribe(
            http,
            emu,
            [{"email_address": EMAIL, "status": "subscribed", "language": "de"}],
            update_existing=True,
        )
        assert body["total_updated"] == 1 and body["updated_members"][0]["language"] == "de"

    def test_tags_added_or_synced(self, http: requests.Session, emu: Any) -> None:
        subscribe(http, emu, [{"email_address": EMAIL, "status": "subscribed", "tags": ["a", "b"]}])
        body = subscribe(
            http,
            emu,
            [{"email_address": EMAIL, "status_if_new": "subscribed", "tags": ["c"]}],
            update_existing=True,
        )
        assert [t["name"] for t in body["updated_members"][0]["tags"]] == ["a", "b", "c"]
        body = subscribe(
            http,
            emu,
            [{"email_address": EMAIL, "status_if_new": "subscribed", "tags": ["b"]}],
            update_existing=True,
            sync_tags=True,
        )
        assert [t["name"] for t in body["updated_members"][0]["tags"]] == ["b"]

    def test_at_most_500_members(self, http: requests.Session, emu: Any) -> None:
        members = [{"email_address": f"u{i}@acme-mail.net", "status": "subscribed"} for i in range(501)]
        problem(
            http.post(f"{emu.api_url}/lists/{emu.list_id}", json={"members": members}),
            400,
            "Invalid Resource",
        )
        assert subscribe(http, emu, members[:500])["total_created"] == 500

    def test_duplicates_in_one_request(self, http: requests.Session, emu: Any) -> None:
        twice = [
            {"email_address": EMAIL, "status": "subscribed"},
            {"email_address": EMAIL.upper(), "status": "pending"},
        ]
        body = subscribe(http, emu, twice)
        assert (body["total_created"], body["error_count"]) == (1, 1)
        emu.reset()
        body = subscribe(http, emu, twice, params={"skip_duplicate_check": "true"})
        assert (body["total_created"], body["error_count"]) == (1, 0)
        assert body["new_members"][0]["status"] == "subscribed"  # the first appearance wins

    def test_bad_entries_become_errors(self, http: requests.Session, emu: Any) -> None:
        body = subscribe(
            http,
            emu,
            [
                {"email_address": EMAIL, "status": "bogus"},
                {"status": "subscribed"},
                "not an object",
                {"email_address": "x@acme-mail.net", "status": "subscribed", "vip": "yes"},
            ],
        )
        assert (body["total_created"], body["error_count"]) == (0, 4)
        assert all(e["error_code"] == "ERROR_GENERIC" for e in body["errors"])


class TestTagsAndListing:
    def test_only_named_tags_change(self, http: requests.Session, emu: Any) -> None:
        subscribe(http, emu, [{"email_address": EMAIL, "status": "subscribed", "tags": ["keep", "drop"]}])
        response = http.post(
            member_url(emu) + "/tags",
            json={
                "tags": [{"name": "drop", "status": "inactive"}, {"name": "new", "status": "active"}],
                "is_syncing": True,
            },
        )
        assert response.status_code == 204 and response.content == b""
        assert [t["name"] for t in http.get(member_url(emu)).json()["tags"]] == ["keep", "new"]
        problem(
            http.post(member_url(emu) + "/tags", json={"tags": [{"name": "x", "status": "on"}]}),
            400,
            "Invalid Resource",
        )
        problem(
            http.post(
                member_url(emu, "nobody@acme-mail.net") + "/tags",
                json={"tags": [{"name": "x", "status": "active"}]},
            ),
            404,
            "Resource Not Found",
        )

    def test_paged_listing_with_status_filter(self, http: requests.Session, emu: Any) -> None:
        members = [
            {"email_address": f"u{i}@acme-mail.net", "status": "subscribed" if i % 3 else "unsubscribed"}
            for i in range(30)
        ]
        subscribe(http, emu, members)
        http.delete(member_url(emu, "u1@acme-mail.net"))
        url = f"{emu.api_url}/lists/{emu.list_id}/members"
        page = http.get(url, params={"count": 5, "offset": 5}).json()
        assert page["total_items"] == 29 and len(page["members"]) == 5
        assert page["members"][0]["email_address"] == "u6@acme-mail.net"  # insertion order, archived left out
        unsubscribed = http.get(url, params={"status": "unsubscribed", "count": 100}).json()
        assert unsubscribed["total_items"] == 10 and {m["status"] for m in unsubscribed["members"]} == {
            "unsubscribed"
        }
        assert http.get(url, params={"status": "archived"}).json()["total_items"] == 1
        assert len(http.get(url).json()["members"]) == 10  # default count
        problem(http.get(url, params={"count": 1001}), 400, "Invalid Resource")
        problem(http.get(url, params={"status": "gone"}), 400, "Invalid Resource")
        stats = http.get(f"{emu.api_url}/lists/{emu.list_id}").json()["stats"]
        assert (stats["member_count"], stats["unsubscribe_count"]) == (19, 10)

    def test_fields_and_exclude_fields(self, http: requests.Session, emu: Any) -> None:
        body = http.get(
            f"{emu.api_url}/lists/{emu.list_id}", params={"fields": "id,stats.member_count"}
        ).json()
        assert body == {"id": emu.list_id, "stats": {"member_count": 0}}
        body = http.get(
            f"{emu.api_url}/lists/{emu.list_id}", params={"exclude_fields": "_links,stats"}
        ).json()
        assert "stats" not in body and "_links" not in body and body["name"] == "Demo audience"

    def test_control_api_shows_every_member(self, http: requests.Session, emu: Any) -> None:
        subscribe(
            http,
            emu,
            [
                {
                    "email_address": EMAIL,
                    "status": "subscribed",
                    "tags": ["t"],
                    "merge_fields": {"FNAME": "Jane"},
                }
            ],
        )
        http.delete(member_url(emu))
        [member] = emu.members(emu.list_id)
        assert (member["email_address"], member["status"], member["tags"]) == (EMAIL, "archived", ["t"])
        assert member["merge_fields"]["FNAME"] == "Jane"
