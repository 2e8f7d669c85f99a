"""Interests, language, VIP and marketing permissions: definition checks, values, the member JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mailchimp_provider.export.definition import DefinitionError, ExportDefinition, load_definition
from mailchimp_provider.export.extract import source_columns
from mailchimp_provider.export.member_fields import InterestPlan, MemberFieldPlan, split_permissions
from mailchimp_provider.export.prepare import member_json

BASE = {
    "export": "groups",
    "mailchimp": {"conn_id": "mc", "audience_id": "aud1"},
    "warehouse": {"conn_id": "wh", "table": "profiles"},
    "segments": ["vip", "churn"],
    "columns": {"id": "customer_id", "email": "email", "language": "lang", "vip": "is_vip"},
}

PLAN = MemberFieldPlan(
    interests=(
        InterestPlan("Topics", segment_ids={"vip": "i_vip", "churn": "i_churn"}),
        InterestPlan("Topics", column="likes_news", flag_id="i_news"),
        InterestPlan("Shops", column="shops", list_ids={"paris": "i_paris", "rome": "i_rome"}),
    ),
    language_column="lang",
    vip_column="is_vip",
    permissions=(("p_email", "Email", "email_ok"),),
)


def _member(row: dict, segments: list[str], plan: MemberFieldPlan = PLAN) -> tuple[dict, dict]:
    dropped: dict[str, int] = {}
    text = member_json("a@b.de", "subscribed", {"FNAME": "Ann"}, plan.fragment(row, segments, dropped))
    return json.loads(text), dropped


def test_every_member_field_lands_in_the_member_json() -> None:
    row = {"lang": "fr-ca", "is_vip": "1", "likes_news": "yes", "shops": "Paris, rome", "email_ok": "true"}
    member, dropped = _member(row, ["vip"])
    assert member == {
        "email_address": "a@b.de",
        "status_if_new": "subscribed",
        "merge_fields": {"FNAME": "Ann"},
        "language": "fr_CA",
        "vip": True,
        "interests": {"i_vip": True, "i_churn": False, "i_news": True, "i_paris": True, "i_rome": True},
        "marketing_permissions": [{"marketing_permission_id": "p_email", "enabled": True}],
    }
    assert dropped == {}


def test_empty_values_are_not_sent_and_bad_ones_are_counted() -> None:
    empty, dropped = _member({"lang": None, "is_vip": " ", "likes_news": None, "shops": None}, [])
    # only the segment groups are sent: Mailchimp keeps everything else as it is
    assert empty == {
        "email_address": "a@b.de",
        "status_if_new": "subscribed",
        "merge_fields": {"FNAME": "Ann"},
        "interests": {"i_vip": False, "i_churn": False},
    }
    assert dropped == {}
    bad, dropped = _member(
        {
            "lang": "klingon",
            "is_vip": "maybe",
            "likes_news": "2",
            "shops": '["Oslo", "Rome"]',
            "email_ok": "x",
        },
        ["churn"],
    )
    assert "language" not in bad and "vip" not in bad and "marketing_permissions" not in bad
    assert bad["interests"] == {"i_vip": False, "i_churn": True, "i_paris": False, "i_rome": True}
    assert dropped == {
        "language:not a Mailchimp language code": 1,
        "vip:not true/false": 1,
        "interests.Topics:not true/false": 1,
        "interests.Shops:names a group the export does not map": 1,
        "marketing_permissions.Email:not true/false": 1,
    }


@pytest.mark.parametrize(
    ("raw", "code"),
    [("DE", "de"), ("de_AT", "de"), ("pt-PT", "pt_PT"), ("pt-br", "pt"), (" es_es ", "es_ES")],
)
def test_language_codes_are_forgiven_case_and_region(raw: str, code: str) -> None:
    member, _ = _member({"lang": raw}, [])
    assert member["language"] == code


def test_a_run_over_some_segments_leaves_the_other_segments_groups_alone() -> None:
    member, _ = _member({}, ["churn"], PLAN.for_segments(["churn"]))
    assert member["interests"] == {"i_churn": True}
    only_segments = MemberFieldPlan(interests=(PLAN.interests[0],))
    assert "interests" not in _member({}, [], only_segments.for_segments([]))[0]


def test_plan_survives_staging_as_json() -> None:
    assert MemberFieldPlan.from_json(PLAN.to_json()) == PLAN


def test_definition_reads_the_member_field_columns() -> None:
    definition = ExportDefinition.model_validate(
        BASE
        | {
            "interests": [
                {"category": "Topics", "from_segments": {"vip": "VIP news"}},
                {"category": "Topics", "column": "topics", "groups": ["News", "Offers"]},
            ],
            "marketing_permissions": {"Email": "email_ok"},
        }
    )
    assert source_columns(definition) == [
        "customer_id",
        "email",
        "segment",
        "topics",
        "lang",
        "is_vip",
        "email_ok",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"interests": [{"category": "T", "from_segments": {"nope": "G"}}]}, "segment 'nope' is not one"),
        ({"interests": [{"category": "T", "column": "c"}]}, "exactly one of 'group'"),
        ({"interests": [{"category": "T", "column": "c", "group": "G", "groups": ["G"]}]}, "exactly one of"),
        ({"interests": [{"category": "T", "from_segments": {"vip": "G"}, "column": "c"}]}, "exactly one of"),
        (
            {
                "interests": [
                    {"category": "T", "column": "c", "group": "G"},
                    {"category": "t", "column": "d", "group": "g"},
                ]
            },
            "mapped twice",
        ),
        ({"marketing_permissions": {"Email": "a", "email": "b"}}, "named twice"),
        ({"marketing_permissions": {"Email": "not a column"}}, "marketing_permissions.Email"),
    ],
)
def test_definition_mistakes_name_the_field(tmp_path: Path, changes: dict, message: str) -> None:
    import yaml

    path = tmp_path / "groups.yaml"
    path.write_text(yaml.safe_dump(BASE | changes))
    with pytest.raises(DefinitionError, match="groups.yaml") as caught:
        load_definition(path)
    assert message in str(caught.value)


def test_permissions_split_off_for_the_member_itself() -> None:
    row = {"lang": "de", "email_ok": "1", "shops": 'Rome, ",\\"marketing_permissions\\":["'}
    data_json = member_json(
        "a@b.de", "subscribed", {"FNAME": ',"marketing_permissions":['}, PLAN.fragment(row, ["vip"], {})
    )
    member, permissions = split_permissions(data_json)
    expected = json.loads(data_json)
    assert json.loads(permissions) == {"marketing_permissions": expected.pop("marketing_permissions")}
    assert json.loads(member) == expected
    no_permissions = member_json("a@b.de", "subscribed", {}, "")
    assert split_permissions(no_permissions) == (no_permissions, None)


def test_the_example_definition_is_valid() -> None:
    example = (
        Path(__file__).resolve().parents[2]
        / "include"
        / "exports"
        / "examples"
        / "newsletter_preferences.yaml"
    )
    definition = load_definition(example)
    assert definition.interests and definition.marketing_permissions and definition.transform
    assert "language" not in source_columns(definition) and "country" in source_columns(definition)


def test_a_single_choice_category_takes_one_group_at_most() -> None:
    radio = InterestPlan(
        "Store", column="stores", list_ids={"paris": "i_paris", "rome": "i_rome"}, single_choice=True
    )
    plan = MemberFieldPlan(interests=(PLAN.interests[0], radio))
    one, dropped = _member({"stores": "Rome"}, ["vip"], plan)
    assert one["interests"] == {"i_vip": True, "i_churn": False, "i_paris": False, "i_rome": True}
    assert dropped == {}
    two, dropped = _member({"stores": "Rome, Paris"}, ["vip"], plan)
    assert two["interests"] == {"i_vip": True, "i_churn": False}  # the other category still goes
    assert dropped == {"interests.Store:more than one group of a single-choice category": 1}
    assert MemberFieldPlan.from_json(plan.to_json()) == plan
