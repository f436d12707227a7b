"""Security risk assessment of design specs (Art. 10 for component specs, Art. 20 for products).

Pure code: the inputs are plain data and nothing is read or written. :func:`assess_risk`
takes

* a **spec document** (a mapping, the same document the developer submits and
  :mod:`yuanjian.reviews.diff` compares)::

      kind: "component" | "product"          (default "component")
      type: "dataset" | "feature"            (component specs; required for them)
      scenario: "credit_assessment"          (application scenario code; product specs)
      population: 800                        (optional: subjects the spec covers, if narrower)
      resources: [                           (component specs; product specs say "components")
        {code: "tax_filing",
         fields: ["vat", {name: "taxpayer_id", transform: "pseudonymize"},
                  {name: "person_id", output: false}]},   # join key only, never output
      ]
      outputs: [                             (optional; replaces the per-field output rule)
        {name: "income_band", sources: ["tax_filing.vat"], transform: "band"},
      ]

* **registry facts** (:class:`RegistryFacts`): per resource (or catalogued component) its
  subject type, row and subject counts, the scenarios it is published for, and per field the
  classification label (the detector's labels, :data:`LABELS`), the personal-information and
  sensitive-PI flags and the GB/T 43697 grade; plus the catalogue's scenario list;
* optionally the reviewer's **checklist answers** (item id → ``yes`` / ``no`` / ``na``);
* the **policy** (:class:`RiskPolicy`): severities, thresholds, which labels are direct
  identifiers, which transforms remove identity, and the checklist. Standards are data (Art. 6).

Automatic findings (:class:`FindingCode`), each naming the resource and field by its spec path
(``resources[tax_filing].fields[vat]``, the path syntax of the diff):

``core_field`` / ``important_field``
    a requested field graded core / important (GB/T 43697-2024).
``sensitive_personal_information``
    a requested field flagged as sensitive personal information (GB/T 35273-2020).
``direct_identifier_output``
    an output derives from a field whose label is a direct identifier and no transform on the
    way removes identity (a missing or unknown transform counts as none: deny by default).
``links_person_sources``
    the spec draws on several sources about persons: sources whose subjects are persons, or
    from which it takes personal information (a component is built from its sources together,
    so requesting them in one spec is linking them).
``person_level_dataset``
    a *dataset* component (Art. 2) on a source whose rows are about persons.
``small_population``
    the smallest subject population among the person sources (or the spec's own
    ``population``) is below the high or medium threshold.
``purpose_outside_scenarios``
    a product spec whose scenario is missing, not in the catalogue's scenarios, or not among
    the scenarios a requested component is published for.

The level is the highest finding severity (``low`` when there is none). A reviewer's ``no``
on a *blocking* checklist item raises it to that item's ``raise_to``; a ``no`` on any other
item is listed as a concern. Unanswered items are listed, so the service can refuse a decision
until the checklist is complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from yuanjian.privacy.labels import LABELS, Label
from yuanjian.reviews.diff import quote_segment

__all__ = [
    "DEFAULT_CHECKLIST",
    "DEFAULT_RISK_POLICY",
    "GRADES",
    "LABELS",
    "ChecklistItem",
    "FieldFacts",
    "Finding",
    "FindingCode",
    "RegistryFacts",
    "RiskAssessment",
    "RiskInputError",
    "RiskLevel",
    "RiskPolicy",
    "RiskPolicyError",
    "SourceFacts",
    "assess_risk",
    "max_level",
]


class RiskLevel(StrEnum):
    """A finding's severity and an assessment's level, in increasing order."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0 for low, 1 for medium, 2 for high."""
        return _RANK[self]


_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2}


def max_level(levels: Iterable[RiskLevel | str]) -> RiskLevel:
    """The highest of the levels, ``low`` for none."""
    return max((RiskLevel(v) for v in levels), key=_RANK.__getitem__, default=RiskLevel.LOW)


Grade = Literal["general", "important", "core"]
GRADES: tuple[str, ...] = Grade.__args__  # type: ignore[attr-defined]
SubjectType = Literal["person", "organization", "place", "aggregate", "other"]
SpecKind = Literal["component", "product"]
Answer = Literal["yes", "no", "na"]


