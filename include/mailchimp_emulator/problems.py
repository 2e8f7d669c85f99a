"""Mailchimp's error vocabulary: problem+json documents and the names `X-Trigger-Error` accepts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

ERROR_TYPE_URL = "https://mailchimp.com/developer/marketing/docs/errors/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
VALIDATION_DETAIL = (
    "The resource submitted could not be validated. For field-specific details, see the 'errors' array."
)
CONCURRENCY_DETAIL = "You have exceeded the limit of 10 simultaneous connections."


@dataclass(frozen=True)
class ErrorKind:
    """One named error of the Marketing API glossary."""

    name: str
    status: int
    title: str
    detail: str


_KINDS = (
    ErrorKind("BadRequest", 400, "Bad Request", "Your request could not be processed."),
    ErrorKind(
        "InvalidAction", 400, "Invalid Action", "The action requested was not valid for this resource."
    ),
    ErrorKind("InvalidResource", 400, "Invalid Resource", VALIDATION_DETAIL),
    ErrorKind(
        "JSONParseError", 400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error."
    ),
    ErrorKind("MemberExists", 400, "Member Exists", "The contact is already a list member."),
    ErrorKind(
        "MemberInComplianceState",
        400,
        "Member In Compliance State",
        "The contact is in a compliance state due to unsubscribe, bounce, or compliance review "
        "and cannot be subscribed.",
    ),
    ErrorKind(
        "ForgottenEmailNotSubscribed",
        400,
        "Forgotten Email Not Subscribed",
        "The contact was permanently deleted and cannot be re-imported.",
    ),
    ErrorKind("APIKeyMissing", 401, "API Key Missing", "Your request did not include an API key."),
    ErrorKind(
        "APIKeyInvalid",
        401,
        "API Key Invalid",
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    ),
    ErrorKind("Forbidden", 403, "Forbidden", "You don't have permission to access this resource."),
    ErrorKind("UserDisabled", 403, "User Disabled", "This account has been deactivated."),
    ErrorKind(
        "WrongDatacenter",
        403,
        "Wrong Datacenter",
        "The API key provided is linked to a different datacenter.",
    ),
    ErrorKind("ResourceNotFound", 404, "Resource Not Found", "The requested resource could not be found."),
    ErrorKind(
        "MethodNotAllowed",
        405,
        "Method Not Allowed",
        "The requested method and resource are not compatible. "
        "See the Allow header for this resource's available methods.",
    ),
    ErrorKind(
        "PayloadTooLarge",
        413,
        "Request Entity Too Large",
        "The request body is larger than this server accepts.",
    ),
    ErrorKind(
        "ResourceNestingTooDeep",
        414,
        "Resource Nesting Too Deep",
        "The sub-resource requested is nested too deeply.",
    ),
    ErrorKind(
        "InvalidMethodOverride",
        422,
        "Invalid Method Override",
        "You can only use the X-HTTP-Method-Override header with the POST method.",
    ),
    ErrorKind("TooManyRequests", 429, "Too Many Requests", CONCURRENCY_DETAIL),
    ErrorKind(
        "InternalServerError",
        500,
        "Internal Server Error",
        "An unexpected internal error has occurred. Please contact Support for more information.",
    ),
    ErrorKind(
        "NotImplementedLocally",
        501,
        "Not Implemented by the local Mailchimp server",
        "The local Mailchimp server (mailchimp-emulator) does not implement this request.",
    ),
    ErrorKind("BadGateway", 502, "Bad Gateway", "The upstream server did not answer in time."),
    ErrorKind(
        "ServiceUnavailable",
        503,
        "Service Unavailable",
        "The service is temporarily unavailable. Please try again later.",
    ),
)
KINDS: dict[str, ErrorKind] = {k.name: k for k in _KINDS}


def _squash(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


_BY_SQUASHED = {**{_squash(k.title): k for k in _KINDS}, **{_squash(k.name): k for k in _KINDS}}


def lookup_trigger(value: str) -> ErrorKind | None:
    """Resolve an `X-Trigger-Error` value: a glossary name, a title, or an HTTP status code."""
    value = value.strip()
    if value.isdigit():
        return next((k for k in _KINDS if k.status == int(value)), None)
    return _BY_SQUASHED.get(_squash(value))


class ApiError(Exception):
    """Raised anywhere below the HTTP layer; becomes a problem+json answer (or a batch result)."""

    def __init__(
        self,
        kind: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.kind = KINDS[kind]
        self.detail = detail or self.kind.detail
        self.errors = errors
        self.headers = headers or {}
        super().__init__(f"{self.kind.title}: {self.detail}")

    @property
    def status(self) -> int:
        return self.kind.status

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return problem_body(self.kind.status, self.kind.title, self.detail, instance, self.errors)


def not_implemented(method: str, path: str) -> ApiError:
    """501 for a path or method the local server does not serve: plainly not Mailchimp's own answer."""
    return ApiError(
        "NotImplementedLocally",
        f"The local Mailchimp server (mailchimp-emulator) does not implement {method} /3.0{path}. This is "
        "not Mailchimp's answer: Mailchimp may serve it. See include/mailchimp_emulator/README.md, "
        "'What it serves'.",
    )


def invalid(field: str, message: str, detail: str = VALIDATION_DETAIL) -> ApiError:
    """The common 400 Invalid Resource with one field error."""
    return ApiError("InvalidResource", detail, errors=[{"field": field, "message": message}])


def problem_body(
    status: int,
    title: str,
    detail: str,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": ERROR_TYPE_URL,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance or str(uuid.uuid4()),
    }
    if errors:
        body["errors"] = errors
    return body
