"""Desensitization policy: defaults per label and grade, validation, overrides, weakening."""

from __future__ import annotations

import datetime as dt
import json
import sys
import types
from typing import Any

import pyarrow as pa
import pytest
from stdnum.cn import ric

from yuanjian.privacy.operators import LABELS, OPERATORS, apply_policy
from yuanjian.privacy.policy import (
    GRADES,
    STRENGTH_ORDER,
    ApprovalRequiredError,
    DesensitizationPolicy,
    FieldInfo,
    OperatorCall,
    PolicyError,
    protection_tier,
    validate,
    weakens_protection,
)

KEY = b"policy-test-key-0123456789abcdef"

FIELDS = [
    FieldInfo("id_no", pa.string(), "cn_resident_id", "general", sensitive=True),
    FieldInfo("phone", pa.string(), "cn_mobile", "general", sensitive=False),
    FieldInfo("name", pa.string(), "person_name", "general", sensitive=False),
    FieldInfo("birth", pa.date32(), "date_of_birth", "general", sensitive=True),
    FieldInfo("addr", pa.string(), "address", "general", sensitive=False),
    FieldInfo("card", pa.string(), "bank_card", "general", sensitive=True),
    FieldInfo("note", pa.string(), "free_text_with_pii", "general", sensitive=True),
    FieldInfo("amount", pa.int64(), "none", "general", sensitive=False),
    FieldInfo("secret", pa.string(), "none", "core", sensitive=False),
]


def call(operator: str, **params: Any) -> OperatorCall:
    return OperatorCall(operator=operator, params=params)


@pytest.fixture(scope="module")
def policy() -> DesensitizationPolicy:
    return DesensitizationPolicy.default()


# --------------------------------------------------------------------------- the default


def test_default_policy_covers_every_label_and_grade(policy: DesensitizationPolicy) -> None:
    for label in LABELS:
        for grade in GRADES:
            assert policy.rule_for(label, grade).operator in OPERATORS


def test_default_policy_choices(policy: DesensitizationPolicy) -> None:
    calls = policy.resolve(FIELDS)
    assert calls["id_no"].operator == "format_preserving"
    assert calls["id_no"].params["kind"] == "cn_resident_id"
    assert calls["phone"] == call("format_preserving", kind="cn_mobile", keep_prefix=3)
    assert calls["name"] == call("mask", keep_first=1)
    assert calls["birth"] == call("generalize", method="year", output="label")
    assert calls["addr"] == call("generalize", method="address", level="district")
    assert calls["card"] == call("mask", keep_last=4)
    assert calls["note"].operator == "redact_entities"
    assert calls["amount"] == call("keep")
    assert calls["secret"] == call("redact")  # core grade is redacted whatever the label
    for label in LABELS:
        assert policy.rule_for(label, "core") == call("redact")
    assert policy.rule_for("cn_resident_id", "important").operator == "pseudonymize"
    assert policy.rule_for("geo_coordinate", "general") == call(
        "generalize", method="round", digits=2
    )


def test_default_policy_runs_end_to_end(
    policy: DesensitizationPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        from yuanjian.privacy import detect

        has_regexes = hasattr(detect, "ENTITY_REGEXES")
    except ImportError:
        has_regexes = False
    if not has_regexes:
        fake = types.ModuleType("yuanjian.privacy.detect")
        fake.ENTITY_REGEXES = {"cn_mobile": r"1[3-9]\d{9}"}  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "yuanjian.privacy.detect", fake)
    table = pa.table(
        {
            "id_no": ["11010519491231002X", "110105198001010016"],
            "phone": ["13812345678", None],
            "name": ["张三丰", "李四"],
            "birth": [dt.date(1949, 12, 31), dt.date(1980, 1, 1)],
            "addr": ["北京市朝阳区三里屯路19号", "河南省郑州市中原区建设路"],
            "card": ["6222021234567890", "6222029876543210"],
            "note": ["请回电 13812345678", "无"],
            "amount": [100, 200],
            "secret": ["s1", "s2"],
        }
    )
    out = apply_policy(table, policy.resolve(FIELDS), key=KEY, seed=1, subject_column="id_no")
    rows = out.to_pylist()
    assert all(ric.is_valid(r["id_no"]) for r in rows)
    assert rows[0]["id_no"][6:10] == "1949" and int(rows[0]["id_no"][16]) % 2 == 0
    assert rows[0]["phone"].startswith("138") and rows[1]["phone"] is None
    assert [r["name"] for r in rows] == ["张**", "李*"]
    assert [r["birth"] for r in rows] == ["1949", "1980"]
    assert [r["addr"] for r in rows] == ["北京市朝阳区", "河南省郑州市中原区"]
    assert [r["card"] for r in rows] == ["************7890", "************3210"]
    assert "13812345678" not in rows[0]["note"] and rows[1]["note"] == "无"
    assert [r["amount"] for r in rows] == [100, 200]
    assert [r["secret"] for r in rows] == [None, None]


