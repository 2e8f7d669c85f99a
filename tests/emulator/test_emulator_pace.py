"""The optional processing-pace model: operations per minute, parallel batches, the delay before
`finished`; presets and flags. Off by default (the other tests run at full speed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mailchimp_emulator.pace import PRESETS, Pace, PaceError
from mailchimp_emulator.testing import EmulatorProcess

PINGS = [{"method": "GET", "path": "/ping", "operation_id": str(i)} for i in range(6)]


def session(emu: EmulatorProcess) -> requests.Session:
    http = requests.Session()
    http.auth = ("x", emu.api_key)
    return http


def submit(http: requests.Session, emu: EmulatorProcess, operations: list[dict[str, Any]]) -> str:
    response = http.post(f"{emu.api_url}/batches", json={"operations": operations})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def watch(
    http: requests.Session, emu: EmulatorProcess, batch_id: str, timeout: float = 30
) -> Iterator[dict[str, Any]]:
    """Every status seen until `finished` (inclusive), polled every 50 ms, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"{emu.api_url}/batches/{batch_id}").json()
        yield body
        if body["status"] == "finished":
            return
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_default_is_off(emu: Any) -> None:
    assert emu.health()["pace"] == {"operations_per_minute": 0.0, "parallel_batches": 1, "finish_delay": 0.0}


def test_operations_per_minute_spaces_operations(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path, extra_args=["--ops-per-minute", "300"]) as emu:  # one per 0.2 s
        http = session(emu)
        started = time.monotonic()
        seen = list(watch(http, emu, submit(http, emu, PINGS)))
        elapsed = time.monotonic() - started
    assert elapsed >= 5 * 0.2  # six operations: the first at once, then one every 0.2 s
    progress = sorted({s["finished_operations"] for s in seen if s["status"] == "started"})
    assert len(progress) >= 3  # seen part-way, several times


def test_finish_delay_holds_the_batch_short_of_finished(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path, extra_args=["--finish-delay", "1"]) as emu:
        http = session(emu)
        seen = list(watch(http, emu, submit(http, emu, PINGS)))
    held = [s for s in seen if s["finished_operations"] == len(PINGS) and s["status"] != "finished"]
    assert held and {s["status"] for s in held} == {"finalizing"}
    assert len(held) >= 10  # about a second of 50 ms polls
    assert seen[-1]["response_body_url"] and not held[0]["response_body_url"]


@pytest.mark.parametrize("parallel", [1, 2])
def test_parallel_batches(tmp_path: Path, parallel: int) -> None:
    args = ["--ops-per-minute", "120", "--parallel-batches", str(parallel)]  # one operation per 0.5 s
    with EmulatorProcess(tmp_path, extra_args=args) as emu:
        http = session(emu)
        first, second = submit(http, emu, PINGS[:3]), submit(http, emu, PINGS[:3])
        time.sleep(0.6)
        states = {b: http.get(f"{emu.api_url}/batches/{b}").json()["status"] for b in (first, second)}
        for batch_id in (first, second):
            list(watch(http, emu, batch_id))
    if parallel == 1:
        assert states == {first: "started", second: "pending"}
    else:
        assert states == {first: "started", second: "started"}


def test_realistic_preset_from_config_and_flag_override(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path, config={"pace": "realistic"}, extra_args=["--finish-delay", "5"]) as emu:
        pace = emu.health()["pace"]
    assert pace == {**PRESETS["realistic"].__dict__, "finish_delay": 5.0}
    assert pace["operations_per_minute"] == 950 and pace["parallel_batches"] == 1


def test_pace_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(PaceError):
        Pace.from_config({"preset": "warp"})
    with pytest.raises(PaceError):
        Pace.from_config({"parallel_batches": 0})
    with pytest.raises(PaceError):
        Pace.from_config({"operations_per_minute": "fast"})
    with pytest.raises(RuntimeError, match="unknown pace fields"):
        EmulatorProcess(tmp_path, config={"pace": {"speed": 1}}).start()
