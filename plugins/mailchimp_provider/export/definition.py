"""Export definitions: one YAML file per export, validated before any DAG is built from it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)

from mailchimp_provider.export import member_fields
from mailchimp_provider.export.alerts import Alerts
from mailchimp_provider.export.member_fields import InterestMapping
from mailchimp_provider.export.transform import Transform

EXPORTS_DIR_ENV = "MAILCHIMP_EXPORTS_DIR"
MAX_DEFINITION_BYTES = 256 * 1024
MAX_BATCH_JOBS = 200  # upload tasks a run may map to: far below Airflow's max_map_length (1024)
# Preparation tasks a run may map to: each reads every extracted part, so more mostly adds reading
MAX_PREPARE_PARTITIONS = 32
# Extracted rows per preparation task when the definition leaves the count to the size of the segment
# ("auto"): a 1,000,000-row partition's task peaks under 0.5 GB (BENCHMARKS.md, 10,000,000 profiles), and
# half of that spreads a 1,000,000-profile export over two workers' cores.
AUTO_PARTITION_ROWS = 500_000

# Plain SQL identifiers, optionally schema-qualified. They are still quoted when used: this check only
# makes a hostile name fail at parse time with a clear message instead of at query time.
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_QUALIFIED = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
Identifier = Annotated[str, StringConstraints(pattern=_IDENTIFIER)]


def _partition_count(value: object) -> object:
    """One plain message for both forms (pydantic would list a failure per member of the union)."""
    if value == "auto" or (type(value) is int and 1 <= value <= MAX_PREPARE_PARTITIONS):
        return value
    raise ValueError(f"expected a number from 1 to {MAX_PREPARE_PARTITIONS} or 'auto', got {value!r}")


PartitionCount = Annotated[int | Literal["auto"], BeforeValidator(_partition_count)]
QualifiedName = Annotated[str, StringConstraints(pattern=_QUALIFIED)]
ExportName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
MergeTag = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9_]{1,10}$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=250)]
MAX_TAG_LENGTH = 100  # Mailchimp's limit for a tag (static segment) name
TagName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_LENGTH)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MailchimpTarget(_Strict):
    conn_id: NonEmpty
    audience_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,32}$")]
    status_if_new: Literal["auto", "subscribed", "pending", "transactional"] = "auto"
    tag_segments: bool = True
    tag_prefix: Annotated[str, StringConstraints(max_length=MAX_TAG_LENGTH - 1)] = ""


class Segment(_Strict):
    """A segment whose Mailchimp tag is not the segment's name (with the prefix)."""

    name: NonEmpty
    tag: TagName


# A segment is its name, or {name, tag}; the discriminator keeps error messages to the form given.
SegmentEntry = Annotated[
    Annotated[NonEmpty, Tag("name")] | Annotated[Segment, Tag("with_tag")],
    Discriminator(lambda v: "name" if isinstance(v, str) else "with_tag"),
]


class RemovalLimit(_Strict):
    """How many members one run may untag or archive before it stops, unless a manual run allows it."""

    share: Share = 0.10  # of the members the export owns
    count: Annotated[int, Field(ge=0)] | None = None


class WarehouseSource(_Strict):
    conn_id: NonEmpty
    table: QualifiedName | None = None
    query: Annotated[str, StringConstraints(min_length=1, max_length=100_000)] | None = None
    segment_column: Identifier = "segment"

    @model_validator(mode="after")
    def _one_source(self) -> WarehouseSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        return self


class Columns(_Strict):
    id: Identifier
    email: Identifier
    first_name: Identifier | None = None
    last_name: Identifier | None = None
    language: Identifier | None = None  # Mailchimp language codes (export/member_fields.py)
    vip: Identifier | None = None  # true/false


class Schedule(_Strict):
    cron: NonEmpty | None = None
    after_assets: list[NonEmpty] = Field(default_factory=list)


