"""Reconcile's joined job_outcomes gives every member the outcome the member-by-member loop it replaced
gives (kept here as the oracle), whatever Mailchimp answers."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailchimp_provider.export.plan import ARCHIVE, EMAIL_CHANGE, UPSERT
from mailchimp_provider.export.reconcile import (
    MISSING,
    OUTCOME_SCHEMA,
    UNKNOWN,
    _by_operation,
    _error_title,
    _single_outcome,
    _subscribe_answer,
    _subscribe_outcome,
    job_outcomes,
)


def reference_job_outcomes(index: pa.Table, results: pa.Table) -> pa.Table:
    by_operation = _by_operation(results)
    parsed: dict[str, object] = {}
    outcomes: list[str] = []
    errors_out: list[str | None] = []
    actions = index["action"].to_pylist() if "action" in index.column_names else [UPSERT] * index.num_rows
    for op, email, action in zip(
        index["operation_id"].to_pylist(), index["email"].to_pylist(), actions, strict=True
    ):
        if op not in by_operation:
            outcome, error = UNKNOWN, MISSING
        elif action == UPSERT:
            code, response = by_operation[op]
            if op not in parsed:
                parsed[op] = _error_title(response) if code >= 400 else _subscribe_answer(response)
            outcome, error = _subscribe_outcome(parsed[op], email.lower())
        else:
            outcome, error = _single_outcome(action, *by_operation[op])
        outcomes.append(outcome)
        errors_out.append(error)
    return pa.Table.from_arrays(
        [
            index["profile_id"],
            index["email"],
            index["subscriber_hash"],
            pa.array(outcomes, pa.string()),
            pa.array(errors_out, pa.string()),
        ],
        schema=OUTCOME_SCHEMA,
    )


ADDRESSES = ["a@x.de", "B@x.de", "c@X.DE", "dü@x.de", "e@x.de", "İ@x.de"]
member = st.fixed_dictionaries(
    {"email_address": st.sampled_from(ADDRESSES + [a.upper() for a in ADDRESSES])},
    optional={"status": st.sampled_from(["subscribed", "archived"])},
)
answer = st.one_of(
    st.fixed_dictionaries(
        {
            "new_members": st.lists(member, max_size=4),
            "updated_members": st.lists(member, max_size=4),
            "errors": st.lists(
                st.fixed_dictionaries(
                    {
                        "email_address": st.sampled_from(ADDRESSES + [""]),
                        "error": st.sampled_from(["bad", "a@x.de x"]),
                    }
                ),
                max_size=3,
            ),
        }
    ).map(json.dumps),
    st.sampled_from(['{"title": "Member Exists"}', "not json", "[]", '{"new_members": 3}', "{}"]),
)
operation = st.tuples(
    st.sampled_from([UPSERT, UPSERT, EMAIL_CHANGE, ARCHIVE]),
    st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=5),
    st.sampled_from([200, 200, 400, 404, 500, None]),  # None: missing from the results archive
    answer,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=8), st.booleans())
def test_joined_outcomes_match_the_member_loop(operations, with_action) -> None:
    index: dict[str, list] = {
        "operation_id": [],
        "profile_id": [],
        "email": [],
        "subscriber_hash": [],
        "action": [],
    }
    results: dict[str, list] = {"operation_id": [], "status_code": [], "response": []}
    for number, (action, emails, code, response) in enumerate(operations):
        op = f"op{number}"
        emails = emails if action == UPSERT else emails[:1]
        for i, email in enumerate(emails):
            index["operation_id"].append(op)
            index["profile_id"].append(f"P{number}-{i}")
            index["email"].append(email)
            index["subscriber_hash"].append(f"h{number}-{i}")
            index["action"].append(action if with_action else UPSERT)
        if code is not None:
            results["operation_id"].append(op)
            results["status_code"].append(code)
            results["response"].append(response)
    table = pa.table({name: pa.array(values, pa.string()) for name, values in index.items()})
    table = table if with_action else table.drop_columns(["action"])
    answers = pa.table(
        {
            "operation_id": pa.array(results["operation_id"], pa.string()),
            "status_code": pa.array(results["status_code"], pa.int32()),
            "response": pa.array(results["response"], pa.string()),
        }
    )
    got, want = job_outcomes(table, answers), reference_job_outcomes(table, answers)
    assert got.to_pylist() == want.to_pylist()
    assert got.equals(want)


BUSY_ANSWER = json.dumps(
    {
        "new_members": [{"email_address": "B@x.de"}],
        "updated_members": [{"email_address": "c@X.DE", "status": "archived"}, {"email_address": "İ@x.de"}],
        "errors": [
            {"email_address": "a@x.de", "error": "first"},
            {"email_address": "A@x.de", "error": "second"},  # the last error of an address counts
            {"email_address": "", "error": "nobody"},
            {"email_address": "b@x.de", "error_code": "ERROR_GENERIC"},  # created wins over an error
        ],
    }
)


@pytest.mark.parametrize(
    "answers",
    [
        [BUSY_ANSWER],
        [json.dumps(json.loads(BUSY_ANSWER), indent=2)],  # line breaks between tokens
        ['{"new_members": [{"email_address": "a@x.de", "score": NaN}]}', BUSY_ANSWER],  # orjson refuses NaN
        ['{"new_members": [{"email_address": "a@x.de", "score": -Inf}]}', BUSY_ANSWER],
        ['{"new_members": [{"email_address": "a@x.de"}],\r"errors": []}', BUSY_ANSWER],
        ['{"new_members": [null]}', BUSY_ANSWER],  # an entry Python cannot read: unreadable
        ['{"updated_members": [{"status": "archived"}]}', BUSY_ANSWER],  # a member without an address
        ['{"new_members": [{"email_address": 5}]}', BUSY_ANSWER],  # Arrow refuses the job's answers
        ['{"new_members": [{"email_address": "a@x.de"}], "new_members": []}', BUSY_ANSWER],
        ['{"errors": [{"email_address": "a@x.de"}, 7]}', BUSY_ANSWER],
        [' {"new_members": []}', "", BUSY_ANSWER],
    ],
)
def test_answers_read_in_arrow_or_python_give_the_member_loop_outcomes(answers: list[str]) -> None:
    emails = ["a@x.de", "b@x.de", "c@x.de", "i̇@x.de", "İ@x.de", "e@x.de"]
    rows = [(f"op{n}", email) for n in range(len(answers)) for email in emails]
    index = pa.table(
        {
            "operation_id": [op for op, _ in rows],
            "profile_id": [f"P{i}" for i in range(len(rows))],
            "email": [email for _, email in rows],
            "subscriber_hash": [f"h{i}" for i in range(len(rows))],
        }
    )
    results = pa.table(
        {
            "operation_id": [f"op{n}" for n in range(len(answers))],
            "status_code": pa.array([200] * len(answers), pa.int32()),
            "response": answers,
        }
    )
    got, want = job_outcomes(index, results), reference_job_outcomes(index, results)
    assert got.to_pylist() == want.to_pylist()
    assert {o["outcome"] for o in got.to_pylist()} > {"created"}
