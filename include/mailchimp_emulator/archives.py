"""Batch result archives: where the files live, how the tar.gz is built, and its pre-signed URL.

Mailchimp hands out a pre-signed storage URL (no API auth, valid for ten minutes, renewed by every
GET /batches/{id}). Here the URL points at this server, outside /3.0, and looks like an S3 SigV2 link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ARCHIVE_ROUTE = "/mailchimp-api-batch"
_SUFFIX = "-response.tar.gz"
_XOR_TABLE = bytes(b ^ 0x5A for b in range(256))


class BatchFiles:
    """The per-batch directory beside the state database: operations, result parts, final archive."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def directory(self, batch_id: str) -> Path:
        return self.root / batch_id

    def operations(self, batch_id: str) -> Path:
        return self.directory(batch_id) / "operations.json"

    def part(self, batch_id: str, index: int) -> Path:
        return self.directory(batch_id) / f"part-{index:05d}.json"

    def archive(self, batch_id: str) -> Path:
        return self.directory(batch_id) / "response.tar.gz"

    def drop_parts_from(self, batch_id: str, first: int) -> None:
        """Remove result parts a crash left behind uncommitted."""
        for path in self.directory(batch_id).glob("part-*.json*"):
            stem = path.name.split(".")[0]
            if path.suffix == ".tmp" or int(stem.removeprefix("part-")) >= first:
                path.unlink(missing_ok=True)

    def remove(self, batch_id: str) -> None:
        shutil.rmtree(self.directory(batch_id), ignore_errors=True)

    def wipe(self) -> None:
        for child in self.root.iterdir():
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def encode_results(results: list[dict[str, Any]]) -> bytes:
    """One archive member: a JSON array of {status_code, operation_id, response (a JSON string)}.

    orjson, as a million-member import writes megabytes of them; json for what orjson refuses (an
    operation_id with a lone surrogate)."""
    try:
        return orjson.dumps(results)
    except orjson.JSONEncodeError:
        return json.dumps(results, separators=(",", ":")).encode("utf-8")


def drop_last_results(files: BatchFiles, batch_id: str, parts: int, count: int) -> int:
    """Remove the results of the batch's last `count` operations from its parts (the `omit_results`
    fault: an archive that lacks some operations); returns how many were removed."""
    removed = 0
    for index in reversed(range(parts)):
        if removed >= count:
            break
        path = files.part(batch_id, index)
        results = json.loads(path.read_bytes())
        keep = max(len(results) - (count - removed), 0)
        removed += len(results) - keep
        write_atomically(path, encode_results(results[:keep]))
    return removed


def build_archive(files: BatchFiles, batch_id: str, parts: int) -> Path:
    """Tar and gzip the committed parts (a "./" entry first, as in Mailchimp's archives), then drop them."""
    target = files.archive(batch_id)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
        tar.copybufsize = 4 << 20  # big chunks: zlib then runs long stretches without the GIL
        now = time.time()
        folder = tarfile.TarInfo("./")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, now
        tar.addfile(folder)
        for index in range(parts):
            path = files.part(batch_id, index)
            info = tarfile.TarInfo(f"./{batch_id}-{index:05d}.json")
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, now
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    tmp.replace(target)
    for index in range(parts):
        files.part(batch_id, index).unlink(missing_ok=True)
    return target


def corrupted_chunks(path: Path, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The archive with its gzip header kept and every later byte scrambled: opens, then fails to inflate."""
    with open(path, "rb") as handle:
        first = True
        while chunk := handle.read(chunk_size):
            if first:
                yield chunk[:10] + chunk[10:].translate(_XOR_TABLE)
                first = False
            else:
                yield chunk.translate(_XOR_TABLE)


@dataclass(frozen=True)
class ArchiveLink:
    """A verified archive request."""

    batch_id: str
    verdict: str  # "ok", "expired" or "bad-signature"


class ArchiveSigner:
    """Issues and checks pre-signed archive URLs (HMAC over name, expiry and a per-URL token)."""

    def __init__(self, secret: str, ttl: float) -> None:
        self._key = secret.encode()
        self.ttl = ttl

    def _sign(self, name: str, expires: str, token: str) -> str:
        digest = hmac.new(self._key, f"GET\n{name}\n{expires}\n{token}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def url(self, base_url: str, batch_id: str) -> str:
        name = batch_id + _SUFFIX
        expires = str(int(time.time() + self.ttl))
        token = secrets.token_urlsafe(12)
        signature = self._sign(name, expires, token)
        return (
            f"{base_url}{ARCHIVE_ROUTE}/{name}?AWSAccessKeyId=EMULATORKEY&Expires={expires}"
            f"&x-amz-security-token={token}&Signature={signature}"
        )

    def check(self, name: str, query: dict[str, str]) -> ArchiveLink | None:
        """None when the name is not an archive name at all."""
        if not name.endswith(_SUFFIX):
            return None
        batch_id = name.removesuffix(_SUFFIX)
        expires = query.get("Expires", "")
        expected = self._sign(name, expires, query.get("x-amz-security-token", ""))
        if not expires.isdigit() or not hmac.compare_digest(expected, query.get("Signature", "")):
            return ArchiveLink(batch_id, "bad-signature")
        if int(expires) < time.time():
            return ArchiveLink(batch_id, "expired")
        return ArchiveLink(batch_id, "ok")


def s3_error(code: str, message: str, request_id: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    )
