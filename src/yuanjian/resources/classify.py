"""Classification and grading rules as policy data (the data steward edits them; Art. 6).

A rules document maps each detector label to a personal-information flag, a sensitive
personal-information flag (PIPL Art. 28) and a GB/T 43697-2024 level, and lists column-name
hints (regular expressions) that raise those for fields detectors cannot see into.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from yuanjian.errors import ValidationFailed
from yuanjian.privacy.detect import LABELS

GRADES = ("general", "important", "core")
GRADE_RANK = {g: i for i, g in enumerate(GRADES)}


class LabelRule(BaseModel):
    """What a detector label means for classification."""

    model_config = ConfigDict(extra="forbid")

    personal: bool
    sensitive: bool = False
    grade: str = "general"

    @field_validator("grade")
    @classmethod
    def _grade(cls, v: str) -> str:
        if v not in GRADES:
            raise ValueError(f"grade must be one of {', '.join(GRADES)}")
        return v


class HintRule(LabelRule):
    """A column-name pattern that raises a field's classification."""

    pattern: str = Field(min_length=1)
    note: str | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v


class ClassificationRules(BaseModel):
    """The whole rules document."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, LabelRule]
    hints: list[HintRule] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, LabelRule]) -> dict[str, LabelRule]:
        unknown = sorted(set(v) - set(LABELS))
        if unknown:
            raise ValueError(f"unknown label(s) {', '.join(unknown)}")
        missing = sorted(set(LABELS) - set(v))
        if missing:
            raise ValueError(f"missing rule(s) for {', '.join(missing)}")
        return v


def _r(personal: bool, sensitive: bool = False, grade: str = "general") -> dict[str, Any]:
    return {"personal": personal, "sensitive": sensitive, "grade": grade}


DEFAULT_RULES: dict[str, Any] = {
    "labels": {
        "cn_resident_id": _r(True, True, "important"),
        "passport": _r(True, True, "important"),
        "bank_card": _r(True, True, "important"),
        "geo_coordinate": _r(True, True, "important"),
        "free_text_with_pii": _r(True, True, "important"),
        "person_name": _r(True),
        "cn_mobile": _r(True),
        "cn_landline": _r(True),
        "email": _r(True),
        "address": _r(True),
        "date_of_birth": _r(True),
        "ip_address": _r(True),
        "cn_license_plate": _r(True),
        "cn_uscc": _r(False),
        "none": _r(False),
    },
    "hints": [
        {
            "pattern": r"(病|诊断|医疗|健康|medical|diagnos|health)",
            **_r(True, True, "important"),
            "note": "health information is sensitive personal information (PIPL Art. 28)",
        },
        {"pattern": r"(宗教|信仰|religio)", **_r(True, True, "important")},
        {"pattern": r"(犯罪|刑事|crime|criminal)", **_r(True, True, "important")},
        {
            "pattern": r"(工资|薪|收入|余额|存款|salary|income|balance|deposit)",
            **_r(False, False, "important"),
            "note": "financial amounts of persons or enterprises",
        },
        {"pattern": r"(涉密|国家秘密|军|国防|classified|military)", **_r(False, False, "core")},
    ],
}


def parse_rules(document: dict[str, Any]) -> ClassificationRules:
    """Validate a rules document; errors name the offending entry."""
    try:
        return ClassificationRules.model_validate(document)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValidationFailed(
            f"classification rules: {where}: {err['msg']}", field=where
        ) from None


@dataclass(frozen=True)
class FieldClass:
    """The classification of one field."""

    label: str
    personal: bool
    sensitive: bool
    grade: str


def classify(name: str, label: str, rules: ClassificationRules) -> FieldClass:
    """Classify a field from its detected label and its name."""
    base = rules.labels.get(label) or rules.labels["none"]
    personal, sensitive, grade = base.personal, base.sensitive, base.grade
    for hint in rules.hints:
        if re.search(hint.pattern, name, re.IGNORECASE):
            personal = personal or hint.personal
            sensitive = sensitive or hint.sensitive
            if GRADE_RANK[hint.grade] > GRADE_RANK[grade]:
                grade = hint.grade
    if sensitive and GRADE_RANK[grade] < GRADE_RANK["important"]:
        grade = "important"
    return FieldClass(label, personal, sensitive, grade)


def apply_override(cls: FieldClass, override: dict[str, Any] | None) -> FieldClass:
    """The steward's override on top of the computed classification."""
    if not override:
        return cls
    return FieldClass(
        override.get("label", cls.label),
        bool(override.get("personal", cls.personal)),
        bool(override.get("sensitive", cls.sensitive)),
        override.get("grade", cls.grade),
    )


def validate_override(override: dict[str, Any]) -> dict[str, Any]:
    """Check an override's keys and values; errors name the field."""
    allowed = {"label", "personal", "sensitive", "grade"}
    extra = sorted(set(override) - allowed)
    if extra:
        raise ValidationFailed(f"unknown override key {extra[0]!r}", field=extra[0])
    if not override:
        raise ValidationFailed(
            "an override changes at least one of label, personal, sensitive or grade",
            field="override",
        )
    if "label" in override and override["label"] not in LABELS:
        raise ValidationFailed(f"unknown label {override['label']!r}", field="label")
    if "grade" in override and override["grade"] not in GRADES:
        raise ValidationFailed(f"grade must be one of {', '.join(GRADES)}", field="grade")
    for k in ("personal", "sensitive"):
        if k in override and not isinstance(override[k], bool):
            raise ValidationFailed(f"{k} must be true or false", field=k)
    return dict(override)


def resource_grade(grades: list[str]) -> str:
    """A resource's level is the highest of its fields'."""
    return max(grades, key=lambda g: GRADE_RANK[g]) if grades else "general"
