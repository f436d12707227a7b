"""Design spec documents (Art. 9 component specs, Art. 19 product specs) and their validation.

Structure is checked by pydantic; meaning is checked against the resource registry and the
catalog (unknown resources or fields, expired social resources, outputs that trace to no
input, unpublished component versions); every error names the field by its spec path, in the
syntax of :mod:`yuanjian.reviews.diff` (``resources[tax_filing].fields[vat]``).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.components.models import Component, ComponentVersion
from yuanjian.errors import ValidationFailed
from yuanjian.resources import service as resources
from yuanjian.resources.models import Resource, ResourceField, ResourceVersion

CODE_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
OUTPUT_TYPES = ("string", "integer", "number", "boolean", "date", "timestamp")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FieldRequest(_Doc):
    name: str = Field(min_length=1, max_length=128)
    purpose: str = Field(min_length=2, max_length=500, description="why this field is needed")
    transform: str | None = Field(default=None, max_length=64)
    output: bool = True


class ResourceRequest(_Doc):
    code: str = Field(min_length=1, max_length=63)
    fields: list[FieldRequest] = Field(min_length=1)


class OutputField(_Doc):
    name: str = Field(min_length=1, max_length=128)
    type: Literal["string", "integer", "number", "boolean", "date", "timestamp"]
    description: str = Field(min_length=1, max_length=1000)
    sources: list[str] = Field(default_factory=list, description='inputs as "resource.field"')
    transform: str | None = Field(default=None, max_length=64)


class Period(_Doc):
    start: date
    end: date

    @model_validator(mode="after")
    def _order(self) -> Period:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class ComponentSpecDoc(_Doc):
    """What a component developer submits (Art. 9)."""

    kind: Literal["component"] = "component"
    name: str = Field(min_length=2, max_length=200)
    code: str = Field(pattern=CODE_PATTERN)
    type: Literal["dataset", "feature"]
    scenarios: list[str] = Field(min_length=1)
    function_design: str = Field(min_length=10, max_length=20000)
    subject_type: Literal["person", "enterprise"]
    subject_key: str = Field(description='the subject key as "resource.field"')
    resources: list[ResourceRequest] = Field(min_length=1)
    outputs: list[OutputField] = Field(min_length=1)
    update_frequency: Literal["once", "daily", "weekly", "monthly", "quarterly", "yearly"]
    delivery_modes: list[Literal["api", "batch"]] = Field(min_length=1)
    area: str = Field(min_length=1, max_length=200)
    time_range: Period
    consumers: list[str] = Field(min_length=1)


class ComponentRequest(_Doc):
    code: str = Field(min_length=1, max_length=63)
    version: int = Field(ge=1)
    fields: list[str] = Field(min_length=1)


class Quotas(_Doc):
    """Limits the product asks for; its licence grants exactly these, never more."""

    calls_per_day: int | None = Field(default=None, ge=1, le=100_000_000)
    subjects_per_day: int | None = Field(default=None, ge=1, le=100_000_000)
    batch_records: int = Field(default=10_000, ge=1, le=100_000_000)
    rate_per_second: float = Field(default=20.0, gt=0, le=100_000)


class ProductSpecDoc(_Doc):
    """What a product developer submits (Art. 19)."""

    kind: Literal["product"] = "product"
    name: str = Field(min_length=2, max_length=200)
    code: str = Field(pattern=CODE_PATTERN)
    components: list[ComponentRequest] = Field(min_length=1)
    scenario: str = Field(min_length=1, max_length=100)
    purpose: str = Field(min_length=1, max_length=64)
    end_users: str = Field(min_length=2, max_length=2000)
    risk_controls: list[str] = Field(min_length=1)
    period: Period
    expected_calls_per_day: int = Field(ge=1, le=100_000_000)
    quotas: Quotas = Field(default_factory=Quotas)
    client_ip_ranges: list[str] = Field(default_factory=list, max_length=50)
    delivery_modes: list[Literal["api", "batch"]] = Field(default_factory=lambda: ["api"])

    @model_validator(mode="after")
    def _ranges(self) -> ProductSpecDoc:
        import ipaddress

        for i, r in enumerate(self.client_ip_ranges):
            try:
                ipaddress.ip_network(r, strict=False)
            except ValueError as exc:
                raise ValueError(f"client_ip_ranges[{i}]: {r!r} is not an IP range") from exc
        if self.quotas.calls_per_day and self.quotas.calls_per_day > self.expected_calls_per_day:
            raise ValueError("quotas.calls_per_day is more than expected_calls_per_day")
        return self

    @property
    def calls_per_day(self) -> int:
        """The daily call quota the licence grants."""
        return self.quotas.calls_per_day or self.expected_calls_per_day

    @property
    def subjects_per_day(self) -> int:
        """The daily distinct-subject quota the licence grants."""
        return self.quotas.subjects_per_day or self.calls_per_day


def re_code(value: str) -> bool:
    """Whether a string is a valid lower_snake_case code."""
    return re.match(CODE_PATTERN, value or "") is not None


DEFAULT_PURPOSES = {
    "credit_lending": "信贷审批与贷后管理",
    "insurance_underwriting": "保险承保",
    "public_service": "公共服务",
    "urban_governance": "城市治理",
    "enterprise_services": "企业服务",
}


def _path(loc: tuple[Any, ...], doc: dict[str, Any]) -> str:
    """Turn a pydantic location into a spec path using natural keys where there are some."""
    out: list[str] = []
    node: Any = doc
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            item = node[part]
            key = None
            if isinstance(item, dict):
                key = item.get("code") or item.get("name")
            out[-1] = f"{out[-1]}[{key if key else part}]" if out else f"[{part}]"
            node = item
        else:
            out.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(out)


def parse_document(kind: str, document: dict[str, Any]) -> ComponentSpecDoc | ProductSpecDoc:
    """Check a spec document's structure; the first error names its path."""
    model = {"component": ComponentSpecDoc, "product": ProductSpecDoc}.get(kind)
    if model is None:
        raise ValidationFailed("kind must be component or product", field="kind")
    if not isinstance(document, dict):
        raise ValidationFailed("the spec document must be a JSON object", field="document")
    try:
        return model.model_validate({**document, "kind": kind})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _path(tuple(err["loc"]), document) or "document"
        raise ValidationFailed(f"{where}: {err['msg']}", field=where) from None


