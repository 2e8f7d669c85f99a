"""JSON shapes of the resources, as the Marketing API returns them.

Members are rendered straight to JSON text from a template: a million-member import renders a million
of them, and building nested dicts for json.dumps would cost several times more.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .model import Audience, Batch, Interest, InterestCategory, Member, MergeField, Permission, Segment

_dumps = dumps = json.dumps


def link(rel: str, href: str, method: str = "GET", **extra: str) -> dict[str, str]:
    return {"rel": rel, "href": href, "method": method, **extra}


# ---- members ----------------------------------------------------------------------------------------

_enc = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]

_MEMBER = (
    '{"id":"%s","email_address":%s,"unique_email_id":"%s","contact_id":"%s","full_name":%s,"web_id":%d,'
    '"email_type":"%s","status":"%s","consents_to_one_to_one_messaging":true,"merge_fields":%s%s,'
    '"stats":{"avg_open_rate":0,"avg_click_rate":0},"ip_signup":%s,"timestamp_signup":%s,"ip_opt":%s,'
    '"timestamp_opt":%s,"member_rating":2,"last_changed":"%s","language":%s,"vip":%s,"email_client":"",'
    '"location":{"latitude":%s,"longitude":%s,"gmtoff":0,"dstoff":0,"country_code":"","timezone":"","region":""}%s,'
    '"source":"API - Generic","tags_count":%d,"tags":[%s],"list_id":%s%s}'
)
# Batch subscribe answers carry up to 500 members each, a million in a big import: their entries keep
# identity, status, merge fields and tags and leave out the activity/location/stats sub-objects.
_SUBSCRIBED = (
    '{"id":"%s","email_address":%s,"unique_email_id":"%s","contact_id":"%s","email_type":"%s","status":"%s",'
    '"merge_fields":%s%s'
)
_SUBSCRIBED_TAIL = (  # interests, then the rest, shared by most members of an import
    '%s,"timestamp_opt":%s,"last_changed":"%s","language":%s,"vip":%s,"tags_count":%d,"tags":[%s],"list_id":%s}'
)


class MemberRenderer:
    """Renders members of one audience; built once per request or batch operation."""

    def __init__(
        self,
        list_id: str,
        merge_blank: dict[str, Any],
        base_url: str,
        tag_ids: dict[str, int],
        interest_ids: Sequence[str] = (),
        permissions: Sequence[Permission] = (),
    ) -> None:
        self._list_id_json = _enc(list_id)
        self._blank = merge_blank
        self._members_url = f"{base_url}/3.0/lists/{list_id}/members"
        self._tag_json: dict[str, str] = {}
        self._tag_ids = tag_ids  # the writer's dict: tags it creates get their ids here
        self._interest_blank = dict.fromkeys(interest_ids, False)
        self._no_interests_json = ',"interests":' + _dumps(self._interest_blank)  # most members' answer
        self._permissions = list(permissions)
        self._tails: dict[tuple[Any, ...], str] = {}  # subscribed_json's tails by what they show

    def _interests_json(self, m: Member) -> str:
        """Every interest of the audience with the member's choice (absent when it has none)."""
        if not self._interest_blank:
            return ""
        if not m.interests:
            return self._no_interests_json
        return ',"interests":' + _dumps({**self._interest_blank, **m.interests})

    def _permissions_json(self, m: Member) -> str:
        if not self._permissions:
            return ""
        chosen = m.marketing_permissions
        items = [
            {"marketing_permission_id": p.id, "text": p.text, "enabled": chosen.get(p.id, False)}
            for p in self._permissions
        ]
        return ',"marketing_permissions":' + _dumps(items)

    def _merge_json(self, m: Member) -> str:
        if m.merge_fields.keys() == self._blank.keys():
            return m.merge_json()
        return _dumps({**self._blank, **m.merge_fields})  # fields added to the audience after this write

    def _tags_json(self, tags: list[str]) -> str:
        if not tags:
            return ""
        cache = self._tag_json
        parts = []
        for name in tags:
            encoded = cache.get(name)
            if encoded is None:
                encoded = cache[name] = f'{{"id":{self._tag_ids[name]},"name":{_enc(name)}}}'
            parts.append(encoded)
        return ",".join(parts)

    def json(self, m: Member) -> str:
        """The full member record (GET/PUT/PATCH/POST member answers)."""
        h = m.hash
        merge = m.merge_fields
        first, last = merge.get("FNAME", ""), merge.get("LNAME", "")
        full_name = f"{first} {last}".strip() if isinstance(first, str) and isinstance(last, str) else ""
        return _MEMBER % (
            h,
            _enc(m.email),
            h[22:],
            h[16:] + h[:16],
            _enc(full_name),
            int(h[:7], 16),
            m.email_type,
            m.status,
            self._merge_json(m),
            self._interests_json(m),
            _enc(m.ip_signup),
            _enc(m.timestamp_signup),
            _enc(m.ip_opt),
            _enc(m.timestamp_opt),
            m.last_changed,
            _enc(m.language),
            "true" if m.vip else "false",
            _dumps(m.location[0]) if m.location else "0",
            _dumps(m.location[1]) if m.location else "0",
            self._permissions_json(m),
            len(m.tags),
            self._tags_json(m.tags),
            self._list_id_json,
            self._links_json(h),
        )

    def subscribed_json(self, m: Member) -> str:
        """The lean entry of batch subscribe's new_members / updated_members.

        Written for speed (a million-member import renders a million): what follows the merge fields
        (interests, dates, language, vip, tags, list id) is the same for most members of an import, so
        it is formatted once per distinct value (for this renderer: one request or batch operation)."""
        h = m.hash
        if m.interests:
            tail = self._subscribed_tail(m)
        else:
            key = (m.timestamp_opt, m.last_changed, m.language, m.vip, *m.tags)
            tail = self._tails.get(key)
            if tail is None:
                tail = self._tails[key] = self._subscribed_tail(m)
        return _SUBSCRIBED % (
            h,
            _enc(m.email),
            h[22:],
            h[16:] + h[:16],
            m.email_type,
            m.status,
            self._merge_json(m),
            tail,
        )

    def _subscribed_tail(self, m: Member) -> str:
        return _SUBSCRIBED_TAIL % (
            self._interests_json(m),
            _enc(m.timestamp_opt),
            m.last_changed,
            _enc(m.language) if m.language else '""',
            "true" if m.vip else "false",
            len(m.tags),
            self._tags_json(m.tags),
            self._list_id_json,
        )

    def _links_json(self, member_hash: str) -> str:
        href = f"{self._members_url}/{member_hash}"
        links = [
            link("self", href),
            link("parent", self._members_url),
            link("update", href, "PATCH"),
            link("upsert", href, "PUT"),
            link("delete", href, "DELETE"),
            link("tags", f"{href}/tags", "POST"),
        ]
        return ',"_links":' + _dumps(links)


