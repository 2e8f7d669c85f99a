"""Member writes: single upserts/patches, archive, tags, and set-based batch subscribe.

All paths share `parse_input` and `apply_input`, so a rule holds the same way whether a member comes
through PUT, PATCH, POST /members, or one of the 500 entries of a batch subscribe.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections import Counter
from dataclasses import dataclass
from hashlib import md5
from typing import Any

from .model import Audience, Member
from .problems import VALIDATION_DETAIL, ApiError, invalid
from .rules import (
    STATUSES,
    MergeSchema,
    StatusRejected,
    fake_email_detail,
    plausible_email_key,
    resolve_status,
    subscriber_hash,
)
from .store import Store

MAX_BATCH_SUBSCRIBE = 500
MAX_SEGMENT_ITEMS = 500
SEGMENT_ITEMS_EXCEEDED = (
    "Maximum allowed member items exceeded, please provide at most 500 items in members_to_add field or "
    "members_to_remove field"
)
NOT_IN_AUDIENCE = "Email address is not a member of this audience."
MERGE_INVALID = "Your merge fields were invalid."
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


def json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), "value")


class Rejected(Exception):
    """One member cannot be written; becomes a 400 (single writes) or an `errors` entry (batch)."""

    def __init__(
        self, kind: str, detail: str, errors: list[dict[str, str]] | None = None, code: str = "ERROR_GENERIC"
    ) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.errors, self.code = kind, detail, errors or [], code

    def api_error(self) -> ApiError:
        return ApiError(self.kind, self.detail, errors=self.errors or None)

    def batch_entry(self, email: str) -> dict[str, str]:
        first = self.errors[0] if self.errors else {"field": "", "message": ""}
        # batch entries have no `errors` array, so a schema problem is spelled out in `error` itself
        error = f"{first['field']}: {first['message']}" if self.detail == VALIDATION_DETAIL else self.detail
        return {
            "email_address": email,
            "error": error,
            "error_code": self.code,
            "field": first["field"],
            "field_message": first["message"],
        }


@dataclass(frozen=True)
class MemberSchema:
    """What one audience accepts on a member: merge fields, interest and permission ids, address rules."""

    merge: MergeSchema
    interest_ids: frozenset[str] = frozenset()
    permission_ids: frozenset[str] = frozenset()
    allow_placeholder_domains: bool = False


def forgotten_detail(email: str) -> str:
    return (
        f"{email} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get "
        "back on the list."
    )


@dataclass(slots=True)
class MemberInput:
    """The writable fields of a member request body; None means "not given"."""

    email: str | None
    status: str | None
    status_if_new: str | None
    merge_fields: dict[str, Any] | None
    tags: list[str] | None
    email_type: str | None
    language: str | None
    vip: bool | None
    ip_signup: str | None
    ip_opt: str | None
    timestamp_signup: str | None
    timestamp_opt: str | None
    interests: dict[str, bool] | None = None
    marketing_permissions: dict[str, bool] | None = None
    location: tuple[float, float] | None = None


def _schema_error(field: str, expected: str, value: Any) -> Rejected:
    return Rejected(
        "InvalidResource",
        VALIDATION_DETAIL,
        [{"field": field, "message": f"Schema describes {expected}, {json_type(value)} found instead"}],
    )


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value.__class__ is str:
        return value
    raise _schema_error(key, "string", value)


def _ip(raw: dict[str, Any], key: str) -> str | None:
    value = _opt_str(raw, key)
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise Rejected(
                "InvalidResource",
                f"The {key} value '{value}' is not a valid IP address.",
                [{"field": key, "message": "Invalid IP address"}],
            ) from None
    return value


_TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")


def _timestamp(raw: dict[str, Any], key: str) -> str | None:
    value = _opt_str(raw, key)
    if not value:
        return value
    parsed: dt.datetime | None = None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        for fmt in _TIMESTAMP_FORMATS:
            try:
                parsed = dt.datetime.strptime(value, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise Rejected(
            "InvalidResource",
            f"The {key} value '{value}' is not a valid date and time.",
            [{"field": key, "message": "Expected ISO 8601 date-time or YYYY-MM-DD HH:MM:SS"}],
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).isoformat(timespec="seconds")


_STATUS_SET = frozenset(STATUSES)
_COMMON_KEYS = frozenset({"email_address", "status", "status_if_new", "merge_fields", "tags"})


def _bad_status(key: str) -> Rejected:
    return Rejected(
        "InvalidResource",
        VALIDATION_DETAIL,
        [{"field": key, "message": f"Value must be one of: {', '.join(STATUSES)}"}],
    )


def parse_input(raw: Any, *, with_tags: bool, with_permissions: bool = True) -> MemberInput:
    """Type-check one member body (PUT/PATCH/POST body or a batch subscribe entry).

    ``with_permissions=False`` (batch subscribe): ``marketing_permissions`` is not in that member schema, so
    it is ignored like any other property the schema does not have. Written for speed: a batch import
    calls it once per member."""
    if raw.__class__ is not dict:
        raise _schema_error("member", "object", raw)
    get = raw.get
    email = get("email_address")
    if email is not None:
        if email.__class__ is not str:
            raise _schema_error("email_address", "string", email)
        email = email.strip()
    status = get("status")
    if status is not None and status not in _STATUS_SET:
        raise _bad_status("status")
    status_if_new = get("status_if_new")
    if status_if_new is not None and status_if_new not in _STATUS_SET:
        raise _bad_status("status_if_new")
    merge_fields = get("merge_fields")
    if merge_fields is not None and merge_fields.__class__ is not dict:
        raise _schema_error("merge_fields", "object", merge_fields)
    tags = get("tags") if with_tags else None
    if tags is not None:
        if tags.__class__ is not list:
            raise _schema_error("tags", "array", tags)
        names = []
        for tag in tags:
            if tag.__class__ is not str:
                raise _schema_error("tags", "array of strings", tags)
            tag = tag.strip()
            if tag:
                names.append(tag)
        tags = names
    if raw.keys() <= _COMMON_KEYS:  # a batch import's members: nothing else to look at
        return MemberInput(
            email, status, status_if_new, merge_fields, tags, None, None, None, None, None, None, None
        )
    rest = _parse_rest(raw, with_permissions)
    return MemberInput(
        email,
        status,
        status_if_new,
        merge_fields,
        tags,
        rest.email_type,
        rest.language,
        rest.vip,
        rest.ip_signup,
        rest.ip_opt,
        rest.timestamp_signup,
        rest.timestamp_opt,
        rest.interests,
        rest.marketing_permissions,
        rest.location,
    )


def _interests(raw: dict[str, Any]) -> dict[str, bool] | None:
    value = raw.get("interests")
    if value is None:
        return None
    if value.__class__ is not dict:
        raise _schema_error("interests", "object", value)
    for key, flag in value.items():
        if flag.__class__ is not bool:
            raise _schema_error(f"interests.{key}", "boolean", flag)
    return dict(value)


def _permissions(raw: dict[str, Any]) -> dict[str, bool] | None:
    value = raw.get("marketing_permissions")
    if value is None:
        return None
    if value.__class__ is not list:
        raise _schema_error("marketing_permissions", "array", value)
    out: dict[str, bool] = {}
    for index, item in enumerate(value):
        if item.__class__ is not dict:
            raise _schema_error(f"marketing_permissions.{index}", "object", item)
        permission_id, enabled = item.get("marketing_permission_id"), item.get("enabled")
        if permission_id.__class__ is not str:
            raise _schema_error(
                f"marketing_permissions.{index}.marketing_permission_id", "string", permission_id
            )
        if enabled.__class__ is not bool:
            raise _schema_error(f"marketing_permissions.{index}.enabled", "boolean", enabled)
        out[permission_id] = enabled
    return out


def _location(raw: dict[str, Any]) -> tuple[float, float] | None:
    value = raw.get("location")
    if value is None:
        return None
    if value.__class__ is not dict:
        raise _schema_error("location", "object", value)
    coordinates = []
    for key, limit in (("latitude", 90.0), ("longitude", 180.0)):
        number = value.get(key, 0)
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise _schema_error(f"location.{key}", "number", number)
        if not -limit <= number <= limit:
            raise Rejected(
                "InvalidResource",
                VALIDATION_DETAIL,
                [{"field": f"location.{key}", "message": f"Must be between -{limit:g} and {limit:g}"}],
            )
        coordinates.append(number)
    return coordinates[0], coordinates[1]


def _parse_rest(raw: dict[str, Any], with_permissions: bool) -> MemberInput:
    """The less common member fields (only looked at when present)."""
    email_type = _opt_str(raw, "email_type")
    if email_type not in (None, "html", "text"):
        raise Rejected(
            "InvalidResource",
            VALIDATION_DETAIL,
            [{"field": "email_type", "message": "Value must be one of: html, text"}],
        )
    vip = raw.get("vip")
    if vip is not None and vip.__class__ is not bool:
        raise _schema_error("vip", "boolean", vip)
    return MemberInput(
        None,
        None,
        None,
        None,
        None,
        email_type,
        _opt_str(raw, "language"),
        vip,
        _ip(raw, "ip_signup") if "ip_signup" in raw else None,
        _ip(raw, "ip_opt") if "ip_opt" in raw else None,
        _timestamp(raw, "timestamp_signup") if "timestamp_signup" in raw else None,
        _timestamp(raw, "timestamp_opt") if "timestamp_opt" in raw else None,
        _interests(raw),
        _permissions(raw) if with_permissions else None,
        _location(raw),
    )


def check_email(email: str | None, allow_placeholder_domains: bool = False) -> str:
    """The subscriber hash of a plausible address, or Rejected."""
    if not email:
        raise Rejected(
            "InvalidResource",
            VALIDATION_DETAIL,
            [{"field": "email_address", "message": "This value should not be blank."}],
        )
    key = plausible_email_key(email, allow_placeholder_domains)
    if key is None:
        raise Rejected(
            "InvalidResource",
            fake_email_detail(email),
            [{"field": "email_address", "message": "Please provide a valid email address."}],
        )
    return md5(key.encode()).hexdigest()


def _check_ids(inp: MemberInput, schema: MemberSchema) -> None:
    """Interest and marketing permission ids must be the audience's own."""
    if inp.interests:
        for key in inp.interests:
            if key not in schema.interest_ids:
                raise Rejected(
                    "InvalidResource",
                    f"Invalid interest ID: '{key}'",
                    [{"field": "interests", "message": f"Invalid interest ID: '{key}'"}],
                )
    if inp.marketing_permissions:
        for key in inp.marketing_permissions:
            if key not in schema.permission_ids:
                raise Rejected(
                    "InvalidResource",
                    f"Invalid marketing permission ID: '{key}'",
                    [
                        {
                            "field": "marketing_permissions",
                            "message": f"Invalid marketing permission ID: '{key}'",
                        }
                    ],
                )


