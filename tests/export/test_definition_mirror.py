"""The definition's mirror fields: segment tags, prefix, on_leave, guards; mistakes name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mailchimp_provider.export.definition import DefinitionError, load_definition

BASE = {
    "export": "m",
    "mailchimp": {"conn_id": "mc", "audience_id": "a1", "tag_prefix": "wh: "},
    "warehouse": {"conn_id": "w", "table": "t"},
    "columns": {"id": "id", "email": "e"},
}


def load(tmp_path: Path, **fields) -> object:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**BASE, **fields}))
    return load_definition(path)


def test_tags_defaults_and_guards(tmp_path: Path) -> None:
    d = load(tmp_path, segments=["vip", {"name": "churn", "tag": "Churn risk"}])
    assert d.segment_names == ["vip", "churn"]
    assert d.segment_tags() == {"vip": "wh: vip", "churn": "Churn risk"}
    assert (d.on_leave, d.max_removals.share, d.max_removals.count, d.max_failed_share) == (
        "untag",
        0.1,
        None,
        0.05,
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"segments": ["vip", "vip"]}, "each segment may be listed once"),
        ({"segments": ["vip", {"name": "x", "tag": "wh: VIP"}]}, "same Mailchimp tag"),
        ({"segments": [{"name": "x", "tag": "t" * 101}]}, "segments.0.with_tag.tag"),
        ({"segments": ["v" * 98]}, "longer than Mailchimp's 100 characters"),
        ({"segments": [{"name": "x"}]}, "segments.0.with_tag.tag': Field required"),
        ({"segments": ["vip"], "on_leave": "unsubscribe"}, "field 'on_leave'"),
        ({"segments": ["vip"], "max_removals": {"share": 2}}, "field 'max_removals.share'"),
        ({"segments": ["vip"], "max_failed_share": -0.1}, "field 'max_failed_share'"),
    ],
)
def test_mistakes_name_the_file_and_field(tmp_path: Path, fields, message) -> None:
    with pytest.raises(DefinitionError, match="m.yaml") as error:
        load(tmp_path, **fields)
    assert message in str(error.value)
