"""Plain records shared by the store, the rules and the renderers."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import orjson


def now_iso() -> str:
    """The current time as Mailchimp writes timestamps (ISO 8601, seconds, +00:00)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Audience:
    """An audience (list) as stored; `list_no` is the compact key member rows carry."""

    list_no: int
    id: str
    name: str
    double_optin: bool
    web_id: int
    date_created: str
    last_sub_date: str
    last_unsub_date: str


@dataclass(frozen=True)
class MergeField:
    merge_id: int
    tag: str
    name: str
    type: str
    required: bool
    default_value: str
    public: bool
    display_order: int
    help_text: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Member:
    """One contact of one audience; `seq` is None until the row is stored."""

    seq: int | None
    hash: str
    email: str
    status: str
    archived_from: str | None
    email_type: str
    merge_fields: dict[str, Any]
    tags: list[str]
    language: str
    vip: bool
    ip_signup: str
    timestamp_signup: str
    ip_opt: str
    timestamp_opt: str
    last_changed: str
    interests: dict[str, bool] = field(default_factory=dict)
    marketing_permissions: dict[str, bool] = field(default_factory=dict)
    location: tuple[float, float] | None = None  # (latitude, longitude) as given
    cached_merge_json: str | None = field(default=None, compare=False, repr=False)

    def merge_json(self) -> str:
        """merge_fields as JSON, encoded once and shared by the row writer and the renderer.

        orjson (a million-member import encodes a million of these); its output reads back as the same
        values. json for what orjson refuses (integers past 64 bits). Values here passed the merge
        validators, so none is NaN or infinite (which orjson would write as null)."""
        if self.cached_merge_json is None:
            try:
                self.cached_merge_json = orjson.dumps(self.merge_fields).decode()
            except orjson.JSONEncodeError:
                self.cached_merge_json = json.dumps(self.merge_fields)
        return self.cached_merge_json

    def copy(self) -> Member:
        return Member(
            self.seq,
            self.hash,
            self.email,
            self.status,
            self.archived_from,
            self.email_type,
            dict(self.merge_fields),
            list(self.tags),
            self.language,
            self.vip,
            self.ip_signup,
            self.timestamp_signup,
            self.ip_opt,
            self.timestamp_opt,
            self.last_changed,
            dict(self.interests),
            dict(self.marketing_permissions),
            self.location,
        )


@dataclass(frozen=True)
class Batch:
    id: str
    status: str
    total_operations: int
    finished_operations: int
    errored_operations: int
    submitted_at: str
    completed_at: str
    parts_done: int


@dataclass(frozen=True)
class Segment:
    """A tag / static segment of one audience; `member_count` counts the members of the statuses asked
    for (Mailchimp: "active subscribers", plus cleaned/transactional/unsubscribed on request)."""

    id: int
    name: str
    member_count: int
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class InterestCategory:
    id: str
    title: str
    type: str
    display_order: int


@dataclass(frozen=True)
class Interest:
    id: str
    category_id: str
    name: str
    display_order: int


@dataclass(frozen=True)
class Permission:
    """A GDPR marketing permission of an audience."""

    id: str
    text: str
