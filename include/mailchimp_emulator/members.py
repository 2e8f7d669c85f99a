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
)
from .store import Store

MAX_BATCH_SUBSCRIBE = 500
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
_NOTHING_ELSE = MemberInput(None, None, None, None, None, None, None, None, None, None, None, None)


def _bad_status(key: str) -> Rejected:
    return Rejected(
        "InvalidResource",
        VALIDATION_DETAIL,
        [{"field": key, "message": f"Value must be one of: {', '.join(STATUSES)}"}],
    )


def parse_input(raw: Any, *, with_tags: bool) -> MemberInput:
    """Type-check one member body (PUT/PATCH/POST body or a batch subscribe entry).

    Written for speed: a batch import calls it once per member."""
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
    rest = _NOTHING_ELSE if raw.keys() <= _COMMON_KEYS else _parse_rest(raw)
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
    )


def _parse_rest(raw: dict[str, Any]) -> MemberInput:
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
    for key, expected in (("interests", dict), ("location", dict), ("marketing_permissions", list)):
        value = raw.get(key)
        if value is not None and value.__class__ is not expected:
            raise _schema_error(key, _JSON_TYPES[expected], value)
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
    )


def check_email(email: str | None) -> str:
    """The subscriber hash of a plausible address, or Rejected."""
    if not email:
        raise Rejected(
            "InvalidResource",
            VALIDATION_DETAIL,
            [{"field": "email_address", "message": "This value should not be blank."}],
        )
    key = plausible_email_key(email)
    if key is None:
        raise Rejected(
            "InvalidResource",
            fake_email_detail(email),
            [{"field": "email_address", "message": "Please provide a valid email address."}],
        )
    return md5(key.encode()).hexdigest()


def apply_input(
    existing: Member | None,
    member_hash: str,
    inp: MemberInput,
    schema: MergeSchema,
    now: str,
    *,
    skip_merge_validation: bool,
) -> Member:
    """The member after this write (a new object; `existing` is left untouched)."""
    email = inp.email or (existing.email if existing else "")
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
    merge, merge_errors = schema.clean(
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
            {**schema.blank, **merge},
            [],
            inp.language or "",
            bool(inp.vip),
            inp.ip_signup or "",
            inp.timestamp_signup or "",
            inp.ip_opt or "",
            inp.timestamp_opt or (now if status == "subscribed" else ""),
            now,
        )
    m = existing.copy()
    m.email = email
    if status != m.status:
        if status == "subscribed":
            m.timestamp_opt = inp.timestamp_opt or now
        m.archived_from = None
        m.status = status
    if merge:
        m.merge_fields = {**schema.blank, **m.merge_fields, **merge}
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
        return list(dict.fromkeys(names))
    return list(dict.fromkeys([*current, *names]))


class MemberWriter:
    """Writes members of one audience inside the caller's transaction, keeping counts and dates in step."""

    def __init__(self, store: Store, audience: Audience, schema: MergeSchema, now: str) -> None:
        self.store, self.audience, self.schema, self.now = store, audience, schema, now

    def save(self, inserts: list[Member], updates: list[tuple[Member, Member]]) -> None:
        """Persist new members and (old, new) pairs whose content changed."""
        deltas = Counter([m.status for m in inserts])
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
        if inserts:
            self.store.insert_members(self.audience.list_no, inserts)
        if changed:
            self.store.update_members(changed)
        if deltas:
            self.store.adjust_counts(self.audience.list_no, deltas)
        if sub or unsub:
            self.store.touch_audience_dates(
                self.audience.list_no, sub=self.now if sub else None, unsub=self.now if unsub else None
            )

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
        """PUT (upsert), PATCH (must_exist) and POST /members (create_only) for one member."""
        try:
            inp = parse_input(body, with_tags=with_tags)
            existing = self.store.member(self.audience.list_no, path_hash) if path_hash else None
            if must_exist and existing is None:
                raise ApiError("ResourceNotFound")
            if inp.email is None and existing is not None:
                member_hash = existing.hash
            else:
                member_hash = check_email(inp.email)
                if path_hash and member_hash != path_hash:
                    raise invalid(
                        "email_address",
                        "The email address does not match the subscriber hash.",
                        "The subscriber hash in the URL does not match the email address in the body.",
                    )
                if not path_hash:
                    existing = self.store.member(self.audience.list_no, member_hash)
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
            self.save([], [(existing, member)])
        return member

    def archive(self, member_hash: str) -> None:
        existing = self.store.member(self.audience.list_no, member_hash)
        if existing is None or existing.status == "archived":
            raise ApiError("ResourceNotFound")
        member = existing.copy()
        member.archived_from, member.status = existing.status, "archived"
        self.save([], [(existing, member)])

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
        for raw in entries:
            email = raw.get("email_address") if raw.__class__ is dict else None
            try:
                inp = parse_input(raw, with_tags=True)
                member_hash = check_email(inp.email)
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
        existing = self.store.find_members(self.audience.list_no, list(wanted))
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
                # a restored (archived) contact is reported as created: it re-enters the audience
                (created if old.status == "archived" else updated).append(new)
        self.save(inserts, updates)
        return created, updated, errors