# --------------------------------------------------------------------------- policy documents


def _doc(**rules: Any) -> dict[str, Any]:
    base: dict[str, Any] = {label: {"*": {"operator": "redact"}} for label in LABELS}
    base.update(rules)
    return {"name": "t", "rules": base}


def test_policy_rule_with_unknown_operator_names_the_rule() -> None:
    with pytest.raises(PolicyError, match=r"rules\.person_name\.\*.*unknown operator 'blur'"):
        DesensitizationPolicy.from_data(_doc(person_name={"*": {"operator": "blur"}}))


def test_policy_rule_with_bad_parameters_names_the_rule() -> None:
    with pytest.raises(PolicyError, match=r"rules\.person_name\.general.*keep_first.*integer"):
        DesensitizationPolicy.from_data(
            _doc(
                person_name={
                    "*": {"operator": "keep"},
                    "general": {"operator": "mask", "params": {"keep_first": "1"}},
                }
            )
        )
    with pytest.raises(PolicyError, match=r"grades\.core.*needs parameter 'scale'"):
        DesensitizationPolicy.from_data({**_doc(), "grades": {"core": {"operator": "noise"}}})


def test_policy_must_cover_every_label_and_grade() -> None:
    doc = _doc()
    del doc["rules"]["email"]
    with pytest.raises(PolicyError, match=r"rules\.email.*'general'"):
        DesensitizationPolicy.from_data(doc)
    doc = _doc(email={"core": {"operator": "redact"}})
    with pytest.raises(PolicyError, match=r"rules\.email.*'general'"):
        DesensitizationPolicy.from_data(doc)
    # A grade-wide rule fills the gap.
    doc = _doc(email={"core": {"operator": "redact"}})
    doc["grades"] = {"general": {"operator": "redact"}, "important": {"operator": "redact"}}
    assert DesensitizationPolicy.from_data(doc).rule_for("email", "general") == call("redact")


def test_policy_document_errors() -> None:
    with pytest.raises(PolicyError, match=r"not valid JSON"):
        DesensitizationPolicy.from_json("{")
    with pytest.raises(PolicyError, match=r"malformed"):
        DesensitizationPolicy.from_data(_doc(shoe_size={"*": {"operator": "keep"}}))
    text = json.dumps(_doc())
    assert DesensitizationPolicy.from_json(text).rule_for("email", "core") == call("redact")


def test_rule_lookup_order() -> None:
    doc = _doc(
        email={
            "*": {"operator": "pseudonymize"},
            "core": {"operator": "replace", "params": {"value": "x"}},
        }
    )
    doc["grades"] = {"core": {"operator": "redact"}, "important": {"operator": "redact"}}
    p = DesensitizationPolicy.from_data(doc)
    assert p.rule_for("email", "core") == call("replace", value="x")  # label+grade first
    assert p.rule_for("email", "important") == call("redact")  # then grade-wide
    assert p.rule_for("email", "general") == call("pseudonymize")  # then the label's "*"
    with pytest.raises(PolicyError, match=r"'f'.*unknown classification label"):
        p.rule_for("shoe_size", "general", field="f")
    with pytest.raises(PolicyError, match=r"'f'.*unknown grade"):
        p.rule_for("email", "secret", field="f")


# --------------------------------------------------------------------------- validation


