"""How fast batches are applied: an optional model of Mailchimp's own processing pace.

Off by default (every batch runs as fast as this machine allows, one at a time). The "realistic" preset
takes its numbers from what is documented and reported about Mailchimp (see the README's "Processing pace").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


class PaceError(ValueError):
    """A pace setting is unknown or out of range."""


@dataclass(frozen=True)
class Pace:
    """`operations_per_minute` per running batch (0: no limit); `parallel_batches` run at once per
    account; `finish_delay` seconds a batch stays `finalizing` after its last operation."""

    operations_per_minute: float = 0.0
    parallel_batches: int = 1
    finish_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.operations_per_minute < 0 or self.finish_delay < 0:
            raise PaceError("operations_per_minute and finish_delay must not be negative")
        if self.parallel_batches < 1:
            raise PaceError("parallel_batches must be at least 1")

    @property
    def seconds_per_operation(self) -> float:
        return 60.0 / self.operations_per_minute if self.operations_per_minute else 0.0

    @classmethod
    def from_config(cls, raw: Any, base: Pace | None = None) -> Pace:
        """A preset name ("off", "realistic") or a mapping of fields (optionally with `preset`)."""
        if isinstance(raw, str):
            raw = {"preset": raw}
        if not isinstance(raw, dict):
            raise PaceError("pace must be a preset name or a mapping")
        raw = dict(raw)
        start = base or cls()
        preset = raw.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise PaceError(f"pace preset {preset!r} not one of {', '.join(PRESETS)}")
            start = PRESETS[preset]
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise PaceError(f"unknown pace fields: {', '.join(sorted(unknown))}")
        for key, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PaceError(f"pace {key} must be a number")
        values = {**asdict(start), **raw}
        values["parallel_batches"] = int(values["parallel_batches"])
        return cls(**values)


PRESETS: dict[str, Pace] = {
    "off": Pace(),
    # 56,785 operations in about an hour (~946 a minute); "only one batch request is run at a time";
    # `finished` arrives long after the last operation (reports say up to hours; 120 s keeps runs short).
    "realistic": Pace(operations_per_minute=950.0, parallel_batches=1, finish_delay=120.0),
}
