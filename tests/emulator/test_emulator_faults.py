"""Faults on demand (control API and flags), the concurrency limit and the traffic counters."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from mailchimp_emulator.testing import EmulatorProcess


def ping(http: requests.Session, emu: Any) -> requests.Response:
    return http.get(f"{emu.api_url}/ping")


def statuses(http: requests.Session, emu: Any, n: int) -> list[int]:
    return [ping(http, emu).status_code for _ in range(n)]


def test_throttle_next_is_a_429_storm(http: requests.Session, emu: Any) -> None:
    emu.set_faults(throttle_next=3)
    responses = [ping(http, emu) for _ in range(4)]
    assert [r.status_code for r in responses] == [429, 429, 429, 200]
    assert responses[0].headers["Content-Type"].startswith("application/problem+json")
    assert responses[0].json()["detail"] == "You have exceeded the limit of 10 simultaneous connections."
    assert emu.stats()["too_many_requests"] == 3
    assert emu.fired()["throttle_next"] == 3


@pytest.mark.parametrize("status", [403, 429])
def test_bare_status_has_an_empty_body(http: requests.Session, emu: Any, status: int) -> None:
    emu.set_faults(bare_status=status, bare_next=2)
    responses = [ping(http, emu) for _ in range(3)]
    assert [r.status_code for r in responses] == [status, status, 200]
    assert responses[0].content == b"" and "X-Request-Id" in responses[0].headers
    assert emu.fired()["bare_next"] == 2


def test_error_rate_mixes_5xx_and_is_seeded(http: requests.Session, emu: Any) -> None:
    emu.set_faults(error_rate=1.0, seed=7)
    first = [ping(http, emu) for _ in range(30)]
    codes = Counter(r.status_code for r in first)
    assert set(codes) == {500, 502, 503}
    html = next(r for r in first if r.status_code == 502)
    assert html.headers["Content-Type"].startswith("text/html") and b"502 Bad Gateway" in html.content
    problem = next(r for r in first if r.status_code == 503)
    assert problem.json()["status"] == 503
    fired = emu.fired()
    assert fired["error_rate"] == 30
    assert fired["error_rate_by_status"] == {str(k): v for k, v in sorted(codes.items())}
    emu.set_faults(error_rate=0.5, seed=11)
    run_a = statuses(http, emu, 20)
    emu.set_faults(error_rate=0.5, seed=11)
    assert statuses(http, emu, 20) == run_a and set(run_a) > {200}


def test_latency_and_spikes(http: requests.Session, emu: Any) -> None:
    emu.set_faults(latency_ms=150)
    started = time.perf_counter()
    ping(http, emu)
    assert time.perf_counter() - started >= 0.15
    emu.set_faults(latency_spike_rate=1.0, latency_spike_ms=200)
    started = time.perf_counter()
    ping(http, emu)
    assert time.perf_counter() - started >= 0.2
    assert (emu.fired()["latency_ms"], emu.fired()["latency_spike_rate"]) == (1, 1)


def test_drop_rate_closes_without_an_answer(http: requests.Session, emu: Any) -> None:
    emu.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{emu.api_url}/ping", auth=("x", emu.api_key))
    emu.clear_faults()
    assert ping(requests.Session(), emu).status_code == 401  # the server carries on
    assert emu.stats()["dropped_connections"] == 1
    assert emu.fired()["drop_rate"] == 1


def test_faults_touch_only_the_api(http: requests.Session, emu: Any) -> None:
    emu.set_faults(error_rate=1.0, throttle_next=5, bare_next=5)
    assert emu.stats()["requests_total"] == 0
    assert emu.members() == []
    assert (
        requests.get(
            f"{emu.base_url}/oauth2/metadata", headers={"Authorization": f"OAuth {emu.oauth_token}"}
        ).status_code
        == 200
    )


def test_control_api_get_put_patch_delete(emu: Any) -> None:
    assert emu.faults()["error_rate"] == 0.0
    assert emu.set_faults(latency_ms=5, stuck_in="started")["stuck_in"] == "started"
    patched = requests.patch(f"{emu.base_url}/_emulator/faults", json={"error_rate": 0.25}).json()
    assert (patched["latency_ms"], patched["error_rate"]) == (5, 0.25)
    replaced = emu.set_faults(seed=3)
    assert (replaced["latency_ms"], replaced["stuck_in"], replaced["seed"]) == (0, None, 3)
    emu.clear_faults()
    assert emu.faults()["seed"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 2},
        {"nope": 1},
        {"stuck_in": "finished"},
        {"latency_ms": "1"},
        {"bare_status": 200},
        {"corrupt_archive": 1},
    ],
)
def test_bad_fault_settings_are_refused(emu: Any, body: dict[str, Any]) -> None:
    response = requests.put(f"{emu.base_url}/_emulator/faults", json=body)
    assert response.status_code == 400 and response.json()["title"] == "Invalid Resource"


def test_reset_clears_faults_and_stats(http: requests.Session, emu: Any) -> None:
    emu.set_faults(throttle_next=1)
    ping(http, emu)
    emu.reset()
    assert emu.faults()["throttle_next"] == 0 and emu.stats()["requests_total"] == 0
    assert emu.fired()["throttle_next"] == 0


def test_stats_reset(http: requests.Session, emu: Any) -> None:
    ping(http, emu)
    stats = emu.stats()
    assert (stats["requests_total"], stats["requests_by_status"], stats["peak_concurrency"]) == (
        1,
        {"200": 1},
        1,
    )
    emu.reset_stats()
    assert emu.stats()["requests_total"] == 0


def _concurrent_pings(emu: Any, n: int) -> list[int]:
    barrier = threading.Barrier(n)
    codes: list[int] = []

    def one() -> None:
        barrier.wait()
        codes.append(requests.get(f"{emu.api_url}/ping", auth=("x", emu.api_key), timeout=10).status_code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def test_eleventh_simultaneous_request_gets_429(emu: Any) -> None:
    emu.set_faults(latency_ms=800)
    codes = _concurrent_pings(emu, 11)
    assert sorted(codes) == [200] * 10 + [429]
    stats = emu.stats()
    assert stats["peak_concurrency"] == 11 and stats["too_many_requests"] == 1 and stats["in_flight"] == 0


def test_ten_simultaneous_requests_are_fine(emu: Any) -> None:
    emu.set_faults(latency_ms=500)
    assert _concurrent_pings(emu, 10) == [200] * 10
    assert emu.stats()["peak_concurrency"] == 10


def test_fault_flags_at_startup(tmp_path: Path) -> None:
    with EmulatorProcess(
        tmp_path, extra_args=["--throttle-next", "1", "--stuck-in", "started", "--fault-seed", "4"]
    ) as emu:
        assert (emu.faults()["throttle_next"], emu.faults()["stuck_in"], emu.faults()["seed"]) == (
            1,
            "started",
            4,
        )
        assert [
            requests.get(f"{emu.api_url}/ping", auth=("x", emu.api_key)).status_code for _ in range(2)
        ] == [429, 200]


def test_unknown_control_path(emu: Any) -> None:
    response = requests.get(f"{emu.base_url}/_emulator/nothing")
    assert response.status_code == 404 and response.json()["title"] == "Resource Not Found"


def test_every_fault_has_a_counter(emu: Any) -> None:
    fired = emu.fired()
    settings = set(emu.faults()) - {"seed", "bare_status", "latency_spike_ms"}
    assert settings == set(fired) - {"error_rate_by_status"}
    assert fired.pop("error_rate_by_status") == {} and set(fired.values()) == {0}


def test_counters_survive_fault_changes_until_stats_reset(http: requests.Session, emu: Any) -> None:
    emu.set_faults(throttle_next=1)
    ping(http, emu)
    emu.clear_faults()
    assert emu.fired()["throttle_next"] == 1
    emu.reset_stats()
    assert emu.fired()["throttle_next"] == 0


def test_lost_answer_to_post_batches(http: requests.Session, emu: Any) -> None:
    """The batch is accepted and runs, but the client never hears of it (a proxy dropped the answer)."""
    emu.set_faults(lose_batch_answer_next=1)
    operation = {
        "method": "PUT",
        "path": f"/lists/{emu.list_id}/members/jane@acme-mail.net",
        "body": '{"email_address": "jane@acme-mail.net", "status_if_new": "subscribed"}',
    }
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{emu.api_url}/batches", json={"operations": [operation]}, auth=("x", emu.api_key))
    assert emu.fired()["lose_batch_answer_next"] == 1 and emu.faults()["lose_batch_answer_next"] == 0
    deadline = time.monotonic() + 30
    while True:
        batches = http.get(f"{emu.api_url}/batches").json()["batches"]
        if batches and batches[0]["status"] == "finished":
            break
        assert time.monotonic() < deadline, batches
        time.sleep(0.05)
    assert len(batches) == 1 and batches[0]["total_operations"] == 1
    assert [m["email_address"] for m in emu.members()] == ["jane@acme-mail.net"]
    second = http.post(f"{emu.api_url}/batches", json={"operations": []})  # one-shot: answered again
    assert second.status_code == 200 and emu.stats()["batches_submitted"] == 2


def test_lost_answer_spares_refused_batches(http: requests.Session, emu: Any) -> None:
    emu.set_faults(lose_batch_answer_next=1)
    assert http.post(f"{emu.api_url}/batches", json={"ops": []}).status_code == 400
    assert http.get(f"{emu.api_url}/ping").status_code == 200
    assert emu.fired()["lose_batch_answer_next"] == 0 and emu.faults()["lose_batch_answer_next"] == 1