def apply_input(
    existing: Member | None,
    member_hash: str,
    inp: MemberInput,
    schema: MemberSchema,
    now: str,
    *,
    skip_merge_validation: bool,
) -> Member:
    """The member after this write (a new object; `existing` is left untouched)."""
    email = inp.email or (existing.email if existing else "")
    if inp.interests or inp.marketing_permissions:
        _check_ids(inp, schema)
    try:
        status = (inp.status or inp.status_if_new or "") if existing is None else None
        if not status:
            status = resolve_status(
                existing.status if existing else None,
                existing.archived_from if existing else None,
                inp.status,
                inp.status_if_new,
            )
    except StatusRejected as exc:
        if exc.reason == "missing":
            raise Rejected(
                "InvalidResource",
                VALIDATION_DETAIL,
                [{"field": "status", "message": "status or status_if_new is required for a new member"}],
            ) from None
        raise Rejected(
            "MemberInComplianceState",
            f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot "
            "be subscribed.",
            [{"field": "status", "message": "The contact cannot be subscribed again through the API."}],
        ) from None
    merge, merge_errors = schema.merge.clean(
        inp.merge_fields or {}, creating=existing is None, skip_required=skip_merge_validation
    )
    if merge_errors:
        raise Rejected("InvalidResource", MERGE_INVALID, merge_errors)
    if existing is None:
        return Member(
            None,
            member_hash,
            email,
            status,
            None,
            inp.email_type or "html",
            {**schema.merge.blank, **merge},
            [],
            inp.language or "",
            bool(inp.vip),
            inp.ip_signup or "",
            inp.timestamp_signup or "",
            inp.ip_opt or "",
            inp.timestamp_opt or (now if status == "subscribed" else ""),
            now,
            inp.interests or {},
            inp.marketing_permissions or {},
            inp.location,
        )
    m = existing.copy()
    m.email = email
    m.hash = member_hash
    if status != m.status:
        if status == "subscribed":
            m.timestamp_opt = inp.timestamp_opt or now
        m.archived_from = None
        m.status = status
    if merge:
        m.merge_fields = {**schema.merge.blank, **m.merge_fields, **merge}
    if inp.interests:
        m.interests = {**m.interests, **inp.interests}
    if inp.marketing_permissions:
        m.marketing_permissions = {**m.marketing_permissions, **inp.marketing_permissions}
    if inp.location is not None:
        m.location = inp.location
    if inp.email_type is not None:
        m.email_type = inp.email_type
    if inp.language is not None:
        m.language = inp.language
    if inp.vip is not None:
        m.vip = inp.vip
    for attr in ("ip_signup", "ip_opt", "timestamp_signup", "timestamp_opt"):
        value = getattr(inp, attr)
        if value is not None:
            setattr(m, attr, value)
    return m