class FindingCode(StrEnum):
    """What an automatic finding is about."""

    CORE_FIELD = "core_field"
    IMPORTANT_FIELD = "important_field"
    SENSITIVE_PERSONAL_INFORMATION = "sensitive_personal_information"
    DIRECT_IDENTIFIER_OUTPUT = "direct_identifier_output"
    LINKS_PERSON_SOURCES = "links_person_sources"
    PERSON_LEVEL_DATASET = "person_level_dataset"
    SMALL_POPULATION = "small_population"
    PURPOSE_OUTSIDE_SCENARIOS = "purpose_outside_scenarios"


_STANDARD: dict[FindingCode, str | None] = {
    FindingCode.CORE_FIELD: "GB/T 43697-2024",
    FindingCode.IMPORTANT_FIELD: "GB/T 43697-2024",
    FindingCode.SENSITIVE_PERSONAL_INFORMATION: "GB/T 35273-2020",
    FindingCode.DIRECT_IDENTIFIER_OUTPUT: "GB/T 37964-2019",
    FindingCode.LINKS_PERSON_SOURCES: "GB/T 37964-2019",
    FindingCode.PERSON_LEVEL_DATASET: "GB/T 37964-2019",
    FindingCode.SMALL_POPULATION: "GB/T 37964-2019",
    FindingCode.PURPOSE_OUTSIDE_SCENARIOS: None,
}


class RiskInputError(ValueError):
    """The spec, registry facts or checklist answers are unusable; ``field`` names where."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RiskPolicyError(ValueError):
    """A risk policy document is invalid; ``field`` names the bad setting."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------


