"""Risk assessment: crafted specs with the findings and levels they must get."""

from __future__ import annotations

import json
from typing import Any

import pytest

from yuanjian.reviews.diff import document_paths
from yuanjian.reviews.risk import (
    DEFAULT_RISK_POLICY,
    GRADES,
    LABELS,
    FindingCode,
    RegistryFacts,
    RiskAssessment,
    RiskInputError,
    RiskLevel,
    RiskPolicy,
    RiskPolicyError,
    assess_risk,
    max_level,
)

PII = {"personal": True}
SPI = {"personal": True, "sensitive": True}

REGISTRY: dict[str, Any] = {
    "sources": {
        "resident_registry": {
            "subject_type": "person",
            "rows": 2_000_000,
            "subjects": 2_000_000,
            "fields": {
                "id_number": {"label": "cn_resident_id", **SPI, "grade": "important"},
                "name": {"label": "person_name", **PII},
                "mobile": {"label": "cn_mobile", **PII},
                "birth_date": {"label": "date_of_birth", **PII},
                "district": {},
            },
        },
        "social_security": {
            "subject_type": "person",
            "rows": 9_000_000,
            "subjects": 1_500_000,
            "fields": {
                "person_id": {"label": "cn_resident_id", **SPI},
                "monthly_salary": {**PII, "grade": "important"},
                "insured_months": PII,
            },
        },
        "tax_filing": {
            "subject_type": "organization",
            "rows": 1_200_000,
            "subjects": 300_000,
            "fields": {
                "uscc": {"label": "cn_uscc"},
                "vat": {},
                "industry": {},
                "legal_rep_name": {"label": "person_name", **PII},
            },
        },
        "rare_disease_claims": {
            "subject_type": "person",
            "rows": 4_000,
            "subjects": 800,
            "fields": {"diagnosis": {**SPI, "grade": "core"}, "district": {}},
        },
        "district_stats": {
            "subject_type": "aggregate",
            "rows": 16,
            "fields": {"district": {}, "population": {}},
        },
        # catalogued components (requested by product specs)
        "enterprise_vitality": {
            "subject_type": "organization",
            "subjects": 300_000,
            "scenarios": ["credit_assessment", "industry_analysis"],
            "fields": {"vitality_band": {}, "industry": {}},
        },
        "income_band": {
            "subject_type": "person",
            "subjects": 1_500_000,
            "scenarios": ["credit_assessment"],
            "fields": {"person_pseudonym": {"label": "cn_resident_id", **PII}, "band": PII},
        },
    },
    "scenarios": ["credit_assessment", "industry_analysis", "urban_planning"],
}


def run(spec: dict[str, Any], **kwargs: Any) -> RiskAssessment:
    return assess_risk(spec, REGISTRY, **kwargs)


def found(a: RiskAssessment) -> list[tuple[str, str, str | None]]:
    return [(str(f.code), str(f.severity), f.path) for f in a.findings]


def test_organization_feature_has_no_findings() -> None:
    spec = {
        "type": "feature",
        "resources": [
            {"code": "tax_filing", "fields": [{"name": "vat", "transform": "band"}, "industry"]}
        ],
    }
    a = run(spec)
    assert a.findings == ()
    assert (a.automatic_level, a.level) == ("low", "low")


def test_person_dataset_with_a_kept_name() -> None:
    spec = {
        "type": "dataset",
        "resources": [{"code": "resident_registry", "fields": ["name", "district", "birth_date"]}],
    }
    a = run(spec)
    assert found(a) == [
        ("direct_identifier_output", "high", "resources[resident_registry].fields[name]"),
        ("person_level_dataset", "medium", "resources[resident_registry]"),
    ]
    msg = a.findings[0].message
    assert "resident_registry.name" in msg and "person_name" in msg
    assert a.findings[0].article == "Art. 10"
    assert a.findings[0].standard == "GB/T 37964-2019"
    assert a.level == "high"


@pytest.mark.parametrize("transform", ["mask", "pseudonymize", "redact", ["keep", "generalize"]])
def test_identity_removing_transforms_clear_the_identifier_finding(transform: Any) -> None:
    spec = {
        "type": "dataset",
        "resources": [
            {
                "code": "resident_registry",
                "fields": [{"name": "name", "transform": transform}, "district"],
            }
        ],
    }
    a = run(spec)
    assert a.codes() == {FindingCode.PERSON_LEVEL_DATASET}
    assert a.level == "medium"


@pytest.mark.parametrize("transform", [None, "keep", "noise", "uppercase"])
def test_other_transforms_do_not_remove_identity(transform: str | None) -> None:
    spec = {
        "type": "feature",
        "resources": [
            {"code": "resident_registry", "fields": [{"name": "mobile", "transform": transform}]}
        ],
    }
    a = run(spec)
    assert found(a) == [
        ("direct_identifier_output", "high", "resources[resident_registry].fields[mobile]")
    ]


