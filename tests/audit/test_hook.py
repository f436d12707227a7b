"""The audit hook point: events are written with the change, in the same transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.conftest import credit_code
from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditEntry, AuditHead
from yuanjian.identity.models import Organization
from yuanjian.instance import Instance


def _size(s) -> int:
    return s.scalar(select(AuditHead.size).where(AuditHead.id == 1))


def test_event_commits_with_the_change(instance: Instance) -> None:
    with instance.sessions() as s:
        n = _size(s)
        actor = instance.cli_actor(s)
        s.add(Organization(name="事务公司", kind="regulator", credit_code=credit_code()))
        audit.record(
            s, actor, "test.change", object_type="organization", object_id="x", detail={"k": "v"}
        )
        s.commit()
        assert _size(s) == n + 1
        entry = s.get(AuditEntry, n)
        doc = json.loads(entry.payload)
        assert doc["index"] == n and doc["action"] == "test.change"
        assert doc["detail"] == {"k": "v"} and doc["outcome"] == "allowed"
        # Canonical: re-serializing gives the same bytes.
        assert audit.canonical_bytes(doc).decode() == entry.payload


def test_rollback_discards_the_event_and_the_change(instance: Instance) -> None:
    with instance.sessions() as s:
        n = _size(s)
        s.add(Organization(name="回滚公司", kind="regulator", credit_code=credit_code()))
        audit.record(s, instance.cli_actor(s), "test.rolled_back")
        s.rollback()
        s.commit()
        assert _size(s) == n
        assert s.scalar(select(func.count()).where(Organization.name == "回滚公司")) == 0
        assert s.scalar(select(func.count()).where(AuditEntry.action == "test.rolled_back")) == 0


def test_failed_commit_writes_no_event(instance: Instance) -> None:
    code = credit_code()
    with instance.sessions() as s:
        s.add(Organization(name="唯一", kind="regulator", credit_code=code))
        s.commit()
        n = _size(s)
        actor = instance.cli_actor(s)
        s.add(Organization(name="唯一", kind="regulator", credit_code=credit_code()))
        audit.record(s, actor, "test.doomed")
        with pytest.raises(Exception):  # noqa: B017 - the unique violation of either backend
            s.commit()
        s.rollback()
        assert _size(s) == n
        assert s.scalar(select(func.count()).where(AuditEntry.action == "test.doomed")) == 0


def test_indexes_are_dense_and_ordered(instance: Instance) -> None:
    with instance.sessions() as s:
        actor = instance.cli_actor(s)
        for i in range(5):
            for j in range(i + 1):
                audit.record(s, actor, "test.batch", detail={"i": i, "j": j})
            s.commit()
        idx = list(s.scalars(select(AuditEntry.idx).order_by(AuditEntry.idx)))
        assert idx == list(range(len(idx)))
        assert _size(s) == len(idx)


def test_unknown_outcome_is_refused(instance: Instance) -> None:
    with instance.sessions() as s, pytest.raises(ValueError):
        audit.record(s, instance.cli_actor(s), "x", outcome="maybe")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_fast_canonical_json_equals_rfc8785(doc: dict) -> None:
    try:
        expected = rfc8785.dumps(doc)
    except rfc8785.CanonicalizationError:
        return
    assert audit.canonical_bytes(doc) == expected


def test_integers_beyond_double_precision_are_kept_as_text(instance: Instance) -> None:
    big = 2**60 + 1
    with instance.sessions() as s:
        audit.record(s, instance.cli_actor(s), "test.big", detail={"bytes": big, "n": [-big, 7]})
        s.commit()
        payload = s.scalar(select(AuditEntry.payload).where(AuditEntry.action == "test.big"))
    detail = json.loads(payload)["detail"]
    assert detail == {"bytes": str(big), "n": [str(-big), 7]}


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        timezones=st.sampled_from(
            [None, UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
        )
    )
)
def test_utc_iso_is_the_utc_isoformat(ts: datetime) -> None:
    utc = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    expected = utc.replace(tzinfo=None).isoformat(timespec="microseconds")
    # Twice: the second call reads the per-second cache.
    assert audit.utc_iso(ts) == expected == audit.utc_iso(ts)