class ChecklistItem(BaseModel):
    """One question the reviewer answers yes / no / na."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    text: str = Field(min_length=1)
    text_zh: str = Field(min_length=1)
    blocking: bool = True
    raise_to: RiskLevel = RiskLevel.HIGH
    applies_to: frozenset[SpecKind] = frozenset({"component", "product"})


DEFAULT_CHECKLIST: tuple[ChecklistItem, ...] = (
    ChecklistItem(
        id="necessity",
        text="Every requested field is necessary for the stated scenario (minimum necessary).",
        text_zh="所申请的每个字段都是所述应用场景所必需的（最小必要）。",
    ),
    ChecklistItem(
        id="purpose_lawful",
        text="The scenario and purpose are lawful, specific and within the operator's "
        "authorization (Art. 5).",
        text_zh="应用场景和用途合法、明确，且在运营主体的授权范围内（第五条）。",
    ),
    ChecklistItem(
        id="desensitization",
        text="The planned desensitization removes identity from every output that needs it.",
        text_zh="拟采用的脱敏处理能去除所有需要去标识化的输出中的身份信息。",
    ),
    ChecklistItem(
        id="linkage",
        text="Linking the sources cannot single out a person beyond what the scenario needs.",
        text_zh="多源数据关联不会超出场景需要识别到特定个人。",
    ),
    ChecklistItem(
        id="social_data_provenance",
        text="Social data used has recorded provenance and authorization (Art. 13).",
        text_zh="使用的社会数据已记录来源和授权（第十三条）。",
        applies_to=frozenset({"component"}),
    ),
    ChecklistItem(
        id="risk_controls",
        text="The product's risk controls (access, retention, no onward transfer) are "
        "adequate (Art. 19).",
        text_zh="数据产品的风险管控措施（访问控制、留存期限、不向第三方提供）充分（第十九条）。",
        applies_to=frozenset({"product"}),
    ),
    ChecklistItem(
        id="developer_capability",
        text="The developer's qualification and security measures fit the data's grade (Art. 7).",
        text_zh="开发商的资质和数据安全管理能力与数据分级相适应（第七条）。",
        blocking=False,
    ),
)

_DEFAULT_SEVERITIES: dict[FindingCode, RiskLevel] = {
    FindingCode.CORE_FIELD: RiskLevel.HIGH,
    FindingCode.IMPORTANT_FIELD: RiskLevel.MEDIUM,
    FindingCode.SENSITIVE_PERSONAL_INFORMATION: RiskLevel.HIGH,
    FindingCode.DIRECT_IDENTIFIER_OUTPUT: RiskLevel.HIGH,
    FindingCode.LINKS_PERSON_SOURCES: RiskLevel.MEDIUM,
    FindingCode.PERSON_LEVEL_DATASET: RiskLevel.MEDIUM,
    FindingCode.PURPOSE_OUTSIDE_SCENARIOS: RiskLevel.MEDIUM,
}


class RiskPolicy(BaseModel):
    """Severities, thresholds, identifier labels, identity-removing transforms and checklist."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Severity per finding code; codes left out keep the default. ``small_population`` takes
    #: its severity from the two thresholds instead.
    severities: dict[FindingCode, RiskLevel] = Field(
        default_factory=lambda: dict(_DEFAULT_SEVERITIES)
    )
    #: Fewer person subjects than this is a high finding ...
    small_population_high: int = Field(default=1000, ge=0)
    #: ... and fewer than this a medium one.
    small_population_medium: int = Field(default=10000, ge=0)
    #: How many person sources in one spec count as linking persons.
    min_linked_person_sources: int = Field(default=2, ge=2)
    #: Labels that identify a person directly (quasi-identifiers such as address, date of birth
    #: and coordinates are not; an organization's USCC is not a person's identifier).
    identifier_labels: frozenset[Label] = frozenset(
        {
            "cn_resident_id",
            "cn_mobile",
            "cn_landline",
            "bank_card",
            "email",
            "ip_address",
            "cn_license_plate",
            "passport",
            "person_name",
            "free_text_with_pii",
        }
    )
    #: Transforms after which an output no longer shows the identifier itself: the
    #: desensitization operators other than keep / date_shift / noise, and feature modelling.
    identity_removing_transforms: frozenset[str] = frozenset(
        {
            "redact",
            "replace",
            "suppress",
            "pseudonymize",
            "format_preserving",
            "mask",
            "generalize",
            "redact_entities",
            "aggregate",
            "count",
            "band",
            "flag",
            "score",
        }
    )
    checklist: tuple[ChecklistItem, ...] = DEFAULT_CHECKLIST

    @field_validator("severities", mode="after")
    @classmethod
    def _merge_severities(cls, value: dict[FindingCode, RiskLevel]) -> dict[FindingCode, RiskLevel]:
        if FindingCode.SMALL_POPULATION in value:
            raise ValueError(
                "small_population takes its severity from small_population_high/_medium"
            )
        return {**_DEFAULT_SEVERITIES, **value}

    @model_validator(mode="after")
    def _check(self) -> RiskPolicy:
        if self.small_population_high > self.small_population_medium:
            raise RiskPolicyError(
                f"small_population_high ({self.small_population_high}) must not exceed "
                f"small_population_medium ({self.small_population_medium})",
                field="small_population_high",
            )
        seen: set[str] = set()
        for i, item in enumerate(self.checklist):
            if item.id in seen:
                raise RiskPolicyError(
                    f"checklist[{i}]: duplicate item id {item.id!r}", field=f"checklist[{i}].id"
                )
            seen.add(item.id)
        return self

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RiskPolicy:
        """Build a policy from parsed data; RiskPolicyError naming the setting on bad input."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _policy_error(exc) from exc

    def checklist_for(self, kind: str) -> tuple[ChecklistItem, ...]:
        """The checklist items that apply to a spec kind."""
        return tuple(item for item in self.checklist if kind in item.applies_to)


def _loc(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path: ``checklist[0].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _policy_error(exc: ValidationError) -> RiskPolicyError:
    first = exc.errors()[0]
    inner = (first.get("ctx") or {}).get("error")
    if isinstance(inner, RiskPolicyError):
        return inner
    where = _loc(first["loc"]) or None
    return RiskPolicyError(f"risk policy: {where or 'document'}: {first['msg']}", field=where)


DEFAULT_RISK_POLICY = RiskPolicy()


# ---------------------------------------------------------------------------------------------
# Registry facts
# ---------------------------------------------------------------------------------------------


class FieldFacts(BaseModel):
    """What the registry knows about one field: label, PI flags and grade."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: Label = "none"
    personal: bool = False
    sensitive: bool = False
    grade: Grade = "general"

    @model_validator(mode="after")
    def _sensitive_is_personal(self) -> FieldFacts:
        if self.sensitive and not self.personal:
            raise ValueError("a sensitive field must also be flagged personal")
        return self