def test_feature_linking_two_person_sources() -> None:
    spec = {
        "type": "feature",
        "resources": [
            {
                "code": "resident_registry",
                "fields": [{"name": "id_number", "output": False}, "district"],
            },
            {
                "code": "social_security",
                "fields": [
                    {"name": "person_id", "output": False},
                    {"name": "monthly_salary", "transform": "band"},
                ],
            },
        ],
    }
    a = run(spec)
    assert found(a) == [
        ("important_field", "medium", "resources[resident_registry].fields[id_number]"),
        (
            "sensitive_personal_information",
            "high",
            "resources[resident_registry].fields[id_number]",
        ),
        ("sensitive_personal_information", "high", "resources[social_security].fields[person_id]"),
        ("important_field", "medium", "resources[social_security].fields[monthly_salary]"),
        ("links_person_sources", "medium", None),
    ]
    link = a.findings[-1]
    assert "resident_registry" in link.message and "social_security" in link.message
    assert a.level == "high"


def test_personal_information_from_an_organization_source_counts_as_about_persons() -> None:
    spec = {
        "type": "feature",
        "resources": [
            {"code": "tax_filing", "fields": [{"name": "legal_rep_name", "output": False}]},
            {"code": "resident_registry", "fields": ["district"]},
        ],
    }
    assert found(run(spec)) == [("links_person_sources", "medium", None)]
    without = {
        **spec,
        "resources": [{"code": "tax_filing", "fields": ["vat"]}, spec["resources"][1]],
    }
    assert run(without).findings == ()


def test_explicit_outputs_replace_the_per_field_rule() -> None:
    base = {
        "type": "feature",
        "resources": [
            {"code": "resident_registry", "fields": ["mobile", "district"]},
        ],
    }
    shown = {
        **base,
        "outputs": [
            {"name": "contact", "sources": ["resident_registry.mobile"], "transform": "keep"},
            {"name": "district", "source": "resident_registry.district"},
        ],
    }
    assert found(run(shown)) == [("direct_identifier_output", "high", "outputs[contact]")]
    hidden = {
        **base,
        "outputs": [
            {
                "name": "has_mobile",
                "sources": ["resident_registry.mobile", "resident_registry.district"],
                "transform": ["flag"],
            }
        ],
    }
    assert run(hidden).findings == ()


def test_core_field_and_small_population() -> None:
    spec = {
        "type": "feature",
        "resources": [
            {
                "code": "rare_disease_claims",
                "fields": [{"name": "diagnosis", "transform": "count"}, "district"],
            }
        ],
    }
    a = run(spec)
    assert found(a) == [
        ("core_field", "high", "resources[rare_disease_claims].fields[diagnosis]"),
        (
            "sensitive_personal_information",
            "high",
            "resources[rare_disease_claims].fields[diagnosis]",
        ),
        ("small_population", "high", "resources[rare_disease_claims]"),
    ]
    assert "800 subjects" in a.findings[-1].message
    assert a.findings[0].standard == "GB/T 43697-2024"


@pytest.mark.parametrize(
    ("population", "expected"),
    [(999, "high"), (1000, "medium"), (9999, "medium"), (10000, None), (None, None)],
)
def test_small_population_thresholds(population: int | None, expected: str | None) -> None:
    spec: dict[str, Any] = {
        "type": "feature",
        "resources": [{"code": "resident_registry", "fields": ["district"]}],
    }
    if population is not None:
        spec["population"] = population
    a = run(spec)
    got = [str(f.severity) for f in a.findings if f.code == "small_population"]
    assert got == ([expected] if expected else [])
    if expected:
        assert a.findings[0].path == "population"


def test_rows_stand_in_for_unknown_subjects_and_organizations_are_not_counted() -> None:
    registry = json.loads(json.dumps(REGISTRY))
    registry["sources"]["resident_registry"]["subjects"] = None
    registry["sources"]["resident_registry"]["rows"] = 5000
    spec = {"type": "feature", "resources": [{"code": "resident_registry", "fields": ["district"]}]}
    a = assess_risk(spec, registry)
    assert found(a) == [("small_population", "medium", "resources[resident_registry]")]
    assert "5000 rows" in a.findings[0].message
    tiny_orgs = {
        "type": "feature",
        "resources": [{"code": "district_stats", "fields": ["population"]}],
        "population": 16,
    }
    assert run(tiny_orgs).findings == ()


