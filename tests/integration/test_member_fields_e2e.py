"""Everything a marketer maps, end to end with dag.test(): interests (from segments and columns),
language, VIP, a GDPR marketing permission and computed fields land in the local server's audience."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DEMO_AUDIENCES
from mailchimp_emulator.config import derived_id
from mailchimp_emulator.testing import EmulatorProcess
from mailchimp_provider.export.validate import normalise_email
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from support import latest_report, mailchimp_connection, run_export, write_definition
from test_failures import run_failing

LIST_ID = "groups0audience"
AUDIENCE = {
    "id": LIST_ID,
    "name": "Groups and permissions",
    "merge_fields": [
        {"tag": "FNAME", "name": "First Name", "type": "text"},
        {"tag": "FULLNAME", "name": "Full name", "type": "text"},
        {
            "tag": "TIER",
            "name": "Tier",
            "type": "dropdown",
            "options": {"choices": ["Bronze", "Silver", "Gold", "Platinum"]},
        },
    ],
    "interest_categories": [
        {"title": "Topics", "interests": ["VIP news", "Churn offers", "Shoes", "Hats", "Offers"]},
        {"title": "Newsletter", "type": "radio", "interests": ["Weekly digest"]},
    ],
    "marketing_permissions": True,  # Email, Direct Mail, Customized Online Advertising
}
PREFS = """
CREATE TABLE prefs AS SELECT customer_id,
  CASE country WHEN 'DE' THEN 'de' WHEN 'FR' THEN 'fr' WHEN 'ES' THEN 'es-ES' ELSE 'en' END AS lang,
  CASE WHEN lifetime_value >= 465 THEN 1 ELSE 0 END AS is_vip,
  CASE loyalty_tier WHEN 'platinum' THEN 'Shoes, Hats' WHEN 'gold' THEN 'shoes' ELSE '' END AS topics,
  CASE WHEN birthday IS NULL THEN 'no' ELSE 'yes' END AS weekly,
  CASE WHEN country IN ('DE', 'FR', 'ES', 'IT', 'NL', 'PL', 'SE') THEN 1 ELSE 0 END AS email_ok
FROM customer_profiles
"""
QUERY = (
    "SELECT s.segment, s.customer_id, s.email, s.first_name, s.last_name, s.country, s.lifetime_value, "
    "p.lang, p.is_vip, p.topics, p.weekly, p.email_ok "
    "FROM segment_profiles AS s JOIN prefs AS p ON p.customer_id = s.customer_id"
)
MAPPED = {
    "export": "groups_export",
    "mailchimp__audience_id": LIST_ID,
    "warehouse": {"conn_id": "demo_warehouse", "query": QUERY},
    "columns": {
        "id": "customer_id",
        "email": "email",
        "first_name": "first_name",
        "language": "lang",
        "vip": "is_vip",
    },
    "merge_fields": {},
    "interests": [
        {"category": "Topics", "from_segments": {"vip_customers": "VIP news", "churn_risk": "Churn offers"}},
        {"category": "Topics", "column": "topics", "groups": ["Shoes", "Hats"]},
        {"category": "newsletter", "column": "weekly", "group": "weekly digest"},
    ],
    "marketing_permissions": {"Email": "email_ok"},
    "retries": 0,
}
HAND = "hand.picked@acme-mail.net"


@pytest.fixture
def groups_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorProcess]:
    config = yaml.safe_load(DEMO_AUDIENCES.read_text())
    config["audiences"].append(AUDIENCE)
    with EmulatorProcess(tmp_path / "mailchimp", config=config) as server:
        monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", mailchimp_connection(server))
        yield server


@pytest.fixture
def prefs(warehouse: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(warehouse)
    conn.execute(PREFS)
    conn.commit()
    return conn


def _ids() -> dict[str, str]:
    """Interest name -> id, as Mailchimp lists them."""
    hook = MailchimpHook()
    return {
        i["name"]: i["id"]
        for c in hook.get_interest_categories(LIST_ID)
        for i in hook.get_interests(LIST_ID, c["id"])
    }


def _members() -> dict[str, dict]:
    hook, offset, found = MailchimpHook(), 0, {}
    while True:
        page = hook.call("GET", f"lists/{LIST_ID}/members", params={"count": 1000, "offset": offset})
        for member in page["members"]:
            found[member["email_address"].lower()] = member
        offset += len(page["members"])
        if not page["members"]:
            return found


def _expected(conn: Any) -> dict[str, dict]:
    """Per valid address: its first profile's prefs and the segments the address is in, from SQL."""
    expected: dict[str, dict] = {}
    rows = conn.cursor()
    rows.execute(
        f"SELECT * FROM ({QUERY}) AS q WHERE segment IN ('vip_customers', 'churn_risk') ORDER BY customer_id"
    )
    names = [d[0] for d in rows.description]
    for values in rows:
        row = dict(zip(names, values, strict=True))
        email = normalise_email(row["email"]).email
        if email:
            entry = expected.setdefault(email.lower(), row | {"segments": set()})
            entry["segments"].add(row["segment"])
    return expected


