"""Batch request bodies and results archives."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pytest
from mailchimp_provider.batches import (
    MARKER_PREFIX,
    BatchStatus,
    CorruptArchive,
    batch_request_body,
    marker_operation,
    new_marker,
    operation_lines,
    parse_results_archive,
    split_markers,
)


def test_request_body_keeps_lines_with_unicode_line_separators_whole() -> None:
    ops = [
        {
            "method": "POST",
            "path": "/lists/a",
            "operation_id": str(i),
            "body": json.dumps(
                {"members": [{"email_address": "a@b.de", "merge_fields": {"FNAME": f"x\x85y\u2028z{i}"}}]},
                ensure_ascii=False,
            ),
        }
        for i in range(3)
    ]
    jsonl = "".join(json.dumps(op, ensure_ascii=False) + "\n" for op in ops)
    marker = new_marker()
    assert json.loads(batch_request_body(jsonl, marker)) == {
        "operations": [*ops, {"method": "GET", "path": "/ping", "operation_id": marker}]
    }


@pytest.mark.parametrize(
    "jsonl",
    [
        "",
        "\n",
        "\n\n",
        '{"a":1}',
        '{"a":1}\n',
        '\n{"a":1}\n\n{"b":"\U0001f680"}\n\n',
        '{"a":"\r"}\r\n{"b":2}',
    ],
)
def test_request_body_is_the_non_empty_lines_joined(jsonl: str) -> None:
    marker = new_marker()
    lines = [*operation_lines(jsonl), marker_operation(marker)]
    assert batch_request_body(jsonl, marker) == ('{"operations":[' + ",".join(lines) + "]}").encode()


def test_markers_are_unique_and_split_from_the_results() -> None:
    first, second = new_marker(), new_marker()
    assert first != second and first.startswith(MARKER_PREFIX)
    table = pa.table(
        {"operation_id": ["00000-00000", first], "status_code": [200, 200], "response": ["{}", "{}"]}
    )
    results, markers = split_markers(table)
    assert results["operation_id"].to_pylist() == ["00000-00000"] and markers == {first}
    ops = ["00000-00000", first, "00000-00001", second, "00000-00002"]  # markers anywhere
    table = pa.table({"operation_id": ops, "status_code": [200] * 5, "response": ["{}"] * 5})
    results, markers = split_markers(table)
    assert results["operation_id"].to_pylist() == ops[::2] and markers == {first, second}
    results, markers = split_markers(table.slice(2))
    assert results["operation_id"].to_pylist() == ops[2::2] and markers == {second}


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        folder = tarfile.TarInfo("dir")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    return buffer.getvalue()


def test_results_archive_is_parsed_skipping_empty_files() -> None:
    results = [
        {"status_code": 200, "operation_id": "a", "response": json.dumps({"ok": 1})},
        {"status_code": 400, "operation_id": "b", "response": json.dumps({"title": "Invalid Resource"})},
    ]
    data = _archive({"1.json": json.dumps(results).encode(), "empty.json": b"", "blank.json": b"  \n"})
    table = parse_results_archive(data)
    assert table.to_pylist() == [
        {"operation_id": "a", "status_code": 200, "response": '{"ok": 1}'},
        {"operation_id": "b", "status_code": 400, "response": '{"title": "Invalid Resource"}'},
    ]


BIG = 123456789012345678901234567890


@pytest.mark.parametrize(
    ("response", "expected"),
    [(b'{"n": %d}' % BIG, f'{{"n": {BIG}}}'), (b'{"x": NaN}', '{"x": NaN}')],
)
def test_results_are_read_as_json_reads_them(response: bytes, expected: str) -> None:
    """Archives are read with orjson where it reads as json does: an integer past 64 bits (a float
    there) and a NaN (refused there) still come out as json reads them."""
    content = b'[{"status_code": 200, "operation_id": %d, "response": %s}]' % (BIG, response)
    table = parse_results_archive(_archive({"1.json": content}))
    assert table.to_pylist() == [{"operation_id": str(BIG), "status_code": 200, "response": expected}]


@pytest.mark.parametrize(
    "data",
    [b"", b"not a tarball", _archive({"1.json": b"[{oops"})[:-30], _archive({"1.json": b'[{"x": 1}]'})],
)
def test_corrupt_archives_raise_a_clear_error(data: bytes) -> None:
    with pytest.raises(CorruptArchive, match="unreadable"):
        parse_results_archive(data)


def test_status_lifecycle() -> None:
    assert [s.is_terminal() for s in BatchStatus] == [False, False, False, False, True]
    assert [s.is_withdrawable() for s in BatchStatus] == [True, False, False, False, False]
