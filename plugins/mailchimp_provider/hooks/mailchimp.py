"""MailchimpHook: the synchronous Mailchimp Marketing API client, built on the HTTP provider's HttpHook."""

from __future__ import annotations

import datetime as dt
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

from mailchimp_provider.batches import (
    BatchStatus,
    CorruptArchive,
    batch_request_body,
    new_marker,
    operation_lines,
    parse_results_archive,
    split_markers,
)
from mailchimp_provider.hooks.config import USER_AGENT, MailchimpConfig, RetryPolicy, config_from_connection
from mailchimp_provider.hooks.errors import MailchimpAnswerLost, MailchimpApiError, MailchimpConfigError

_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
CLOCK_SKEW = 300.0  # seconds either side of a submission where its batch may show up in Mailchimp's list


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
    never retries validation errors, and never sends ``POST /batches`` again without first finding out
    that Mailchimp did not accept it (``submit_batch``). One keep-alive session per hook: a task holds one connection, so an
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
        resend: bool = True,
    ) -> Any:
        """One API call, retried on transient failures; returns the decoded JSON answer (None for 204).

        ``resend=False`` is for calls that must not run twice: only answers that prove Mailchimp did not
        act (throttling) are retried; a lost answer, a timeout or a 5xx raises MailchimpAnswerLost.
        """
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
                if not resend and exc.status >= 500:
                    raise MailchimpAnswerLost(exc.status, exc.title, exc.detail) from None
                reason = f"{exc.status} {exc.title}"
            except _TRANSIENT as exc:
                if not resend and not isinstance(exc, requests.exceptions.ConnectTimeout):
                    raise MailchimpAnswerLost(0, "Answer lost", type(exc).__name__) from None
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

    def get_interest_categories(self, list_id: str) -> list[dict]:
        return list(self._paged(f"lists/{list_id}/interest-categories", "categories", {}))

    def get_interests(self, list_id: str, category_id: str) -> list[dict]:
        return list(
            self._paged(f"lists/{list_id}/interest-categories/{category_id}/interests", "interests", {})
        )

    def get_marketing_permissions(self, list_id: str) -> list[dict]:
        """The audience's GDPR permissions (``marketing_permission_id``, ``text``); empty if it has no member.

        Mailchimp has no endpoint listing them: every member record carries all of them, so one is read.
        """
        page = self.call(
            "GET",
            f"lists/{list_id}/members",
            params={"count": 1, "fields": "members.marketing_permissions"},
        )
        members = page.get("members") or []
        return list(members[0].get("marketing_permissions") or []) if members else []

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
        """One member's status, tags and marketing permissions; None when the audience has no such member."""
        try:
            return self.call(
                "GET",
                f"lists/{list_id}/members/{member_hash}",
                params={"fields": "id,status,tags,marketing_permissions"},
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

    def submit_batch(
        self,
        operations_jsonl: str,
        marker: str = "",
        *,
        wait: float = 3 * 3600.0,
        poll_interval: float = 10.0,
    ) -> dict:
        """POST /batches from JSON lines of operations (spliced into the body without re-parsing), once.

        The body carries ``marker`` (a fresh one if not given). When the answer is lost, the batch may
        have been accepted: it is looked for (``find_batch``) before anything is sent again, so a lost
        answer never makes a second batch.
        """
        marker = marker or new_marker()
        body = batch_request_body(operations_jsonl, marker)
        total = len(operation_lines(operations_jsonl)) + 1
        since = time.time()
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return self.call("POST", "batches", data=body, resend=False)
            except MailchimpAnswerLost as exc:
                self.log.warning(
                    "Mailchimp POST batches: %s; looking for the batch before sending again", exc
                )
                found = self.find_batch(marker, total, since, wait=wait, poll_interval=poll_interval)
                if found is not None:
                    self.log.info("Batch %s was accepted although its answer was lost", found["id"])
                    return found
                if attempt == self.retry.attempts:
                    raise
                time.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    def find_batch(
        self, marker: str, total_operations: int, since: float, *, wait: float, poll_interval: float
    ) -> dict | None:
        """The batch carrying ``marker``, or None if Mailchimp never accepted it.

        Candidates are listed batches with the same operation count submitted around ``since``; the
        marker, in a finished candidate's results, says which one is ours. Unfinished candidates are
        waited for (up to ``wait`` seconds): only their results can tell.
        """
        deadline = time.time() + wait
        candidates = [
            batch["id"]
            for batch in self._paged("batches", "batches", {})
            if batch.get("total_operations") == total_operations
            and _submitted_near(batch.get("submitted_at"), since)
        ]
        while candidates:
            for batch_id in list(candidates):
                try:
                    batch = self.get_batch(batch_id)
                except MailchimpApiError as exc:
                    if exc.status != 404:
                        raise
                    candidates.remove(batch_id)
                    continue
                if BatchStatus(batch["status"]).is_terminal():
                    candidates.remove(batch_id)
                    if marker in split_markers(self._results_table(batch_id))[1]:
                        return batch
            if candidates:
                if time.time() >= deadline:
                    raise MailchimpApiError(
                        0,
                        "Batch submission unresolved",
                        f"{len(candidates)} batch(es) that may be ours did not finish within {wait:.0f}s",
                    )
                time.sleep(poll_interval)
        return None

    def get_batch(self, batch_id: str) -> dict:
        return self.call("GET", f"batches/{batch_id}")

    def delete_batch(self, batch_id: str) -> None:
        """Stop a batch; what it already applied stays applied, and its results are gone."""
        self.call("DELETE", f"batches/{batch_id}")

    def fetch_batch_results(self, batch_id: str) -> pa.Table:
        """A finished batch's per-operation results, without the submission marker."""
        return split_markers(self._results_table(batch_id))[0]

    def _results_table(self, batch_id: str, attempts: int = 6) -> pa.Table:
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


def _submitted_near(submitted_at: str | None, since: float) -> bool:
    """Whether Mailchimp's submission time (its clock, whole seconds) fits a submission begun at ``since``."""
    try:
        submitted = dt.datetime.fromisoformat(submitted_at or "").timestamp()
    except ValueError:
        return False
    return since - CLOCK_SKEW <= submitted <= time.time() + CLOCK_SKEW
