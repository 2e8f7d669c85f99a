"""Property: over any short sequence of warehouse states, after every run the audience equals a model of
what the segments say (members, tags, names, statuses), and every profile touched has one outcome.

The model is written here, independently of the export's code: a member per exported profile at its
latest address; the tags of its segments while it is in any, none once it left (on_leave: untag)."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mirror_support import StepRun, audience, mirror_definition, sqlite_warehouse

LIST = "demo0audience"
PROFILES = 6
OUTCOMES = (
    "created",
    "updated",
    "unchanged",
    "email_changed",
    "email_change_conflict",
    "archived_in_audience",
    "untagged",
    "archived",
    "left_kept",
    "outcome_unknown",
)

profile_step = st.one_of(
    st.none(),  # not in any segment (or deleted from the warehouse)
    st.tuples(
        st.sampled_from([("alpha",), ("beta",), ("alpha", "beta")]),
        st.booleans(),  # changes address
        st.sampled_from(["Ann", "Bo"]),
    ),
)
histories = st.lists(st.lists(profile_step, min_size=PROFILES, max_size=PROFILES), min_size=1, max_size=3)


@pytest.mark.slow
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories)
def test_the_audience_equals_the_model_after_every_run(
    history, mailchimp_conn, tmp_path_factory, monkeypatch
) -> None:
    mailchimp_conn.reset()
    work = tmp_path_factory.mktemp("mirror-prop")
    monkeypatch.setenv("MAILCHIMP_EXPORT_BASE_PATH", str(work / "staging"))
    table = sqlite_warehouse(work / "w.db", monkeypatch)
    table.create([])
    definition = mirror_definition(monkeypatch, work / "exports")
    version = [0] * PROFILES
    owned: dict[int, str] = {}  # profile -> its member's address, while it is in a segment
    model: dict[str, tuple[frozenset[str], str]] = {}  # address -> (tags, first name)
    for run, step in enumerate(history):
        rows, present = [], {}
        for i, entry in enumerate(step):
            if entry is None:
                continue
            segments, moves, name = entry
            version[i] += int(moves and i in owned)
            address = f"p{i}v{version[i]}@gmail.com"
            present[i] = address
            rows += [(f"P{i}", segment, address, name) for segment in segments]
            if i in owned and owned[i] != address:
                model[address] = model.pop(owned[i])
            model[address] = (frozenset(segments), name)
        for i in set(owned) - set(present):
            model[owned[i]] = (frozenset(), model[owned[i]][1])
        leavers = len(set(owned) - set(present))
        owned = present
        table.replace(rows)

        report = StepRun(definition, f"run{run}").report()

        actual = {e: (m.tags, m.first_name) for e, m in audience(mailchimp_conn, LIST).items()}
        assert actual == model, f"run {run}"
        assert {m.status for m in audience(mailchimp_conn, LIST).values()} <= {"subscribed"}
        assert report["profiles_read"] == len(present) and report["leavers"] == leavers
        settled = sum(report[o] for o in OUTCOMES) + report["totals"]["failed_at_mailchimp"]
        assert settled == len(present) + leavers  # one outcome each
        assert report["totals"]["failed_at_mailchimp"] == report["outcome_unknown"] == 0
    shutil.rmtree(work, ignore_errors=True)