class SourceFacts(BaseModel):
    """A registered resource (or catalogued component): subjects, counts, scenarios, fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject_type: SubjectType = "other"
    rows: int | None = Field(default=None, ge=0)
    subjects: int | None = Field(default=None, ge=0)
    #: The scenarios a catalogued component is published for (empty: not restricted).
    scenarios: frozenset[str] = frozenset()
    fields: dict[str, FieldFacts] = Field(default_factory=dict)


class RegistryFacts(BaseModel):
    """Registry facts about every source a spec may request, plus the catalogue's scenarios."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: dict[str, SourceFacts] = Field(default_factory=dict)
    scenarios: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One automatic finding: what, how severe, where in the spec, and why (article, standard)."""

    code: FindingCode
    severity: RiskLevel
    message: str
    path: str | None
    article: str
    standard: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        return {
            "code": str(self.code),
            "severity": str(self.severity),
            "message": self.message,
            "path": self.path,
            "article": self.article,
            "standard": self.standard,
        }


@dataclass(frozen=True)
class RiskAssessment:
    """Findings, the automatic level, the checklist outcome and the resulting level."""

    kind: str
    findings: tuple[Finding, ...]
    automatic_level: RiskLevel
    level: RiskLevel
    answers: Mapping[str, str] = field(default_factory=dict)
    raised_by: tuple[str, ...] = ()
    concerns: tuple[str, ...] = ()
    unanswered: tuple[str, ...] = ()

    @property
    def checklist_complete(self) -> bool:
        """Whether the reviewer answered every applicable checklist item."""
        return not self.unanswered

    def codes(self) -> set[FindingCode]:
        """The distinct finding codes."""
        return {f.code for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        return {
            "kind": self.kind,
            "level": str(self.level),
            "automatic_level": str(self.automatic_level),
            "findings": [f.to_dict() for f in self.findings],
            "answers": dict(self.answers),
            "raised_by": list(self.raised_by),
            "concerns": list(self.concerns),
            "unanswered": list(self.unanswered),
            "checklist_complete": self.checklist_complete,
        }


# ---------------------------------------------------------------------------------------------
# Reading the spec
# ---------------------------------------------------------------------------------------------

# (list key in the spec, source code, registry facts)
_Source = tuple[str, str, SourceFacts]


@dataclass(frozen=True)
class _Requested:
    source: str
    name: str
    path: str
    facts: FieldFacts
    output: bool
    transforms: tuple[str, ...]


def _transforms(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RiskInputError(f"{where}: transform must be a name or a list of names", field=where)


def _read_sources(
    spec: Mapping[str, Any], registry: RegistryFacts
) -> tuple[list[_Source], list[_Requested]]:
    """The requested sources (list key, code, facts) and fields, checked against the registry."""
    sources: list[_Source] = []
    fields: list[_Requested] = []
    seen: set[str] = set()
    for key in ("resources", "components"):
        entries = spec.get(key) or []
        if not isinstance(entries, Sequence) or isinstance(entries, str):
            raise RiskInputError(f"{key}: expected a list", field=key)
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("code"), str):
                raise RiskInputError(f"{key}[{i}]: expected an object with a code", field=key)
            code = entry["code"]
            where = f"{key}[{quote_segment(code)}]"
            facts = registry.sources.get(code)
            if facts is None:
                raise RiskInputError(f"{where}: {code!r} is not in the registry", field=where)
            if code in seen:
                raise RiskInputError(f"{where}: requested twice", field=where)
            seen.add(code)
            sources.append((key, code, facts))
            raw_fields = entry.get("fields") or []
            if not isinstance(raw_fields, Sequence) or isinstance(raw_fields, str):
                raise RiskInputError(f"{where}.fields: expected a list", field=f"{where}.fields")
            for j, item in enumerate(raw_fields):
                fields.append(_read_field(item, code, facts, f"{where}.fields", j))
    return sources, fields


def _read_field(item: object, code: str, facts: SourceFacts, where: str, j: int) -> _Requested:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise RiskInputError(f"{where}[{j}]: expected a field name", field=f"{where}[{j}]")
    name = item["name"]
    path = f"{where}[{quote_segment(name)}]"
    field_facts = facts.fields.get(name)
    if field_facts is None:
        raise RiskInputError(f"{path}: {code}.{name} is not a registered field", field=path)
    output = item.get("output", True)
    if not isinstance(output, bool):
        raise RiskInputError(f"{path}.output: expected true or false", field=f"{path}.output")
    transforms = _transforms(item.get("transform"), f"{path}.transform")
    return _Requested(code, name, path, field_facts, output, transforms)


def _article(kind: str) -> str:
    return "Art. 20" if kind == "product" else "Art. 10"


class _Collector:
    """Collects findings with the policy's severity and the spec kind's article."""

    def __init__(self, article: str, policy: RiskPolicy) -> None:
        self.article = article
        self.policy = policy
        self.findings: list[Finding] = []

    def add(
        self,
        code: FindingCode,
        message: str,
        path: str | None,
        severity: RiskLevel | None = None,
    ) -> None:
        self.findings.append(
            Finding(
                code=code,
                severity=severity or self.policy.severities[code],
                message=message,
                path=path,
                article=self.article,
                standard=_STANDARD[code],
            )
        )


# ---------------------------------------------------------------------------------------------
# Assessment
# ---------------------------------------------------------------------------------------------


def assess_risk(
    spec: Mapping[str, Any],
    registry: RegistryFacts | Mapping[str, Any],
    *,
    answers: Mapping[str, str] | None = None,
    policy: RiskPolicy = DEFAULT_RISK_POLICY,
) -> RiskAssessment:
    """Automatic findings for a spec plus the reviewer's checklist answers, and the level."""
    if not isinstance(registry, RegistryFacts):
        try:
            registry = RegistryFacts.model_validate(registry)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = _loc(first["loc"])
            raise RiskInputError(f"registry: {where}: {first['msg']}", field=where) from exc
    kind = spec.get("kind", "component")
    if kind not in ("component", "product"):
        raise RiskInputError(f"kind: expected component or product, got {kind!r}", field="kind")
    component_type = spec.get("type")
    if kind == "component" and component_type not in ("dataset", "feature"):
        raise RiskInputError(
            f"type: a component spec is a dataset or a feature, got {component_type!r}",
            field="type",
        )
    sources, requested = _read_sources(spec, registry)
    out = _Collector(_article(kind), policy)
    add = out.add

    for f in requested:
        label = f"{f.source}.{f.name}"
        if f.facts.grade == "core":
            add(FindingCode.CORE_FIELD, f"{label} is graded core", f.path)
        elif f.facts.grade == "important":
            add(FindingCode.IMPORTANT_FIELD, f"{label} is graded important", f.path)
        if f.facts.sensitive:
            add(
                FindingCode.SENSITIVE_PERSONAL_INFORMATION,
                f"{label} is sensitive personal information",
                f.path,
            )

    for out_path, out_name, source_fields, transforms in _outputs(spec, requested):
        if set(transforms) & policy.identity_removing_transforms:
            continue
        for f in source_fields:
            if f.facts.label in policy.identifier_labels:
                how = (
                    f"transform {'+'.join(transforms)} does not remove identity"
                    if transforms
                    else "no transform removes identity"
                )
                add(
                    FindingCode.DIRECT_IDENTIFIER_OUTPUT,
                    f"output {out_name} derives from {f.source}.{f.name} ({f.facts.label}): " + how,
                    out_path,
                )

    person = [s for s in sources if s[2].subject_type == "person"]
    # A source of another subject type is about persons too when the spec takes personal
    # information from it (an enterprise's legal representative, say).
    personal_codes = {f.source for f in requested if f.facts.personal}
    about_persons = [s for s in sources if s in person or s[1] in personal_codes]
    if len(about_persons) >= policy.min_linked_person_sources:
        add(
            FindingCode.LINKS_PERSON_SOURCES,
            f"links {len(about_persons)} sources about persons: "
            + ", ".join(code for _, code, _ in about_persons),
            None,
        )
    if kind == "component" and component_type == "dataset":
        for key, code, _ in person:
            add(
                FindingCode.PERSON_LEVEL_DATASET,
                f"dataset component on person-level rows of {code}",
                f"{key}[{quote_segment(code)}]",
            )
    _small_population(spec, person, policy, out)
    if kind == "product":
        _scenarios(spec, sources, registry, out)

    automatic = max_level(f.severity for f in out.findings)
    return _apply_checklist(kind, tuple(out.findings), automatic, answers or {}, policy)