def _permission(member: dict, text: str) -> bool:
    return next(p["enabled"] for p in member["marketing_permissions"] if p["text"] == text)


def _stored_permission(server: EmulatorProcess, text: str) -> dict[str, bool | None]:
    """Per address, the permission as the local server stored it (None: never set on the member)."""
    permission_id = derived_id(LIST_ID, "permission", text)
    return {
        m["email_address"]: m["marketing_permissions"].get(permission_id) for m in server.members(LIST_ID)
    }


def _batch_operations() -> dict[str, int]:
    """Batch id -> the export's operations in it (without the submission marker each upload adds), for
    every batch the local server has."""
    batches = MailchimpHook().call("GET", "batches", params={"count": 1000})["batches"]
    return {b["id"]: b["total_operations"] - 1 for b in batches}


def _assert_mapped(members: dict[str, dict], expected: dict[str, dict], ids: dict[str, str]) -> None:
    """Every exported member carries exactly the values its warehouse row maps to."""
    languages = {"de": "de", "fr": "fr", "es-ES": "es_ES", "en": "en"}
    for email, member in members.items():
        if email == HAND:
            continue
        row = expected[email]
        assert member["language"] == languages[row["lang"]]
        assert member["vip"] is bool(row["is_vip"])
        topics = {t.strip().lower() for t in row["topics"].split(",")}
        assert member["interests"] == {
            ids["VIP news"]: "vip_customers" in row["segments"],
            ids["Churn offers"]: "churn_risk" in row["segments"],
            ids["Shoes"]: "shoes" in topics,
            ids["Hats"]: "hats" in topics,
            ids["Weekly digest"]: row["weekly"] == "yes",
            ids["Offers"]: False,  # never sent: the export does not own it
        }
        assert _permission(member, "Email") is bool(row["email_ok"])
        assert _permission(member, "Direct Mail") is False


