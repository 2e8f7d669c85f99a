"""Injected misbehaviour: the failures a client of the real service meets, on demand and reproducibly.

`Faults` is the configuration (control API body, config file `faults:`, `--fault-*` flags);
`FaultState` is the live copy the server consults, with its counters and seeded random generator.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

BATCH_STATES = ("pending", "preprocessing", "started", "finalizing", "finished")


class FaultError(ValueError):
    """A fault setting is unknown or out of range."""


@dataclass(frozen=True)
class Faults:
    """Fault settings; all off by default. Rates are shares of /3.0 requests between 0 and 1."""

    error_rate: float = 0.0
    throttle_next: int = 0
    latency_ms: int = 0
    latency_spike_rate: float = 0.0
    latency_spike_ms: int = 0
    drop_rate: float = 0.0
    bare_status: int = 429
    bare_next: int = 0
    stuck_in: str | None = None
    empty_url_next: int = 0
    corrupt_archive: bool = False
    lose_batch_answer_next: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "latency_spike_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultError(f"{name} must be between 0 and 1")
        for name in (
            "throttle_next",
            "latency_ms",
            "latency_spike_ms",
            "bare_next",
            "empty_url_next",
            "lose_batch_answer_next",
        ):
            if getattr(self, name) < 0:
                raise FaultError(f"{name} must not be negative")
        if not 400 <= self.bare_status <= 599:
            raise FaultError("bare_status must be an HTTP error status (400-599)")
        if self.stuck_in is not None and self.stuck_in not in BATCH_STATES[:-1]:
            raise FaultError(f"stuck_in must be one of {', '.join(BATCH_STATES[:-1])} or null")

    @classmethod
    def from_dict(cls, raw: Any, base: Faults | None = None) -> Faults:
        """Build from JSON-ish input, type-checked; keys not given come from `base` (or the defaults)."""
        if not isinstance(raw, dict):
            raise FaultError("faults must be a JSON object")
        types = {f.name: f.type for f in fields(cls)}
        unknown = set(raw) - set(types)
        if unknown:
            raise FaultError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        values = asdict(base or cls())
        for key, value in raw.items():
            values[key] = _coerce(key, types[key], value)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(key: str, type_name: Any, value: Any) -> Any:
    kind = str(type_name)
    if value is None and "None" in kind:
        return None
    if kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FaultError(f"{key} must be a number")
        return float(value)
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise FaultError(f"{key} must be an integer")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise FaultError(f"{key} must be true or false")
        return value
    if not isinstance(value, str):
        raise FaultError(f"{key} must be a string or null")
    return value


@dataclass(frozen=True)
class Decision:
    """What to do to one /3.0 request before it reaches the API."""

    delay_ms: int = 0
    drop: bool = False
    bare_status: int | None = None
    throttle: bool = False
    error_status: int | None = None


# Keys of `FaultState.fired()`: the fault setting that made each injected misbehaviour happen.
FIRED_KEYS = (
    "error_rate",
    "throttle_next",
    "latency_ms",
    "latency_spike_rate",
    "drop_rate",
    "bare_next",
    "stuck_in",
    "empty_url_next",
    "corrupt_archive",
    "lose_batch_answer_next",
)


class FaultState:
    """Live faults shared by the event loop and the batch threads; one-shot counters are consumed
    atomically, and every fault that fires is counted (`fired()`) so a test can prove it happened."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._faults = Faults()
        self._rng = random.Random()
        self._throttle_left = self._bare_left = self._empty_url_left = self._lose_answer_left = 0
        self._fired: Counter[str] = Counter()
        self._errors_by_status: Counter[int] = Counter()
        self.replace(faults or Faults())

    def replace(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._throttle_left = faults.throttle_next
            self._bare_left = faults.bare_next
            self._empty_url_left = faults.empty_url_next
            self._lose_answer_left = faults.lose_batch_answer_next
            self._changed.notify_all()

    def fired(self) -> dict[str, Any]:
        """How often each fault fired since the last `reset_fired()`, plus the 5xx statuses drawn."""
        with self._lock:
            counts: dict[str, Any] = {key: self._fired[key] for key in FIRED_KEYS}
            counts["error_rate_by_status"] = {str(k): v for k, v in sorted(self._errors_by_status.items())}
            return counts

    def reset_fired(self) -> None:
        with self._lock:
            self._fired.clear()
            self._errors_by_status.clear()

    def count(self, key: str) -> None:
        """Record a fault that fired outside `decide()` (e.g. a corrupt archive download)."""
        with self._lock:
            self._fired[key] += 1

    def current(self) -> Faults:
        """The settings with the one-shot counters showing what is left of them."""
        with self._lock:
            return Faults(
                **{
                    **self._faults.to_dict(),
                    "throttle_next": self._throttle_left,
                    "bare_next": self._bare_left,
                    "empty_url_next": self._empty_url_left,
                    "lose_batch_answer_next": self._lose_answer_left,
                }
            )

    def decide(self) -> Decision:
        """Draw the fate of one /3.0 request (order: latency, drop, bare answer, 429 storm, 5xx)."""
        with self._lock:
            f, rng, fired = self._faults, self._rng, self._fired
            delay = f.latency_ms
            if delay:
                fired["latency_ms"] += 1
            if f.latency_spike_rate and rng.random() < f.latency_spike_rate:
                delay += f.latency_spike_ms
                fired["latency_spike_rate"] += 1
            if f.drop_rate and rng.random() < f.drop_rate:
                fired["drop_rate"] += 1
                return Decision(delay_ms=delay, drop=True)
            if self._bare_left:
                self._bare_left -= 1
                fired["bare_next"] += 1
                return Decision(delay_ms=delay, bare_status=f.bare_status)
            if self._throttle_left:
                self._throttle_left -= 1
                fired["throttle_next"] += 1
                return Decision(delay_ms=delay, throttle=True)
            if f.error_rate and rng.random() < f.error_rate:
                status = rng.choice((500, 502, 503))
                fired["error_rate"] += 1
                self._errors_by_status[status] += 1
                return Decision(delay_ms=delay, error_status=status)
            return Decision(delay_ms=delay)

    def take_empty_url(self) -> bool:
        """True when this finished-batch status answer should carry an empty response_body_url."""
        with self._lock:
            if self._empty_url_left:
                self._empty_url_left -= 1
                self._fired["empty_url_next"] += 1
                return True
            return False

    def take_lost_batch_answer(self) -> bool:
        """True when this accepted POST /batches should lose its answer (the batch runs regardless)."""
        with self._lock:
            if self._lose_answer_left:
                self._lose_answer_left -= 1
                self._fired["lose_batch_answer_next"] += 1
                return True
            return False

    @property
    def corrupt_archive(self) -> bool:
        with self._lock:
            return self._faults.corrupt_archive

    def wait_while_stuck(self, state: str, stop: threading.Event, poll: float = 0.2) -> None:
        """Block a batch thread while `stuck_in` names the state its batch is in (or until stop);
        each batch held counts once in `fired()["stuck_in"]`."""
        with self._lock:
            if self._faults.stuck_in == state and not stop.is_set():
                self._fired["stuck_in"] += 1
            while self._faults.stuck_in == state and not stop.is_set():
                self._changed.wait(poll)
