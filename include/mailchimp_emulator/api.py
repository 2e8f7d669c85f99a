"""The Marketing API itself: routing and handlers as plain functions of (request) -> (status, body).

Both the HTTP layer (app.py) and the batch runner (runner.py) call `Api.handle`, so a batch operation
behaves exactly like the same call made directly. Nothing here knows about aiohttp, auth or faults.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from . import render
from .archives import ArchiveSigner, BatchFiles
from .batches import accept_batch
from .config import MERGE_TAG_RE, MERGE_TYPES, MergeFieldSpec, Settings
from .exchange import ApiRequest, ApiResponse
from .groups import InterestApi
from .members import MAX_BATCH_SUBSCRIBE, MemberSchema, MemberWriter
from .model import Audience, Batch, now_iso
from .params import bool_param, int_param, object_body, parse_json
from .problems import ApiError, invalid, not_implemented
from .rules import LISTED_STATUSES, MergeSchema, subscriber_hash
from .segments import SegmentApi
from .store import Store

log = logging.getLogger("mailchimp_emulator.api")


Handler = Callable[..., ApiResponse]


def _project(value: Any, include: list[list[str]] | None, exclude: list[list[str]]) -> Any:
    """Apply `fields` / `exclude_fields` (dot paths; arrays are mapped over)."""
    if isinstance(value, list):
        return [_project(v, include, exclude) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if [key] in exclude:
            continue
        sub_exclude = [p[1:] for p in exclude if len(p) > 1 and p[0] == key]
        if include is None:
            out[key] = _project(item, None, sub_exclude)
            continue
        if [key] in include:
            out[key] = _project(item, None, sub_exclude)
        else:
            sub_include = [p[1:] for p in include if len(p) > 1 and p[0] == key]
            if sub_include:
                out[key] = _project(item, sub_include, sub_exclude)
    return out


def _paths(raw: str | None) -> list[list[str]]:
    return [p.strip().split(".") for p in (raw or "").split(",") if p.strip()]


class Api:
    """Routes and handlers of the emulated Marketing API."""

    def __init__(
        self,
        settings: Settings,
        files: BatchFiles,
        signer: ArchiveSigner,
        on_batch_submitted: Callable[[str, list[dict[str, Any]]], None],
    ) -> None:
        self.settings = settings
        self.files = files
        self.signer = signer
        self._on_batch_submitted = on_batch_submitted
        segments = SegmentApi(self)
        groups = InterestApi(self)
        lists = r"/lists/(?P<list_id>[^/]+)"
        member = lists + r"/members/(?P<member>[^/]+)"
        categories = lists + r"/interest-categories"
        category = categories + r"/(?P<category_id>[^/]+)"
        # A method mapped to None is one Mailchimp serves on that path and this server does not (501).
        routes: tuple[tuple[str, dict[str, Handler | None]], ...] = (
            (r"/ping", {"GET": self.ping}),
            (r"/lists", {"GET": self.list_lists, "POST": None}),
            (lists, {"GET": self.get_list, "POST": self.batch_subscribe, "PATCH": None, "DELETE": None}),
            (lists + r"/merge-fields", {"GET": self.list_merge_fields, "POST": self.add_merge_field}),
            (lists + r"/members", {"GET": self.list_members, "POST": self.add_member}),
            (
                member,
                {
                    "GET": self.get_member,
                    "PUT": self.put_member,
                    "PATCH": self.patch_member,
                    "DELETE": self.archive_member,
                },
            ),
            (member + r"/tags", {"GET": self.get_member_tags, "POST": self.member_tags}),
            (member + r"/actions/delete-permanent", {"POST": self.delete_member_permanently}),
            (lists + r"/segments", {"GET": segments.list, "POST": segments.create}),
            (
                lists + r"/segments/(?P<segment_id>[^/]+)",
                {
                    "GET": segments.get,
                    "POST": segments.update_members,
                    "PATCH": segments.update,
                    "DELETE": segments.delete,
                },
            ),
            (categories, {"GET": groups.list_categories, "POST": groups.create_category}),
            (category, {"GET": groups.get_category, "PATCH": None, "DELETE": None}),
            (category + r"/interests", {"GET": groups.list_interests, "POST": groups.create_interest}),
            (
                category + r"/interests/(?P<interest_id>[^/]+)",
                {"GET": groups.get_interest, "PATCH": None, "DELETE": None},
            ),
            (r"/batches", {"GET": self.list_batches, "POST": self.start_batch}),
            (r"/batches/(?P<batch_id>[^/]+)", {"GET": self.get_batch, "DELETE": self.delete_batch}),
        )
        self._routes = [(re.compile(pattern), methods) for pattern, methods in routes]

    # ---- dispatch ----------------------------------------------------------------------------------

    def handle(self, store: Store, req: ApiRequest) -> ApiResponse:
        """Answer one request; never raises (errors become problem responses)."""
        try:
            handler, params = self._route(req.method, req.path)
            response = handler(store, req, **params)
            if (
                req.method == "GET"
                and response.status == 200
                and ("fields" in req.query or "exclude_fields" in req.query)
            ):
                body = response.body if response.text is None else json.loads(response.text)
                include = _paths(req.query.get("fields")) or None
                response = ApiResponse(200, _project(body, include, _paths(req.query.get("exclude_fields"))))
            return response
        except ApiError as exc:
            return self.problem(exc, req.request_id)
        except Exception:
            log.exception("unexpected error in %s %s", req.method, req.path.split("/members/")[0])
            return self.problem(ApiError("InternalServerError"), req.request_id)

    @staticmethod
    def problem(exc: ApiError, instance: str) -> ApiResponse:
        return ApiResponse(exc.status, exc.body(instance), headers=exc.headers, problem=True)

    def _route(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        path = path.rstrip("/") or "/"
        for pattern, methods in self._routes:
            match = pattern.fullmatch(path)
            if match:
                handler = methods.get(method)
                if handler is None:
                    if method in methods:
                        raise not_implemented(method, path)
                    raise ApiError("MethodNotAllowed", headers={"Allow": ", ".join(sorted(methods))})
                return handler, {k: unquote(v) for k, v in match.groupdict().items()}
        raise not_implemented(method, path)

    # ---- helpers (shared with segments.py and groups.py) ----------------------------------------------

    @staticmethod
    def audience_of(store: Store, list_id: str) -> Audience:
        audience = store.audience(list_id)
        if audience is None:
            raise ApiError("ResourceNotFound")
        return audience

    def renderer(
        self, store: Store, audience: Audience, req: ApiRequest, tag_ids: dict[str, int] | None = None
    ) -> render.MemberRenderer:
        list_no = audience.list_no
        return render.MemberRenderer(
            audience.id,
            MergeSchema(store.merge_fields(list_no)).blank,
            req.base_url,
            store.tag_ids(list_no) if tag_ids is None else tag_ids,
            [i.id for i in store.interests(list_no)],
            store.permissions(list_no),
        )

    def writer(
        self, store: Store, audience: Audience, req: ApiRequest
    ) -> tuple[MemberWriter, render.MemberRenderer]:
        list_no = audience.list_no
        merge = MergeSchema(store.merge_fields(list_no))
        interest_ids = [i.id for i in store.interests(list_no)]
        permissions = store.permissions(list_no)
        schema = MemberSchema(
            merge,
            frozenset(interest_ids),
            frozenset(p.id for p in permissions),
            self.settings.allow_placeholder_domains,
        )
        writer = MemberWriter(store, audience, schema, now_iso())
        renderer = render.MemberRenderer(
            audience.id, merge.blank, req.base_url, writer.tag_ids, interest_ids, permissions
        )
        return writer, renderer

    @staticmethod
    def _member_hash(raw: str) -> str:
        """The path accepts a subscriber hash or the email address itself."""
        return subscriber_hash(raw) if "@" in raw else raw.strip().lower()

    # ---- ping and audiences ------------------------------------------------------------------------

    def ping(self, store: Store, req: ApiRequest) -> ApiResponse:
        return ApiResponse(200, {"health_status": "Everything's Chimpy!"})

    def _audience_body(self, store: Store, audience: Audience, req: ApiRequest) -> dict[str, Any]:
        list_no = audience.list_no
        return render.audience(
            audience,
            store.member_counts(list_no),
            len(store.merge_fields(list_no)),
            req.base_url,
            self.settings.dc,
            bool_param(req.query, "include_total_contacts"),
            bool(store.permissions(list_no)),
        )

    def get_list(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        return ApiResponse(200, self._audience_body(store, self.audience_of(store, list_id), req))

    def list_lists(self, store: Store, req: ApiRequest) -> ApiResponse:
        count = int_param(req.query, "count", 10, 1000) or 0
        offset = int_param(req.query, "offset", 0) or 0
        audiences = store.audiences()
        href = f"{req.base_url}/3.0/lists"
        return ApiResponse(
            200,
            {
                "lists": [self._audience_body(store, a, req) for a in audiences[offset : offset + count]],
                "total_items": len(audiences),
                "constraints": {
                    "may_create": False,
                    "max_instances": len(audiences),
                    "current_total_instances": len(audiences),
                },
                "_links": [render.link("self", href), render.link("create", href, "POST")],
            },
        )

    def list_merge_fields(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        audience = self.audience_of(store, list_id)
        count = int_param(req.query, "count", 10, 1000) or 0
        offset = int_param(req.query, "offset", 0) or 0
        fields = store.merge_fields(audience.list_no)
        if req.query.get("type"):
            fields = [f for f in fields if f.type == req.query["type"]]
        if "required" in req.query:
            required = bool_param(req.query, "required")
            fields = [f for f in fields if f.required == required]
        page = fields[offset : offset + count]
        href = f"{req.base_url}/3.0/lists/{list_id}/merge-fields"
        return ApiResponse(
            200,
            {
                "merge_fields": [render.merge_field(f, list_id, req.base_url) for f in page],
                "list_id": list_id,
                "total_items": len(fields),
                "_links": [render.link("self", href), render.link("create", href, "POST")],
            },
        )

    def add_merge_field(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        audience = self.audience_of(store, list_id)
        body = object_body(req.body)
        name, kind = body.get("name"), body.get("type")
        if not isinstance(name, str) or not name.strip():
            raise invalid("name", "This value should not be blank.")
        if kind not in MERGE_TYPES:
            raise invalid("type", f"Value must be one of: {', '.join(MERGE_TYPES)}")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise invalid("options", "Schema describes object")
        if kind in ("radio", "dropdown") and not (
            isinstance(options.get("choices"), list) and options["choices"]
        ):
            raise invalid("options.choices", "A radio or dropdown field needs choices")
        with store.transaction():
            existing = {f.tag for f in store.merge_fields(audience.list_no)}
            tag = body.get("tag")
            if tag is None:
                tag = next(f"MMERGE{n}" for n in range(1, 10_000) if f"MMERGE{n}" not in existing)
            if not isinstance(tag, str) or not MERGE_TAG_RE.match(tag.upper()):
                raise invalid(
                    "tag", "Merge tags are 1-10 letters, digits or underscores, starting with a letter"
                )
            tag = tag.upper()
            if tag in existing or tag == "EMAIL":
                raise invalid("tag", f'A Merge Field with the tag "{tag}" already exists for this list.')
            try:
                spec = MergeFieldSpec(
                    tag=tag,
                    name=name.strip(),
                    type=kind,
                    required=bool(body.get("required", False)),
                    default_value=str(body.get("default_value", "") or ""),
                    public=bool(body.get("public", True)),
                    help_text=str(body.get("help_text", "") or ""),
                    options=options,
                )
            except ValueError as exc:
                raise invalid("merge_field", str(exc)) from None
            created = store.add_merge_field(audience.list_no, spec)
        return ApiResponse(200, render.merge_field(created, list_id, req.base_url))

    # ---- members -----------------------------------------------------------------------------------

    def list_members(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        audience = self.audience_of(store, list_id)
        # batch GETs without a count page through the whole collection, like Mailchimp's
        count = int_param(req.query, "count", None if req.in_batch else 10, None if req.in_batch else 1000)
        offset = int_param(req.query, "offset", 0) or 0
        status = req.query.get("status") or None
        if status is not None and status not in LISTED_STATUSES:
            raise invalid("status", f"Value must be one of: {', '.join(LISTED_STATUSES)}")
        counts = store.member_counts(audience.list_no)
        total = counts.get(status, 0) if status else sum(n for s, n in counts.items() if s != "archived")
        members = store.list_members(audience.list_no, status, count, offset)
        renderer = self.renderer(store, audience, req)
        href = f"{req.base_url}/3.0/lists/{list_id}/members"
        links = json.dumps([render.link("self", href), render.link("create", href, "POST")])
        text = (
            f'{{"members":[{",".join(renderer.json(m) for m in members)}],"list_id":{json.dumps(list_id)},'
            f'"total_items":{total},"_links":{links}}}'
        )
        return ApiResponse(200, text=text)

    def get_member(self, store: Store, req: ApiRequest, list_id: str, member: str) -> ApiResponse:
        audience = self.audience_of(store, list_id)
        found = store.member(audience.list_no, self._member_hash(member))
        if found is None:
            raise ApiError("ResourceNotFound")
        return ApiResponse(200, text=self.renderer(store, audience, req).json(found))

    def _write_member(
        self,
        store: Store,
        req: ApiRequest,
        list_id: str,
        member_path: str,
        **mode: bool,
    ) -> ApiResponse:
        audience = self.audience_of(store, list_id)
        skip = bool_param(req.query, "skip_merge_validation")
        body = object_body(req.body)
        with store.transaction():
            writer, renderer = self.writer(store, audience, req)
            member = writer.upsert(
                self._member_hash(member_path) if member_path else "",
                body,
                skip_merge_validation=skip,
                **mode,
            )
        return ApiResponse(200, text=renderer.json(member))

    def add_member(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        return self._write_member(store, req, list_id, "", create_only=True, with_tags=True)

    def put_member(self, store: Store, req: ApiRequest, list_id: str, member: str) -> ApiResponse:
        return self._write_member(store, req, list_id, member)

    def patch_member(self, store: Store, req: ApiRequest, list_id: str, member: str) -> ApiResponse:
        return self._write_member(store, req, list_id, member, must_exist=True)

    def archive_member(self, store: Store, req: ApiRequest, list_id: str, member: str) -> ApiResponse:
        audience = self.audience_of(store, list_id)
        with store.transaction():
            writer, _ = self.writer(store, audience, req)
            writer.archive(self._member_hash(member))
        return ApiResponse(204)

    def delete_member_permanently(
        self, store: Store, req: ApiRequest, list_id: str, member: str
    ) -> ApiResponse:
        audience = self.audience_of(store, list_id)
        with store.transaction():
            writer, _ = self.writer(store, audience, req)
            writer.delete_permanently(self._member_hash(member))
        return ApiResponse(204)

    def get_member_tags(self, store: Store, req: ApiRequest, list_id: str, member: str) -> ApiResponse:
        """A member's tags with their segment ids; `date_added` is when the member last changed (this
        server does not keep a date per tag)."""
        audience = self.audience_of(store, list_id)
        found = store.member(audience.list_no, self._member_hash(member))
        if found is None:
            raise ApiError("ResourceNotFound")
        count = int_param(req.query, "count", 10, 1000) or 0
        offset = int_param(req.query, "offset", 0) or 0
        tag_ids = store.tag_ids(audience.list_no)
        href = f"{req.base_url}/3.0/lists/{list_id}/members/{found.hash}/tags"
        return ApiResponse(
            200,
            {
                "tags": [
                    {"id": tag_ids.get(name, 0), "name": name, "date_added": found.last_changed}
                    for name in found.tags[offset : offset + count]
                ],
                "total_items": len(found.tags),
                "_links": [render.link("self", href), render.link("create", href, "POST")],
            },
        )

    def member_tags(self, store: Store, req: ApiRequest, list_id: str, member: str) -> ApiResponse:
        audience = self.audience_of(store, list_id)
        body = object_body(req.body)
        tags = body.get("tags")
        if not isinstance(tags, list):
            raise invalid("tags", "This value is required (an array of {name, status})")
        changes: list[tuple[str, bool]] = []
        for index, tag in enumerate(tags):
            if not isinstance(tag, dict) or not isinstance(tag.get("name"), str) or not tag["name"].strip():
                raise invalid(f"tags.{index}.name", "A tag name is required")
            if tag.get("status") not in ("active", "inactive"):
                raise invalid(f"tags.{index}.status", "Value must be one of: active, inactive")
            changes.append((tag["name"].strip(), tag["status"] == "active"))
        if "is_syncing" in body and not isinstance(body["is_syncing"], bool):
            raise invalid("is_syncing", "Schema describes boolean")
        with store.transaction():
            writer, _ = self.writer(store, audience, req)
            writer.update_tags(self._member_hash(member), changes)
        return ApiResponse(204)

    def batch_subscribe(self, store: Store, req: ApiRequest, list_id: str) -> ApiResponse:
        audience = self.audience_of(store, list_id)
        skip_merge = bool_param(req.query, "skip_merge_validation")
        skip_duplicates = bool_param(req.query, "skip_duplicate_check")
        body = object_body(req.body)
        entries = body.get("members")
        if not isinstance(entries, list):
            raise invalid("members", "This value is required (an array of members)")
        if len(entries) > MAX_BATCH_SUBSCRIBE:
            raise invalid(
                "members",
                f"You can add or update at most {MAX_BATCH_SUBSCRIBE} members per call.",
                f"Too many members: {len(entries)} given, at most {MAX_BATCH_SUBSCRIBE} per call.",
            )
        flags = {}
        for name in ("update_existing", "sync_tags"):
            value = body.get(name)
            if value is not None and not isinstance(value, bool):
                raise invalid(name, "Schema describes boolean")
            flags[name] = bool(value)
        with store.transaction():
            writer, renderer = self.writer(store, audience, req)
            created, updated, errors = writer.batch_subscribe(
                entries,
                update_existing=flags["update_existing"],
                sync_tags=flags["sync_tags"] and flags["update_existing"],
                skip_merge_validation=skip_merge,
                skip_duplicate_check=skip_duplicates,
            )
        entry = renderer.subscribed_json
        links = json.dumps([render.link("self", f"{req.base_url}/3.0/lists/{list_id}", "POST")])
        text = (
            f'{{"new_members":[{",".join([entry(m) for m in created])}],'
            f'"updated_members":[{",".join([entry(m) for m in updated])}],'
            f'"errors":{json.dumps(errors)},"total_created":{len(created)},"total_updated":{len(updated)},'
            f'"error_count":{len(errors)},"_links":{links}}}'
        )
        return ApiResponse(200, text=text)

    # ---- batches -----------------------------------------------------------------------------------

    def _batch_body(self, batch: Batch, req: ApiRequest) -> dict[str, Any]:
        """A batch as shown to a caller: a finished one gets a freshly signed results URL."""
        url = self.signer.url(req.base_url, batch.id) if batch.status == "finished" else ""
        return render.batch(batch, url, req.base_url)

    def start_batch(self, store: Store, req: ApiRequest) -> ApiResponse:
        body = parse_json(req.body)
        batch = accept_batch(store, self.files, req.body, body, now_iso(), self.settings.max_pending_batches)
        self._on_batch_submitted(batch.id, body["operations"])
        return ApiResponse(200, render.batch(batch, "", req.base_url))

    def list_batches(self, store: Store, req: ApiRequest) -> ApiResponse:
        count = int_param(req.query, "count", 10, 1000) or 0
        offset = int_param(req.query, "offset", 0) or 0
        batches, total = store.batches(count, offset)
        href = f"{req.base_url}/3.0/batches"
        return ApiResponse(
            200,
            {
                "batches": [self._batch_body(b, req) for b in batches],
                "total_items": total,
                "_links": [render.link("self", href), render.link("create", href, "POST")],
            },
        )

    def get_batch(self, store: Store, req: ApiRequest, batch_id: str) -> ApiResponse:
        batch = store.batch(batch_id)
        if batch is None:
            raise ApiError("ResourceNotFound")
        return ApiResponse(200, self._batch_body(batch, req))

    def delete_batch(self, store: Store, req: ApiRequest, batch_id: str) -> ApiResponse:
        if not store.delete_batch(batch_id):
            raise ApiError("ResourceNotFound")
        self.files.remove(batch_id)
        return ApiResponse(204)