def _split(ref: str, where: str) -> tuple[str, str]:
    if "." not in ref:
        raise ValidationFailed(f'{where}: "{ref}" must be "resource.field"', field=where)
    code, _, name = ref.partition(".")
    return code, name


def validate_component(session: Session, doc: ComponentSpecDoc, today: date | None = None) -> None:
    """Check a component spec against the registry; raise naming the first bad field."""
    requested: dict[str, set[str]] = {}
    for r in doc.resources:
        where = f"resources[{r.code}]"
        res = session.scalar(select(Resource).where(Resource.code == r.code))
        if res is None:
            raise ValidationFailed(f"{where}: no resource with code {r.code!r}", field=where)
        ok, why = resources.usable_on(session, res, today or date.today())
        if not ok:
            raise ValidationFailed(f"{where}: {why}", field=where)
        if res.current_version_id is None:
            raise ValidationFailed(f"{where}: resource {r.code} has no data yet", field=where)
        present = set(
            session.scalars(
                select(ResourceField.name).where(
                    ResourceField.resource_id == res.id, ResourceField.present.is_(True)
                )
            )
        )
        names = set()
        for f in r.fields:
            fwhere = f"{where}.fields[{f.name}]"
            if f.name not in present:
                raise ValidationFailed(f"{fwhere}: {r.code} has no field {f.name!r}", field=fwhere)
            if f.name in names:
                raise ValidationFailed(f"{fwhere}: requested twice", field=fwhere)
            names.add(f.name)
        if r.code in requested:
            raise ValidationFailed(f"{where}: requested twice", field=where)
        requested[r.code] = names
    code, name = _split(doc.subject_key, "subject_key")
    if name not in requested.get(code, set()):
        raise ValidationFailed(
            f"subject_key: {doc.subject_key} is not among the requested fields", field="subject_key"
        )
    seen_outputs: set[str] = set()
    for o in doc.outputs:
        where = f"outputs[{o.name}]"
        if o.name in seen_outputs:
            raise ValidationFailed(f"{where}: output name used twice", field=where)
        seen_outputs.add(o.name)
        if not o.sources:
            raise ValidationFailed(
                f"{where}.sources: the output does not trace to any input", field=f"{where}.sources"
            )
        for ref in o.sources:
            c, n = _split(ref, f"{where}.sources")
            if n not in requested.get(c, set()):
                raise ValidationFailed(
                    f"{where}.sources: {ref} is not a requested field", field=f"{where}.sources"
                )


