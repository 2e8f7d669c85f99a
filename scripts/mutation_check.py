"""Break the code on purpose and check that the tests notice (issue 15's mutation checks).

Each mutation replaces one snippet in a copy of ``plugins/`` (the working tree is never touched) and
runs the tests meant to catch it with that copy first on ``PYTHONPATH``. A mutation is *caught* when
those tests fail. Usage, from the repository root::

    PYTHONPATH=plugins:include .venv/bin/python scripts/mutation_check.py [name ...]

Prints a Markdown table; exits 1 if a mutation survived or the unmutated tests fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # under plugins/mailchimp_provider/
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "email check rejects all",
        "export/validate.py",
        '    if raw is None or not raw.strip():\n        return EmailCheck(None, Reason.MISSING_EMAIL, "email is empty")',
        '    return EmailCheck(None, Reason.INVALID_EMAIL, "mutant")',
        (
            "tests/export/test_prepare_oracle.py",
            "tests/export/test_validate.py",
            "tests/integration/test_audience_oracle.py",
        ),
    ),
    Mutation(
        "merge-field converter returns nothing",
        "export/mapping.py",
        "def _number(value: str) -> int | float:\n",
        "def _number(value: str) -> int | float:\n    return None\n",
        (
            "tests/export/test_prepare_oracle.py",
            "tests/export/test_mapping.py",
            "tests/integration/test_audience_oracle.py",
        ),
    ),
    Mutation(
        "text cleaning and the 255-byte cut skipped",
        "export/mapping.py",
        '    return truncate_utf8(_CONTROL.sub("", value).strip())',
        "    return value.strip()",
        ("tests/export/test_prepare_oracle.py",),
    ),
    Mutation(
        "tags of an address's other rows dropped",
        "export/prepare.py",
        "{row[segment_column] for row in rows if row[segment_column]}",
        "{row[segment_column] for row in rows[:1] if row[segment_column]}",
        ("tests/export/test_prepare_oracle.py",),
    ),
    Mutation(
        "retry delay is constant 0",
        "hooks/config.py",
        "        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))",
        "        return 0.0",
        ("tests/provider/test_config.py",),
    ),
    Mutation(
        "poll_until_complete returns early in worker mode",
        "operators/batch.py",
        "        batch = self._get_batch(batch_id)\n        while not",
        "        return None\n        batch = self._get_batch(batch_id)\n        while not",
        (
            "tests/integration/test_operator.py::test_a_retry_reconnecting_to_a_running_batch_waits_and_collects_its_results",
            "tests/integration/test_operator.py::test_polls_in_the_worker_when_not_deferrable",
        ),
    ),
    Mutation(
        "the hook retries validation errors",
        "hooks/mailchimp.py",
        "                if not exc.retryable or attempt == self.retry.attempts:\n                    raise\n                if not resend",
        "                if attempt == self.retry.attempts:\n                    raise\n                if not resend",
        ("tests/integration/test_hook.py::test_gives_up_at_once_on_validation_errors",),
    ),
    Mutation(
        "the consent gate is skipped",
        "hooks/config.py",
        "        if not self.privacy_consent:\n",
        "        if False:\n",
        (
            "tests/provider/test_config.py::test_consent_and_permission_gates",
            "tests/integration/test_failures.py::test_connection_gates_stop_before_the_warehouse_is_read",
        ),
    ),
)


def run_tests(plugins: Path, tests: tuple[str, ...]) -> tuple[bool, str]:
    """(passed, last lines of the output) for the given tests with ``plugins`` first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), str(ROOT / "include")])}
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    failed = list(
        dict.fromkeys(
            line.split()[1].split("/")[-1].partition("[")[0]
            for line in done.stdout.splitlines()
            if line.startswith("FAILED")
        )
    )
    return done.returncode == 0, "failed: " + ", ".join(failed) if failed else "none failed"


def main(names: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    rows = ["| mutation | tests run | result |", "| --- | --- | --- |"]
    ok = True
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
        for mutation in chosen:
            copy = Path(scratch) / mutation.name.replace(" ", "_")
            shutil.copytree(ROOT / "plugins", copy / "plugins")
            passed, tail = run_tests(copy / "plugins", mutation.tests)
            if not passed:
                rows.append(f"| (unmutated) {mutation.name} | {', '.join(mutation.tests)} | FAIL: {tail} |")
                ok = False
                continue
            target = copy / "plugins" / "mailchimp_provider" / mutation.file
            source = target.read_text()
            if source.count(mutation.old) != 1:
                raise SystemExit(f"{mutation.name}: the snippet is not in {mutation.file} exactly once")
            target.write_text(source.replace(mutation.old, mutation.new))
            started = time.monotonic()
            passed, tail = run_tests(copy / "plugins", mutation.tests)
            verdict = (
                f"survived ({tail})" if passed else f"caught in {time.monotonic() - started:.0f}s ({tail})"
            )
            ok = ok and not passed
            rows.append(f"| {mutation.name} | {', '.join(mutation.tests)} | {verdict} |")
            print(rows[-1], flush=True)
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
