"""The asyncio side of MailchimpHook, for triggers: same connection settings, same retry rules."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from mailchimp_provider.hooks.config import USER_AGENT, MailchimpConfig, RetryPolicy, config_from_connection
from mailchimp_provider.hooks.errors import MailchimpApiError
from mailchimp_provider.hooks.mailchimp import discover_data_center


class MailchimpAsyncHook(BaseHook):
    """Non-blocking Mailchimp calls for the triggerer."""

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
        super().__init__()
        self.mailchimp_conn_id = mailchimp_conn_id
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._config: MailchimpConfig | None = None

    async def config(self) -> MailchimpConfig:
        if self._config is None:
            conn = await self.aget_connection(self.mailchimp_conn_id)
            self._config = await asyncio.to_thread(config_from_connection, conn, discover_data_center)
            for secret in self._config.secrets:
                mask_secret(secret)
        return self._config

    async def call(self, method: str, endpoint: str, params: dict[str, Any] | None = None) -> Any:
        config = await self.config()
        headers = {"Authorization": config.authorization, "User-Agent": USER_AGENT}
        url = f"{config.base_url}/{endpoint.lstrip('/')}"
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            for attempt in range(1, self.retry.attempts + 1):
                try:
                    async with session.request(method, url, params=params) as response:
                        body = await response.read()
                        if response.status < 400:
                            return await response.json(content_type=None) if body else None
                        error = MailchimpApiError.from_response(
                            response.status, body, response.headers.get("Content-Type", "")
                        )
                    if not error.retryable or attempt == self.retry.attempts:
                        raise error
                    reason = f"{error.status} {error.title}"
                except (TimeoutError, aiohttp.ClientError) as exc:
                    if attempt == self.retry.attempts:
                        raise MailchimpApiError(0, "Connection failed", type(exc).__name__) from None
                    reason = type(exc).__name__
                delay = self.retry.delay(attempt)
                self.log.warning(
                    "Mailchimp %s %s: %s; retry %d in %.1fs", method, endpoint, reason, attempt, delay
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def get_batch(self, batch_id: str) -> dict:
        return await self.call("GET", f"batches/{batch_id}")
