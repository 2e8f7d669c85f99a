"""Authentication, OAuth metadata, X-Trigger-Error, and bad input: always problem+json, never a crash."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from typing import Any

import pytest
import requests

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


def assert_problem(response: requests.Response, status: int, title: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.headers["X-Request-Id"]
    body: dict[str, Any] = response.json()
    assert PROBLEM_KEYS <= set(body) and body["status"] == status
    assert body["type"].startswith("https://mailchimp.com/developer/marketing/docs/errors/")
    assert body["instance"] == response.headers["X-Request-Id"]
    assert "Traceback" not in response.text
    if title is not None:
        assert body["title"] == title
    return body


class TestAuth:
    def test_basic_with_any_user(self, emu: Any) -> None:
        for user in ("anystring", "", "me@acme-mail.net"):
            assert requests.get(f"{emu.api_url}/ping", auth=(user, emu.api_key)).status_code == 200

    @pytest.mark.parametrize("credential", ["key", "key-without-dc", "token"])
    def test_bearer_with_key_or_token(self, emu: Any, credential: str) -> None:
        value = {
            "key": emu.api_key,
            "key-without-dc": emu.api_key.rpartition("-")[0],
            "token": emu.oauth_token,
        }[credential]
        response = requests.get(f"{emu.api_url}/ping", headers={"Authorization": f"Bearer {value}"})
        assert response.status_code == 200

    def test_missing_key(self, emu: Any) -> None:
        assert_problem(requests.get(f"{emu.api_url}/ping"), 401, "API Key Missing")
        assert_problem(requests.get(f"{emu.api_url}/ping", auth=("user", "")), 401, "API Key Missing")

    @pytest.mark.parametrize(
        "header",
        [
            "Bearer 0123456789abcdef0123456789abcdee-us6",  # wrong key
            "Bearer 0123456789abcdef0123456789abcdef-us9",  # right key, wrong data center
            "Basic !!!notbase64",
            "Digest whatever",
        ],
    )
    def test_invalid_key(self, emu: Any, header: str) -> None:
        assert_problem(
            requests.get(f"{emu.api_url}/ping", headers={"Authorization": header}), 401, "API Key Invalid"
        )

    def test_basic_header_built_by_hand(self, emu: Any) -> None:
        token = base64.b64encode(f"x:{emu.api_key}".encode()).decode()
        assert (
            requests.get(f"{emu.api_url}/ping", headers={"Authorization": f"Basic {token}"}).status_code
            == 200
        )


class TestOAuthMetadata:
    def test_valid_token(self, emu: Any) -> None:
        meta = requests.get(
            f"{emu.base_url}/oauth2/metadata", headers={"Authorization": f"OAuth {emu.oauth_token}"}
        )
        body = meta.json()
        assert meta.status_code == 200 and meta.headers["X-Request-Id"]
        assert body["api_endpoint"] == emu.base_url and body["dc"] == "us6"
        assert {"role", "accountname", "user_id", "login", "login_url"} <= set(body)
        ping = requests.get(
            body["api_endpoint"] + "/3.0/ping", headers={"Authorization": f"Bearer {emu.oauth_token}"}
        )
        assert ping.status_code == 200

    @pytest.mark.parametrize("headers", [{"Authorization": "OAuth nope"}, {}, {"Authorization": "OAuth"}])
    def test_bad_token_is_200_without_endpoint(self, emu: Any, headers: dict[str, str]) -> None:
        response = requests.get(f"{emu.base_url}/oauth2/metadata", headers=headers)
        assert response.status_code == 200
        assert "api_endpoint" not in response.json() and response.json()["error"] == "invalid_token"


class TestTriggerError:
    @pytest.mark.parametrize(
        ("value", "status", "title"),
        [
            ("APIKeyMissing", 401, "API Key Missing"),
            ("ResourceNotFound", 404, "Resource Not Found"),
            ("Too Many Requests", 429, "Too Many Requests"),
            ("503", 503, "Service Unavailable"),
            ("InternalServerError", 500, "Internal Server Error"),
            ("Member In Compliance State", 400, None),
        ],
    )
    def test_named_error(
        self, http: requests.Session, emu: Any, value: str, status: int, title: str | None
    ) -> None:
        assert_problem(http.get(f"{emu.api_url}/ping", headers={"X-Trigger-Error": value}), status, title)

    def test_unknown_name(self, http: requests.Session, emu: Any) -> None:
        body = assert_problem(http.get(f"{emu.api_url}/ping", headers={"X-Trigger-Error": "Nope"}), 400)
        assert "APIKeyMissing" in body["detail"]


class TestBadInput:
    url_batches = "/batches"

    @pytest.mark.parametrize(
        "data",
        [b"{bad", b'{"operations": NaN}', b"[" * 100_000, b"\xff\xfe\x00garbage", b'{"a": 1} trailing'],
    )
    def test_malformed_json(self, http: requests.Session, emu: Any, data: bytes) -> None:
        assert_problem(http.post(f"{emu.api_url}/batches", data=data), 400, "JSON Parse Exception")

    @pytest.mark.parametrize("data", [b"[]", b'"text"', b"42", b"null"])
    def test_json_that_is_not_an_object(self, http: requests.Session, emu: Any, data: bytes) -> None:
        assert_problem(
            http.put(f"{emu.api_url}/lists/{emu.list_id}/members/x", data=data), 400, "Invalid Resource"
        )
        assert_problem(http.post(f"{emu.api_url}/batches", data=data), 400, "Invalid Resource")

    def test_content_type_does_not_matter_but_the_body_does(self, http: requests.Session, emu: Any) -> None:
        ok = http.post(
            f"{emu.api_url}/batches", data=b'{"operations": []}', headers={"Content-Type": "text/plain"}
        )
        assert ok.status_code == 200  # like Mailchimp (curl --data sends form encoding)
        form = http.post(f"{emu.api_url}/batches", files={"f": ("a.bin", b"\x00\x01")})
        assert_problem(form, 400, "JSON Parse Exception")

    def test_huge_body(self, http: requests.Session, emu: Any) -> None:
        assert_problem(http.post(f"{emu.api_url}/batches", data=b" " * (64 * 1024 * 1024 + 1)), 413)
        assert http.get(f"{emu.api_url}/ping").status_code == 200

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/3.0/nothing/here", 501),
            ("GET", "/elsewhere", 404),
            ("DELETE", "/3.0/ping", 405),
            ("PUT", "/3.0/batches", 405),
            ("POST", "/3.0/lists/demo0audience/merge-fields/1", 501),
            ("PATCH", "/3.0/lists/demo0audience", 501),
            ("DELETE", "/3.0/lists/demo0audience/interest-categories/abc", 501),
            ("GET", "/3.0/lists/demo0audience/segments/1/members", 501),
            ("GET", "/_emulator/nothing", 404),
        ],
    )
    def test_unknown_paths_and_methods(
        self, http: requests.Session, emu: Any, method: str, path: str, status: int
    ) -> None:
        """Paths and methods Mailchimp serves and this server does not answer 501 naming the local
        server, so nobody takes them for Mailchimp's 404; 405 stays for methods Mailchimp refuses too."""
        response = http.request(method, emu.base_url + path)
        body = assert_problem(response, status)
        if status == 405:
            assert response.headers["Allow"]
        if status == 501:
            assert body["title"] == "Not Implemented by the local Mailchimp server"
            assert f"does not implement {method} {path}" in body["detail"]
            assert "not Mailchimp's answer" in body["detail"]

    @pytest.mark.parametrize("query", [{"count": "ten"}, {"offset": "-1"}, {"count": "1001"}])
    def test_bad_query_parameters(self, http: requests.Session, emu: Any, query: dict[str, str]) -> None:
        assert_problem(http.get(f"{emu.api_url}/batches", params=query), 400, "Invalid Resource")

    def test_wrong_field_types(self, http: requests.Session, emu: Any) -> None:
        url = f"{emu.api_url}/lists/{emu.list_id}/members/{hashlib.md5(b'jane@acme-mail.net').hexdigest()}"
        for body in (
            {"email_address": 5},
            {"email_address": "jane@acme-mail.net", "status": True},
            {"email_address": "jane@acme-mail.net", "status": "subscribed", "merge_fields": []},
            {"email_address": "jane@acme-mail.net", "status": "subscribed", "ip_signup": "999.1.1.1"},
            {"email_address": "jane@acme-mail.net", "status": "subscribed", "timestamp_opt": "yesterday"},
        ):
            assert_problem(http.put(url, json=body), 400, "Invalid Resource")

    def test_unexpected_error_is_500_without_traceback(self, http: requests.Session, emu: Any) -> None:
        url = f"{emu.api_url}/lists/{emu.list_id}/members/jane@acme-mail.net"
        assert http.put(url, json={"email_address": "jane@acme-mail.net", "status": "subscribed"}).ok
        with sqlite3.connect(emu.state_path) as db:  # damage the stored row behind the server's back
            db.execute("UPDATE members SET merge_fields = '{broken'")
        body = assert_problem(http.get(url), 500, "Internal Server Error")
        assert "json" not in body["detail"].lower()
        assert http.get(f"{emu.api_url}/ping").status_code == 200

    def test_every_response_has_a_request_id(self, http: requests.Session, emu: Any) -> None:
        for response in (
            http.get(f"{emu.api_url}/ping"),
            requests.get(f"{emu.api_url}/ping"),
            requests.get(f"{emu.base_url}/_emulator/stats"),
            requests.get(f"{emu.base_url}/x"),
            requests.get(f"{emu.base_url}/mailchimp-api-batch/nope-response.tar.gz"),
        ):
            assert len(response.headers["X-Request-Id"]) == 36
