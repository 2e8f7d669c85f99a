"""Tags as static segments: /lists/{id}/segments and /lists/{id}/segments/{segment_id}.

In Mailchimp a tag is a static segment: the same id and name, whether it was created here or by tagging
a member (batch subscribe `tags`, POST .../members/{hash}/tags). Saved (condition-based) segments are not
served: they answer 501 from this server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import render
from .exchange import ApiRequest, ApiResponse
from .members import MAX_SEGMENT_ITEMS, NOT_IN_AUDIENCE, SEGMENT_ITEMS_EXCEEDED
from .model import Audience, Member, Segment, now_iso
from .params import int_param, object_body
from .problems import ApiError, invalid, not_implemented
from .store import Store

if TYPE_CHECKING:
    from .api import Api

SEGMENT_TYPES = ("saved", "static", "fuzzy")


def _emails(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise invalid(key, "Schema describes array of strings")
    return [e.strip() for e in value if e.strip()]


def _name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid("name", "This value should not be blank.")
    if len(name.strip()) > 100:
        raise invalid("name", "Segment and tag names are at most 100 characters")
    return name.strip()


def _taken(name: str) -> ApiError:
    return invalid("name", f'A segment or tag named "{name}" already exists in this audience.')


class SegmentApi:
    """Handlers of the segment routes; they share the Api's helpers."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def _segment(self, store: Store, audience: Audience, segment_id: str) -> Segment:
        found = store.segment(audience.list_no, int(segment_id)) if segment_id.isdigit() else None
        if found is None:
            raise ApiError("ResourceNotFound")
        return found

    def list(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        audience = self.api.audience_of(store, list_id)
        kind = req.query.get("type") or None
        if kind is not None and kind not in SEGMENT_TYPES:
            raise invalid("type", f"Value must be one of: {', '.join(SEGMENT_TYPES)}")
        count = int_param(req.query, "count", 10, 1000) or 0
        offset = int_param(req.query, "offset", 0) or 0
        segments = store.segments(audience.list_no) if kind in (None, "static") else []
        href = f"{req.base_url}/3.0/lists/{list_id}/segments"
        return ApiResponse(
            200,
            {
                "segments": [
                    render.segment(s, list_id, req.base_url) for s in segments[offset : offset + count]
                ],
                "list_id": list_id,
                "total_items": len(segments),
                "_links": [render.link("self", href), render.link("create", href, "POST")],
            },
        )

    def get(self, store: Store, req: ApiRequest, list_id: str, segment_id: str) -> ApiResponse:
        audience = self.api.audience_of(store, list_id)
        return ApiResponse(
            200, render.segment(self._segment(store, audience, segment_id), list_id, req.base_url)
        )

    def create(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        """POST /segments {name, static_segment: [emails]}: addresses not in the audience are ignored."""
        audience = self.api.audience_of(store, list_id)
        body = object_body(req.body)
        name = _name(body)
        if body.get("options") is not None:
            raise not_implemented("POST", f"/lists/{list_id}/segments with options (a saved segment)")
        emails = _emails(body, "static_segment")
        with store.transaction():
            writer, _ = self.api.writer(store, audience, req)
            if name in writer.tag_ids:
                raise _taken(name)
            writer.tag_ids[name] = store.create_segment(audience.list_no, name, writer.now)
            if emails:
                writer.update_segment(name, emails, [])
            created = store.segment(audience.list_no, writer.tag_ids[name])
        assert created is not None
        return ApiResponse(200, render.segment(created, list_id, req.base_url))

    def update(self, store: Store, req: ApiRequest, list_id: str, segment_id: str) -> ApiResponse:
        """PATCH {name, static_segment}: renames; `static_segment` replaces the members."""
        audience = self.api.audience_of(store, list_id)
        body = object_body(req.body)
        name = _name(body)
        if body.get("options") is not None:
            raise not_implemented("PATCH", f"/lists/{list_id}/segments/{segment_id} with options")
        replace = "static_segment" in body
        emails = _emails(body, "static_segment")
        list_no = audience.list_no
        with store.transaction():
            segment = self._segment(store, audience, segment_id)
            writer, _ = self.api.writer(store, audience, req)
            if name != segment.name:
                if name in writer.tag_ids:
                    raise _taken(name)
                self._retag(store, list_no, segment.name, name, writer.now)
                store.rename_segment(list_no, segment.id, name, writer.now)
                writer.tag_ids[name] = writer.tag_ids.pop(segment.name)
            if replace:
                writer.update_segment(name, emails, [], replace=True)
            updated = store.segment(list_no, segment.id)
        assert updated is not None
        return ApiResponse(200, render.segment(updated, list_id, req.base_url))

    @staticmethod
    def _retag(store: Store, list_no: int, old: str, new: str | None, now: str) -> None:
        """Rename (or with None remove) a tag on every member carrying it; the segment's count is the
        caller's business (a rename keeps it, a delete drops the segment)."""
        changed: list[Member] = []
        for member in store.members_tagged(list_no, old):
            member.tags = [new if t == old else t for t in member.tags if new is not None or t != old]
            member.last_changed = now
            changed.append(member)
        store.update_members(changed)

    def delete(self, store: Store, req: ApiRequest, list_id: str, segment_id: str) -> ApiResponse:
        audience = self.api.audience_of(store, list_id)
        with store.transaction():
            segment = self._segment(store, audience, segment_id)
            self._retag(store, audience.list_no, segment.name, None, now_iso())
            store.delete_segment(audience.list_no, segment.id)
        return ApiResponse(204)

    def update_members(self, store: Store, req: ApiRequest, list_id: str, segment_id: str) -> ApiResponse:
        """POST /segments/{id} {members_to_add, members_to_remove}: at most 500 addresses in each."""
        audience = self.api.audience_of(store, list_id)
        body = object_body(req.body)
        to_add, to_remove = _emails(body, "members_to_add"), _emails(body, "members_to_remove")
        if len(to_add) > MAX_SEGMENT_ITEMS or len(to_remove) > MAX_SEGMENT_ITEMS:
            raise ApiError("InvalidResource", SEGMENT_ITEMS_EXCEEDED)
        with store.transaction():
            segment = self._segment(store, audience, segment_id)
            writer, renderer = self.api.writer(store, audience, req)
            added, removed, missing = writer.update_segment(segment.name, to_add, to_remove)
        errors = [{"email_addresses": missing, "error": NOT_IN_AUDIENCE}] if missing else []
        href = f"{req.base_url}/3.0/lists/{list_id}/segments/{segment.id}"
        text = (
            f'{{"members_added":[{",".join(renderer.json(m) for m in added)}],'
            f'"members_removed":[{",".join(renderer.json(m) for m in removed)}],'
            f'"errors":{render.dumps(errors)},"total_added":{len(added)},"total_removed":{len(removed)},'
            f'"error_count":{len(missing)},"_links":{render.dumps([render.link("parent", href)])}}}'
        )
        return ApiResponse(200, text=text)