def test_product_spec_scenarios() -> None:
    spec = {
        "kind": "product",
        "scenario": "credit_assessment",
        "purpose": "score applicants",
        "components": [
            {"code": "enterprise_vitality", "fields": ["vitality_band"]},
            {"code": "income_band", "fields": ["band"]},
        ],
    }
    assert run(spec).findings == ()

    outside = {**spec, "scenario": "urban_planning"}
    a = run(outside)
    assert found(a) == [
        ("purpose_outside_scenarios", "medium", "components[enterprise_vitality]"),
        ("purpose_outside_scenarios", "medium", "components[income_band]"),
    ]
    assert "not for scenario 'urban_planning'" in a.findings[0].message
    assert all(f.article == "Art. 20" for f in a.findings)

    unknown = {**spec, "scenario": "marketing"}
    assert [f.path for f in run(unknown).findings] == [
        "scenario",
        "components[enterprise_vitality]",
        "components[income_band]",
    ]
    missing = {k: v for k, v in spec.items() if k != "scenario"}
    assert found(run(missing)) == [("purpose_outside_scenarios", "medium", "scenario")]


def test_product_spec_with_a_person_identifier_output() -> None:
    spec = {
        "kind": "product",
        "scenario": "credit_assessment",
        "components": [{"code": "income_band", "fields": ["person_pseudonym", "band"]}],
    }
    assert found(run(spec)) == [
        ("direct_identifier_output", "high", "components[income_band].fields[person_pseudonym]")
    ]


# -- checklist --------------------------------------------------------------------------------

LOW_SPEC = {
    "type": "feature",
    "resources": [{"code": "tax_filing", "fields": [{"name": "vat", "transform": "band"}]}],
}


def test_checklist_blocking_no_raises_the_level() -> None:
    ids = [i.id for i in DEFAULT_RISK_POLICY.checklist_for("component")]
    a = run(LOW_SPEC, answers={"necessity": "no"})
    assert (a.automatic_level, a.level, a.raised_by) == ("low", "high", ("necessity",))
    assert not a.checklist_complete
    assert set(a.unanswered) == set(ids) - {"necessity"}

    all_yes = dict.fromkeys(ids, "yes")
    a = run(LOW_SPEC, answers=all_yes)
    assert (a.level, a.checklist_complete, a.raised_by, a.concerns) == ("low", True, (), ())

    a = run(LOW_SPEC, answers={**all_yes, "developer_capability": "no", "linkage": "na"})
    assert (a.level, a.concerns) == ("low", ("developer_capability",))


def test_checklist_items_depend_on_the_kind() -> None:
    product = {
        "kind": "product",
        "scenario": "industry_analysis",
        "components": [{"code": "enterprise_vitality", "fields": ["industry"]}],
    }
    a = run(product, answers={"risk_controls": "no"})
    assert a.level == "high"
    assert "social_data_provenance" not in a.unanswered
    with pytest.raises(RiskInputError) as info:
        run(product, answers={"social_data_provenance": "yes"})
    assert info.value.field == "checklist.social_data_provenance"


@pytest.mark.parametrize(
    ("answers", "field"),
    [({"nope": "yes"}, "checklist.nope"), ({"necessity": "maybe"}, "checklist.necessity")],
)
def test_bad_checklist_answers(answers: dict[str, str], field: str) -> None:
    with pytest.raises(RiskInputError) as info:
        run(LOW_SPEC, answers=answers)
    assert info.value.field == field