def _outputs(
    spec: Mapping[str, Any], requested: list[_Requested]
) -> list[tuple[str, str, list[_Requested], tuple[str, ...]]]:
    """(path, name, source fields, transforms) per output, from ``outputs`` or the fields."""
    raw = spec.get("outputs")
    if raw is None:
        return [(f.path, f.name, [f], f.transforms) for f in requested if f.output]
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise RiskInputError("outputs: expected a list", field="outputs")
    by_ref = {f"{f.source}.{f.name}": f for f in requested}
    result = []
    for i, out in enumerate(raw):
        if not isinstance(out, Mapping) or not isinstance(out.get("name"), str):
            raise RiskInputError(f"outputs[{i}]: expected an object with a name", field="outputs")
        path = f"outputs[{quote_segment(out['name'])}]"
        refs = out.get("sources", [out["source"]] if "source" in out else [])
        if isinstance(refs, str) or not isinstance(refs, Sequence) or not refs:
            raise RiskInputError(f"{path}.sources: expected a list of code.field", field=path)
        fields = []
        for ref in refs:
            if not isinstance(ref, str) or ref not in by_ref:
                raise RiskInputError(
                    f"{path}.sources: {ref!r} is not a requested field", field=f"{path}.sources"
                )
            fields.append(by_ref[ref])
        transforms = _transforms(out.get("transform"), f"{path}.transform")
        result.append((path, out["name"], fields, transforms))
    return result


