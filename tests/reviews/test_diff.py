"""Revision diffs (paths by natural key, JSON output) and Art. 19 scope changes."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yuanjian.reviews.diff import (
    ChangeKind,
    FieldChange,
    diff_revisions,
    document_paths,
    quote_segment,
    scope_changed,
)

SPEC_V1 = {
    "name": "企业纳税信用",
    "type": "feature",
    "scenario": "credit_assessment",
    "resources": [
        {
            "code": "tax_filing",
            "fields": [
                {"name": "vat", "purpose": "turnover band"},
                {"name": "uscc", "purpose": "join key", "output": False},
            ],
        },
        {"code": "social_security", "fields": ["employees", "payroll"]},
    ],
    "outputs": [{"name": "vat_band", "sources": ["tax_filing.vat"], "transform": "band"}],
}


def _v2() -> dict:
    doc = json.loads(json.dumps(SPEC_V1))
    doc["resources"][0]["fields"][0]["purpose"] = "turnover band by quarter"
    doc["resources"][0]["fields"].pop(1)
    doc["resources"][1]["fields"] = ["payroll", "insured_months"]
    doc["resources"].reverse()  # order of resources is not significant
    doc["resources"].append({"code": "customs", "fields": ["exports"]})
    doc["type"] = "dataset"
    return doc


def _as_tuples(changes: list[FieldChange]) -> list[tuple[str, str]]:
    return [(c.path, str(c.kind)) for c in changes]


def test_nested_paths_by_natural_key() -> None:
    changes = diff_revisions(SPEC_V1, _v2())
    assert _as_tuples(changes) == [
        ("type", "changed"),
        ("resources[tax_filing].fields[vat].purpose", "changed"),
        ("resources[tax_filing].fields[uscc]", "removed"),
        ("resources[social_security].fields[employees]", "removed"),
        ("resources[social_security].fields[insured_months]", "added"),
        ("resources[customs]", "added"),
    ]
    purpose = changes[1]
    assert (purpose.old, purpose.new) == ("turnover band", "turnover band by quarter")
    assert purpose.segments == ("resources", "tax_filing", "fields", "vat", "purpose")
    removed = changes[2]
    assert removed.old == {"name": "uscc", "purpose": "join key", "output": False}
    assert removed.new is None
    assert changes[5].new == {"code": "customs", "fields": ["exports"]}


def test_human_readable_and_json() -> None:
    changes = diff_revisions(SPEC_V1, _v2())
    lines = [str(c) for c in changes]
    assert lines[0] == 'changed type: "feature" → "dataset"'
    assert lines[2].startswith('removed resources[tax_filing].fields[uscc]: {"name": "uscc"')
    assert lines[4] == 'added resources[social_security].fields[insured_months]: "insured_months"'
    payload = json.loads(json.dumps([c.to_dict() for c in changes], ensure_ascii=False))
    assert payload[1] == {
        "path": "resources[tax_filing].fields[vat].purpose",
        "kind": "changed",
        "old": "turnover band",
        "new": "turnover band by quarter",
        "segments": ["resources", "tax_filing", "fields", "vat", "purpose"],
    }


def test_identical_and_reordered_documents_have_no_changes() -> None:
    assert diff_revisions(SPEC_V1, SPEC_V1) == []
    reordered = json.loads(json.dumps(SPEC_V1))
    reordered["resources"].reverse()
    reordered["resources"][0]["fields"].reverse()  # ["payroll", "employees"]: a set of names
    assert diff_revisions(SPEC_V1, reordered) == []


def test_type_changes_and_scalars() -> None:
    assert _as_tuples(diff_revisions({"a": 1}, {"a": True})) == [("a", "changed")]
    assert diff_revisions({"a": 1}, {"a": 1.0}) == []  # the same JSON number
    assert _as_tuples(diff_revisions({"a": {"b": 1}}, {"a": [1]})) == [("a", "changed")]
    assert _as_tuples(diff_revisions({"a": None}, {})) == [("a", "removed")]
    # lists of numbers (or repeated names) are one value
    assert _as_tuples(diff_revisions({"k": [1, 2]}, {"k": [2, 1]})) == [("k", "changed")]
    assert _as_tuples(diff_revisions({"k": ["a", "a"]}, {"k": ["a"]})) == [("k", "changed")]


def test_lists_without_a_natural_key_are_positional() -> None:
    old = {"steps": [{"op": "join"}, {"op": "filter"}]}
    new = {"steps": [{"op": "join"}, {"op": "aggregate"}, {"op": "round"}]}
    assert _as_tuples(diff_revisions(old, new)) == [
        ("steps[1].op", "changed"),
        ("steps[2]", "added"),
    ]
    # a natural key with duplicate values cannot match items: positions are used
    dup = {"r": [{"code": "a", "x": 1}, {"code": "a", "x": 2}]}
    dup2 = {"r": [{"code": "a", "x": 1}, {"code": "a", "x": 3}]}
    assert _as_tuples(diff_revisions(dup, dup2)) == [("r[1].x", "changed")]
    # "code" is preferred over "name" when both are present
    a = {"r": [{"code": "c1", "name": "same"}]}
    b = {"r": [{"code": "c2", "name": "same"}]}
    assert _as_tuples(diff_revisions(a, b)) == [("r[c1]", "removed"), ("r[c2]", "added")]


def test_key_field_added_to_some_items_changes_the_list_as_a_whole() -> None:
    # Found by test_diff_properties: each revision names its items differently (position in
    # one, code in the other), so no item path exists in both and the list is one change.
    old = {"vat": [{}]}
    new = {"vat": [{"code": "a"}]}
    assert _as_tuples(diff_revisions(old, new)) == [("vat", "changed")]
    assert _as_tuples(diff_revisions({"r": [{"code": "a"}]}, {"r": []})) == [("r[a]", "removed")]


def test_segments_that_need_quoting() -> None:
    assert quote_segment("vat") == "vat"
    assert quote_segment("纳税人") == "纳税人"
    assert quote_segment("a.b") == '"a.b"'
    assert quote_segment("new resource") == '"new resource"'
    assert quote_segment("") == '""'
    old = {"resources": [{"code": "new res", "fields": []}], "x": {"a.b": 1}}
    new = {"resources": [{"code": "new res", "fields": ["f"]}], "x": {"a.b": 2}}
    assert _as_tuples(diff_revisions(old, new)) == [
        ('resources["new res"].fields[f]', "added"),
        ('x["a.b"]', "changed"),
    ]


def test_non_json_values_are_serialized() -> None:
    change = diff_revisions({"period": {"end": dt.date(2026, 1, 1)}}, {"period": {}})[0]
    assert change.to_dict()["old"] == "2026-01-01"
    assert json.dumps(change.to_dict())


def test_document_paths_anchor_comments() -> None:
    paths = document_paths(SPEC_V1)
    assert "resources[tax_filing].fields[vat].purpose" in paths
    assert "resources[social_security].fields[payroll]" in paths
    assert "outputs[vat_band].sources" in paths
    assert "resources[nope]" not in paths


def test_not_a_document() -> None:
    with pytest.raises(TypeError):
        diff_revisions([], {})  # type: ignore[arg-type]


# -- random documents -------------------------------------------------------------------------

names = st.sampled_from(["a", "b", "c", "vat", "纳税", "x y"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), names)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(names, max_size=3, unique=True),
        st.lists(
            st.fixed_dictionaries({"code": names}, optional={"v": inner}),
            max_size=3,
            unique_by=lambda d: d["code"],
        ),
        st.dictionaries(names, inner, max_size=3),
    ),
    max_leaves=12,
)
roots = st.dictionaries(names, documents, max_size=4)


@settings(max_examples=200, deadline=None)
@given(old=roots, new=roots)
def test_diff_properties(old: dict, new: dict) -> None:
    forward = diff_revisions(old, new)
    assert diff_revisions(old, old) == []
    # reversing swaps added and removed at the same paths
    flip = {"added": "removed", "removed": "added", "changed": "changed"}
    backward = {(c.path, str(c.kind)) for c in diff_revisions(new, old)}
    assert {(c.path, flip[str(c.kind)]) for c in forward} == backward
    # every reported path exists in the document it belongs to
    old_paths, new_paths = document_paths(old), document_paths(new)
    for c in forward:
        if c.kind is not ChangeKind.ADDED:
            assert c.path in old_paths
        if c.kind is not ChangeKind.REMOVED:
            assert c.path in new_paths
    json.dumps([c.to_dict() for c in forward])


# -- Art. 19 ----------------------------------------------------------------------------------

PRODUCT_V1 = {
    "kind": "product",
    "name": "小微企业信用评分",
    "scenario": "credit_assessment",
    "purpose": "Score small enterprises for credit lines.",
    "components": [
        {"code": "enterprise_vitality", "fields": ["vitality_band", "industry"]},
        {"code": "tax_compliance", "fields": ["compliance_flag"]},
    ],
    "period": {"start": "2026-01-01", "end": "2026-12-31"},
    "risk_controls": ["no onward transfer"],
}


def _product(**changes: object) -> dict:
    doc = json.loads(json.dumps(PRODUCT_V1))
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, set()),
        ({"purpose": "  Score small   enterprises for credit lines. "}, set()),
        ({"purpose": "Score small enterprises for marketing."}, {"purpose"}),
        ({"scenario": "marketing"}, {"purpose"}),
        ({"components": list(reversed(PRODUCT_V1["components"]))}, set()),
        (
            {
                "components": [
                    {"code": "tax_compliance", "fields": ["compliance_flag"]},
                    {"code": "enterprise_vitality", "fields": ["industry", "vitality_band"]},
                ]
            },
            set(),
        ),
        (
            {"components": [{"code": "enterprise_vitality", "fields": ["vitality_band"]}]},
            {"scope"},
        ),
        (
            {
                "components": [
                    *PRODUCT_V1["components"],
                    {"code": "person_income", "fields": ["income_band"]},
                ]
            },
            {"scope"},
        ),
        ({"period": {"start": "2026-01-01", "end": "2027-12-31"}}, {"period"}),
        ({"risk_controls": ["no onward transfer", "quarterly audit"]}, set()),
        ({"name": "renamed"}, set()),
        (
            {"scenario": "marketing", "period": None, "components": []},
            {"purpose", "scope", "period"},
        ),
    ],
)
def test_scope_changed(changes: dict, expected: set[str]) -> None:
    assert scope_changed(PRODUCT_V1, _product(**changes)) == expected


def test_scope_changed_missing_equals_null() -> None:
    without = {k: v for k, v in PRODUCT_V1.items() if k != "period"}
    assert scope_changed(without, _product(period=None)) == set()
    assert scope_changed(without, PRODUCT_V1) == {"period"}
