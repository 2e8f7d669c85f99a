"""Fixtures for the emulator's own tests: one shared emulator subprocess (reset before each test),
the official `mailchimp_marketing` client pointed at it, and a validator for the official OpenAPI spec."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mailchimp_marketing as MailchimpMarketing
import pytest
import requests
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from mailchimp_emulator.testing import EmulatorProcess
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).parent / "data" / "openapi-subset.json"  # copy of /work/shared/mailchimp/...
SPEC_URI = "urn:mailchimp-openapi-subset"
RICH_LIST = "rich0audience"
GDPR_LIST = "gdpr0audience"

# A second audience with one field of every type, a required field and a default value.
EMULATOR_CONFIG: dict[str, Any] = {
    "audiences": [
        {"id": "demo0audience", "name": "Demo audience"},
        {
            "id": RICH_LIST,
            "name": "Every merge type",
            "double_optin": True,
            "merge_fields": [
                {"tag": "FNAME", "name": "First Name", "type": "text", "required": True},
                {"tag": "LNAME", "name": "Last Name", "type": "text"},
                {"tag": "SCORE", "name": "Score", "type": "number"},
                {"tag": "ADDRESS", "name": "Address", "type": "address"},
                {"tag": "PHONE", "name": "Phone", "type": "phone"},
                {"tag": "USPHONE", "name": "US phone", "type": "phone", "options": {"phone_format": "US"}},
                {
                    "tag": "SINCE",
                    "name": "Customer since",
                    "type": "date",
                    "options": {"date_format": "MM/DD/YYYY"},
                },
                {
                    "tag": "BIRTHDAY",
                    "name": "Birthday",
                    "type": "birthday",
                    "options": {"date_format": "MM/DD"},
                },
                {"tag": "SITE", "name": "Website", "type": "url"},
                {"tag": "AVATAR", "name": "Avatar", "type": "imageurl"},
                {
                    "tag": "TIER",
                    "name": "Tier",
                    "type": "dropdown",
                    "options": {"choices": ["Bronze", "Gold"]},
                },
                {"tag": "PLAN", "name": "Plan", "type": "radio", "options": {"choices": ["free", "pro"]}},
                {"tag": "ZIPCODE", "name": "Zip", "type": "zip"},
                {"tag": "SOURCE", "name": "Source", "type": "text", "default_value": "warehouse"},
            ],
        },
        {
            "id": GDPR_LIST,
            "name": "Groups and GDPR",
            "merge_fields": [
                {"tag": "JOINED", "name": "Joined", "type": "date", "options": {"date_format": "DD/MM/YYYY"}}
            ],
            "interest_categories": [
                {
                    "title": "Topics",
                    "type": "checkboxes",
                    "interests": ["News", {"id": "offers0001", "name": "Offers"}],
                }
            ],
            "marketing_permissions": True,
        },
    ],
}


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("emulator"), config=EMULATOR_CONFIG) as server:
        yield server


@pytest.fixture
def emu(emulator_session: EmulatorProcess) -> EmulatorProcess:
    """The shared emulator with empty audiences, no batches, no faults and fresh stats."""
    emulator_session.reset()
    return emulator_session


@pytest.fixture
def client(emu: EmulatorProcess) -> Any:
    """The official client, unchanged: its host is an attribute, so it is simply set to the emulator."""
    mc = MailchimpMarketing.Client()
    mc.set_config({"api_key": emu.api_key, "server": emu.dc})
    mc.api_client.host = emu.api_url
    return mc


@pytest.fixture
def http(emu: EmulatorProcess) -> requests.Session:
    session = requests.Session()
    session.auth = ("anystring", emu.api_key)
    return session


def _load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    # Documented upstream slip: typed string with a boolean default. Accept both types.
    props = spec["components"]["schemas"]["ListsLists"]["properties"]
    for name in ("notify_on_subscribe", "notify_on_unsubscribe"):
        props[name] = {**props[name], "type": ["string", "boolean"]}
    return spec


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_formats = FormatChecker()


@_formats.checks("date-time")
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_RFC3339.match(value))


def _tolerated(error: ValidationError) -> bool:
    """Mailchimp writes "" for timestamps that never happened (timestamp_signup, last_unsub_date, ...)."""
    return error.validator == "format" and error.instance == ""


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    return _load_spec()


@pytest.fixture(scope="session")
def validate(spec: dict[str, Any]) -> Callable[..., None]:
    """validate(body, schema="BatchesBatches") or validate(body, path="/3.0/ping", method="get")."""
    registry = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
    )

    def check(
        body: Any,
        schema: str | None = None,
        *,
        path: str | None = None,
        method: str = "get",
        status: str = "200",
    ) -> None:
        if schema is not None:
            pointer = f"#/components/schemas/{schema}"
        else:
            assert path is not None
            escaped = path.replace("~", "~0").replace("/", "~1")
            media = "application/problem+json" if status == "default" else "application/json"
            pointer = (
                f"#/paths/{escaped}/{method}/responses/{status}/content/{media.replace('/', '~1')}/schema"
            )
        validator = Draft202012Validator(
            {"$ref": SPEC_URI + pointer}, registry=registry, format_checker=_formats
        )
        errors = sorted(
            (e for e in validator.iter_errors(body) if not _tolerated(e)), key=lambda e: list(e.path)
        )
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])

    return check