def _small_population(
    spec: Mapping[str, Any], person: list[_Source], policy: RiskPolicy, out: _Collector
) -> None:
    if not person:
        return
    candidates: list[tuple[int, str, str | None]] = []
    for key, code, facts in person:
        # Rows bound the subjects from above, so a small row count is a sound finding too.
        if facts.subjects is not None:
            count, unit = facts.subjects, "subjects"
        elif facts.rows is not None:
            count, unit = facts.rows, "rows"
        else:
            continue
        candidates.append((count, f"{code} has {count} {unit}", f"{key}[{quote_segment(code)}]"))
    population = spec.get("population")
    if population is not None:
        if not isinstance(population, int) or isinstance(population, bool) or population < 0:
            raise RiskInputError("population: expected a non-negative integer", field="population")
        candidates.append((population, f"the spec covers {population} subjects", "population"))
    if not candidates:
        return
    count, why, path = min(candidates, key=lambda c: c[0])
    if count < policy.small_population_high:
        out.add(
            FindingCode.SMALL_POPULATION,
            f"small subject population: {why} (< {policy.small_population_high})",
            path,
            RiskLevel.HIGH,
        )
    elif count < policy.small_population_medium:
        out.add(
            FindingCode.SMALL_POPULATION,
            f"small subject population: {why} (< {policy.small_population_medium})",
            path,
            RiskLevel.MEDIUM,
        )


def _scenarios(
    spec: Mapping[str, Any], sources: list[_Source], registry: RegistryFacts, out: _Collector
) -> None:
    scenario = spec.get("scenario")
    code = FindingCode.PURPOSE_OUTSIDE_SCENARIOS
    if not isinstance(scenario, str) or not scenario.strip():
        out.add(code, "the product spec states no application scenario", "scenario")
        return
    if scenario not in registry.scenarios:
        out.add(code, f"scenario {scenario!r} is not in the catalogue's scenarios", "scenario")
    for key, source, facts in sources:
        if facts.scenarios and scenario not in facts.scenarios:
            out.add(
                code,
                f"{source} is published for {', '.join(sorted(facts.scenarios))}, "
                f"not for scenario {scenario!r}",
                f"{key}[{quote_segment(source)}]",
            )


def _apply_checklist(
    kind: str,
    findings: tuple[Finding, ...],
    automatic: RiskLevel,
    answers: Mapping[str, str],
    policy: RiskPolicy,
) -> RiskAssessment:
    items = {item.id: item for item in policy.checklist_for(kind)}
    level = automatic
    raised: list[str] = []
    concerns: list[str] = []
    for item_id, answer in answers.items():
        where = f"checklist.{item_id}"
        item = items.get(item_id)
        if item is None:
            raise RiskInputError(f"{where}: no such checklist item for {kind} specs", field=where)
        if answer not in ("yes", "no", "na"):
            raise RiskInputError(f"{where}: answer yes, no or na, not {answer!r}", field=where)
        if answer == "no":
            if item.blocking:
                raised.append(item_id)
                level = max_level((level, item.raise_to))
            else:
                concerns.append(item_id)
    unanswered = tuple(i for i in items if i not in answers)
    return RiskAssessment(
        kind=kind,
        findings=findings,
        automatic_level=automatic,
        level=level,
        answers=dict(answers),
        raised_by=tuple(raised),
        concerns=tuple(concerns),
        unanswered=unanswered,
    )