def test_validate_names_each_bad_field(policy: DesensitizationPolicy) -> None:
    overrides = {
        "birth": {"operator": "mask", "params": {"keep_first": 4}},  # mask on a date
        "amount": {"operator": "noise"},  # missing scale
        "name": {"operator": "mask", "params": {"keep_first": 1, "colour": "red"}},
        "ghost": {"operator": "keep"},  # not a field of the sample
        "phone": {"operator": "shred"},
    }
    issues = validate(policy, FIELDS, overrides)
    by_field = {i.field: i for i in issues}
    assert set(by_field) == {"birth", "amount", "name", "ghost", "phone"}
    assert by_field["birth"].code == "column_type" and "'birth'" in by_field["birth"].message
    assert by_field["amount"].code == "missing_parameter"
    assert by_field["name"].code == "extra_parameter"
    assert by_field["ghost"].code == "unknown_field"
    assert by_field["phone"].code == "unknown_operator"
    assert policy.issues(FIELDS) == []


def test_default_rule_that_does_not_fit_the_column_is_reported(
    policy: DesensitizationPolicy,
) -> None:
    # A date-of-birth column stored as text cannot take generalize(method='year').
    fields = [FieldInfo("dob", pa.string(), "date_of_birth", "general", sensitive=True)]
    issues = validate(policy, fields)
    assert [(i.field, i.code) for i in issues] == [("dob", "column_type")]
    with pytest.raises(PolicyError, match=r"'dob'.*generalize\(method='year'\)") as info:
        policy.resolve(fields)
    assert info.value.field == "dob"


def test_suppress_override_quasi_identifiers_must_be_fields(
    policy: DesensitizationPolicy,
) -> None:
    overrides = {
        "amount": {"operator": "suppress", "params": {"k": 5, "quasi_identifiers": ["zip"]}}
    }
    issues = validate(policy, FIELDS, overrides)
    assert [(i.field, i.code) for i in issues] == [("amount", "parameter_value")]
    assert "'zip'" in issues[0].message


# --------------------------------------------------------------------------- overrides


def test_weakening_override_of_sensitive_field_needs_approval(
    policy: DesensitizationPolicy,
) -> None:
    overrides = {"id_no": {"operator": "mask", "params": {"keep_first": 6}}}
    assert policy.weakening_overrides(FIELDS, overrides) == ["id_no"]
    with pytest.raises(ApprovalRequiredError, match=r"'id_no'.*reviewer") as info:
        policy.resolve(FIELDS, overrides)
    assert info.value.field == "id_no"
    calls = policy.resolve(FIELDS, overrides, approved={"id_no"})
    assert calls["id_no"] == call("mask", keep_first=6)


def test_override_of_non_sensitive_or_stronger_needs_no_approval(
    policy: DesensitizationPolicy,
) -> None:
    overrides = {
        "name": {"operator": "keep"},  # weaker, but names are not flagged sensitive here
        "id_no": {"operator": "redact"},  # stronger
        "birth": {"operator": "generalize", "params": {"method": "year"}},  # same strength
        "card": {"operator": "mask", "params": {"keep_last": 2}},  # shows less
    }
    assert policy.weakening_overrides(FIELDS, overrides) == []
    calls = policy.resolve(FIELDS, overrides)
    assert calls["name"] == call("keep") and calls["id_no"] == call("redact")


def test_override_must_fit_the_column(policy: DesensitizationPolicy) -> None:
    with pytest.raises(PolicyError, match=r"'amount'.*mask.*int64") as info:
        policy.resolve(FIELDS, {"amount": {"operator": "mask"}})
    assert info.value.field == "amount"


# --------------------------------------------------------------------------- strength order


