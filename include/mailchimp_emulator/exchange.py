"""One API call and its answer, as plain data shared by the HTTP layer, the handlers and the batch runner."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ApiRequest:
    """One call relative to /3.0; `base_url` is how the caller reached us (for links and URLs)."""

    method: str
    path: str
    query: Mapping[str, str]
    body: bytes
    base_url: str
    in_batch: bool = False
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))  # `instance` of problem answers


@dataclass
class ApiResponse:
    """`body` is JSON-able, or `text` is already-encoded JSON (big answers), or neither (204)."""

    status: int
    body: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    problem: bool = False

    def json_text(self) -> str:
        if self.text is not None:
            return self.text
        return "" if self.body is None else json.dumps(self.body)