class ExportDefinition(_Strict):
    """What one export sends where; the YAML file's schema."""

    export: ExportName
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    mailchimp: MailchimpTarget
    warehouse: WarehouseSource
    segments: Annotated[list[SegmentEntry], Field(min_length=1, max_length=100)]
    on_leave: Literal["untag", "archive", "keep"] = "untag"
    max_removals: RemovalLimit = Field(default_factory=RemovalLimit)
    max_failed_share: Share = 0.05
    columns: Columns
    merge_fields: dict[MergeTag, Identifier] = Field(default_factory=dict)
    interests: list[InterestMapping] = Field(default_factory=list)
    # GDPR permission text -> column
    marketing_permissions: dict[NonEmpty, Identifier] = Field(default_factory=dict)
    transform: Transform | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    max_profiles: Annotated[int, Field(gt=0, le=10_000_000)] = 1_000_000
    job_size: Annotated[int, Field(ge=500, le=500_000)] = 50_000
    extract_chunk_rows: Annotated[int, Field(ge=100, le=1_000_000)] = 50_000
    # validate_and_map tasks: a fixed count, or "auto": one per AUTO_PARTITION_ROWS extracted rows
    prepare_partitions: PartitionCount = "auto"
    poll_interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    batch_timeout_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 3 * 3600.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_delay_s: Annotated[float, Field(ge=0, le=86400)] = 30.0
    alerts: Alerts | None = None  # who is told about failed or suspicious runs

    @model_validator(mode="after")
    def _merge_fields_do_not_clash(self) -> ExportDefinition:
        named = {"FNAME": self.columns.first_name, "LNAME": self.columns.last_name}
        for tag, column in named.items():
            if column and tag in self.merge_fields:
                raise ValueError(f"merge field {tag} is already set by columns.{_NAME_FIELDS[tag]}")
        return self

    @model_validator(mode="after")
    def _member_fields_fit(self) -> ExportDefinition:
        member_fields.check_definition(self)
        keys = {self.columns.id, self.columns.email, self.warehouse.segment_column}
        if self.transform and (clash := keys & set(self.transform.returns)):
            raise ValueError(f"transform.returns may not replace the id, email or segment column: {clash}")
        return self

    @model_validator(mode="after")
    def _bounded_task_count(self) -> ExportDefinition:
        jobs = -(-self.max_profiles // self.job_size)
        if jobs > MAX_BATCH_JOBS:
            raise ValueError(
                f"max_profiles / job_size allows {jobs} batch jobs, one upload task each; keep it at most "
                f"{MAX_BATCH_JOBS} (raise job_size)"
            )
        return self

    @model_validator(mode="after")
    def _segments_and_tags_unique(self) -> ExportDefinition:
        names = self.segment_names
        if len(set(names)) != len(names):
            raise ValueError("segments: each segment may be listed once")
        tags = [self.tag_of(name) for name in names]
        for name, tag in zip(names, tags, strict=True):
            if len(tag) > MAX_TAG_LENGTH:
                raise ValueError(
                    f"segments: the tag of segment {name!r} ({tag!r}) is longer than Mailchimp's "
                    f"{MAX_TAG_LENGTH} characters; give it a shorter 'tag'"
                )
        if len({t.lower() for t in tags}) != len(tags):
            raise ValueError("segments: two segments would get the same Mailchimp tag; give one a 'tag'")
        return self

    @property
    def segment_names(self) -> list[str]:
        return [s if isinstance(s, str) else s.name for s in self.segments]

    def tag_of(self, segment: str) -> str:
        """The Mailchimp tag of one of the export's segments: its explicit tag, else prefix + name."""
        for s in self.segments:
            if isinstance(s, Segment) and s.name == segment:
                return s.tag
        return self.mailchimp.tag_prefix + segment

    def segment_tags(self) -> dict[str, str]:
        return {name: self.tag_of(name) for name in self.segment_names}

    def partitions_for(self, rows: int) -> int:
        """How many subscriber-hash partitions prepare a run that extracted ``rows`` rows."""
        if self.prepare_partitions != "auto":
            return self.prepare_partitions
        return min(MAX_PREPARE_PARTITIONS, max(1, -(-rows // AUTO_PARTITION_ROWS)))

    @property
    def dag_id(self) -> str:
        return f"mailchimp_export__{self.export}"

    def merge_field_columns(self) -> dict[str, str]:
        """Every merge tag the export fills, with the source column, FNAME/LNAME included."""
        mapping = dict(self.merge_fields)
        if self.columns.first_name:
            mapping["FNAME"] = self.columns.first_name
        if self.columns.last_name:
            mapping["LNAME"] = self.columns.last_name
        return mapping


_NAME_FIELDS = {"FNAME": "first_name", "LNAME": "last_name"}


class DefinitionError(ValueError):
    """A definition file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class LoadedDefinition:
    path: Path
    definition: ExportDefinition | None
    error: DefinitionError | None


def exports_dir(default: Path) -> Path:
    return Path(os.environ.get(EXPORTS_DIR_ENV) or default)


def load_definition(path: Path) -> ExportDefinition:
    """Parse and validate one file; every problem becomes a DefinitionError naming file and field."""
    try:
        size = path.stat().st_size
        if size > MAX_DEFINITION_BYTES:
            raise DefinitionError(f"{path}: file is {size} bytes, larger than {MAX_DEFINITION_BYTES}")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except DefinitionError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{path}: cannot read file: {exc}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path}: not valid YAML: {_one_line(str(exc))}") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"{path}: expected a mapping of fields at the top level")
    try:
        definition = ExportDefinition.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise DefinitionError(f"{path}: {problems}") from None
    if definition.export != path.stem:
        raise DefinitionError(f"{path}: field 'export' is {definition.export!r} but must match the file name")
    return definition


def load_all(directory: Path) -> list[LoadedDefinition]:
    """Every *.yaml/*.yml file in the folder; a broken file is returned with its error, not raised."""
    results = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            results.append(LoadedDefinition(path, load_definition(path), None))
        except DefinitionError as exc:
            results.append(LoadedDefinition(path, None, exc))
    return results


def _describe(err: dict) -> str:
    field = ".".join(str(part) for part in err["loc"]) or "(top level)"
    message = err["msg"]
    if err["type"] == "string_pattern_mismatch":
        message = "not an allowed name (letters, digits and _ only" + (
            "; merge tags are upper case, 10 characters at most)" if "merge_fields" in field else ")"
        )
    elif err["type"] == "extra_forbidden":
        message = "unknown field"
    return f"field '{field}': {message}"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
