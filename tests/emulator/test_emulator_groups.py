"""Audience features a marketer maps: groups (interests), GDPR marketing permissions, language, VIP,
location, date formats; GET /lists; the placeholder-domain flag. Official client where it has a method."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import GDPR_LIST
from mailchimp_emulator.config import derived_id
from mailchimp_emulator.testing import EmulatorProcess
from mailchimp_marketing.api_client import ApiClientError

JANE = "jane@acme-mail.net"
NEWS = derived_id(GDPR_LIST, "Topics", "News")
OFFERS = "offers0001"


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def refused(call: Any, status: int) -> dict[str, Any]:
    with pytest.raises(ApiClientError) as caught:
        call()
    assert caught.value.status_code == status, caught.value.text
    body: dict[str, Any] = json.loads(caught.value.text)
    return body


def put(client: Any, body: dict[str, Any], email: str = JANE) -> dict[str, Any]:
    result: dict[str, Any] = client.lists.set_list_member(
        GDPR_LIST, md5(email), {"email_address": email, "status_if_new": "subscribed", **body}
    )
    return result


class TestInterests:
    def test_configured_categories_and_interests(self, client: Any, emu: Any) -> None:
        categories = client.lists.get_list_interest_categories(GDPR_LIST)
        assert categories["total_items"] == 1
        [topics] = categories["categories"]
        assert (topics["title"], topics["type"], topics["id"]) == (
            "Topics",
            "checkboxes",
            derived_id(GDPR_LIST, "Topics"),
        )
        assert client.lists.get_interest_category(GDPR_LIST, topics["id"]) == topics
        interests = client.lists.list_interest_category_interests(GDPR_LIST, topics["id"])
        assert [(i["id"], i["name"], i["subscriber_count"]) for i in interests["interests"]] == [
            (NEWS, "News", "0"),
            (OFFERS, "Offers", "0"),
        ]
        assert (
            client.lists.get_interest_category_interest(GDPR_LIST, topics["id"], OFFERS)["name"] == "Offers"
        )

    def test_create_category_and_interest(self, client: Any, emu: Any) -> None:
        category = client.lists.create_list_interest_category(
            emu.list_id, {"title": "Stores", "type": "radio"}
        )
        interest = client.lists.create_interest_category_interest(
            emu.list_id, category["id"], {"name": "Paris"}
        )
        assert interest["category_id"] == category["id"] and interest["list_id"] == emu.list_id
        member = client.lists.set_list_member(
            emu.list_id,
            md5(JANE),
            {"email_address": JANE, "status": "subscribed", "interests": {interest["id"]: True}},
        )
        assert member["interests"] == {interest["id"]: True}
        assert refused(
            lambda: client.lists.create_list_interest_category(
                emu.list_id, {"title": "Stores", "type": "radio"}
            ),
            400,
        )
        assert refused(
            lambda: client.lists.create_list_interest_category(emu.list_id, {"title": "X", "type": "nope"}),
            400,
        )
        assert refused(lambda: client.lists.list_interest_category_interests(emu.list_id, "missing"), 404)

    def test_interests_stored_merged_and_returned(self, client: Any, emu: Any) -> None:
        assert put(client, {"interests": {NEWS: True}})["interests"] == {NEWS: True, OFFERS: False}
        assert put(client, {"interests": {OFFERS: True}})["interests"] == {NEWS: True, OFFERS: True}
        assert put(client, {"interests": {NEWS: False}})["interests"] == {NEWS: False, OFFERS: True}
        assert client.lists.get_list_member(GDPR_LIST, md5(JANE))["interests"] == {NEWS: False, OFFERS: True}
        assert emu.members(GDPR_LIST)[0]["interests"] == {NEWS: False, OFFERS: True}
        counts = client.lists.list_interest_category_interests(GDPR_LIST, derived_id(GDPR_LIST, "Topics"))
        assert [i["subscriber_count"] for i in counts["interests"]] == ["0", "1"]

    def test_audience_without_groups_has_no_interests_field(self, client: Any, emu: Any) -> None:
        member = client.lists.set_list_member(
            emu.list_id, md5(JANE), {"email_address": JANE, "status": "subscribed"}
        )
        assert "interests" not in member and "marketing_permissions" not in member

    def test_unknown_interest_id_is_refused(self, client: Any, emu: Any) -> None:
        body = refused(lambda: put(client, {"interests": {"0000000000": True}}), 400)
        assert (body["title"], body["detail"]) == ("Invalid Resource", "Invalid interest ID: '0000000000'")
        assert emu.members(GDPR_LIST) == []
        assert refused(lambda: put(client, {"interests": {NEWS: "yes"}}), 400)["title"] == "Invalid Resource"

    def test_unknown_interest_in_batch_subscribe_is_an_error_entry(self, client: Any, emu: Any) -> None:
        answer = client.lists.batch_list_members(
            GDPR_LIST,
            {
                "members": [
                    {"email_address": JANE, "status": "subscribed", "interests": {"bad0000000": True}},
                    {
                        "email_address": "john@acme-mail.net",
                        "status": "subscribed",
                        "interests": {NEWS: True},
                    },
                ]
            },
        )
        assert (answer["total_created"], answer["error_count"]) == (1, 1)
        assert answer["errors"][0]["email_address"] == JANE
        assert answer["errors"][0]["error"] == "Invalid interest ID: 'bad0000000'"
        assert answer["new_members"][0]["interests"] == {NEWS: True, OFFERS: False}


class TestMarketingPermissions:
    def test_audience_flag_and_member_permissions(self, client: Any, emu: Any, validate: Any) -> None:
        assert client.lists.get_list(GDPR_LIST)["marketing_permissions"] is True
        assert client.lists.get_list(emu.list_id)["marketing_permissions"] is False
        member = put(client, {})
        texts = [p["text"] for p in member["marketing_permissions"]]
        assert texts == ["Email", "Direct Mail", "Customized Online Advertising"]
        assert {p["enabled"] for p in member["marketing_permissions"]} == {False}
        email_id = member["marketing_permissions"][0]["marketing_permission_id"]
        changed = put(
            client, {"marketing_permissions": [{"marketing_permission_id": email_id, "enabled": True}]}
        )
        enabled = {p["marketing_permission_id"]: p["enabled"] for p in changed["marketing_permissions"]}
        assert enabled[email_id] is True and sum(enabled.values()) == 1
        got = client.lists.get_list_member(GDPR_LIST, md5(JANE))
        assert got["marketing_permissions"] == changed["marketing_permissions"]
        validate(got, "ListsMembersMembers")

    def test_unknown_permission_is_refused(self, client: Any, emu: Any) -> None:
        body = refused(
            lambda: put(
                client, {"marketing_permissions": [{"marketing_permission_id": "nope", "enabled": True}]}
            ),
            400,
        )
        assert body["detail"] == "Invalid marketing permission ID: 'nope'"

    def test_batch_subscribe_ignores_permissions(self, client: Any, emu: Any) -> None:
        """The batch-subscribe member schema has no marketing_permissions: like any property it does not
        have, they are ignored (never stored, never refused, even an unknown id or a wrong type);
        PATCH on the member takes them."""
        email_id = put(client, {})["marketing_permissions"][0]["marketing_permission_id"]
        john = "john@acme-mail.net"
        answer = client.lists.batch_list_members(
            GDPR_LIST,
            {
                "members": [
                    {
                        "email_address": JANE,
                        "status_if_new": "subscribed",
                        "marketing_permissions": [{"marketing_permission_id": email_id, "enabled": True}],
                    },
                    {
                        "email_address": john,
                        "status_if_new": "subscribed",
                        "marketing_permissions": [{"marketing_permission_id": "nope", "enabled": "yes"}],
                    },
                ],
                "update_existing": True,
            },
        )
        assert (answer["total_created"], answer["total_updated"], answer["error_count"]) == (1, 1, 0)
        stored = {m["email_address"]: m["marketing_permissions"] for m in emu.members(GDPR_LIST)}
        assert stored == {JANE: {}, john: {}}
        client.lists.update_list_member(
            GDPR_LIST,
            md5(john),
            {"marketing_permissions": [{"marketing_permission_id": email_id, "enabled": True}]},
        )
        stored = {m["email_address"]: m["marketing_permissions"] for m in emu.members(GDPR_LIST)}
        assert stored == {JANE: {}, john: {email_id: True}}

    def test_configured_ids_and_texts(self, tmp_path: Path) -> None:
        config = {
            "audiences": [{"id": "eu", "marketing_permissions": [{"id": "p1", "text": "Email"}, "SMS"]}]
        }
        with EmulatorProcess(tmp_path, config=config) as server:
            session = requests.Session()
            session.auth = ("x", server.api_key)
            member = session.put(
                f"{server.api_url}/lists/eu/members/{md5(JANE)}",
                json={"email_address": JANE, "status": "subscribed"},
            ).json()
        assert [(p["marketing_permission_id"], p["text"]) for p in member["marketing_permissions"]] == [
            ("p1", "Email"),
            (derived_id("eu", "permission", "SMS"), "SMS"),
        ]


class TestMemberFields:
    def test_language_vip_location_stored_and_returned(self, client: Any, emu: Any, validate: Any) -> None:
        member = put(
            client, {"language": "fr", "vip": True, "location": {"latitude": 48.85, "longitude": 2.35}}
        )
        assert (member["language"], member["vip"]) == ("fr", True)
        assert (member["location"]["latitude"], member["location"]["longitude"]) == (48.85, 2.35)
        again = client.lists.get_list_member(GDPR_LIST, md5(JANE))
        assert (again["language"], again["vip"], again["location"]["latitude"]) == ("fr", True, 48.85)
        validate(again, "ListsMembersMembers")
        assert put(client, {"vip": False})["location"]["longitude"] == 2.35
        assert emu.members(GDPR_LIST)[0]["location"] == {"latitude": 48.85, "longitude": 2.35}

    @pytest.mark.parametrize("location", [{"latitude": "north"}, {"latitude": 91}, "here"])
    def test_bad_location(self, client: Any, emu: Any, location: Any) -> None:
        assert refused(lambda: put(client, {"location": location}), 400)["title"] == "Invalid Resource"

    @pytest.mark.parametrize(
        ("value", "stored"),
        [
            ("2024-03-01", "2024-03-01"),
            ("2024/03/01", "2024-03-01"),
            ("01-03-2024", "2024-03-01"),
            ("01/03/2024", "2024-03-01"),
        ],
    )
    def test_date_formats_of_a_day_first_field(self, client: Any, emu: Any, value: str, stored: str) -> None:
        assert put(client, {"merge_fields": {"JOINED": value}})["merge_fields"]["JOINED"] == stored

    def test_a_month_first_field_reads_month_first(self, http: requests.Session, emu: Any) -> None:
        url = f"{emu.api_url}/lists/rich0audience/members/{md5(JANE)}"
        body = {
            "email_address": JANE,
            "status": "subscribed",
            "merge_fields": {"FNAME": "J", "SINCE": "03-15-2021"},
        }
        assert http.put(url, json=body).json()["merge_fields"]["SINCE"] == "2021-03-15"
        body["merge_fields"]["SINCE"] = "15-03-2021"
        assert http.put(url, json=body).status_code == 400


def test_get_all_lists_is_paged(client: Any, emu: Any, validate: Any) -> None:
    everything = client.lists.get_all_lists(count=1000)
    for audience in everything["lists"]:
        validate(audience, "ListsLists")
    assert [a["id"] for a in everything["lists"]] == ["demo0audience", "rich0audience", GDPR_LIST]
    assert everything["total_items"] == 3
    page = client.lists.get_all_lists(count=1, offset=1)
    assert [a["id"] for a in page["lists"]] == ["rich0audience"] and page["total_items"] == 3
    assert page["lists"][0] == client.lists.get_list("rich0audience")


@pytest.mark.parametrize("how", ["flag", "config"])
def test_placeholder_domains_can_be_allowed(tmp_path: Path, how: str) -> None:
    extra = ["--allow-placeholder-domains"] if how == "flag" else []
    config = {"allow_placeholder_domains": True} if how == "config" else None
    with EmulatorProcess(tmp_path, config=config, extra_args=extra) as server:
        session = requests.Session()
        session.auth = ("x", server.api_key)
        for email in ("jane@example.org", "jane@shop.test"):
            response = session.put(
                f"{server.api_url}/lists/{server.list_id}/members/{md5(email)}",
                json={"email_address": email, "status": "subscribed"},
            )
            assert response.status_code == 200, response.text
        fake_local = session.put(
            f"{server.api_url}/lists/{server.list_id}/members/{md5('test@acme-mail.net')}",
            json={"email_address": "test@acme-mail.net", "status": "subscribed"},
        )
        assert fake_local.status_code == 400  # only the domain rule is relaxed


def test_placeholder_domains_refused_by_default(http: requests.Session, emu: Any) -> None:
    response = http.put(
        f"{emu.api_url}/lists/{emu.list_id}/members/{md5('jane@example.org')}",
        json={"email_address": "jane@example.org", "status": "subscribed"},
    )
    assert response.status_code == 400 and "looks fake or invalid" in response.json()["detail"]
