"""Desensitization policy: default operators per classification label and grade, overrides.

A :class:`DesensitizationPolicy` is data the operator's data steward edits (the built-in one
is ``default_policy.json`` beside this module). For a field with a classification label and a
GB/T 43697 grade, the operator call is looked up in this order:

1. ``rules[label][grade]`` — a rule written for exactly this label and grade;
2. ``grades[grade]`` — a grade-wide rule (the default policy redacts every ``core`` field);
3. ``rules[label]["*"]`` — the label's rule for any grade.

A policy must cover every label for every grade, and every rule must name a known operator
with valid parameters; both are checked when the policy is loaded. A component spec's sample
may override the call per field. Overrides are validated like rules (and against the column
type), and an override that *weakens* the protection of a field holding sensitive personal
information needs a reviewer's approval before :meth:`DesensitizationPolicy.resolve` accepts
it.

Protection strength (:func:`weakens_protection`) is a documented total order on operators,
strongest first::

    redact = replace > suppress > pseudonymize > format_preserving > redact_entities
        > mask > generalize > date_shift > noise > keep

An override with an operator lower in that order weakens protection. With the same operator
the parameters decide (showing more characters, a finer date or band, a smaller shift or noise
scale, a smaller k, fewer entity kinds, keeping more of an ID's birth year/sex/region all
weaken); a change that cannot be ranked (e.g. generalize by band instead of by bounds) counts
as weakening, so it goes to a reviewer rather than through silently.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from yuanjian.privacy.labels import LABELS, Label
from yuanjian.privacy.operators import (
    OperatorCall,
    PolicyError,
    PolicyIssue,
    check_call,
    normalize_params,
)

__all__ = [
    "GRADES",
    "LABELS",
    "STRENGTH_ORDER",
    "ApprovalRequiredError",
    "DesensitizationPolicy",
    "FieldInfo",
    "OperatorCall",
    "PolicyError",
    "PolicyIssue",
    "protection_tier",
    "validate",
    "weakens_protection",
]

Grade = Literal["general", "important", "core"]
GradeKey = Literal["general", "important", "core", "*"]
GRADES: tuple[str, ...] = ("general", "important", "core")

#: Operators from strongest to weakest protection; operators in one inner tuple are equal.
STRENGTH_ORDER: tuple[tuple[str, ...], ...] = (
    ("redact", "replace"),
    ("suppress",),
    ("pseudonymize",),
    ("format_preserving",),
    ("redact_entities",),
    ("mask",),
    ("generalize",),
    ("date_shift",),
    ("noise",),
    ("keep",),
)
_TIER = {op: len(STRENGTH_ORDER) - i for i, ops in enumerate(STRENGTH_ORDER) for op in ops}


class ApprovalRequiredError(PolicyError):
    """An override weakens protection of sensitive personal information without approval."""


@dataclass(frozen=True)
class FieldInfo:
    """A field to desensitize: name, Arrow type, classification label, grade, sensitivity."""

    name: str
    arrow_type: pa.DataType
    label: str = "none"
    grade: str = "general"
    sensitive: bool = False


class DesensitizationPolicy(BaseModel):
    """Default operator per classification label and grade, edited by the data steward."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    version: int = 1
    description: str = ""
    grades: dict[Grade, OperatorCall] = Field(default_factory=dict)
    rules: dict[Label, dict[GradeKey, OperatorCall]]

    @model_validator(mode="after")
    def _check_rules(self) -> DesensitizationPolicy:
        issues: list[PolicyIssue] = []
        for grade, call in self.grades.items():
            issues += check_call(call, field=f"grades.{grade}")
        for label, by_grade in self.rules.items():
            for grade, call in by_grade.items():
                issues += check_call(call, field=f"rules.{label}.{grade}")
        if issues:
            raise PolicyError.from_issues(issues)
        for label in LABELS:
            for grade in GRADES:
                if self._lookup(label, grade) is None:
                    raise PolicyError(
                        f"rules.{label}: no operator for grade {grade!r} (add a rule for "
                        f"{grade!r} or '*', or a grade-wide rule)",
                        field=f"rules.{label}",
                    )
        return self

    @classmethod
    def default(cls) -> DesensitizationPolicy:
        """The built-in policy shipped as ``default_policy.json``."""
        text = (
            resources.files("yuanjian.privacy")
            .joinpath("default_policy.json")
            .read_text(encoding="utf-8")
        )
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str) -> DesensitizationPolicy:
        """Parse and check a policy document; raise PolicyError naming the bad rule."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"policy is not valid JSON: {exc}") from exc
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> DesensitizationPolicy:
        """Build a policy from parsed data; PolicyError (not pydantic's error) on bad rules."""
        try:
            return cls.model_validate(data)
        except PolicyError:
            raise
        except ValueError as exc:
            # pydantic wraps our PolicyError in its ValidationError; unwrap it for the caller.
            inner = _find_policy_error(exc)
            if inner is not None:
                raise inner from exc
            raise PolicyError(f"policy document is malformed: {exc}") from exc

    def _lookup(self, label: str, grade: str) -> OperatorCall | None:
        by_grade = self.rules.get(label, {})  # type: ignore[call-overload]
        if grade in by_grade:
            return by_grade[grade]
        if grade in self.grades:
            return self.grades[grade]  # type: ignore[index]
        return by_grade.get("*")

    def rule_for(self, label: str, grade: str, *, field: str = "?") -> OperatorCall:
        """The steward's default call for a label and grade."""
        if label not in LABELS:
            raise PolicyError(
                f"field {field!r}: unknown classification label {label!r}", field=field
            )
        if grade not in GRADES:
            raise PolicyError(
                f"field {field!r}: unknown grade {grade!r} (expected {', '.join(GRADES)})",
                field=field,
            )
        call = self._lookup(label, grade)
        assert call is not None  # coverage is checked when the policy is built
        return call

    def defaults(self, fields: Collection[FieldInfo]) -> dict[str, OperatorCall]:
        """The policy's default call for each field, ignoring overrides."""
        return {f.name: self.rule_for(f.label, f.grade, field=f.name) for f in fields}

    def issues(
        self,
        fields: Collection[FieldInfo],
        overrides: Mapping[str, OperatorCall | Mapping[str, Any]] | None = None,
    ) -> list[PolicyIssue]:
        """Every problem with applying this policy (plus overrides) to these fields."""
        return validate(self, fields, overrides)

    def weakening_overrides(
        self,
        fields: Collection[FieldInfo],
        overrides: Mapping[str, OperatorCall | Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Fields whose override weakens protection of sensitive personal information."""
        by_name = {f.name: f for f in fields}
        out: list[str] = []
        for name, value in (overrides or {}).items():
            info = by_name.get(name)
            if info is None:
                continue
            default = self.rule_for(info.label, info.grade, field=name)
            if weakens_protection(default, _call(value, name), info.sensitive):
                out.append(name)
        return out

    def resolve(
        self,
        fields: Collection[FieldInfo],
        overrides: Mapping[str, OperatorCall | Mapping[str, Any]] | None = None,
        *,
        approved: Collection[str] = (),
    ) -> dict[str, OperatorCall]:
        """Field → operator call after overrides; validated, weakening overrides need approval.

        Raises PolicyError naming the field for any validation issue, and
        ApprovalRequiredError for a weakening override of a sensitive field not in
        ``approved`` (the fields a reviewer approved).
        """
        found = validate(self, fields, overrides)
        if found:
            raise PolicyError.from_issues(found)
        unapproved = [f for f in self.weakening_overrides(fields, overrides) if f not in approved]
        if unapproved:
            raise ApprovalRequiredError(
                f"field {unapproved[0]!r}: the override weakens protection of sensitive "
                f"personal information and needs a reviewer's approval"
                + (f" (also: {', '.join(unapproved[1:])})" if len(unapproved) > 1 else ""),
                field=unapproved[0],
            )
        calls = self.defaults(fields)
        for name, value in (overrides or {}).items():
            calls[name] = _call(value, name)
        return calls


def _find_policy_error(exc: BaseException) -> PolicyError | None:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        for err in errors():
            ctx = err.get("ctx") or {}
            inner = ctx.get("error")
            if isinstance(inner, PolicyError):
                return inner
    return None


def _call(value: OperatorCall | Mapping[str, Any], field: str) -> OperatorCall:
    if isinstance(value, OperatorCall):
        return value
    try:
        return OperatorCall.model_validate(value)
    except ValueError as exc:
        raise PolicyError(f"field {field!r}: malformed operator call: {exc}", field=field) from exc


def validate(
    policy: DesensitizationPolicy,
    fields: Collection[FieldInfo],
    overrides: Mapping[str, OperatorCall | Mapping[str, Any]] | None = None,
) -> list[PolicyIssue]:
    """Check a policy plus overrides against fields; each issue names its field."""
    issues: list[PolicyIssue] = []
    by_name: dict[str, FieldInfo] = {}
    for f in fields:
        if f.name in by_name:
            issues.append(
                PolicyIssue(f.name, "", "duplicate_field", f"field {f.name!r}: listed twice")
            )
        by_name[f.name] = f
    overrides = overrides or {}
    for name in overrides:
        if name not in by_name:
            issues.append(
                PolicyIssue(
                    name,
                    "",
                    "unknown_field",
                    f"field {name!r}: override for a field that is not in the sample",
                )
            )
    for f in by_name.values():
        try:
            default = policy.rule_for(f.label, f.grade, field=f.name)
        except PolicyError as exc:
            issues.append(PolicyIssue(f.name, "", "classification", str(exc)))
            continue
        if f.name in overrides:
            try:
                call = _call(overrides[f.name], f.name)
            except PolicyError as exc:
                issues.append(PolicyIssue(f.name, "", "malformed_call", str(exc)))
                continue
        else:
            call = default
        found = check_call(call, arrow_type=f.arrow_type, field=f.name)
        issues += found
        if not found and call.operator == "suppress":
            params = normalize_params(call, field=f.name)
            for qi in params["quasi_identifiers"]:
                if qi not in by_name:
                    issues.append(
                        PolicyIssue(
                            f.name,
                            "suppress",
                            "parameter_value",
                            f"field {f.name!r}: quasi-identifier {qi!r} is not a field "
                            "of the sample",
                        )
                    )
    return issues


# ---------------------------------------------------------------------------------------------
# Protection strength
# ---------------------------------------------------------------------------------------------


def protection_tier(call: OperatorCall | Mapping[str, Any]) -> int:
    """Rank of the call's operator in :data:`STRENGTH_ORDER` (higher is stronger)."""
    call = _call(call, "?")
    if call.operator not in _TIER:
        raise PolicyError(f"unknown operator {call.operator!r}", operator=call.operator)
    return _TIER[call.operator]


_DATE_COARSENESS = {"month": 1, "quarter": 2, "year": 3}
_REGION_KEPT = {"none": 0, "province": 1, "city": 2}
_AREA_COARSENESS = {"city": 1, "province": 2}
_ADDRESS_COARSENESS = {"district": 1, "city": 2, "province": 3}


def _at_least_as_strong(op: str, o: dict[str, Any], d: dict[str, Any]) -> bool:
    """Whether override params ``o`` protect at least as much as default params ``d``."""
    if op in ("redact", "replace", "keep", "pseudonymize"):
        # replace: any constant hides as much as another; pseudonymize: the encoding, length
        # and algorithm do not change what a pseudonym reveals.
        return True
    if op == "mask":
        hides_length = o["mask_length"] is not None or d["mask_length"] is None
        return (
            o["keep_first"] <= d["keep_first"]
            and o["keep_last"] <= d["keep_last"]
            and (hides_length)
        )
    if op == "format_preserving":
        if o["kind"] != d["kind"]:
            return False
        if o["kind"] == "cn_mobile":
            return o["keep_prefix"] <= d["keep_prefix"]
        if o["keep_birth_year"] and not d["keep_birth_year"]:
            return False
        if o["keep_sex"] and not d["keep_sex"]:
            return False
        if _REGION_KEPT[o["keep_region"]] > _REGION_KEPT[d["keep_region"]]:
            return False
        if not o["keep_birth_year"] and not d["keep_birth_year"]:
            return o["birth_shift_days"] >= d["birth_shift_days"]
        return True
    if op == "generalize":
        return _generalize_at_least_as_strong(o, d)
    if op == "date_shift":
        return o["max_days"] >= d["max_days"]
    if op == "noise":
        return o["distribution"] == d["distribution"] and o["scale"] >= d["scale"]
    if op == "suppress":
        return o["k"] >= d["k"] and set(o["quasi_identifiers"]) >= set(d["quasi_identifiers"])
    if op == "redact_entities":
        if o["labels"] is None:
            return True
        return d["labels"] is not None and set(o["labels"]) >= set(d["labels"])
    return False


def _generalize_at_least_as_strong(o: dict[str, Any], d: dict[str, Any]) -> bool:
    om, dm = o["method"], d["method"]
    if om in _DATE_COARSENESS and dm in _DATE_COARSENESS:
        return _DATE_COARSENESS[om] >= _DATE_COARSENESS[dm]
    if om != dm:
        return False
    if om == "band":
        if o["width"] is not None and d["width"] is not None:
            return o["width"] >= d["width"]
        if o["bounds"] is not None and d["bounds"] is not None:
            # Fewer breakpoints drawn from the default's: every band is a union of its bands.
            return set(o["bounds"]) <= set(d["bounds"])
        return False
    if om == "round":
        return o["digits"] <= d["digits"]
    if om == "top_bottom":
        lower_ok = d["lower"] is None or (o["lower"] is not None and o["lower"] >= d["lower"])
        upper_ok = d["upper"] is None or (o["upper"] is not None and o["upper"] <= d["upper"])
        return lower_ok and upper_ok
    if om == "area_code":
        return _AREA_COARSENESS[o["level"]] >= _AREA_COARSENESS[d["level"]]
    if om == "address":
        return _ADDRESS_COARSENESS[o["level"]] >= _ADDRESS_COARSENESS[d["level"]]
    if om == "hierarchy":
        return o["hierarchy"] == d["hierarchy"] and o["levels"] >= d["levels"]
    return False


def weakens_protection(
    default_call: OperatorCall | Mapping[str, Any],
    override_call: OperatorCall | Mapping[str, Any],
    sensitive: bool,
) -> bool:
    """Whether an override weakens a sensitive field's protection (so needs approval)."""
    if not sensitive:
        return False
    default_call, override_call = _call(default_call, "?"), _call(override_call, "?")
    d_tier, o_tier = protection_tier(default_call), protection_tier(override_call)
    if o_tier != d_tier:
        return o_tier < d_tier
    if default_call.operator != override_call.operator:
        return False  # equal tier: redact vs replace hide the same
    d = normalize_params(default_call, field="default")
    o = normalize_params(override_call, field="override")
    return not _at_least_as_strong(default_call.operator, o, d)
