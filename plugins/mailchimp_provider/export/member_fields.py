"""Member fields beyond merge fields: interest groups, language, VIP and GDPR marketing permissions.

A definition names groups and permissions the way marketers see them (category title, group name,
permission text); ``check_audience`` resolves them to Mailchimp's ids once per run (:func:`resolve`),
failing before the warehouse is read when a name does not exist. Each member then carries only what the
export maps: interests it does not own are never sent, so choices people made in Mailchimp survive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from mailchimp_provider.export import staging
from mailchimp_provider.export.mapping import BadValue, MappingError

Name = Annotated[str, StringConstraints(min_length=1, max_length=250)]
Column = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
PLAN_FILE = "member_fields.json"
_PERMISSIONS_KEY = ',"marketing_permissions":['
_KEY = _PERMISSIONS_KEY.encode()

_TRUE = frozenset({"1", "1.0", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "0.0", "false", "f", "no", "n", "off"})

# Mailchimp's contact languages ("View and edit contact languages" in Mailchimp's help): the codes its
# `language` field takes. Regional variants it does not list fall back to the base language.
LANGUAGES = (
    "en ar af be bg ca zh hr cs da nl et fa fi fr fr_CA de el he hi hu is id ga it ja km ko lv lt mt ms mk "
    "no pl pt pt_PT ro ru sr sk sl es es_ES sw sv ta th tr uk vi"
).split()
_LANGUAGE_BY_LOWER = {code.lower(): code for code in LANGUAGES}


class InterestMapping(BaseModel):
    """One rule setting interest groups of one category; the groups it names are the export's own.

    ``from_segments``: segment -> group, on for members in the segment, off for the others.
    ``column`` with ``group``: that group on or off by the column's true/false value.
    ``column`` with ``groups``: the column lists group names (comma-separated or a JSON array); the
    named groups in it are switched on, the other ``groups`` off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Name
    from_segments: dict[Name, Name] | None = None
    column: Column | None = None
    group: Name | None = None
    groups: Annotated[list[Name], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InterestMapping:
        if (self.from_segments is None) == (self.column is None):
            raise ValueError("give exactly one of 'from_segments' or 'column'")
        if self.column is not None and (self.group is None) == (self.groups is None):
            raise ValueError("with 'column', give exactly one of 'group' (true/false) or 'groups' (a list)")
        if self.from_segments is not None and (self.group is not None or self.groups is not None):
            raise ValueError("'group'/'groups' go with 'column'; 'from_segments' names its groups itself")
        if self.from_segments == {}:
            raise ValueError("'from_segments' maps at least one segment to a group")
        return self

    def group_names(self) -> list[str]:
        if self.from_segments is not None:
            return list(self.from_segments.values())
        return [self.group] if self.group is not None else list(self.groups or ())


def segment_names(definition: Any) -> list[str]:
    """The export's segments by name (an entry may be a name or an object with a ``name``)."""
    return [s if isinstance(s, str) else s.name for s in definition.segments]


def check_definition(definition: Any) -> None:
    """Definition-time checks: segments named in interests are the export's, no group is owned twice."""
    owned: set[tuple[str, str]] = set()
    names = segment_names(definition)
    for index, rule in enumerate(definition.interests):
        for segment in rule.from_segments or {}:
            if segment not in names:
                raise ValueError(
                    f"interests[{index}].from_segments: segment {segment!r} is not one of the export's "
                    f"segments {names}"
                )
        for group in rule.group_names():
            key = (rule.category.strip().lower(), group.strip().lower())
            if key in owned:
                raise ValueError(f"interests: group {group!r} of category {rule.category!r} is mapped twice")
            owned.add(key)
    permissions = [text.strip().lower() for text in definition.marketing_permissions]
    if len(set(permissions)) != len(permissions):
        raise ValueError("marketing_permissions: a permission is named twice")


def columns_read(definition: Any) -> list[str]:
    """Warehouse (or computed) columns the member fields read."""
    columns = [rule.column for rule in definition.interests if rule.column]
    columns += [c for c in (definition.columns.language, definition.columns.vip) if c]
    return columns + list(definition.marketing_permissions.values())


def is_used(definition: Any) -> bool:
    return bool(columns_read(definition) or definition.interests)


# ---- resolution against the audience ---------------------------------------------------------------


class AudienceReader(Protocol):
    """What resolution needs from Mailchimp (MailchimpHook has these methods)."""

    def get_interest_categories(self, list_id: str) -> list[dict]: ...

    def get_interests(self, list_id: str, category_id: str) -> list[dict]: ...

    def get_marketing_permissions(self, list_id: str) -> list[dict]: ...


@dataclass(frozen=True)
class InterestPlan:
    """One interest rule with ids: ``segment_ids`` (segment -> id), or ``column`` with ``flag_id`` or
    ``list_ids`` (lower-case group name -> id). ``single_choice``: a radio or dropdown category, where a
    member is in one group at most."""

    category: str
    segment_ids: dict[str, str] = field(default_factory=dict)
    column: str | None = None
    flag_id: str | None = None
    list_ids: dict[str, str] = field(default_factory=dict)
    single_choice: bool = False


@dataclass(frozen=True)
class MemberFieldPlan:
    """The member fields of one run, resolved to ids; written to staging by check_audience."""

    interests: tuple[InterestPlan, ...] = ()
    language_column: str | None = None
    vip_column: str | None = None
    permissions: tuple[tuple[str, str, str], ...] = ()  # (permission id, text, column)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MemberFieldPlan:
        raw = json.loads(text)
        return cls(
            interests=tuple(InterestPlan(**rule) for rule in raw["interests"]),
            language_column=raw["language_column"],
            vip_column=raw["vip_column"],
            permissions=tuple(tuple(p) for p in raw["permissions"]),
        )

    def for_segments(self, run_segments: Iterable[str]) -> MemberFieldPlan:
        """The plan of a run over some of the segments: groups of the other segments are left alone,
        since the run cannot know who is in them."""
        chosen = set(run_segments)
        rules = tuple(
            replace(r, segment_ids={s: i for s, i in r.segment_ids.items() if s in chosen})
            if r.segment_ids
            else r
            for r in self.interests
        )
        rules = tuple(r for r in rules if r.segment_ids or r.column)
        return MemberFieldPlan(rules, self.language_column, self.vip_column, self.permissions)

    def fragment(self, row: Mapping[str, Any], segments: list[str], dropped: dict[str, int]) -> str:
        """The member-object keys after ``merge_fields`` as JSON text (starting with a comma), for one
        profile's ``row`` in ``segments``. A value that does not fit is left out and counted in
        ``dropped``; an empty one is not sent, so Mailchimp keeps what it has."""
        parts: list[str] = []
        if self.language_column and (
            code := _value(row, self.language_column, "language", _language, dropped)
        ):
            parts.append(f'"language":{json.dumps(code)}')
        if self.vip_column and (vip := _value(row, self.vip_column, "vip", _flag, dropped)) is not None:
            parts.append(f'"vip":{"true" if vip else "false"}')
        interests = _interests(self.interests, row, segments, dropped)
        if interests:
            parts.append(f'"interests":{json.dumps(interests, separators=(",", ":"))}')
        permissions = []
        for permission_id, text, column in self.permissions:
            enabled = _value(row, column, f"marketing_permissions.{text}", _flag, dropped)
            if enabled is not None:
                permissions.append({"marketing_permission_id": permission_id, "enabled": enabled})
        if permissions:
            parts.append(f'"marketing_permissions":{json.dumps(permissions, separators=(",", ":"))}')
        return "".join("," + part for part in parts)


def split_permissions(data_json: str) -> tuple[str, str | None]:
    """``data_json`` without its marketing permissions, and them as a PATCH body (None if it has none).

    Mailchimp's batch-subscribe member schema has no ``marketing_permissions``: they go to the member
    itself (``PATCH /lists/{id}/members/{hash}``) once it exists. :meth:`MemberFieldPlan.fragment` writes
    them as the member object's last key, and JSON escaping keeps the key's text out of any value.
    """
    at = data_json.rfind(_PERMISSIONS_KEY)
    if at < 0:
        return data_json, None
    return data_json[:at] + "}", "{" + data_json[at + 1 :]


def split_permissions_column(data_json: pa.Array) -> tuple[pa.Array, pa.Array]:
    """:func:`split_permissions` over a column (the greedy group ends at the key's last occurrence, as
    ``rfind`` does). A column without the key anywhere, as in most exports, is told by one search."""
    chunks = data_json.chunks if isinstance(data_json, pa.ChunkedArray) else [data_json]
    texts = (chunk.buffers()[2] for chunk in chunks)
    if not any(text is not None and _KEY in text.to_pybytes() for text in texts):
        return data_json, pa.nulls(len(data_json), pa.string())
    has = pc.fill_null(pc.match_substring(data_json, _PERMISSIONS_KEY), False)
    parts = pc.extract_regex(data_json, r'(?s)^(?P<member>.*),"marketing_permissions":\[(?P<rest>.*)$')
    member = pc.binary_join_element_wise(pc.struct_field(parts, "member"), "}", "")
    patch = pc.binary_join_element_wise('{"marketing_permissions":[', pc.struct_field(parts, "rest"), "")
    return pc.if_else(has, member, data_json), pc.if_else(has, patch, pa.scalar(None, pa.string()))


def save_plan(folder: Any, plan: MemberFieldPlan) -> None:
    staging.write_text(folder / PLAN_FILE, plan.to_json())


def read_plan(folder: Any) -> MemberFieldPlan:
    return MemberFieldPlan.from_json(staging.read_text(folder / PLAN_FILE))


def resolve(definition: Any, reader: AudienceReader, audience: Mapping[str, Any]) -> MemberFieldPlan:
    """Names to ids, checked against the audience; a MappingError lists what exists."""
    list_id = definition.mailchimp.audience_id
    rules = tuple(_resolve_interests(definition.interests, reader, list_id)) if definition.interests else ()
    permissions: tuple[tuple[str, str, str], ...] = ()
    if definition.marketing_permissions:
        permissions = _resolve_permissions(definition.marketing_permissions, reader, audience, list_id)
    return MemberFieldPlan(rules, definition.columns.language, definition.columns.vip, permissions)


def _by_name(items: list[dict], key: str) -> dict[str, dict]:
    return {str(item.get(key, "")).strip().lower(): item for item in items}


def _resolve_interests(
    rules: list[InterestMapping], reader: AudienceReader, list_id: str
) -> Iterable[InterestPlan]:
    categories = reader.get_interest_categories(list_id)
    by_title = _by_name(categories, "title")
    groups_of: dict[str, dict[str, dict]] = {}
    for rule in rules:
        category = by_title.get(rule.category.strip().lower())
        if category is None:
            titles = ", ".join(repr(c.get("title")) for c in categories) or "none"
            raise MappingError(
                f"interest category {rule.category!r} does not exist in audience {list_id}; its group "
                f"categories are: {titles}. Create it in Mailchimp or fix 'interests' in the export definition."
            )
        if category["id"] not in groups_of:
            groups_of[category["id"]] = _by_name(reader.get_interests(list_id, category["id"]), "name")
        groups = groups_of[category["id"]]

        def group_id(name: str, category: dict = category, groups: dict = groups) -> str:
            found = groups.get(name.strip().lower())
            if found is None:
                names = ", ".join(repr(g.get("name")) for g in groups.values()) or "none"
                raise MappingError(
                    f"interest group {name!r} does not exist in category {category.get('title')!r} of "
                    f"audience {list_id}; its groups are: {names}. Create it in Mailchimp or fix "
                    "'interests' in the export definition."
                )
            return str(found["id"])

        single = category.get("type") in ("radio", "dropdown")
        if rule.from_segments is not None:
            ids = {s: group_id(g) for s, g in rule.from_segments.items()}
            yield InterestPlan(rule.category, ids, single_choice=single)
        elif rule.group is not None:
            yield InterestPlan(
                rule.category, column=rule.column, flag_id=group_id(rule.group), single_choice=single
            )
        else:
            ids = {g.strip().lower(): group_id(g) for g in rule.groups or ()}
            yield InterestPlan(rule.category, column=rule.column, list_ids=ids, single_choice=single)


def _resolve_permissions(
    wanted: Mapping[str, str], reader: AudienceReader, audience: Mapping[str, Any], list_id: str
) -> tuple[tuple[str, str, str], ...]:
    if not audience.get("marketing_permissions"):
        raise MappingError(
            f"audience {list_id} has GDPR fields turned off, so it has no marketing permissions; turn on "
            "'Enable GDPR fields' in the audience's settings or remove 'marketing_permissions' from the "
            "export definition."
        )
    found = reader.get_marketing_permissions(list_id)
    if not found:
        raise MappingError(
            f"audience {list_id} has no member yet, and Mailchimp shows marketing permission ids only on "
            "members: add one contact (e.g. through the signup form) and run again."
        )
    by_text = _by_name(found, "text")
    resolved = []
    for text, column in wanted.items():
        permission = by_text.get(text.strip().lower())
        if permission is None:
            texts = ", ".join(repr(p.get("text")) for p in found)
            raise MappingError(
                f"marketing permission {text!r} does not exist in audience {list_id}; its permissions "
                f"are: {texts}. Fix 'marketing_permissions' in the export definition."
            )
        resolved.append((str(permission["marketing_permission_id"]), text, column))
    return tuple(resolved)


# ---- values ----------------------------------------------------------------------------------------


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadValue("not true/false")


def _language(value: str) -> str:
    """A Mailchimp language code, case and separator forgiven (``fr-ca`` -> ``fr_CA``, ``de-AT`` -> ``de``)."""
    lowered = value.strip().replace("-", "_").lower()
    code = _LANGUAGE_BY_LOWER.get(lowered) or _LANGUAGE_BY_LOWER.get(lowered.split("_")[0])
    if code is None:
        raise BadValue("not a Mailchimp language code")
    return code


def _value(row: Mapping[str, Any], column: str, label: str, convert: Any, dropped: dict[str, int]) -> Any:
    raw = row.get(column)
    if raw is None or not raw.strip():
        return None
    try:
        return convert(raw)
    except BadValue as exc:
        key = f"{label}:{exc}"
        dropped[key] = dropped.get(key, 0) + 1
        return None


def _names(value: str) -> list[str]:
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            raise BadValue("not a JSON list of group names") from None
        if not isinstance(items, list):
            raise BadValue("not a JSON list of group names")
        return [str(item).strip().lower() for item in items if item is not None]
    return [name.strip().lower() for name in text.split(",") if name.strip()]


def _interests(
    rules: Iterable[InterestPlan], row: Mapping[str, Any], segments: list[str], dropped: dict[str, int]
) -> dict[str, bool]:
    """The interests object of one member; a single-choice category with more than one group on is
    left out (Mailchimp keeps one group there) and counted."""
    by_category: dict[str, dict[str, bool]] = {}  # by title as named first (titles match case-blind)
    names: dict[str, str] = {}
    single: set[str] = set()
    for rule in rules:
        category = names.setdefault(rule.category.strip().lower(), rule.category)
        by_category.setdefault(category, {}).update(_interest_values(rule, row, segments, dropped))
        if rule.single_choice:
            single.add(category)
    interests: dict[str, bool] = {}
    for category, values in by_category.items():
        if category in single and sum(values.values()) > 1:
            key = f"interests.{category}:more than one group of a single-choice category"
            dropped[key] = dropped.get(key, 0) + 1
            continue
        interests.update(values)
    return interests


def _interest_values(
    rule: InterestPlan, row: Mapping[str, Any], segments: list[str], dropped: dict[str, int]
) -> dict[str, bool]:
    if rule.segment_ids:
        return {interest_id: segment in segments for segment, interest_id in rule.segment_ids.items()}
    label = f"interests.{rule.category}"
    if rule.flag_id is not None:
        on = _value(row, rule.column, label, _flag, dropped)
        return {} if on is None else {rule.flag_id: on}
    names = _value(row, rule.column, label, _names, dropped)
    if names is None:
        return {}
    unknown = [n for n in names if n not in rule.list_ids]
    if unknown:
        key = f"{label}:names a group the export does not map"
        dropped[key] = dropped.get(key, 0) + 1
    chosen = set(names)
    return {interest_id: name in chosen for name, interest_id in rule.list_ids.items()}
