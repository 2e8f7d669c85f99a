"""Configuration (file and flags), the command line, the test helper itself, and log hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from mailchimp_emulator.__main__ import build_parser, settings_from_args
from mailchimp_emulator.config import DEFAULT_API_KEY, ConfigError, Settings
from mailchimp_emulator.testing import EmulatorProcess

INCLUDE = Path(__file__).resolve().parents[2] / "include"


def settings(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(list(argv)))


def test_defaults() -> None:
    s = settings()
    assert (s.port, s.dc, s.api_keys, s.oauth_tokens) == (
        8025,
        "us6",
        (DEFAULT_API_KEY,),
        ("demo-oauth-token",),
    )
    assert s.state_path == Path("var/mailchimp-emulator.db")
    [audience] = s.audiences
    assert (audience.id, audience.name, audience.double_optin) == ("demo0audience", "Demo audience", False)
    assert [(f.tag, f.type) for f in audience.merge_fields] == [
        ("FNAME", "text"),
        ("LNAME", "text"),
        ("ADDRESS", "address"),
        ("PHONE", "phone"),
    ]


def test_yaml_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "api_keys": ["ffffffffffffffffffffffffffffffff-us6"],
                "batch_pace": 0.5,
                "audiences": [
                    {
                        "id": "shop1",
                        "name": "Shop",
                        "double_optin": True,
                        "merge_fields": [
                            {
                                "tag": "PLAN",
                                "name": "Plan",
                                "type": "radio",
                                "required": True,
                                "options": {"choices": ["a", "b"]},
                            }
                        ],
                    }
                ],
                "faults": {"latency_ms": 20},
            }
        )
    )
    s = settings("--config", str(path), "--batch-pace", "0", "--latency-ms", "5", "--oauth-token", "tok")
    assert s.api_keys == ("ffffffffffffffffffffffffffffffff-us6",) and s.oauth_tokens == ("tok",)
    assert s.batch_pace == 0.0 and s.faults.latency_ms == 5
    assert s.audiences[0].merge_fields[0].options == {"choices": ["a", "b"]}


def test_audience_flag() -> None:
    s = settings("--audience", "id=a1,name=First", "--audience", "id=a2,double_optin=true")
    assert [(a.id, a.name, a.double_optin) for a in s.audiences] == [
        ("a1", "First", False),
        ("a2", "a2", True),
    ]


@pytest.mark.parametrize(
    "config",
    [
        {"audiences": [{"id": "x", "merge_fields": [{"tag": "WAYTOOLONGTAG", "type": "text"}]}]},
        {"audiences": [{"id": "x", "merge_fields": [{"tag": "T", "type": "dropdown"}]}]},
        {"audiences": [{"id": "x", "merge_fields": [{"tag": "T", "type": "colour"}]}]},
        {"api_keys": ["abc-us9"]},
        {"audiences": []},
        {"unknown": 1},
        {"audiences": [{"id": "x", "interest_categories": [{"title": "T", "type": "grid"}]}]},
        {"audiences": [{"id": "x", "interest_categories": [{"type": "radio"}]}]},
        {"audiences": [{"id": "x", "interest_categories": [{"title": "T", "interests": [{"id": "a"}]}]}]},
        {"audiences": [{"id": "x", "interest_categories": [{"title": "T", "colour": "red"}]}]},
        {"audiences": [{"id": "x", "interest_categories": [{"title": "T", "interests": ["A", "A"]}]}]},
        {"audiences": [{"id": "x", "marketing_permissions": "yes"}]},
        {"audiences": [{"id": "x", "marketing_permissions": [{"id": "p"}]}]},
    ],
)
def test_bad_configuration(tmp_path: Path, config: dict) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError):
        settings("--config", str(path))


def test_cli_rejects_bad_configuration_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("audiences: [{id: 'bad id!'}]")
    proc = subprocess.run(
        [sys.executable, "-m", "mailchimp_emulator", "--config", str(path)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(INCLUDE)},
        timeout=30,
    )
    assert proc.returncode == 2 and "audience id" in proc.stderr and "Traceback" not in proc.stderr


def test_configured_audiences_keys_and_dc(tmp_path: Path) -> None:
    config = {
        "dc": "us19",
        "api_keys": ["abcdefabcdefabcdefabcdefabcdefab-us19"],
        "oauth_tokens": ["t1"],
        "audiences": [{"id": "shop1", "name": "Shop"}],
    }
    with EmulatorProcess(tmp_path, config=config) as emu:
        assert (emu.list_id, emu.dc, emu.oauth_token) == ("shop1", "us19", "t1")
        assert requests.get(f"{emu.api_url}/lists/shop1", auth=("x", emu.api_key)).json()["name"] == "Shop"
        assert requests.get(f"{emu.api_url}/ping", auth=("x", DEFAULT_API_KEY)).status_code == 401
        meta = requests.get(f"{emu.base_url}/oauth2/metadata", headers={"Authorization": "OAuth t1"}).json()
        assert meta["dc"] == "us19"
        emu.reset()  # configured audiences survive a reset
        assert requests.get(f"{emu.api_url}/lists/shop1", auth=("x", emu.api_key)).status_code == 200


def test_reset_restores_configured_merge_fields(emu: EmulatorProcess, http: requests.Session) -> None:
    http.post(f"{emu.api_url}/lists/{emu.list_id}/merge-fields", json={"name": "Extra", "type": "text"})
    assert http.get(f"{emu.api_url}/lists/{emu.list_id}/merge-fields").json()["total_items"] == 5
    emu.reset()
    assert http.get(f"{emu.api_url}/lists/{emu.list_id}/merge-fields").json()["total_items"] == 4


def test_logs_never_show_keys_tokens_or_addresses(emu: EmulatorProcess, http: requests.Session) -> None:
    email = "secret.person@acme-mail.net"
    http.put(
        f"{emu.api_url}/lists/{emu.list_id}/members/{email}",
        json={"email_address": email, "status": "subscribed"},
    )
    requests.get(
        f"{emu.api_url}/ping", headers={"Authorization": "Bearer 0123456789abcdef0123456789abcdee-us6"}
    )
    requests.get(f"{emu.api_url}/ping", params={"apikey": emu.api_key}, auth=("x", emu.api_key))
    requests.get(f"{emu.base_url}/oauth2/metadata", headers={"Authorization": f"OAuth {emu.oauth_token}"})
    log = emu.log_path.read_text()
    assert "/members/s***@acme-mail.net" in log  # the request was logged, masked
    for secret in (
        email,
        emu.api_key,
        emu.api_key.rpartition("-")[0],
        "0123456789abcdef0123456789abcdee",
        emu.oauth_token,
    ):
        assert secret not in log


def test_demo_audiences_have_groups_and_permissions() -> None:
    path = INCLUDE / "demo" / "mailchimp-audiences.yaml"
    demo = settings("--config", str(path)).audiences[0]
    assert {c.title: [i.name for i in c.interests] for c in demo.interest_categories} == {
        "Customer segments": ["vip_customers", "churn_risk"],
        "Topics": ["News", "Offers", "Events"],
    }
    assert [p.text for p in demo.marketing_permissions] == [
        "Email",
        "Direct Mail",
        "Customized Online Advertising",
    ]


def test_reset_restores_configured_groups(emu: EmulatorProcess, http: requests.Session) -> None:
    url = f"{emu.api_url}/lists/gdpr0audience/interest-categories"
    assert http.post(url, json={"title": "Extra", "type": "radio"}).status_code == 200
    assert http.get(url).json()["total_items"] == 2
    emu.reset()
    assert [c["title"] for c in http.get(url).json()["categories"]] == ["Topics"]
