"""Traffic counters, and the per-account limit of simultaneous /3.0 requests."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from .model import now_iso


class Stats:
    """Counts requests and tracks the peak number in flight (attempts over the limit count too)."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._in_flight = 0
        self._clear()

    def _clear(self) -> None:
        self._peak = self._in_flight
        self._by_status: Counter[int] = Counter()
        self._too_many = 0
        self._dropped = 0
        self._batches_submitted = 0
        self._since = now_iso()

    def enter(self) -> bool:
        """Register a /3.0 request; False when it is over the simultaneous-connection limit."""
        with self._lock:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            return self._in_flight <= self.max_connections

    def leave(self, status: int | None) -> None:
        """Unregister a request with the status it answered (None: the connection was dropped)."""
        with self._lock:
            self._in_flight -= 1
            if status is None:
                self._dropped += 1
            else:
                self._by_status[status] += 1
                self._too_many += status == 429

    def batch_submitted(self) -> None:
        with self._lock:
            self._batches_submitted += 1

    def reset(self) -> None:
        with self._lock:
            self._clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "since": self._since,
                "max_connections": self.max_connections,
                "in_flight": self._in_flight,
                "peak_concurrency": self._peak,
                "requests_total": sum(self._by_status.values()) + self._dropped,
                "requests_by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                "too_many_requests": self._too_many,
                "dropped_connections": self._dropped,
                "batches_submitted": self._batches_submitted,
            }
