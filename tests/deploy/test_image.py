"""Dockerfile and .dockerignore: the image gets what the deployment needs and nothing else.

No Docker engine here, so the build context is computed with Docker's .dockerignore rules (patterns in
order, the last one that matches a path or one of its parent folders decides; `!` re-includes).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression (Go's filepath.Match plus `**`)."""
    out, i, text = "", 0, text.strip("/")
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out + r"\Z")


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return [(rule.startswith("!"), _pattern(rule.lstrip("!"))) for rule in rules]


def in_context(path: str) -> bool:
    parts, excluded = path.split("/"), False
    for include, pattern in _rules():
        if any(pattern.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not include
    return not excluded


def _stages() -> dict[str, list[list[str]]]:
    """Instructions per build stage (name -> [instruction words]); the unnamed final stage is "final"."""
    stages: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = shlex.split(line, posix=False)
        if words[0] == "FROM":
            current = []
            stages[words[3] if len(words) > 3 else "final"] = current
        current.append(words)
    return stages


def _copied(stage: list[list[str]]) -> list[str]:
    sources = []
    for words in stage:
        if words[0] == "COPY":
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_build_context_holds_what_the_image_copies_and_nothing_private() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = tracked.stdout.split()
    context = {f for f in files if in_context(f)}
    copied = [src for stage in _stages().values() for src in _copied(stage)]
    for source in copied:
        under = [f for f in files if f == source.rstrip("/") or f.startswith(source.rstrip("/") + "/")]
        assert under and all(f in context for f in under), f"{source} is copied but not in the build context"
    # Nothing else: no tests, benchmarks, scripts, demo DAG; never a local venv, demo data, .git or .env.
    assert all(any(f == s.rstrip("/") or f.startswith(s.rstrip("/") + "/") for s in copied) for f in context)
    for private in (".venv/bin/python", "var/warehouse.db", ".git/HEAD", ".env", "tests/conftest.py"):
        assert not in_context(private), private
    for path in ("benchmarks/export_bench.py", "scripts/demo.py", "dags/demo_warehouse_refresh.py"):
        assert not in_context(path), path
    assert not in_context("plugins/mailchimp_provider/__pycache__/x.pyc")


def test_deployment_image_is_the_default_and_has_no_development_parts() -> None:
    stages = _stages()
    assert list(stages) == ["airflow", "demo", "final"]
    (base,) = [w for w in (ROOT / "Dockerfile").read_text().split() if w.startswith("AIRFLOW_IMAGE=")]
    constraints = (ROOT / "constraints.txt").read_text().split()
    assert f"apache-airflow=={base.split(':')[1].split('-')[0]}" in constraints, "image and pins disagree"
    assert base.endswith("-python3.11")
    assert stages["final"][0] == ["FROM", "airflow"], "a plain `docker build` gives the deployment image"
    airflow = " ".join(" ".join(words) for words in stages["airflow"])
    assert "-r requirements.txt" in airflow and "include/pyproject.toml" not in airflow
    assert not [s for s in _copied(stages["airflow"]) if "emulator" in s or "demo" in s]
    assert 'pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -e ./include' in " ".join(
        " ".join(words) for words in stages["demo"]
    )


def test_dockerignore_rules_follow_docker() -> None:
    """The matcher above, on Docker's documented examples: last match wins, parents count, `!` re-includes."""
    assert _pattern("**/*.pyc").match("a/b/c.pyc") and _pattern("**/*.pyc").match("c.pyc")
    assert _pattern("*").match("tests") and not _pattern("*").match("tests/x")
    assert in_context("plugins/mailchimp_provider/hooks/mailchimp.py")
    assert not in_context("plugins/other.py")