# ---- audiences and merge fields -----------------------------------------------------------------------


def audience(
    a: Audience,
    counts: dict[str, int],
    merge_field_count: int,
    base_url: str,
    dc: str,
    include_total_contacts: bool,
    marketing_permissions: bool = False,
) -> dict[str, Any]:
    href = f"{base_url}/3.0/lists/{a.id}"
    stats: dict[str, Any] = {
        "member_count": counts.get("subscribed", 0),
        "unsubscribe_count": counts.get("unsubscribed", 0),
        "cleaned_count": counts.get("cleaned", 0),
        "member_count_since_send": counts.get("subscribed", 0),
        "unsubscribe_count_since_send": counts.get("unsubscribed", 0),
        "cleaned_count_since_send": counts.get("cleaned", 0),
        "campaign_count": 0,
        "campaign_last_sent": "",
        "merge_field_count": merge_field_count,
        "avg_sub_rate": 0,
        "avg_unsub_rate": 0,
        "target_sub_rate": 0,
        "open_rate": 0,
        "click_rate": 0,
        "last_sub_date": a.last_sub_date,
        "last_unsub_date": a.last_unsub_date,
    }
    if include_total_contacts:
        stats["total_contacts"] = sum(n for status, n in counts.items() if status != "archived")
    return {
        "id": a.id,
        "web_id": a.web_id,
        "name": a.name,
        "contact": {
            "company": "Mailchimp Emulator",
            "address1": "675 Ponce de Leon Ave NE",
            "address2": "Suite 5000",
            "city": "Atlanta",
            "state": "GA",
            "zip": "30308",
            "country": "US",
            "phone": "",
        },
        "permission_reminder": "You are receiving this email because you opted in via our website.",
        "use_archive_bar": True,
        "campaign_defaults": {
            "from_name": a.name,
            "from_email": "owner@mailchimp-emulator.dev",
            "subject": "",
            "language": "en",
        },
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": a.date_created,
        "list_rating": 0,
        "email_type_option": False,
        "subscribe_url_short": f"http://eepurl.com/{a.id[:6]}",
        "subscribe_url_long": f"https://emulator.{dc}.list-manage.com/subscribe?u=emulator&id={a.id}",
        "beamer_address": f"{dc}-{a.id}@inbound.mailchimp.com",
        "visibility": "pub",
        "double_optin": a.double_optin,
        "has_welcome": False,
        "marketing_permissions": marketing_permissions,
        "modules": [],
        "stats": stats,
        "_links": [
            link("self", href),
            link("parent", f"{base_url}/3.0/lists"),
            link("batch-sub-unsub-members", href, "POST"),
            link("members", f"{href}/members"),
            link("merge-fields", f"{href}/merge-fields"),
            link("segments", f"{href}/segments"),
            link("interest-categories", f"{href}/interest-categories"),
        ],
    }


