"""The planner's column-wise paths decide exactly what planning row by row decided: the same plan parts
(rows, order, values) and the same summary, whatever mix of new, unchanged, changed, moved, taken-over
and leaving members; and its lookup finds exactly what Arrow's ``index_in`` finds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mailchimp_provider.export import plan as plan_module
from mailchimp_provider.export.plan import Planner, PlanSettings
from mailchimp_provider.export.prepare import MEMBER_SCHEMA, fingerprint, member_json
from mailchimp_provider.export.state import DIRTY, STATE_SCHEMA, ExportState
from mailchimp_provider.export.validate import subscriber_hash
from plan_reference import ReferencePlanner

PERMISSIONS = ',"marketing_permissions":[{"marketing_permission_id":"p1","enabled":true}]'
SEGMENT_TAGS = {"a": "a", "b": "tag b", "c": "c"}  # "c" is not run below; "gone" left the definition
NAMES = ["N", "Zoë", 'q"b']


def data(email: str, name: str, permissions: bool) -> str:
    return member_json(email, "subscribed", {"FNAME": name}, PERMISSIONS if permissions else "")


@st.composite
def scenarios(draw) -> tuple:
    profiles = [f"P{i}" for i in range(draw(st.integers(0, 30)))]
    addresses = [f"x{i}@y.de" for i in range(12)]
    segment_lists = st.lists(st.sampled_from(["a", "b", "c", "gone"]), unique=True).map(sorted)
    state, members = [], []
    for pid in profiles:
        owned = draw(st.booleans())
        email = draw(st.sampled_from(addresses))
        segments, name, perms = draw(segment_lists), draw(st.sampled_from(NAMES)), draw(st.booleans())
        if owned:
            tags = draw(st.sampled_from([segments, [SEGMENT_TAGS.get(s, s) for s in segments], ["a", "old"]]))
            state.append(
                {
                    "profile_id": pid,
                    "subscriber_hash": subscriber_hash(email),
                    "email": email,
                    "fingerprint": draw(st.sampled_from([fingerprint(data(email, name, perms)), DIRTY, 7])),
                    "tags": sorted(tags),
                    "segments": segments,
                    "created": draw(st.booleans()),
                }
            )
        fate = draw(st.sampled_from(["same", "same", "changed", "moved", "regrouped", "rejected", "gone"]))
        if fate in ("rejected", "gone"):
            continue
        if fate == "moved":
            email = draw(st.sampled_from(addresses))
        if fate == "changed":
            name = draw(st.sampled_from(NAMES))
        if fate == "regrouped" or not owned:
            segments = draw(segment_lists)
        run_segments = [s for s in segments if s in ("a", "b")] or ["a"]
        text = data(email, name, perms)
        members.append(
            {
                "profile_id": pid,
                "email": email,
                "subscriber_hash": subscriber_hash(email),
                "fingerprint": fingerprint(text),
                "data_json": text,
                "tags": sorted(SEGMENT_TAGS[s] for s in run_segments),
                "segments": run_segments,
            }
        )
    # one member per address, as preparation guarantees
    members = list({m["email"]: m for m in members}.values())
    rejected = [p for p in profiles if p not in {m["profile_id"] for m in members} and draw(st.booleans())]
    cuts = sorted(draw(st.lists(st.integers(0, len(members)), max_size=3)))
    parts = [members[a:b] for a, b in zip([0, *cuts], [*cuts, len(members)], strict=True)]
    options = {
        "segments": draw(st.sampled_from([["a", "b"], ["a"]])),
        "segment_tags": SEGMENT_TAGS,
        "tag_segments": True,
        "on_leave": draw(st.sampled_from(["untag", "archive", "keep"])),
        "full_sync": draw(st.booleans()),
    }
    state_tags = draw(st.sampled_from([{}, {"a": "a", "b": "old b", "gone": "gone"}]))
    return state, parts, rejected, options, state_tags


def run(planner: type, state: list[dict], parts: list[list[dict]], rejected, options, state_tags):
    tables = [pa.Table.from_pylist(p, schema=MEMBER_SCHEMA) for p in parts]
    accepted = pa.concat_arrays(
        [t["profile_id"].combine_chunks() for t in tables] or [pa.array([], pa.string())]
    )
    read = pa.concat_arrays([accepted, pa.array(rejected, pa.string())])
    export_state = ExportState(
        3,
        pa.Table.from_pylist(state, schema=STATE_SCHEMA),
        segments={"a": 1},
        segment_tags=state_tags,
    )
    written: dict[int, pa.Table] = {}
    summary = planner(PlanSettings(**options), export_state, written.__setitem__).run(tables, accepted, read)
    return summary.to_dict(), {i: t.to_pylist() for i, t in written.items()}


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_column_wise_plan_matches_the_row_by_row_plan(scenario) -> None:
    assert run(Planner, *scenario) == run(ReferencePlanner, *scenario)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["", "a", "ab", "é", "P1"]), st.text(max_size=6))),
    st.lists(st.one_of(st.none(), st.sampled_from(["", "a", "ab", "é", "P1"]), st.text(max_size=6))),
    st.booleans(),
    st.booleans(),
)
def test_lookup_finds_what_index_in_finds(column, values, collide, last) -> None:
    """The first row of each value, as Arrow's ``index_in`` finds it; with ``last``, the last row."""
    expected = [
        (max if last else min)((i for i, c in enumerate(column) if c == v), default=None) for v in values
    ]
    column, values = pa.array(column, pa.string()), pa.array(values, pa.string())
    if not last:
        assert pc.index_in(values, value_set=column).to_pylist() == expected
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan_module, "_KEY_BATCH", 3)  # several batches, sliced arrays
        if collide:  # every key equal: matches settle on the strings or in Arrow
            patch.setattr(plan_module, "_string_keys", lambda strings: np.zeros(len(strings), np.uint64))
        assert plan_module.Lookup(column, last).index_in(values).to_pylist() == expected