def test_policy_is_data() -> None:
    policy = RiskPolicy.from_data(
        {
            "severities": {"person_level_dataset": "high"},
            "small_population_high": 10,
            "small_population_medium": 900,
            "checklist": [
                {"id": "fit", "text": "Fits.", "text_zh": "适当。", "raise_to": "medium"},
            ],
        }
    )
    assert policy.severities[FindingCode.CORE_FIELD] == "high"  # untouched codes keep defaults
    spec = {
        "type": "dataset",
        "resources": [{"code": "rare_disease_claims", "fields": ["district"]}],
    }
    a = assess_risk(spec, REGISTRY, policy=policy, answers={"fit": "no"})
    assert found(a) == [
        ("person_level_dataset", "high", "resources[rare_disease_claims]"),
        ("small_population", "medium", "resources[rare_disease_claims]"),
    ]
    a = assess_risk(LOW_SPEC, REGISTRY, policy=policy, answers={"fit": "no"})
    assert a.level == "medium"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"small_population_high": 5000, "small_population_medium": 100}, "small_population_high"),
        ({"small_population_high": -1}, "small_population_high"),
        ({"severities": {"small_population": "high"}}, "severities"),
        ({"severities": {"core_field": "extreme"}}, "severities.core_field"),
        ({"identifier_labels": ["not_a_label"]}, "identifier_labels"),
        ({"min_linked_person_sources": 1}, "min_linked_person_sources"),
        (
            {
                "checklist": [
                    {"id": "a", "text": "x", "text_zh": "x"},
                    {"id": "a", "text": "y", "text_zh": "y"},
                ]
            },
            "checklist[1].id",
        ),
        ({"checklist": [{"id": "Bad Id", "text": "x", "text_zh": "x"}]}, "checklist[0].id"),
        ({"thresholds": 1}, "thresholds"),
    ],
)
def test_bad_policy_names_the_setting(data: dict[str, Any], field: str) -> None:
    with pytest.raises(RiskPolicyError) as info:
        RiskPolicy.from_data(data)
    assert info.value.field is not None and info.value.field.startswith(field)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"type": "dataset", "resources": [{"code": "nope", "fields": []}]}, "resources[nope]"),
        (
            {"type": "dataset", "resources": [{"code": "tax_filing", "fields": ["profit"]}]},
            "resources[tax_filing].fields[profit]",
        ),
        ({"resources": [{"code": "tax_filing", "fields": ["vat"]}]}, "type"),
        ({"kind": "app", "type": "dataset"}, "kind"),
        (
            {
                "type": "dataset",
                "resources": [
                    {"code": "tax_filing", "fields": ["vat"]},
                    {"code": "tax_filing", "fields": ["industry"]},
                ],
            },
            "resources[tax_filing]",
        ),
        (
            {
                "type": "feature",
                "resources": [{"code": "tax_filing", "fields": ["vat"]}],
                "outputs": [{"name": "o", "sources": ["tax_filing.industry"]}],
            },
            "outputs[o].sources",
        ),
        (
            {
                "type": "feature",
                "resources": [{"code": "tax_filing", "fields": [{"name": "vat", "output": 1}]}],
            },
            "resources[tax_filing].fields[vat].output",
        ),
        (
            {
                "type": "feature",
                "resources": [{"code": "tax_filing", "fields": [{"name": "vat", "transform": 3}]}],
            },
            "resources[tax_filing].fields[vat].transform",
        ),
        (
            {
                "type": "feature",
                "resources": [{"code": "resident_registry", "fields": ["district"]}],
                "population": -5,
            },
            "population",
        ),
        ({"type": "feature", "resources": "tax_filing"}, "resources"),
        (
            {
                "type": "feature",
                "resources": [{"code": "tax_filing", "fields": ["vat"]}],
                "outputs": [{"name": "o", "sources": ["tax_filing.vat"], "transform": {}}],
            },
            "outputs[o].transform",
        ),
        (
            {
                "type": "feature",
                "resources": [{"code": "tax_filing", "fields": ["vat"]}],
                "outputs": [{"name": "o", "sources": [{"tax_filing": "vat"}]}],
            },
            "outputs[o].sources",
        ),
    ],
)
def test_bad_spec_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(RiskInputError) as info:
        run(spec)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("facts", "field"),
    [
        ({"grade": "secret"}, "sources.s.fields.f.grade"),
        ({"label": "iban"}, "sources.s.fields.f.label"),
        ({"sensitive": True}, "sources.s.fields.f"),
    ],
)
def test_bad_registry_facts_name_the_field(facts: dict[str, Any], field: str) -> None:
    registry = {"sources": {"s": {"fields": {"f": facts}}}}
    spec = {"type": "dataset", "resources": [{"code": "s", "fields": ["f"]}]}
    with pytest.raises(RiskInputError) as info:
        assess_risk(spec, registry)
    assert info.value.field == field


# -- shape ------------------------------------------------------------------------------------


def test_labels_and_grades_match_the_privacy_package() -> None:
    from yuanjian.privacy import detect, policy

    assert LABELS == detect.LABELS
    assert GRADES == policy.GRADES


def test_finding_paths_are_diff_paths_and_json_round_trips() -> None:
    spec = {
        "type": "dataset",
        "resources": [
            {"code": "resident_registry", "fields": ["name", "id_number"]},
            {"code": "rare_disease_claims", "fields": ["diagnosis"]},
        ],
    }
    a = run(spec, answers={"necessity": "no"})
    paths = document_paths(spec)
    assert all(f.path is None or f.path in paths for f in a.findings)
    payload = json.loads(json.dumps(a.to_dict(), ensure_ascii=False))
    assert payload["level"] == "high"
    assert payload["raised_by"] == ["necessity"]
    assert {f["code"] for f in payload["findings"]} == {
        "direct_identifier_output",
        "important_field",
        "sensitive_personal_information",
        "core_field",
        "links_person_sources",
        "person_level_dataset",
        "small_population",
    }


def test_registry_facts_model_is_accepted_directly() -> None:
    facts = RegistryFacts.model_validate(REGISTRY)
    assert assess_risk(LOW_SPEC, facts).level == "low"


def test_max_level() -> None:
    assert max_level([]) == RiskLevel.LOW
    assert max_level(["medium", RiskLevel.LOW]) == RiskLevel.MEDIUM
    assert max_level(["low", "high", "medium"]) == RiskLevel.HIGH