# ---- segments (tags), interests -----------------------------------------------------------------------


def segment(s: Segment, list_id: str, base_url: str) -> dict[str, Any]:
    href = f"{base_url}/3.0/lists/{list_id}/segments"
    return {
        "id": s.id,
        "name": s.name,
        "member_count": s.member_count,
        "type": "static",
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "options": {"match": "any", "conditions": []},
        "list_id": list_id,
        "_links": [
            link("self", f"{href}/{s.id}"),
            link("parent", href),
            link("delete", f"{href}/{s.id}", "DELETE"),
            link("update", f"{href}/{s.id}", "PATCH"),
            link("members", f"{href}/{s.id}/members"),
        ],
    }


def interest_category(c: InterestCategory, list_id: str, base_url: str) -> dict[str, Any]:
    href = f"{base_url}/3.0/lists/{list_id}/interest-categories"
    return {
        "list_id": list_id,
        "id": c.id,
        "title": c.title,
        "display_order": c.display_order,
        "type": c.type,
        "_links": [
            link("self", f"{href}/{c.id}"),
            link("parent", href),
            link("interests", f"{href}/{c.id}/interests"),
        ],
    }


def interest(i: Interest, list_id: str, subscriber_count: int, base_url: str) -> dict[str, Any]:
    href = f"{base_url}/3.0/lists/{list_id}/interest-categories/{i.category_id}/interests"
    return {
        "category_id": i.category_id,
        "list_id": list_id,
        "id": i.id,
        "name": i.name,
        "subscriber_count": str(subscriber_count),
        "display_order": i.display_order,
        "_links": [link("self", f"{href}/{i.id}"), link("parent", href)],
    }


def merge_field(f: MergeField, list_id: str, base_url: str) -> dict[str, Any]:
    href = f"{base_url}/3.0/lists/{list_id}/merge-fields"
    return {
        "merge_id": f.merge_id,
        "tag": f.tag,
        "name": f.name,
        "type": f.type,
        "required": f.required,
        "default_value": f.default_value,
        "public": f.public,
        "display_order": f.display_order,
        "options": f.options,
        "help_text": f.help_text,
        "list_id": list_id,
        "_links": [link("self", f"{href}/{f.merge_id}"), link("parent", href)],
    }


# ---- batches ------------------------------------------------------------------------------------------


def batch(b: Batch, response_body_url: str, base_url: str) -> dict[str, Any]:
    href = f"{base_url}/3.0/batches/{b.id}"
    return {
        "id": b.id,
        "status": b.status,
        "total_operations": b.total_operations,
        "finished_operations": b.finished_operations,
        "errored_operations": b.errored_operations,
        "submitted_at": b.submitted_at,
        "completed_at": b.completed_at,
        "response_body_url": response_body_url,
        "_links": [
            link("parent", f"{base_url}/3.0/batches"),
            link("self", href),
            link("delete", href, "DELETE"),
        ],
    }
