"""The control API under /_emulator (no auth, no faults): faults, stats, reset, member inspection."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .faults import FaultError, Faults
from .problems import ApiError, invalid
from .rules import LISTED_STATUSES
from .store import Store

if TYPE_CHECKING:
    from .app import Emulator

PREFIX = "/_emulator"


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"{}")
    except ValueError:
        raise ApiError("JSONParseError") from None


def add_routes(app: web.Application, emulator: Emulator) -> None:
    """Register the control endpoints; handlers close over the running emulator."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "pid": os.getpid(),
                "api_url": f"{emulator.settings.base_url}/3.0",
                "pace": asdict(emulator.settings.pace),
            }
        )

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(emulator.faults.current().to_dict())

    async def set_faults(request: web.Request) -> web.Response:
        """PUT replaces all faults (unnamed ones switch off); PATCH changes only the named ones."""
        raw = await _json_body(request)
        base = emulator.faults.current() if request.method == "PATCH" else None
        try:
            faults = Faults.from_dict(raw, base)
        except FaultError as exc:
            raise invalid("faults", str(exc), f"Invalid fault settings: {exc}") from None
        emulator.faults.replace(faults)
        return web.json_response(emulator.faults.current().to_dict())

    async def clear_faults(request: web.Request) -> web.Response:
        emulator.faults.replace(Faults())
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**emulator.stats.snapshot(), "faults_fired": emulator.faults.fired()})

    async def reset_stats(request: web.Request) -> web.Response:
        emulator.stats.reset()
        emulator.faults.reset_fired()
        return web.Response(status=204)

    async def reset(request: web.Request) -> web.Response:
        await emulator.in_db(emulator.reset)
        return web.Response(status=204)

    async def members(request: web.Request) -> web.Response:
        list_id = request.match_info["list_id"]
        status = request.query.get("status") or None
        if status is not None and status not in LISTED_STATUSES:
            raise invalid("status", f"Value must be one of: {', '.join(LISTED_STATUSES)}")

        def load(store: Store) -> list[dict[str, Any]] | None:
            audience = store.audience(list_id)
            if audience is None:
                return None
            everyone = (
                store.list_members(audience.list_no, status, None, 0)
                if status
                else [m for s in LISTED_STATUSES for m in store.list_members(audience.list_no, s, None, 0)]
            )
            return [
                {
                    "id": m.hash,
                    "email_address": m.email,
                    "status": m.status,
                    "merge_fields": m.merge_fields,
                    "tags": m.tags,
                    "language": m.language,
                    "vip": m.vip,
                    "last_changed": m.last_changed,
                }
                for m in sorted(everyone, key=lambda m: m.seq or 0)
            ]

        found = await emulator.in_db(load)
        if found is None:
            raise ApiError("ResourceNotFound")
        return web.json_response({"list_id": list_id, "total_items": len(found), "members": found})

    app.router.add_get(f"{PREFIX}/health", health)
    app.router.add_get(f"{PREFIX}/faults", get_faults)
    app.router.add_put(f"{PREFIX}/faults", set_faults)
    app.router.add_patch(f"{PREFIX}/faults", set_faults)
    app.router.add_delete(f"{PREFIX}/faults", clear_faults)
    app.router.add_get(f"{PREFIX}/stats", stats)
    app.router.add_post(f"{PREFIX}/stats/reset", reset_stats)
    app.router.add_post(f"{PREFIX}/reset", reset)
    app.router.add_get(f"{PREFIX}/lists/{{list_id}}/members", members)
