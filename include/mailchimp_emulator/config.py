"""Settings of one emulator process: audiences, credentials, pacing, limits.

Everything has a default so `python -m mailchimp_emulator` works with no configuration; a YAML/JSON file
and command-line flags override the defaults (flags win over the file).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .faults import Faults
from .pace import Pace

DEFAULT_API_KEY = "0123456789abcdef0123456789abcdef-us6"
DEFAULT_OAUTH_TOKEN = "demo-oauth-token"
DEFAULT_LIST_ID = "demo0audience"
DEFAULT_STATE_PATH = Path("var/mailchimp-emulator.db")

MERGE_TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
)
MERGE_TAG_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,9}$")  # Mailchimp: at most 10 characters
_LIST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DC_RE = re.compile(r"^[a-z]{2}\d{1,3}$")


class ConfigError(ValueError):
    """The configuration file or flags describe something the emulator cannot serve."""


@dataclass(frozen=True)
class MergeFieldSpec:
    """A merge field as configured (the store adds merge_id and list_id)."""

    tag: str
    name: str
    type: str = "text"
    required: bool = False
    default_value: str = ""
    public: bool = True
    help_text: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not MERGE_TAG_RE.match(self.tag):
            raise ConfigError(f"merge tag {self.tag!r}: 1-10 characters A-Z, 0-9, _ starting with a letter")
        if self.type not in MERGE_TYPES:
            raise ConfigError(
                f"merge field {self.tag}: type {self.type!r} not one of {', '.join(MERGE_TYPES)}"
            )
        if self.type in ("radio", "dropdown") and not self.options.get("choices"):
            raise ConfigError(f"merge field {self.tag}: a {self.type} field needs options.choices")


DEFAULT_MERGE_FIELDS: tuple[MergeFieldSpec, ...] = (
    MergeFieldSpec("FNAME", "First Name", "text", options={"size": 25}),
    MergeFieldSpec("LNAME", "Last Name", "text", options={"size": 25}),
    MergeFieldSpec("ADDRESS", "Address", "address", options={"default_country": 164}),
    MergeFieldSpec("PHONE", "Phone Number", "phone", options={"phone_format": "none"}),
)


INTEREST_CATEGORY_TYPES = ("checkboxes", "dropdown", "radio", "hidden")
# The three permissions Mailchimp adds to an audience when GDPR fields are switched on.
DEFAULT_MARKETING_PERMISSIONS = ("Email", "Direct Mail", "Customized Online Advertising")


def derived_id(*parts: str) -> str:
    """A stable 10-hex id (Mailchimp's interest and permission ids look like this) from names."""
    return hashlib.md5("/".join(parts).encode("utf-8")).hexdigest()[:10]


@dataclass(frozen=True)
class InterestSpec:
    id: str
    name: str


@dataclass(frozen=True)
class InterestCategorySpec:
    """A group category ("interest category") with its groups ("interests")."""

    id: str
    title: str
    type: str = "checkboxes"
    interests: tuple[InterestSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in INTEREST_CATEGORY_TYPES:
            raise ConfigError(
                f"interest category {self.title!r}: type {self.type!r} not one of "
                f"{', '.join(INTEREST_CATEGORY_TYPES)}"
            )


@dataclass(frozen=True)
class PermissionSpec:
    """A GDPR marketing permission of an audience."""

    id: str
    text: str


@dataclass(frozen=True)
class AudienceSpec:
    """A configured audience; it exists from startup and survives `reset`."""

    id: str
    name: str
    double_optin: bool = False
    merge_fields: tuple[MergeFieldSpec, ...] = DEFAULT_MERGE_FIELDS
    interest_categories: tuple[InterestCategorySpec, ...] = ()
    marketing_permissions: tuple[PermissionSpec, ...] = ()

    def __post_init__(self) -> None:
        if not _LIST_ID_RE.match(self.id):
            raise ConfigError(f"audience id {self.id!r}: use 1-64 characters A-Z, a-z, 0-9, _ or -")
        tags = [f.tag for f in self.merge_fields]
        if len(set(tags)) != len(tags):
            raise ConfigError(f"audience {self.id}: duplicate merge tags")
        ids = [c.id for c in self.interest_categories] + [
            i.id for c in self.interest_categories for i in c.interests
        ]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"audience {self.id}: duplicate interest category or interest ids")
        if len({p.id for p in self.marketing_permissions}) != len(self.marketing_permissions):
            raise ConfigError(f"audience {self.id}: duplicate marketing permission ids")


DEFAULT_AUDIENCE = AudienceSpec(DEFAULT_LIST_ID, "Demo audience")


@dataclass(frozen=True)
class Settings:
    """Everything a running emulator needs to know; immutable once the server starts."""

    host: str = "127.0.0.1"
    port: int = 8025
    state_path: Path = DEFAULT_STATE_PATH
    dc: str = "us6"
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    oauth_tokens: tuple[str, ...] = (DEFAULT_OAUTH_TOKEN,)
    audiences: tuple[AudienceSpec, ...] = (DEFAULT_AUDIENCE,)
    account_name: str = "Emulated Account"
    login_email: str = "owner@mailchimp-emulator.dev"
    batch_pace: float = 0.0
    archive_ttl: float = 600.0
    max_connections: int = 10
    max_body_bytes: int = 64 * 1024 * 1024
    max_pending_batches: int = 500
    public_url: str | None = None
    allow_placeholder_domains: bool = False
    pace: Pace = field(default_factory=Pace)
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if not _DC_RE.match(self.dc):
            raise ConfigError(f"data center {self.dc!r} should look like us6")
        for key in self.api_keys:
            base, _, dc = key.rpartition("-")
            if not base or dc != self.dc:
                raise ConfigError(f"API key ending {key[-6:]!r} must end with -{self.dc}")
        if not self.audiences:
            raise ConfigError("at least one audience is needed")
        ids = [a.id for a in self.audiences]
        if len(set(ids)) != len(ids):
            raise ConfigError("duplicate audience ids")
        if self.batch_pace < 0 or self.archive_ttl <= 0 or self.max_connections < 1:
            raise ConfigError("batch_pace >= 0, archive_ttl > 0 and max_connections >= 1 are required")

    @property
    def archive_dir(self) -> Path:
        """Batch operation files and result archives live beside the state database."""
        return self.state_path.with_name(self.state_path.stem + "-batches")

    @property
    def base_url(self) -> str:
        """This server's own URL, used where no request tells us how the client reached us."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


def merge_field_from_dict(raw: dict[str, Any]) -> MergeFieldSpec:
    known = {"tag", "name", "type", "required", "default_value", "public", "help_text", "options"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"merge field: unknown keys {sorted(unknown)}")
    if "tag" not in raw:
        raise ConfigError("merge field: tag is required")
    return MergeFieldSpec(
        tag=str(raw["tag"]),
        name=str(raw.get("name", raw["tag"])),
        type=str(raw.get("type", "text")),
        required=bool(raw.get("required", False)),
        default_value=str(raw.get("default_value", "")),
        public=bool(raw.get("public", True)),
        help_text=str(raw.get("help_text", "")),
        options=dict(raw.get("options") or {}),
    )


def _interest_category_from_dict(list_id: str, raw: Any) -> InterestCategorySpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("title"), str):
        raise ConfigError(f"audience {list_id}: an interest category needs a title")
    unknown = set(raw) - {"id", "title", "type", "interests"}
    if unknown:
        raise ConfigError(f"interest category {raw['title']!r}: unknown keys {sorted(unknown)}")
    title = raw["title"]
    interests = []
    for item in raw.get("interests") or ():
        entry = item if isinstance(item, dict) else {"name": item}
        if not isinstance(entry.get("name"), str):
            raise ConfigError(f"interest category {title!r}: an interest needs a name")
        name = entry["name"]
        interests.append(InterestSpec(str(entry.get("id") or derived_id(list_id, title, name)), name))
    return InterestCategorySpec(
        id=str(raw.get("id") or derived_id(list_id, title)),
        title=title,
        type=str(raw.get("type", "checkboxes")),
        interests=tuple(interests),
    )


def _permissions_from_config(list_id: str, raw: Any) -> tuple[PermissionSpec, ...]:
    """`true` for Mailchimp's default three, else a list of texts or {id, text}."""
    if raw is None or raw is False:
        return ()
    items = DEFAULT_MARKETING_PERMISSIONS if raw is True else raw
    if not isinstance(items, list | tuple):
        raise ConfigError(f"audience {list_id}: marketing_permissions is true or a list")
    out = []
    for item in items:
        entry = item if isinstance(item, dict) else {"text": item}
        if not isinstance(entry.get("text"), str):
            raise ConfigError(f"audience {list_id}: a marketing permission needs a text")
        out.append(
            PermissionSpec(
                str(entry.get("id") or derived_id(list_id, "permission", entry["text"])), entry["text"]
            )
        )
    return tuple(out)


def audience_from_dict(raw: dict[str, Any]) -> AudienceSpec:
    known = {"id", "name", "double_optin", "merge_fields", "interest_categories", "marketing_permissions"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"audience: unknown keys {sorted(unknown)}")
    if "id" not in raw:
        raise ConfigError("audience: id is required")
    list_id = str(raw["id"])
    fields = raw.get("merge_fields")
    return AudienceSpec(
        id=list_id,
        name=str(raw.get("name", raw["id"])),
        double_optin=bool(raw.get("double_optin", False)),
        merge_fields=DEFAULT_MERGE_FIELDS
        if fields is None
        else tuple(merge_field_from_dict(f) for f in fields),
        interest_categories=tuple(
            _interest_category_from_dict(list_id, c) for c in raw.get("interest_categories") or ()
        ),
        marketing_permissions=_permissions_from_config(list_id, raw.get("marketing_permissions")),
    )


def parse_audience_flag(spec: str) -> AudienceSpec:
    """`--audience id=shop1,name=Shop,double_optin=true` (default merge fields; use a file for others)."""
    raw: dict[str, Any] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"--audience {spec!r}: expected key=value pairs")
        raw[key.strip()] = value.strip()
    if "double_optin" in raw:
        raw["double_optin"] = raw["double_optin"].lower() in ("1", "true", "yes", "on")
    return audience_from_dict(raw)


_FILE_KEYS = {
    "dc",
    "api_keys",
    "oauth_tokens",
    "audiences",
    "account_name",
    "login_email",
    "batch_pace",
    "archive_ttl",
    "max_connections",
    "max_body_bytes",
    "max_pending_batches",
    "public_url",
    "allow_placeholder_domains",
    "pace",
    "faults",
}


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into Settings keyword arguments."""
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(raw) - _FILE_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "audiences":
            kwargs[key] = tuple(audience_from_dict(a) for a in value)
        elif key in ("api_keys", "oauth_tokens"):
            kwargs[key] = tuple(str(v) for v in value)
        elif key == "faults":
            kwargs[key] = Faults.from_dict(value)
        elif key == "pace":
            kwargs[key] = Pace.from_config(value)
        else:
            kwargs[key] = value
    return kwargs


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """Apply the non-None overrides (flags) on top of settings."""
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
