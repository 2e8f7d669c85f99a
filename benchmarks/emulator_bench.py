"""Benchmark: a large batch-subscribe import through the emulator, end to end.

    python benchmarks/emulator_bench.py --members 1000000

Starts the emulator as a subprocess on a free port, submits the import as batch operations of
500-member batch subscribes spread over several POST /batches calls, polls until every batch is
finished (timing the status calls to show the server stays responsive), downloads and parses the
result archives, checks the counts, and prints timings and the server's peak RSS next to the targets.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "include"))

from mailchimp_emulator.testing import EmulatorProcess, read_results  # noqa: E402

TARGET_TOTAL_S = 60.0
TARGET_RSS_MB = 2048.0
TARGET_POLL_MS = 500.0


def build_operations(list_id: str, members: int, per_op: int) -> list[dict[str, str]]:
    operations = []
    for start in range(0, members, per_op):
        entries = [
            {
                "email_address": f"member{i:07d}@shop{i % 97}.mailchimp-emulator.dev",
                "status_if_new": "subscribed",
                "merge_fields": {"FNAME": f"First{i}", "LNAME": "Bench"},
                "tags": ["bench"],
            }
            for i in range(start, min(start + per_op, members))
        ]
        operations.append(
            {
                "method": "POST",
                "path": f"/lists/{list_id}",
                "operation_id": f"op-{start // per_op}",
                "body": json.dumps({"members": entries, "update_existing": True}),
            }
        )
    return operations


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--per-op", type=int, default=500, help="members per batch-subscribe operation")
    parser.add_argument("--batches", type=int, default=10, help="number of POST /batches calls")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra emulator argument, repeatable, e.g. --server-arg=--ops-per-minute=6000 (the targets "
        "are for the default pace: off)",
    )
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="mc-bench-") as tmp,
        EmulatorProcess(Path(tmp), extra_args=args.server_arg) as emu,
    ):
        print("emulator pace:", emu.health()["pace"])
        session = requests.Session()
        session.auth = ("bench", emu.api_key)

        t0 = time.perf_counter()
        operations = build_operations(emu.list_id, args.members, args.per_op)
        per_batch = -(-len(operations) // args.batches)
        payloads = [
            json.dumps({"operations": operations[i : i + per_batch]}).encode()
            for i in range(0, len(operations), per_batch)
        ]
        del operations
        t_prepared = time.perf_counter()

        batch_ids = []
        for payload in payloads:
            response = session.post(f"{emu.api_url}/batches", data=payload, timeout=120)
            response.raise_for_status()
            batch_ids.append(response.json()["id"])
        t_accepted = time.perf_counter()
        upload_mb = sum(len(p) for p in payloads) / 1e6
        del payloads

        # Poll every batch; download and parse each archive as soon as its batch finishes (a client
        # does not wait for the whole import), so parsing overlaps with the server's processing.
        pending = list(batch_ids)
        slowest_poll = 0.0
        created = errors = results = 0
        archive_mb = 0.0
        t_processed = t_accepted
        while pending:
            for batch_id in list(pending):
                started = time.perf_counter()
                batch = session.get(f"{emu.api_url}/batches/{batch_id}", timeout=30).json()
                slowest_poll = max(slowest_poll, time.perf_counter() - started)
                if batch["status"] != "finished":
                    continue
                pending.remove(batch_id)
                t_processed = time.perf_counter()
                archive = session.get(batch["response_body_url"], timeout=120).content
                archive_mb += len(archive) / 1e6
                for result in read_results(archive):
                    body = json.loads(result["response"])
                    created += body["total_created"] + body["total_updated"]
                    errors += body["error_count"]
                    results += 1
            if pending:
                time.sleep(0.5)
        t_downloaded = time.perf_counter()
        rss = peak_rss_mb(emu.pid or 0)

    accept, process, download = t_accepted - t_prepared, t_processed - t_accepted, t_downloaded - t_processed
    total = accept + process + download
    ok = created == args.members and errors == 0
    rows = [
        ("client: build operations", f"{t_prepared - t0:8.2f} s", "(not counted)"),
        ("accept (POST /batches)", f"{accept:8.2f} s", f"{len(batch_ids)} calls, {upload_mb:.0f} MB"),
        ("process (to last finished)", f"{process:8.2f} s", f"{args.members / process:,.0f} members/s"),
        (
            "download + parse (after)",
            f"{download:8.2f} s",
            f"{archive_mb:.0f} MB gzip, {results} results; earlier archives overlap processing",
        ),
        ("total accept..download", f"{total:8.2f} s", f"target < {TARGET_TOTAL_S:.0f} s"),
        ("end-to-end members/s", f"{args.members / total:8,.0f}", ""),
        ("slowest GET /batches/{id}", f"{slowest_poll * 1000:8.1f} ms", f"target < {TARGET_POLL_MS:.0f} ms"),
        ("server peak RSS (VmHWM)", f"{rss:8.0f} MB", f"target < {TARGET_RSS_MB:.0f} MB"),
        ("members written / errors", f"{created:,} / {errors}", "expected " + f"{args.members:,} / 0"),
    ]
    for label, value, note in rows:
        print(f"{label:<28}{value:>16}   {note}")
    verdict = ok and total < TARGET_TOTAL_S and rss < TARGET_RSS_MB and slowest_poll * 1000 < TARGET_POLL_MS
    print("RESULT:", "PASS" if verdict else "FAIL")
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
