"""The aiohttp layer: /3.0 entry (limit, faults, auth, X-Trigger-Error), OAuth metadata, archives.

Handlers of api.py run in a small thread pool (each thread with its own SQLite connection), so the
event loop only parses HTTP and keeps answering while imports run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from . import control
from .api import Api, ApiRequest, ApiResponse
from .archives import ARCHIVE_ROUTE, ArchiveSigner, BatchFiles, corrupted_chunks, s3_error
from .auth import Authenticator
from .config import Settings
from .faults import Decision, Faults, FaultState
from .model import now_iso
from .problems import KINDS, PROBLEM_CONTENT_TYPE, ApiError, lookup_trigger
from .runner import BatchRunner
from .stats import Stats
from .store import Database, Store

log = logging.getLogger("mailchimp_emulator")
T = TypeVar("T")

_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_HTTP_KINDS = {400: "BadRequest", 404: "ResourceNotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
REQUEST_ID = web.AppKey("request_id", str)


def problem_response(exc: ApiError, request_id: str) -> web.Response:
    return web.Response(
        status=exc.status,
        text=json.dumps(exc.body(request_id)),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=exc.headers,
    )


def api_response(response: ApiResponse) -> web.Response:
    if response.status == 204:
        return web.Response(status=204, headers=response.headers)
    return web.Response(
        status=response.status,
        text=response.json_text(),
        headers=response.headers,
        content_type=PROBLEM_CONTENT_TYPE if response.problem else "application/json",
    )


class Emulator:
    """Wires the parts together and owns their lifecycle."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.state_path)
        store = self.db.connect()
        try:
            secret = store.secret()
            store.sync_audiences(settings.audiences, now_iso())
        finally:
            store.close()
        self.files = BatchFiles(settings.archive_dir)
        self.signer = ArchiveSigner(secret, settings.archive_ttl)
        self.faults = FaultState(settings.faults)
        self.stats = Stats(settings.max_connections)
        self.auth = Authenticator(settings)
        self.api = Api(settings, self.files, self.signer, self._batch_submitted)
        self.runner = BatchRunner(settings, self.db, self.files, self.api, self.faults)
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="api")
        self._local = threading.local()
        self._stores: list[Store] = []
        self._stores_lock = threading.Lock()

    def _batch_submitted(self, batch_id: str, operations: list[dict[str, Any]]) -> None:
        self.stats.batch_submitted()
        self.runner.submitted(batch_id, operations)

    # ---- database access off the event loop ------------------------------------------------------

    def _store(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = self.db.connect()
            with self._stores_lock:
                self._stores.append(store)
        return store

    async def in_db(self, work: Callable[[Store], T]) -> T:
        """Run `work(store)` in the API thread pool with that thread's connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: work(self._store()))

    def reset(self, store: Store) -> None:
        """Wipe members and batches, restore configured audiences, clear faults and stats."""
        store.wipe()
        self.files.wipe()
        store.sync_audiences(self.settings.audiences, now_iso(), reset_fields=True)
        self.faults.replace(Faults())
        self.faults.reset_fired()
        self.stats.reset()

    # ---- lifecycle -------------------------------------------------------------------------------

    async def on_startup(self, app: web.Application) -> None:
        # Everything built so far (modules, the app, the member index) lives as long as the process: kept
        # out of the cyclic collector, whose full passes over it took a sixth of a big import's CPU.
        # Collected first, so no garbage of the startup is kept for good.
        gc.collect()
        gc.freeze()
        self.runner.start()

    async def on_cleanup(self, app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.runner.stop)
        self._executor.shutdown(wait=True)
        for store in self._stores:
            store.close()
        self.db.close()

    # ---- middleware: request id and uniform errors -------------------------------------------------

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        request[REQUEST_ID] = request_id
        try:
            response = await handler(request)
        except ApiError as exc:
            response = problem_response(exc, request_id)
        except web.HTTPException as exc:
            kind = _HTTP_KINDS.get(exc.status, "BadRequest" if exc.status < 500 else "InternalServerError")
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            response = problem_response(ApiError(kind, headers=headers), request_id)
        except Exception:
            log.exception(
                "unhandled error for %s %s", request.method, request.rel_url.path.split("/members/")[0]
            )
            response = problem_response(ApiError("InternalServerError"), request_id)
        response.headers["X-Request-Id"] = request_id
        return response

    # ---- /3.0 --------------------------------------------------------------------------------------

    async def api_entry(self, request: web.Request) -> web.StreamResponse:
        allowed = self.stats.enter()
        status: int | None = None
        try:
            response = await self._api_entry(request, allowed)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except _Dropped:
            return web.Response(status=499)
        except Exception:
            status = 500
            raise
        finally:
            self.stats.leave(status)

    async def _api_entry(self, request: web.Request, allowed: bool) -> web.StreamResponse:
        request_id = request[REQUEST_ID]
        if not allowed:
            return problem_response(ApiError("TooManyRequests"), request_id)
        decision = self.faults.decide()
        if decision.delay_ms:
            await asyncio.sleep(decision.delay_ms / 1000)
        faulty = self._fault_response(request, decision, request_id)
        if faulty is not None:
            return faulty
        try:
            self.auth.check(request.headers.get("Authorization"))
            trigger = request.headers.get("X-Trigger-Error")
            if trigger:
                kind = lookup_trigger(trigger)
                if kind is None:
                    raise ApiError(
                        "BadRequest",
                        f"Unknown X-Trigger-Error value {trigger[:40]!r}; use one of {', '.join(KINDS)}.",
                    )
                raise ApiError(kind.name)
            body = await request.read()
        except ApiError as exc:
            return problem_response(exc, request_id)
        except web.HTTPRequestEntityTooLarge:
            return problem_response(ApiError("PayloadTooLarge"), request_id)
        api_request = ApiRequest(
            method=request.method,
            path=request.match_info["tail"] or "/",
            query=dict(request.query),
            body=body,
            base_url=self._base_url(request),
            request_id=request_id,
        )
        result = await self.in_db(lambda store: self._answer(store, api_request))
        if (
            result.status == 200
            and api_request.method == "POST"
            and api_request.path.rstrip("/") == "/batches"
            and self.faults.take_lost_batch_answer()
        ):
            request.protocol.force_close()  # the batch is queued and runs; its answer is lost
            raise _Dropped
        return api_response(result)

    def _answer(self, store: Store, api_request: ApiRequest) -> ApiResponse:
        response = self.api.handle(store, api_request)
        if (
            api_request.method == "GET"
            and response.status == 200
            and api_request.path.startswith("/batches/")
            and isinstance(response.body, dict)
            and response.body.get("response_body_url")
            and self.faults.take_empty_url()
        ):
            response.body["response_body_url"] = ""
        if response.text is None and response.body is not None:
            response.text = json.dumps(response.body)  # encode here, off the event loop
        return response

    def _fault_response(
        self,
        request: web.Request,
        decision: Decision,
        request_id: str,
    ) -> web.StreamResponse | None:
        if decision.drop:
            request.protocol.force_close()
            raise _Dropped
        if decision.bare_status is not None:
            return web.Response(status=decision.bare_status, body=b"")
        if decision.throttle:
            return problem_response(ApiError("TooManyRequests"), request_id)
        if decision.error_status == 502:
            return web.Response(status=502, text=_BAD_GATEWAY_HTML, content_type="text/html")
        if decision.error_status is not None:
            kind = "InternalServerError" if decision.error_status == 500 else "ServiceUnavailable"
            return problem_response(ApiError(kind), request_id)
        return None

    def _base_url(self, request: web.Request) -> str:
        """How the client reached us (Host header), unless a public URL is configured."""
        if self.settings.public_url:
            return self.settings.base_url
        return f"{request.scheme}://{request.host}"

    # ---- OAuth metadata ------------------------------------------------------------------------------

    async def oauth_metadata(self, request: web.Request) -> web.Response:
        """Like login.mailchimp.com/oauth2/metadata: 200 even for a bad token, then without api_endpoint."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("oauth", "bearer") or not self.auth.token_valid(token.strip()):
            return web.json_response({"error": "invalid_token", "error_description": "Invalid OAuth token"})
        return web.json_response(
            {
                "dc": self.settings.dc,
                "role": "owner",
                "accountname": self.settings.account_name,
                "user_id": 1001,
                "login": {
                    "email": self.settings.login_email,
                    "avatar": None,
                    "login_id": 1001,
                    "login_name": "owner",
                    "login_email": self.settings.login_email,
                },
                "login_url": "https://login.mailchimp.com",
                "api_endpoint": self._base_url(request),
            }
        )

    # ---- result archives -----------------------------------------------------------------------------

    async def download_archive(self, request: web.Request) -> web.StreamResponse:
        request_id = request[REQUEST_ID]
        link = self.signer.check(request.match_info["name"], dict(request.query))
        path = self.files.archive(link.batch_id) if link else None
        if link is None or path is None or not path.is_file():
            return _s3_response(404, "NoSuchKey", "The specified key does not exist.", request_id)
        if link.verdict == "bad-signature":
            return _s3_response(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
                request_id,
            )
        if link.verdict == "expired":
            return _s3_response(403, "AccessDenied", "Request has expired", request_id)
        if not self.faults.corrupt_archive:
            return web.FileResponse(path, headers={"Content-Type": "application/x-gzip"})
        self.faults.count("corrupt_archive")
        response = web.StreamResponse(headers={"Content-Type": "application/x-gzip"})
        response.headers["X-Request-Id"] = request_id
        await response.prepare(request)
        for chunk in corrupted_chunks(path):
            await response.write(chunk)
        await response.write_eof()
        return response


class _Dropped(Exception):
    """The drop fault closed the connection; nothing is sent."""


def _s3_response(status: int, code: str, message: str, request_id: str) -> web.Response:
    return web.Response(
        status=status, text=s3_error(code, message, request_id), content_type="application/xml"
    )


def create_app(emulator: Emulator) -> web.Application:
    app = web.Application(client_max_size=emulator.settings.max_body_bytes, middlewares=[emulator.middleware])
    app.router.add_route("*", "/3.0{tail:.*}", emulator.api_entry)
    app.router.add_get("/oauth2/metadata", emulator.oauth_metadata)
    app.router.add_get(ARCHIVE_ROUTE + "/{name}", emulator.download_archive)
    control.add_routes(app, emulator)
    app.on_startup.append(emulator.on_startup)
    app.on_cleanup.append(emulator.on_cleanup)
    return app
