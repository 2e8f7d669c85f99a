"""Did the local server's fault really fire? A fault test that injects nothing proves nothing."""

from __future__ import annotations

import random
from typing import Any

SETTINGS_ONLY = {"seed", "bare_status", "latency_spike_ms"}  # they shape a fault, they are not one
ONE_SHOT = {"throttle_next", "bare_next", "empty_url_next"}


def fault_fired(server: Any, faults: dict[str, Any]) -> int:
    """How often the local server injected the one fault that ``faults`` (as given to set_faults) sets.

    Reads the server's own count (``faults_fired`` in its stats) where it keeps one; otherwise works it
    out from its traffic counters, what is left of a one-shot fault, or the seeded draws.
    """
    (name,) = set(faults) - SETTINGS_ONLY
    stats = server.stats()
    if "faults_fired" in stats:
        return int(stats["faults_fired"][name])
    if name in ONE_SHOT:
        return int(faults[name]) - int(server.faults()[name])
    if name == "drop_rate":
        return int(stats["dropped_connections"])
    if name == "error_rate":
        return sum(n for status, n in stats["requests_by_status"].items() if int(status) >= 500)
    if name == "latency_spike_rate":  # one seeded draw per request, in order
        draws = random.Random(faults["seed"])
        return sum(draws.random() < faults[name] for _ in range(stats["requests_total"]))
    raise ValueError(f"no way to tell whether {name} fired")
