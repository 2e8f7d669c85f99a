"""Mailchimp's problem+json errors as exceptions, and which failures are worth retrying."""

from __future__ import annotations

import json
import re

from mailchimp_provider.export.validate import mask_email

_EMAIL = re.compile(r"[^\s\"'<>@,;:()]+@[^\s\"'<>@,;:()]+\.[A-Za-z]{2,}")
_BARE_TITLES = {403: "Forbidden", 429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable"}


def mask_emails_in(text: str) -> str:
    """Mask every address in a message: Mailchimp details often quote the member's email."""
    return _EMAIL.sub(lambda m: mask_email(m.group(0)), text)


class MailchimpApiError(RuntimeError):
    """An error answer from Mailchimp, carrying its status, title and detail (emails masked).

    ``bare`` marks an answer without a problem+json body: at high volume Mailchimp throttles with bare
    403s and 429s, so a bare 403 is retried while a documented 403 ``Forbidden`` is not.
    """

    def __init__(
        self, status: int, title: str, detail: str = "", errors: list | None = None, *, bare: bool = False
    ) -> None:
        self.status = status
        self.title = title
        self.detail = mask_emails_in(detail)
        self.errors = errors or []
        self.bare = bare
        super().__init__(f"Mailchimp answered {status} {title}" + (f": {self.detail}" if self.detail else ""))

    @property
    def retryable(self) -> bool:
        """Status 0 is no answer at all (connection failures, unusable results): worth another try later."""
        return self.status in (0, 429) or self.status >= 500 or (self.status == 403 and self.bare)

    @classmethod
    def from_response(cls, status: int, body: bytes, content_type: str = "") -> MailchimpApiError:
        try:
            problem = json.loads(body) if body else None
        except ValueError:
            problem = None
        if isinstance(problem, dict) and "title" in problem:
            errors = problem.get("errors")
            return cls(
                status,
                str(problem["title"]),
                str(problem.get("detail") or ""),
                errors if isinstance(errors, list) else None,
            )
        kind = "no body" if not body else f"a non-JSON body ({content_type or 'unknown type'})"
        return cls(status, _BARE_TITLES.get(status, "HTTP error"), f"answer with {kind}", bare=True)


class MailchimpAnswerLost(MailchimpApiError):
    """A request that changes something got no usable answer: Mailchimp may or may not have applied it."""


def is_permanent(exc: BaseException) -> bool:
    """A configuration mistake or an answer that will not change on a retry (401, 403, 404, 400...)."""
    return isinstance(exc, MailchimpConfigError) or (isinstance(exc, MailchimpApiError) and not exc.retryable)


class MailchimpConfigError(ValueError):
    """The Mailchimp connection is incomplete or not allowed for this use; says how to fix it."""
