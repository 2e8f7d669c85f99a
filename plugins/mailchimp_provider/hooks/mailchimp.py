"""MailchimpHook: the synchronous Mailchimp Marketing API client, built on the HTTP provider's HttpHook."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import pyarrow as pa
import requests
from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk.log import mask_secret
from requests import Response, Session

from mailchimp_provider.batches import CorruptArchive, batch_request_body, parse_results_archive
from mailchimp_provider.hooks.config import USER_AGENT, MailchimpConfig, RetryPolicy, config_from_connection
from mailchimp_provider.hooks.errors import MailchimpApiError, MailchimpConfigError

_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def discover_data_center(url: str, token: str, timeout: float = 30.0) -> dict[str, Any]:
    """Ask Mailchimp's OAuth metadata endpoint where a token's account lives."""
    response = requests.get(url, headers={"Authorization": f"OAuth {token}"}, timeout=timeout)
    try:
        return response.json()
    except ValueError:
        return {}


class MailchimpHook(HttpHook):
    """Calls the Mailchimp Marketing API v3 with retries on throttling and transient failures.

    Retries 429, 5xx, bare 403s, dropped connections and timeouts with exponential backoff and jitter;
    never retries validation errors. One keep-alive session per hook: a task holds one connection, so an
    Airflow pool bounds the deployment's simultaneous connections to Mailchimp's limit of 10.

    :param mailchimp_conn_id: connection of type ``mailchimp``.
    :param retry: backoff settings.
    :param timeout: seconds for one request (Mailchimp itself gives up after 120).
    """

    conn_name_attr = "mailchimp_conn_id"
    default_conn_name = "mailchimp_default"
    conn_type = "mailchimp"
    hook_name = "Mailchimp"

    def __init__(
        self,
        mailchimp_conn_id: str = default_conn_name,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 130.0,
    ) -> None:
        super().__init__(method="GET", http_conn_id=mailchimp_conn_id)
        self.mailchimp_conn_id = mailchimp_conn_id
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._session: Session | None = None

    @cached_property
    def config(self) -> MailchimpConfig:
        config = config_from_connection(self.get_connection(self.mailchimp_conn_id), discover_data_center)
        for secret in config.secrets:
            mask_secret(secret)
        return config

    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict | None = None) -> Session:
        """A session with Mailchimp auth; connection extras are settings, never sent as headers."""
        if self._session is None:
            self.base_url = self.config.base_url
            self._base_url_initialized = True
            session = Session()
            session.headers.update({"Authorization": self.config.authorization, "User-Agent": USER_AGENT})
            self._session = self._configure_session_from_mount_adapters(session)
        if headers:
            self._session.headers.update(headers)
        return self._session

    def check_response(self, response: Response) -> None:
        if response.status_code >= 400:
            raise MailchimpApiError.from_response(
                response.status_code, response.content, response.headers.get("Content-Type", "")
            )

    def call(
        self,
        method: str,
        endpoint: str,
        *,
        body: Any = None,
        data: str | bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """One API call, retried on transient failures; returns the decoded JSON answer (None for 204)."""
        session = self.get_conn()
        if body is not None:
            data = json.dumps(body)
        request = requests.Request(
            method,
            self.url_from_endpoint(endpoint),
            params=params,
            data=data,
            headers={"Content-Type": "application/json"} if data is not None else None,
        )
        prepared = session.prepare_request(request)
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self.run_and_check(session, prepared, {"timeout": self.timeout})
                return response.json() if response.content else None
            except MailchimpApiError as exc:
                if not exc.retryable or attempt == self.retry.attempts:
                    raise
                reason = f"{exc.status} {exc.title}"
            except _TRANSIENT as exc:
                if attempt == self.retry.attempts:
                    raise MailchimpApiError(0, "Connection failed", type(exc).__name__) from None
                reason = type(exc).__name__
            delay = self.retry.delay(attempt)
            self.log.warning(
                "Mailchimp %s %s: %s; retry %d in %.1fs", method, endpoint, reason, attempt, delay
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: GET /ping, with a plain message on failure."""
        try:
            health = self.call("GET", "ping")
        except MailchimpConfigError as exc:
            return False, str(exc)
        except MailchimpApiError as exc:
            return False, f"{exc} (at {self.config.base_url})"
        return True, f"Mailchimp answered: {health.get('health_status', health)}"

    def get_audience(self, list_id: str) -> dict:
        return self.call("GET", f"lists/{list_id}")

    def get_merge_fields(self, list_id: str) -> list[dict]:
        return list(self._paged(f"lists/{list_id}/merge-fields", "merge_fields", {}))

    def iter_member_hashes(self, list_id: str, status: str) -> Iterator[str]:
        """Subscriber hashes of the audience's members in one status (e.g. archived)."""
        params = {"status": status, "fields": "members.id,total_items"}
        for member in self._paged(f"lists/{list_id}/members", "members", params):
            yield member["id"]

    def iter_static_segments(self, list_id: str) -> Iterator[dict]:
        """The audience's tags: static segments, each with ``id`` and ``name``."""
        params = {"type": "static", "fields": "segments.id,segments.name,total_items"}
        yield from self._paged(f"lists/{list_id}/segments", "segments", params)

    def create_static_segment(self, list_id: str, name: str) -> dict:
        """A new, empty tag."""
        return self.call("POST", f"lists/{list_id}/segments", body={"name": name, "static_segment": []})

    def get_member(self, list_id: str, member_hash: str) -> dict | None:
        """One member's status and tags; None when the audience has no such member."""
        try:
            return self.call(
                "GET",
                f"lists/{list_id}/members/{member_hash}",
                params={"fields": "id,status,tags"},
            )
        except MailchimpApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _paged(self, endpoint: str, key: str, params: dict) -> Iterator[dict]:
        offset = 0
        while True:
            page = self.call("GET", endpoint, params={**params, "count": 1000, "offset": offset})
            items = page.get(key) or []
            yield from items
            offset += len(items)
            if not items or offset >= int(page.get("total_items", 0)):
                return

    def submit_batch(self, operations_jsonl: str) -> dict:
        """POST /batches from JSON lines of operations, spliced into the body without re-parsing."""
        return self.call("POST", "batches", data=batch_request_body(operations_jsonl))

    def get_batch(self, batch_id: str) -> dict:
        return self.call("GET", f"batches/{batch_id}")

    def fetch_batch_results(self, batch_id: str, attempts: int = 6) -> pa.Table:
        """Download and parse a finished batch's archive, asking for a fresh URL whenever one fails.

        The URL is pre-signed storage: it is fetched without Mailchimp credentials, may expire after
        10 minutes, has been seen empty on finished batches, and the archive may arrive damaged.
        """
        problem = "no attempt made"
        for attempt in range(1, attempts + 1):
            url = self.get_batch(batch_id).get("response_body_url") or ""
            if not url:
                problem = "the finished batch has an empty response_body_url"
            else:
                try:
                    response = requests.get(url, timeout=self.timeout)
                    if response.status_code == 200:
                        return parse_results_archive(response.content)
                    problem = f"the results URL answered {response.status_code} (expired?)"
                except CorruptArchive as exc:
                    problem = str(exc)
                except _TRANSIENT as exc:
                    problem = f"download failed: {type(exc).__name__}"
            if attempt < attempts:
                delay = self.retry.delay(attempt)
                self.log.warning("Batch %s results: %s; asking again in %.1fs", batch_id, problem, delay)
                time.sleep(delay)
        raise MailchimpApiError(0, "Batch results unavailable", f"batch {batch_id}: {problem}")
