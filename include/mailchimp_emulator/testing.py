"""Test helper: run the emulator as a subprocess on a free port and talk to its control API.

    with EmulatorProcess(tmp_path) as emu:
        client = MailchimpMarketing.Client()
        client.set_config({"api_key": emu.api_key, "server": emu.dc})
        client.api_client.host = emu.api_url
        emu.set_faults(throttle_next=3)
        ...
        assert emu.stats()["peak_concurrency"] <= 10

Only the standard library is used here, so any test suite can import it.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .config import DEFAULT_API_KEY, DEFAULT_LIST_ID, DEFAULT_OAUTH_TOKEN

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_results(archive: bytes) -> list[dict[str, Any]]:
    """Parse a batch results archive as a client should: every JSON file, directories and empty files skipped."""
    results: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar:
            if not member.isfile() or member.size == 0:
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                results.extend(json.loads(handle.read()))
    return results


class EmulatorProcess:
    """A mailchimp-emulator subprocess with its state in `state_dir`; restartable on the same port."""

    def __init__(
        self,
        state_dir: Path,
        *,
        config: dict[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.config = config
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: io.BufferedWriter | None = None

    # ---- addresses and credentials -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/3.0"

    @property
    def state_path(self) -> Path:
        return self.state_dir / "mailchimp-emulator.db"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "emulator.log"

    @property
    def api_key(self) -> str:
        keys = (self.config or {}).get("api_keys")
        return str(keys[0]) if keys else DEFAULT_API_KEY

    @property
    def dc(self) -> str:
        return self.api_key.rpartition("-")[2]

    @property
    def oauth_token(self) -> str:
        tokens = (self.config or {}).get("oauth_tokens")
        return str(tokens[0]) if tokens else DEFAULT_OAUTH_TOKEN

    @property
    def list_id(self) -> str:
        audiences = (self.config or {}).get("audiences")
        return str(audiences[0]["id"]) if audiences else DEFAULT_LIST_ID

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    # ---- lifecycle -------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "mailchimp_emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--state",
            str(self.state_path),
        ]
        if self.config is not None:
            config_path = self.state_dir / "emulator-config.json"
            config_path.write_text(json.dumps(self.config), encoding="utf-8")
            cmd += ["--config", str(config_path)]
        return cmd + self.extra_args

    def start(self) -> EmulatorProcess:
        if self._proc is not None:
            raise RuntimeError("emulator already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_PARENT), env.get("PYTHONPATH")) if p)
        self._log = open(self.log_path, "ab")  # kept open while the process runs
        self._proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._forget()
                raise RuntimeError(f"emulator exited at startup:\n{self.log_tail()}")
            try:
                self._control("GET", "/health", timeout=1.0)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"emulator did not answer within {self.startup_timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), killing the process if it does not exit in time."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._forget()

    def kill(self) -> None:
        """Hard stop (SIGKILL), as a crash would."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        self._forget()

    def restart(self) -> EmulatorProcess:
        """Stop and start again on the same port with the same state."""
        self.stop()
        return self.start()

    def _forget(self) -> None:
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- control API -------------------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_emulator{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Replace the active faults (fields not named are switched off)."""
        result: dict[str, Any] = self._control("PUT", "/faults", faults)
        return result

    def clear_faults(self) -> None:
        self._control("DELETE", "/faults")

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "/faults")
        return result

    def health(self) -> dict[str, Any]:
        """Readiness, process id, API URL and the processing pace in effect."""
        result: dict[str, Any] = self._control("GET", "/health")
        return result

    def members(self, list_id: str | None = None) -> list[dict[str, Any]]:
        """Every member of the audience (archived included) with status, merge_fields and tags."""
        result: list[dict[str, Any]] = self._control("GET", f"/lists/{list_id or self.list_id}/members")[
            "members"
        ]
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "/stats")
        return result

    def fired(self) -> dict[str, Any]:
        """How often each fault fired (keys are the fault settings, e.g. "throttle_next")."""
        result: dict[str, Any] = self.stats()["faults_fired"]
        return result

    def reset_stats(self) -> None:
        self._control("POST", "/stats/reset")

    def reset(self) -> None:
        """Wipe members and batches, keep configured audiences, clear faults and stats."""
        self._control("POST", "/reset")


__all__ = ["EmulatorProcess", "free_port", "read_results"]