@pytest.mark.slow
def test_mapped_member_fields_land_and_a_second_run_changes_exactly_what_changed(
    groups_server, prefs, airflow_db, tmp_path, monkeypatch
) -> None:
    hook = MailchimpHook()
    # Mailchimp shows permission ids only on members: the audience has one, added by hand
    hook.call("PUT", f"lists/{LIST_ID}/members/{HAND}", body={"email_address": HAND, "status": "subscribed"})
    definition = write_definition(monkeypatch, tmp_path / "exports", **MAPPED)
    first = run_export(definition)
    ids, members, expected = _ids(), _members(), _expected(prefs)
    assert first["created"] == len(members) - 1 > 100 and first["updated"] == 0

    _assert_mapped(members, expected, ids)
    # batch subscribe does not take permissions: each new member got them through its own PATCH
    stored = _stored_permission(groups_server, "Email")
    assert stored == {e: bool(expected[e]["email_ok"]) for e in members if e != HAND} | {HAND: None}
    operations = _batch_operations()
    subscribes = -(-first["created"] // 500)  # batch subscribe operations of 500 members
    assert sum(operations.values()) == subscribes + first["created"]  # + one PATCH per member

    # four profiles change, each in one mapped value; a marketer ticks "Offers" by hand for the third
    language_changed, vip_changed, topics_changed, consent_changed = [
        e for e in sorted(members) if e != HAND and expected[e]["lang"] == "en" and not expected[e]["is_vip"]
    ][:4]
    for email, change in (
        (language_changed, "lang = 'fr'"),
        (vip_changed, "is_vip = 1"),
        (topics_changed, "topics = 'Hats'"),
        (consent_changed, "email_ok = 1 - email_ok"),
    ):
        prefs.execute(f"UPDATE prefs SET {change} WHERE customer_id = ?", (expected[email]["customer_id"],))
    prefs.commit()
    hook.call(
        "PATCH",
        f"lists/{LIST_ID}/members/{members[topics_changed]['id']}",
        body={"interests": {ids["Offers"]: True}},
    )

    second = run_export(definition)
    assert second["created"] == 0 and second["updated"] == 4
    assert second["unchanged"] == first["created"] - 4
    # one batch subscribe and a permissions PATCH for each updated member, nothing for the others
    assert sum(n for b, n in _batch_operations().items() if b not in operations) == 1 + 4
    after = _members()
    assert _permission(after[consent_changed], "Email") is not bool(expected[consent_changed]["email_ok"])
    assert _stored_permission(groups_server, "Email") == stored | {
        consent_changed: not stored[consent_changed]
    }
    assert after[language_changed]["language"] == "fr"
    assert after[vip_changed]["vip"] is True
    assert after[topics_changed]["interests"][ids["Hats"]] is True
    assert after[topics_changed]["interests"][ids["Shoes"]] is False
    assert after[topics_changed]["interests"][ids["Offers"]] is True  # set by hand: survives
    changed = (language_changed, vip_changed, topics_changed, consent_changed)
    unchanged = {e: m for e, m in after.items() if e not in changed}
    for email, member in unchanged.items():
        before = members[email]
        assert (member["language"], member["vip"], member["interests"]) == (
            before["language"],
            before["vip"],
            before["interests"],
        )

    # a run of one segment cannot know who is in the other: that segment's group is left alone
    in_both = [e for e in after if e != HAND and expected[e]["segments"] == {"vip_customers", "churn_risk"}]
    assert in_both
    run_export(definition, segments=["churn_risk"], full_sync=True)
    third = _members()
    assert all(third[e]["interests"][ids["VIP news"]] is True for e in in_both)
    assert {e: m["interests"] for e, m in third.items()} == {e: m["interests"] for e, m in after.items()}


@pytest.mark.slow
def test_a_refused_permissions_patch_fails_the_profile_with_mailchimps_error(
    groups_server, prefs, airflow_db, tmp_path, monkeypatch
) -> None:
    """A permission deleted in Mailchimp after the run resolved it: Mailchimp refuses the members' PATCH,
    each of them is failed with Mailchimp's error (no address in it), the others are untouched, and the
    failed ones are sent again next run."""
    hook = MailchimpHook()
    hook.call("PUT", f"lists/{LIST_ID}/members/{HAND}", body={"email_address": HAND, "status": "subscribed"})
    real = MailchimpHook.get_marketing_permissions

    def with_a_deleted_one(self: MailchimpHook, list_id: str) -> list[dict]:
        return [*real(self, list_id), {"marketing_permission_id": "gone000000", "text": "Carrier pigeon"}]

    monkeypatch.setattr(MailchimpHook, "get_marketing_permissions", with_a_deleted_one)
    expected = _expected(prefs)
    refused = sorted(expected)[:3]
    prefs.execute("ALTER TABLE prefs ADD COLUMN pigeon TEXT")
    prefs.executemany(
        "UPDATE prefs SET pigeon = 'yes' WHERE customer_id = ?",
        [(expected[e]["customer_id"],) for e in refused],
    )
    prefs.commit()
    definition = write_definition(
        monkeypatch,
        tmp_path / "exports",
        **MAPPED
        | {
            "warehouse": {
                "conn_id": "demo_warehouse",
                "query": QUERY.replace("p.email_ok", "p.email_ok, p.pigeon"),
            },
            "marketing_permissions": {"Email": "email_ok", "Carrier pigeon": "pigeon"},
        },
    )
    error = "Invalid Resource: Invalid marketing permission ID: 'gone000000'"

    first = run_export(definition)
    assert first["failed_at_mailchimp"] == {error: 3}
    assert first["created"] == len(expected) - 3 > 100
    stored = _stored_permission(groups_server, "Email")
    assert {e for e, enabled in stored.items() if enabled is None} == {
        HAND,
        *refused,
    }  # the PATCH was refused
    assert all(stored[e] is bool(expected[e]["email_ok"]) for e in expected if e not in refused)

    # nothing changed: only the failed ones are sent again, all three fail: more than max_failed_share
    assert run_failing(definition)["reconcile"] == "failed"
    second = latest_report()
    assert second["failed_at_mailchimp"] == {error: 3}
    assert second["unchanged"] == len(expected) - 3 and second["created"] == second["updated"] == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"interests": [{"category": "Hobbies", "column": "topics", "groups": ["Shoes"]}]},
            "interest category 'Hobbies' does not exist in audience groups0audience; its group categories "
            "are: 'Topics', 'Newsletter'",
        ),
        (
            {"interests": [{"category": "Topics", "column": "topics", "groups": ["Shoes", "Socks"]}]},
            "interest group 'Socks' does not exist in category 'Topics' of audience groups0audience; its "
            "groups are: 'VIP news', 'Churn offers', 'Shoes', 'Hats', 'Offers'",
        ),
        (
            {"interests": [], "marketing_permissions": {"Carrier pigeon": "email_ok"}},
            "marketing permission 'Carrier pigeon' does not exist in audience groups0audience; its "
            "permissions are: 'Email', 'Direct Mail', 'Customized Online Advertising'",
        ),
        (
            {
                "interests": [],
                "marketing_permissions": {"Email": "email_ok"},
                "mailchimp__audience_id": "demo0doubleoptin",  # the demo audience has GDPR fields on
            },
            "audience demo0doubleoptin has GDPR fields turned off",
        ),
        (
            {
                "interests": [],
                "marketing_permissions": {},
                "transform": {"function": "support_transforms:nope", "returns": ["x"]},
            },
            "transform support_transforms:nope: module 'support_transforms' has no function 'nope'",
        ),
    ],
    ids=["unknown_category", "unknown_group", "unknown_permission", "gdpr_off", "missing_transform"],
)
def test_unknown_names_fail_before_the_warehouse_is_read(
    groups_server, warehouse, airflow_db, tmp_path, monkeypatch, capfd, caplog, changes, message
) -> None:
    hook = MailchimpHook()
    hook.call("PUT", f"lists/{LIST_ID}/members/{HAND}", body={"email_address": HAND, "status": "subscribed"})
    definition = write_definition(monkeypatch, tmp_path / "exports", **(MAPPED | changes))
    states = run_failing(definition)
    assert states["check_audience"] == "failed" and states["extract"] == "upstream_failed"
    logged = capfd.readouterr().out + caplog.text  # where the task log goes depends on earlier tests
    assert f"Export cannot run: {message}" in logged  # the plain message, failed without retries
    assert groups_server.stats()["batches_submitted"] == 0