@pytest.mark.parametrize(
    ("default", "override", "weaker"),
    [
        (call("redact"), call("replace", value="x"), False),
        (call("redact"), call("pseudonymize"), True),
        (call("pseudonymize"), call("redact"), False),
        (call("pseudonymize"), call("pseudonymize", length=32, algorithm="hmac-sm3"), False),
        (call("pseudonymize"), call("format_preserving", kind="cn_mobile"), True),
        (call("mask", keep_first=1), call("mask", keep_first=2), True),
        (call("mask", keep_first=1, keep_last=1), call("mask", keep_first=1), False),
        (call("mask", keep_last=4), call("mask", keep_first=4), True),
        (call("mask", keep_first=3, mask_length=4), call("mask", keep_first=3), True),
        (call("mask", keep_first=1), call("generalize", method="address"), True),
        (call("generalize", method="month"), call("generalize", method="year"), False),
        (call("generalize", method="year"), call("generalize", method="quarter"), True),
        (
            call("generalize", method="band", width=1000),
            call("generalize", method="band", width=5000),
            False,
        ),
        (
            call("generalize", method="band", width=1000),
            call("generalize", method="band", width=500),
            True,
        ),
        (
            call("generalize", method="band", bounds=[1, 2, 3]),
            call("generalize", method="band", bounds=[1, 3]),
            False,
        ),
        (
            call("generalize", method="band", bounds=[1, 3]),
            call("generalize", method="band", bounds=[1, 2, 3]),
            True,
        ),
        (
            call("generalize", method="band", width=10),
            call("generalize", method="band", bounds=[10]),
            True,
        ),
        (
            call("generalize", method="round", digits=2),
            call("generalize", method="round", digits=3),
            True,
        ),
        (
            call("generalize", method="area_code", level="city"),
            call("generalize", method="area_code", level="province"),
            False,
        ),
        (
            call("generalize", method="address", level="city"),
            call("generalize", method="address", level="district"),
            True,
        ),
        (
            call("generalize", method="top_bottom", lower=0, upper=100),
            call("generalize", method="top_bottom", lower=10, upper=90),
            False,
        ),
        (
            call("generalize", method="top_bottom", lower=0, upper=100),
            call("generalize", method="top_bottom", upper=100),
            True,
        ),
        (call("generalize", method="round"), call("generalize", method="band", width=1), True),
        (
            call("format_preserving", kind="cn_resident_id"),
            call("format_preserving", kind="cn_resident_id", keep_sex=True),
            True,
        ),
        (
            call("format_preserving", kind="cn_resident_id", keep_birth_year=True, keep_sex=True),
            call("format_preserving", kind="cn_resident_id", keep_sex=True),
            False,
        ),
        (
            call("format_preserving", kind="cn_resident_id", keep_region="province"),
            call("format_preserving", kind="cn_resident_id", keep_region="city"),
            True,
        ),
        (
            call("format_preserving", kind="cn_resident_id", birth_shift_days=365),
            call("format_preserving", kind="cn_resident_id", birth_shift_days=30),
            True,
        ),
        (
            call("format_preserving", kind="cn_mobile"),
            call("format_preserving", kind="cn_mobile", keep_prefix=7),
            True,
        ),
        (call("date_shift", max_days=30), call("date_shift", max_days=60), False),
        (call("date_shift", max_days=30), call("date_shift", max_days=7), True),
        (call("noise", scale=5.0), call("noise", scale=1.0), True),
        (call("noise", scale=5.0), call("noise", scale=5.0, distribution="gaussian"), True),
        (call("noise", scale=1.0), call("noise", scale=5.0), False),
        (call("suppress", k=5), call("suppress", k=3), True),
        (call("suppress", k=5), call("suppress", k=10, quasi_identifiers=["a"]), False),
        (call("redact_entities"), call("redact_entities", labels=["cn_mobile"]), True),
        (call("redact_entities", labels=["cn_mobile"]), call("redact_entities"), False),
        (call("noise", scale=1.0), call("keep"), True),
        (call("keep"), call("noise", scale=1.0), False),
    ],
)
def test_weakens_protection(default: OperatorCall, override: OperatorCall, weaker: bool) -> None:
    assert weakens_protection(default, override, sensitive=True) is weaker
    assert weakens_protection(default, override, sensitive=False) is False


def test_strength_order_ranks_every_operator() -> None:
    ranked = [op for tier in STRENGTH_ORDER for op in tier]
    assert sorted(ranked) == sorted(OPERATORS)
    assert protection_tier(call("redact")) > protection_tier(call("suppress", k=2))
    assert protection_tier(call("suppress", k=2)) > protection_tier(call("pseudonymize"))
    assert protection_tier(call("mask")) > protection_tier(call("generalize", method="round"))
    assert protection_tier(call("noise", scale=1.0)) > protection_tier(call("keep"))
    with pytest.raises(PolicyError, match=r"unknown operator"):
        protection_tier(call("blur"))