def merge_tags(current: list[str], names: list[str] | None, *, replace: bool) -> list[str]:
    if not names:
        return [] if replace else current
    if replace:
        return list(names) if len(names) == 1 else list(dict.fromkeys(names))
    return list(dict.fromkeys([*current, *names]))


class MemberWriter:
    """Writes members of one audience inside the caller's transaction, keeping counts, tags (static
    segments) and dates in step."""

    def __init__(self, store: Store, audience: Audience, schema: MemberSchema, now: str) -> None:
        self.store, self.audience, self.schema, self.now = store, audience, schema, now
        self.tag_ids = store.tag_ids(audience.list_no)  # shared with the renderer: tags are segments

    def _hash(self, email: str | None) -> str:
        return check_email(email, self.schema.allow_placeholder_domains)

    def save(
        self, inserts: list[Member], updates: list[tuple[Member, Member]], deletes: tuple[Member, ...] = ()
    ) -> None:
        """Persist new members, (old, new) pairs whose content changed, and erased members."""
        deltas = Counter([m.status for m in inserts])
        # (tag, status) -> change in members; counted per distinct tag list, as an import's members
        # mostly share theirs
        tag_deltas: Counter[tuple[str, str]] = Counter()
        for (tags, status), n in Counter([(tuple(m.tags), m.status) for m in inserts if m.tags]).items():
            for name in tags:
                tag_deltas[name, status] += n
        sub, unsub = "subscribed" in deltas, "unsubscribed" in deltas
        changed = []
        for old, new in updates:
            if new == old:
                continue
            new.last_changed = self.now
            changed.append(new)
            if new.status != old.status:
                deltas[old.status] = deltas.get(old.status, 0) - 1
                deltas[new.status] = deltas.get(new.status, 0) + 1
                sub = sub or (new.status == "subscribed")
                unsub = unsub or (new.status == "unsubscribed")
            if old.tags != new.tags or old.status != new.status:
                for name in old.tags:
                    tag_deltas[name, old.status] -= 1
                for name in new.tags:
                    tag_deltas[name, new.status] += 1
        for gone in deletes:
            deltas[gone.status] = deltas.get(gone.status, 0) - 1
            for name in gone.tags:
                tag_deltas[name, gone.status] -= 1
            self.store.delete_member(self.audience.list_no, gone)
        if inserts:
            self.store.insert_members(self.audience.list_no, inserts)
        if changed:
            self.store.update_members(changed)
        if deltas:
            self.store.adjust_counts(self.audience.list_no, deltas)
        if tag_deltas:
            tag_ids = self.tag_ids
            for name in {name for name, _ in tag_deltas} - tag_ids.keys():
                tag_ids[name] = self.store.create_segment(self.audience.list_no, name, self.now)
            by_id = {(tag_ids[name], status): n for (name, status), n in tag_deltas.items()}
            self.store.adjust_segment_counts(self.audience.list_no, by_id, self.now)
        if sub or unsub:
            self.store.touch_audience_dates(
                self.audience.list_no, sub=self.now if sub else None, unsub=self.now if unsub else None
            )

    def _refuse_forgotten(self, member_hash: str, email: str) -> None:
        if self.store.forgotten(self.audience.list_no, [member_hash]):
            raise Rejected("ForgottenEmailNotSubscribed", forgotten_detail(email))

    def upsert(
        self,
        path_hash: str,
        body: Any,
        *,
        skip_merge_validation: bool,
        create_only: bool = False,
        must_exist: bool = False,
        with_tags: bool = False,
    ) -> Member:
        """PUT (upsert), PATCH (must_exist) and POST /members (create_only) for one member.

        PUT and PATCH on an existing member's hash with another `email_address` change the member's
        address (and so its id), as Mailchimp has allowed since November 2016."""
        list_no = self.audience.list_no
        try:
            inp = parse_input(body, with_tags=with_tags)
            existing = self.store.member(list_no, path_hash) if path_hash else None
            if must_exist and existing is None:
                raise ApiError("ResourceNotFound")
            if inp.email is None and existing is not None:
                member_hash = existing.hash
            else:
                member_hash = self._hash(inp.email)
                if path_hash and member_hash != path_hash:
                    if existing is None:
                        raise invalid(
                            "email_address",
                            "The email address does not match the subscriber hash.",
                            "The subscriber hash in the URL does not match the email address in the body.",
                        )
                    self._check_new_address(member_hash, inp.email or "")
                if not path_hash:
                    existing = self.store.member(list_no, member_hash)
            if existing is None:
                self._refuse_forgotten(member_hash, inp.email or "")
            if create_only and existing is not None and existing.status != "archived":
                raise ApiError(
                    "MemberExists",
                    f"{existing.email} is already a list member. Use PUT to insert or update list members.",
                )
            member = apply_input(
                existing, member_hash, inp, self.schema, self.now, skip_merge_validation=skip_merge_validation
            )
        except Rejected as exc:
            raise exc.api_error() from None
        if inp.tags is not None:
            member.tags = merge_tags(member.tags, inp.tags, replace=False)
        if existing is None:
            self.save([member], [])
        else:
            if member.hash != existing.hash:
                self.store.rehash_member(list_no, existing.hash, member.hash)
            self.save([], [(existing, member)])
        return member

    def _check_new_address(self, new_hash: str, email: str) -> None:
        """An address change may not take an address the audience already has (archived included) or
        one that was permanently deleted."""
        other = self.store.member(self.audience.list_no, new_hash)
        if other is not None:
            raise Rejected(
                "InvalidResource",
                VALIDATION_DETAIL,
                [
                    {
                        "field": "email_address",
                        "message": f'"{other.email}" is already in this list with a status of "{other.status}".',
                    }
                ],
            )
        self._refuse_forgotten(new_hash, email)

    def archive(self, member_hash: str) -> None:
        existing = self.store.member(self.audience.list_no, member_hash)
        if existing is None or existing.status == "archived":
            raise ApiError("ResourceNotFound")
        member = existing.copy()
        member.archived_from, member.status = existing.status, "archived"
        self.save([], [(existing, member)])

    def delete_permanently(self, member_hash: str) -> None:
        """Erase the member; its address can then not be added again through the API."""
        existing = self.store.member(self.audience.list_no, member_hash)
        if existing is None:
            raise ApiError("ResourceNotFound")
        self.save([], [], (existing,))

    def update_tags(self, member_hash: str, changes: list[tuple[str, bool]]) -> None:
        existing = self.store.member(self.audience.list_no, member_hash)
        if existing is None:
            raise ApiError("ResourceNotFound")
        tags = list(existing.tags)
        for name, active in changes:
            if active and name not in tags:
                tags.append(name)
            elif not active and name in tags:
                tags.remove(name)
        member = existing.copy()
        member.tags = tags
        self.save([], [(existing, member)])

    def update_segment(
        self, name: str, to_add: list[str], to_remove: list[str], *, replace: bool = False
    ) -> tuple[list[Member], list[Member], list[str]]:
        """Add and remove members of the tag / static segment `name` by address.

        Returns (added, removed, addresses not in the audience). Archived contacts count as not in the
        audience; an address already in (or already out of) the segment is left alone. With `replace`
        everyone not in `to_add` leaves the segment (PATCH with static_segment)."""
        list_no = self.audience.list_no
        hashes = {email: subscriber_hash(email) for email in [*to_add, *to_remove]}
        found = self.store.find_members(list_no, list(set(hashes.values())))
        if replace:
            keep = {hashes[e] for e in to_add}
            for m in self.store.members_tagged(list_no, name):
                found.setdefault(m.hash, m)
                if m.hash not in keep:
                    to_remove = [*to_remove, m.email]
                    hashes[m.email] = m.hash
        current = {h: m.copy() for h, m in found.items()}
        added: dict[str, Member] = {}
        removed: dict[str, Member] = {}
        missing: list[str] = []
        for email in to_add:
            member = current.get(hashes[email])
            if member is None or member.status == "archived":
                missing.append(email)
            elif name not in member.tags:
                member.tags.append(name)
                added[member.hash] = member
                removed.pop(member.hash, None)
        for email in to_remove:
            member = current.get(hashes[email])
            if member is None or member.status == "archived":
                missing.append(email)
            elif name in member.tags:
                member.tags.remove(name)
                removed[member.hash] = member
                added.pop(member.hash, None)
        self.save([], [(found[h], current[h]) for h in {*added, *removed}])
        return list(added.values()), list(removed.values()), list(dict.fromkeys(missing))

    def batch_subscribe(
        self,
        entries: list[Any],
        *,
        update_existing: bool,
        sync_tags: bool,
        skip_merge_validation: bool,
        skip_duplicate_check: bool,
    ) -> tuple[list[Member], list[Member], list[dict[str, str]]]:
        """POST /lists/{id}: returns (created, updated, errors); one SELECT and two executemany calls."""
        errors: list[dict[str, str]] = []
        wanted: dict[str, MemberInput] = {}
        allow_placeholder_domains = self.schema.allow_placeholder_domains
        for raw in entries:
            email = raw.get("email_address") if raw.__class__ is dict else None
            try:
                inp = parse_input(raw, with_tags=True, with_permissions=False)
                member_hash = check_email(inp.email, allow_placeholder_domains)
            except Rejected as exc:
                errors.append(exc.batch_entry(email if isinstance(email, str) else ""))
                continue
            if member_hash in wanted:
                if not skip_duplicate_check:
                    errors.append(
                        Rejected(
                            "InvalidResource", f"{inp.email} appears more than once in this request."
                        ).batch_entry(inp.email or "")
                    )
                continue
            wanted[member_hash] = inp
        list_no = self.audience.list_no
        existing = self.store.find_members(list_no, list(wanted))
        fresh = [h for h in wanted if h not in existing]
        forgotten = self.store.forgotten(list_no, fresh) if fresh else set()
        created: list[Member] = []
        updated: list[Member] = []
        inserts: list[Member] = []
        updates: list[tuple[Member, Member]] = []
        schema, now = self.schema, self.now
        for member_hash, inp in wanted.items():
            old = existing.get(member_hash)
            if old is not None and old.status != "archived" and not update_existing:
                errors.append(
                    Rejected(
                        "MemberExists",
                        f"{inp.email} is already a list member. Use PUT to insert or update list members.",
                        code="ERROR_CONTACT_EXISTS",
                    ).batch_entry(inp.email or "")
                )
                continue
            if member_hash in forgotten:
                errors.append(
                    Rejected("ForgottenEmailNotSubscribed", forgotten_detail(inp.email or "")).batch_entry(
                        inp.email or ""
                    )
                )
                continue
            try:
                new = apply_input(
                    old, member_hash, inp, schema, now, skip_merge_validation=skip_merge_validation
                )
            except Rejected as exc:
                errors.append(exc.batch_entry(inp.email or ""))
                continue
            if old is None:
                new.tags = merge_tags(new.tags, inp.tags, replace=True)
                inserts.append(new)
                created.append(new)
            else:
                new.tags = merge_tags(new.tags, inp.tags, replace=sync_tags)
                updates.append((old, new))
                # a restored (archived) contact is reported as created: it re-enters the audience; one
                # that stays archived (no `status` sent) is reported as updated, with status "archived"
                restored = old.status == "archived" and new.status != "archived"
                (created if restored else updated).append(new)
        self.save(inserts, updates)
        return created, updated, errors