COMPUTED = {
    "export": "computed_export",
    "mailchimp__audience_id": LIST_ID,
    "columns": {"id": "customer_id", "email": "email", "language": "language"},
    "merge_fields": {"FULLNAME": "full_name", "TIER": "tier"},
    "transform": {
        "function": "transforms.example:enrich",
        "reads": ["lifetime_value", "first_name", "last_name", "country"],
        "returns": ["tier", "full_name", "language"],
    },
    "retries": 0,
}


def test_a_transform_lands_its_computed_values(
    groups_server, warehouse, airflow_db, tmp_path, monkeypatch
) -> None:
    from transforms.example import LANGUAGE_BY_COUNTRY, TIERS

    definition = write_definition(monkeypatch, tmp_path / "exports", **COMPUTED)
    report = run_export(definition)
    members = _members()
    assert report["created"] == len(members) > 100
    conn = sqlite3.connect(warehouse)
    rows = conn.execute(
        "SELECT email, first_name, last_name, country, lifetime_value FROM segment_profiles "
        "WHERE segment IN ('vip_customers', 'churn_risk') ORDER BY customer_id"
    )
    checked, seen = 0, set()
    for email, first, last, country, value in rows:
        address = (normalise_email(email).email or "").lower()
        member = members.get(address)
        if member is None or address in seen:  # refused by Mailchimp, or a later profile of the address
            continue
        seen.add(address)
        full_name = " ".join(part.strip() for part in (first or "", last or "") if part and part.strip())
        if full_name.isascii() and len(full_name) < 60:
            assert member["merge_fields"]["FULLNAME"] == full_name
        assert member["merge_fields"]["TIER"] == next(name for name, floor in TIERS if value >= floor)
        assert member["language"] == LANGUAGE_BY_COUNTRY[country]
        checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            "fails",
            "transform support_transforms:fails on part 0 (100 rows) raised KeyError: 'lifetime_value_typo'",
        ),
        (
            "forgets_a_column",
            "transform support_transforms:forgets_a_column on part 0 (100 rows) did not return column 'name_length'",
        ),
    ],
)
def test_a_failing_transform_fails_the_run_with_nothing_sent(
    groups_server, warehouse, airflow_db, tmp_path, monkeypatch, capfd, caplog, function, message
) -> None:
    definition = write_definition(
        monkeypatch,
        tmp_path / "exports",
        **COMPUTED
        | {
            "extract_chunk_rows": 100,
            "merge_fields": {"FNAME": "name_length"},
            "columns": {"id": "customer_id", "email": "email"},
            "transform": {
                "function": f"support_transforms:{function}",
                "reads": ["first_name"],
                "returns": ["first_name", "name_length"],
            },
        },
    )
    states = run_failing(definition)
    assert states["validate_and_map"] == "failed" and states["chunk"] == "upstream_failed"
    logged = capfd.readouterr().out + caplog.text
    assert f"Export cannot run: {message}" in logged
    assert groups_server.stats()["batches_submitted"] == 0 and _members() == {}