def published_version(
    session: Session, code: str, number: int
) -> tuple[Component, ComponentVersion] | None:
    """A catalog component version, if published."""
    comp = session.scalar(select(Component).where(Component.code == code))
    if comp is None:
        return None
    v = session.scalar(
        select(ComponentVersion).where(
            ComponentVersion.component_id == comp.id, ComponentVersion.number == number
        )
    )
    return (comp, v) if v is not None else None


def validate_product(session: Session, doc: ProductSpecDoc, purposes: dict[str, str]) -> None:
    """Check a product spec against the catalog and the purpose vocabulary."""
    if doc.purpose not in purposes:
        raise ValidationFailed(
            f"purpose: {doc.purpose!r} is not in the purpose vocabulary "
            f"({', '.join(sorted(purposes))})",
            field="purpose",
        )
    seen: set[str] = set()
    for c in doc.components:
        where = f"components[{c.code}]"
        if c.code in seen:
            raise ValidationFailed(f"{where}: requested twice", field=where)
        seen.add(c.code)
        found = published_version(session, c.code, c.version)
        if found is None or found[1].status != "published":
            raise ValidationFailed(
                f"{where}: version {c.version} of {c.code!r} is not published in the catalog",
                field=where,
            )
        names = {f["name"] for f in found[1].output_schema}
        offered = set(found[1].delivery_modes or ["api"])
        for mode in doc.delivery_modes:
            if mode not in offered:
                raise ValidationFailed(
                    f"delivery_modes: {c.code} v{c.version} is not delivered by {mode!r} "
                    f"(only {', '.join(sorted(offered))})",
                    field="delivery_modes",
                )
        for f in c.fields:
            if f not in names:
                raise ValidationFailed(
                    f"{where}.fields[{f}]: not an output field of {c.code} v{c.version}",
                    field=f"{where}.fields[{f}]",
                )


_SUBJECT = {"person": "person", "enterprise": "organization"}


def registry_facts(session: Session, doc: ComponentSpecDoc | ProductSpecDoc) -> dict[str, Any]:
    """The registry facts the risk assessment needs, as plain data."""
    sources: dict[str, Any] = {}
    if isinstance(doc, ComponentSpecDoc):
        for r in doc.resources:
            res = session.scalar(select(Resource).where(Resource.code == r.code))
            if res is None:
                continue
            version = (
                session.get(ResourceVersion, res.current_version_id)
                if res.current_version_id
                else None
            )
            subjects = None
            if version is not None and res.subject_key:
                col = version.profile.get("columns", {}).get(res.subject_key)
                subjects = col.get("distinct_estimate") if col else None
            fields = {
                f.name: {
                    "label": f.label,
                    "personal": f.personal,
                    "sensitive": f.sensitive,
                    "grade": f.grade,
                }
                for f in session.scalars(
                    select(ResourceField).where(ResourceField.resource_id == res.id)
                )
            }
            sources[r.code] = {
                "subject_type": _SUBJECT.get(res.subject_type or "", "other"),
                "rows": version.rows if version else None,
                "subjects": subjects,
                "fields": fields,
            }
    else:
        for c in doc.components:
            found = published_version(session, c.code, c.version)
            if found is None:
                continue
            comp, v = found
            sources[c.code] = {
                "subject_type": _SUBJECT.get(comp.subject_type, "other"),
                "scenarios": list(v.scenarios),
                "fields": {
                    f["name"]: {
                        k: f[k] for k in ("label", "personal", "sensitive", "grade") if k in f
                    }
                    for f in v.output_schema
                },
            }
    scenarios = set()
    for v in session.scalars(
        select(ComponentVersion).where(ComponentVersion.status == "published")
    ):
        scenarios |= set(v.scenarios)
    return {"sources": sources, "scenarios": sorted(scenarios)}


def risk_document(doc: ComponentSpecDoc | ProductSpecDoc) -> dict[str, Any]:
    """The spec in the shape the risk assessment reads."""
    if isinstance(doc, ComponentSpecDoc):
        return {
            "kind": "component",
            "type": doc.type,
            "resources": [
                {
                    "code": r.code,
                    "fields": [
                        {"name": f.name, "transform": f.transform, "output": f.output}
                        if f.transform
                        else {"name": f.name, "output": f.output}
                        for f in r.fields
                    ],
                }
                for r in doc.resources
            ],
            "outputs": [
                {"name": o.name, "sources": o.sources, "transform": o.transform}
                if o.transform
                else {"name": o.name, "sources": o.sources}
                for o in doc.outputs
            ],
        }
    return {
        "kind": "product",
        "scenario": doc.scenario,
        "components": [{"code": c.code, "fields": list(c.fields)} for c in doc.components],
    }
