"""Property: whatever the rows hold, every profile read ends in exactly one outcome."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailchimp_provider.export.chunk import JobWriter, chunk_plan
from mailchimp_provider.export.extract import rows_to_table
from mailchimp_provider.export.mapping import Audience, MergeField, plan_fields
from mailchimp_provider.export.plan import Planner, PlanSettings
from mailchimp_provider.export.prepare import Preparer, PrepareSettings
from mailchimp_provider.export.reconcile import RunReport, job_outcomes
from mailchimp_provider.export.state import ExportState

AUDIENCE = Audience(
    "a",
    "A",
    False,
    (MergeField("FNAME", "text"), MergeField("LTV", "number"), MergeField("BDAY", "birthday")),
)
NAMES = ["id", "email", "segment", "first", "ltv", "bday"]

emails = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.sampled_from(
        [
            "a@gmail.com",
            "A@GMAIL.com ",
            " b@web.de",
            "b@web.de.",
            "c+x@outlook.com",
            '"q"@x.de',
            "x" * 300 + "@gmail.com",
            "bad@",
            "@bad.de",
            "d@müller.de",
            "e\x00@gmail.com",
        ]
    ),
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(min_size=1, max_size=10),
        st.sampled_from(["gmail.com", "web.de", "xn--mller-kva.de", "x"]),
    ),
)
rows = st.lists(
    st.tuples(
        st.sampled_from([f"P{i}" for i in range(25)]),
        emails,
        st.sampled_from(["s1", "s2", None]),
        st.one_of(st.none(), st.text(max_size=400)),
        st.one_of(st.none(), st.sampled_from(["12", "1e3", "abc", "-0.5", ""]), st.text(max_size=5)),
        st.one_of(st.none(), st.sampled_from(["1990-02-03", "2024-13-40", "03/02"])),
    ),
    max_size=60,
)


def source_order(batch: list[tuple]) -> list[tuple]:
    """The order the warehouse query returns: by lower(trim(email)), then id; one email per profile."""
    first_email: dict[str, str | None] = {}
    batch = [(pid, first_email.setdefault(pid, email), *rest) for pid, email, *rest in batch]
    unique = list(dict.fromkeys((r[0], r[2], r) for r in batch))
    return sorted((r for _, _, r in unique), key=lambda r: ((r[1] or "").strip(" ").lower(), r[0]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, st.integers(min_value=1, max_value=7), st.randoms(use_true_random=False))
def test_every_profile_has_exactly_one_outcome(batch, chunk_rows, rnd) -> None:
    ordered = source_order(batch)
    parts = [rows_to_table(ordered[i : i + chunk_rows], NAMES) for i in range(0, len(ordered), chunk_rows)]
    members: list[pa.Table] = []
    rejects: list[pa.Table] = []
    fields = plan_fields(AUDIENCE, {"FNAME": "first", "LTV": "ltv", "BDAY": "bday"})
    settings_ = PrepareSettings("id", "email", "segment", fields, "subscribed", True)
    prepared = Preparer(settings_, lambda i, t: members.append(t), lambda i, t: rejects.append(t)).run(parts)

    member_ids = [p for t in members for p in t["profile_id"].to_pylist()]
    reject_ids = [p for t in rejects for p in t["profile_id"].to_pylist()]
    assert sorted(member_ids + reject_ids) == sorted({r[0] for r in ordered})  # each profile exactly once
    assert prepared.profiles_read == len(member_ids) + len(reject_ids)
    addresses = [json.loads(j)["email_address"].lower() for t in members for j in t["data_json"].to_pylist()]
    assert len(addresses) == len(set(addresses))  # one member per address
    for t in members:
        for body, tags, segments in zip(
            t["data_json"].to_pylist(), t["tags"].to_pylist(), t["segments"].to_pylist(), strict=True
        ):
            member = json.loads(body)
            assert "tags" not in member and tags == segments == sorted(set(segments))
            assert all(len(str(v).encode()) <= 255 for v in member["merge_fields"].values())

    # a made-up Mailchimp answer per operation: created, updated, refused or a failed operation
    ops: dict[int, bytes] = {}
    indexes: dict[int, pa.Table] = {}
    plans: list[pa.Table] = []
    accepted = pa.concat_arrays(
        [t["profile_id"].combine_chunks() for t in members] or [pa.array([], pa.string())]
    )
    plan_settings = PlanSettings(["s1", "s2"], {"s1": "s1", "s2": "s2"}, True, "untag")
    Planner(plan_settings, ExportState(), lambda i, t: plans.append(t)).run(members, accepted, accepted)
    jobs, _ = chunk_plan(
        plans, "a", 500, JobWriter(ops.__setitem__, indexes.__setitem__), JobWriter(print, print), {}
    )
    report = RunReport(
        "e", "r", "a", False, profiles_read=prepared.profiles_read, rejected_locally=prepared.rejected
    )
    for job in jobs:
        results = {"operation_id": [], "status_code": [], "response": []}
        for line in ops[job].splitlines():
            op = json.loads(line)
            answer = {"new_members": [], "updated_members": [], "errors": []}
            for m in json.loads(op["body"])["members"]:
                bucket = rnd.choice(["new_members", "updated_members", "errors", "missing"])
                if bucket == "errors":
                    answer["errors"].append({"email_address": m["email_address"], "error": "refused"})
                elif bucket != "missing":
                    answer[bucket].append({"email_address": m["email_address"]})
            failed_op = rnd.random() < 0.2
            results["operation_id"].append(op["operation_id"])
            results["status_code"].append(500 if failed_op else 200)
            results["response"].append(
                json.dumps({"title": "Internal Server Error"} if failed_op else answer)
            )
        report.add_outcomes(job_outcomes(indexes[job], pa.table(results)))
    report.check()


@settings(max_examples=300, deadline=None)
@given(
    st.text(),
    st.sampled_from(["subscribed", "pending"]),
    st.dictionaries(
        st.sampled_from(["FNAME", "LTV", "ADDRESS"]),
        st.one_of(
            st.text(),
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        ),
    ),
    st.lists(st.text(), max_size=3),
)
def test_member_json_is_what_json_dumps_writes(email, status, fields, tags) -> None:
    from mailchimp_provider.export.prepare import member_json, with_tags

    expected = {"email_address": email, "status_if_new": status, "merge_fields": fields}
    data = member_json(email, status, fields)
    assert data == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
    if tags:
        expected["tags"] = tags
    assert with_tags(data, tags) == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