PG_PREFS = """
CREATE TABLE prefs AS SELECT customer_id,
  CASE country WHEN 'DE' THEN 'de' WHEN 'FR' THEN 'fr' WHEN 'ES' THEN 'es-ES' ELSE 'en' END AS lang,
  lifetime_value >= 465 AS is_vip,
  CASE loyalty_tier WHEN 'platinum' THEN 'Shoes, Hats' WHEN 'gold' THEN 'shoes' ELSE '' END AS topics,
  CASE WHEN birthday IS NULL THEN 'no' ELSE 'yes' END AS weekly,
  country IN ('DE', 'FR', 'ES', 'IT', 'NL', 'PL', 'SE') AS email_ok
FROM customer_profiles
"""


@pytest.mark.postgres
def test_member_fields_from_postgresql_booleans(
    groups_server, postgres_warehouse, airflow_db, tmp_path, monkeypatch
) -> None:
    """The same mapping from PostgreSQL, where VIP and consent are real booleans."""
    import psycopg2

    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(tmp_path / "staging"))
    conn = psycopg2.connect(postgres_warehouse)
    conn.cursor().execute(PG_PREFS)
    conn.commit()
    MailchimpHook().call(
        "PUT", f"lists/{LIST_ID}/members/{HAND}", body={"email_address": HAND, "status": "subscribed"}
    )
    report = run_export(write_definition(monkeypatch, tmp_path / "exports", **MAPPED))
    members = _members()
    assert report["created"] == len(members) - 1 > 100
    _assert_mapped(members, _expected(conn), _ids())
    conn.close()
