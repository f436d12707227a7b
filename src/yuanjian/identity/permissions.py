"""Organization kinds, roles and the one place that maps roles to permissions."""

from __future__ import annotations

from enum import StrEnum


class OrgKind(StrEnum):
    """What an organization is on the platform."""

    REGULATOR = "regulator"
    OPERATOR = "operator"
    COMPONENT_DEVELOPER = "component_developer"
    PRODUCT_DEVELOPER = "product_developer"
    THIRD_PARTY_REVIEWER = "third_party_reviewer"


class Role(StrEnum):
    """A bundle of permissions a user holds."""

    REGULATOR_VIEWER = "regulator_viewer"
    OPERATOR_ADMIN = "operator_admin"
    OPERATOR_REVIEWER = "operator_reviewer"
    OPERATOR_DATA_STEWARD = "operator_data_steward"
    COMPONENT_DEVELOPER = "component_developer"
    PRODUCT_DEVELOPER = "product_developer"
    THIRD_PARTY_REVIEWER = "third_party_reviewer"
    AUDITOR = "auditor"


class Permission(StrEnum):
    """Everything a route or service can require. Deny by default: no permission, no action."""

    # Own account
    PROFILE_READ = "profile.read"
    TOKEN_MANAGE_OWN = "token.manage_own"
    # Organizations
    ORG_READ_OWN = "org.read_own"
    ORG_READ_ALL = "org.read_all"
    ORG_CREATE = "org.create"
    ORG_UPDATE = "org.update"
    ORG_RATE = "org.rate"
    ORG_SUSPEND = "org.suspend"
    # Users
    USER_READ_OWN_ORG = "user.read_own_org"
    USER_READ_ALL = "user.read_all"
    USER_CREATE = "user.create"
    USER_DISABLE = "user.disable"
    TOKEN_REVOKE_ANY = "token.revoke_any"
    # Data resources
    RESOURCE_READ = "resource.read"
    RESOURCE_READ_VALUES = "resource.read_values"
    RESOURCE_MANAGE = "resource.manage"
    RESOURCE_INGEST = "resource.ingest"
    CLASSIFICATION_EDIT = "classification.edit"
    # Design specs and reviews
    SPEC_READ_OWN = "spec.read_own"
    SPEC_READ_ALL = "spec.read_all"
    SPEC_SUBMIT_COMPONENT = "spec.submit_component"
    SPEC_SUBMIT_PRODUCT = "spec.submit_product"
    SPEC_QUEUE = "spec.queue"
    SPEC_ASSIGN = "spec.assign"
    SPEC_REVIEW = "spec.review"
    BUILD_RUN = "build.run"
    STANDARD_READ = "standard.read"
    STANDARD_APPROVE = "standard.approve"
    SCENARIO_PUBLISH = "scenario.publish"
    SCENARIO_PARTICIPATE = "scenario.participate"
    LICENCE_READ = "licence.read"
    PRODUCT_REGISTER = "product.register"
    LICENCE_MANAGE = "licence.manage"
    CREDENTIAL_MANAGE = "credential.manage"
    SERVING_READ_ALL = "serving.read_all"
    SERVING_AGGREGATES = "serving.aggregates"
    # Oversight (Art. 24–27)
    OVERSIGHT_READ = "oversight.read"
    OVERSIGHT_SUSPEND = "oversight.suspend"
    REPORT_READ = "report.read"
    REPORT_GENERATE = "report.generate"
    REPORT_ACKNOWLEDGE = "report.acknowledge"
    INCIDENT_READ = "incident.read"
    INCIDENT_REPORT = "incident.report"
    INCIDENT_MANAGE = "incident.manage"
    SECURITY_READ = "security.read"
    SECURITY_MANAGE = "security.manage"
    EVIDENCE_EXPORT = "evidence.export"
    LOG_SUBMIT = "log.submit"
    CATALOG_READ = "catalog.read"
    SAMPLE_ISSUE = "sample.issue"
    SAMPLE_USE = "sample.use"
    AGREEMENT_MANAGE = "agreement.manage"
    AGREEMENT_SIGN = "agreement.sign"
    POLICY_EDIT = "policy.edit"
    # Audit log
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    AUDIT_WITNESS = "audit.witness"


_EVERYONE = frozenset(
    {
        Permission.PROFILE_READ,
        Permission.TOKEN_MANAGE_OWN,
        Permission.ORG_READ_OWN,
        Permission.RESOURCE_READ,
        Permission.SPEC_READ_OWN,
        Permission.CATALOG_READ,
        Permission.SCENARIO_PARTICIPATE,
    }
)
# Operator staff and oversight roles may see profile values (min/max/top); developers never.
_SEES_VALUES = frozenset({Permission.RESOURCE_READ_VALUES})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR_ADMIN: _EVERYONE
    | {
        Permission.ORG_READ_ALL,
        Permission.ORG_CREATE,
        Permission.ORG_UPDATE,
        Permission.ORG_RATE,
        Permission.ORG_SUSPEND,
        Permission.USER_READ_ALL,
        Permission.USER_READ_OWN_ORG,
        Permission.USER_CREATE,
        Permission.USER_DISABLE,
        Permission.TOKEN_REVOKE_ANY,
        Permission.AUDIT_EXPORT,
        Permission.RESOURCE_MANAGE,
        Permission.SPEC_READ_ALL,
        Permission.SPEC_QUEUE,
        Permission.SPEC_ASSIGN,
        Permission.AGREEMENT_MANAGE,
        Permission.POLICY_EDIT,
        Permission.SAMPLE_ISSUE,
        Permission.SAMPLE_USE,
        Permission.BUILD_RUN,
        Permission.STANDARD_READ,
        Permission.STANDARD_APPROVE,
        Permission.SCENARIO_PUBLISH,
        Permission.LICENCE_READ,
        Permission.LICENCE_MANAGE,
        Permission.SERVING_READ_ALL,
        Permission.SERVING_AGGREGATES,
        Permission.OVERSIGHT_READ,
        Permission.OVERSIGHT_SUSPEND,
        Permission.REPORT_READ,
        Permission.REPORT_GENERATE,
        Permission.INCIDENT_READ,
        Permission.INCIDENT_REPORT,
        Permission.INCIDENT_MANAGE,
        Permission.SECURITY_READ,
        Permission.SECURITY_MANAGE,
        Permission.EVIDENCE_EXPORT,
        Permission.LOG_SUBMIT,
    }
    | _SEES_VALUES,
    Role.OPERATOR_REVIEWER: _EVERYONE
    | _SEES_VALUES
    | {
        Permission.ORG_READ_ALL,
        Permission.USER_READ_OWN_ORG,
        Permission.SPEC_READ_ALL,
        Permission.SPEC_QUEUE,
        Permission.SPEC_REVIEW,
        Permission.INCIDENT_REPORT,
    },
    Role.OPERATOR_DATA_STEWARD: _EVERYONE
    | _SEES_VALUES
    | {
        Permission.ORG_READ_ALL,
        Permission.USER_READ_OWN_ORG,
        Permission.RESOURCE_MANAGE,
        Permission.RESOURCE_INGEST,
        Permission.CLASSIFICATION_EDIT,
        Permission.SPEC_READ_ALL,
        Permission.SAMPLE_ISSUE,
        Permission.SAMPLE_USE,
        Permission.BUILD_RUN,
        Permission.INCIDENT_REPORT,
    },
    Role.COMPONENT_DEVELOPER: _EVERYONE
    | {
        Permission.USER_READ_OWN_ORG,
        Permission.SPEC_READ_OWN,
        Permission.SPEC_SUBMIT_COMPONENT,
        Permission.AGREEMENT_SIGN,
        Permission.SAMPLE_USE,
    },
    Role.PRODUCT_DEVELOPER: _EVERYONE
    | {
        Permission.USER_READ_OWN_ORG,
        Permission.SPEC_READ_OWN,
        Permission.SPEC_SUBMIT_PRODUCT,
        Permission.AGREEMENT_SIGN,
        Permission.LICENCE_READ,
        Permission.PRODUCT_REGISTER,
        Permission.CREDENTIAL_MANAGE,
    },
    Role.THIRD_PARTY_REVIEWER: _EVERYONE
    | {Permission.USER_READ_OWN_ORG, Permission.SPEC_QUEUE, Permission.SPEC_REVIEW},
    Role.REGULATOR_VIEWER: _EVERYONE
    | {
        Permission.ORG_READ_ALL,
        Permission.USER_READ_ALL,
        Permission.USER_READ_OWN_ORG,
        Permission.AUDIT_READ,
        Permission.AUDIT_WITNESS,
        Permission.SPEC_READ_ALL,
        Permission.STANDARD_READ,
        Permission.SCENARIO_PUBLISH,
        Permission.LICENCE_READ,
        Permission.SERVING_AGGREGATES,
        Permission.OVERSIGHT_READ,
        Permission.OVERSIGHT_SUSPEND,
        Permission.REPORT_READ,
        Permission.REPORT_ACKNOWLEDGE,
        Permission.INCIDENT_READ,
        Permission.INCIDENT_REPORT,
        Permission.SECURITY_READ,
        Permission.EVIDENCE_EXPORT,
    }
    | _SEES_VALUES,
    Role.AUDITOR: _EVERYONE
    | {
        Permission.ORG_READ_ALL,
        Permission.USER_READ_ALL,
        Permission.USER_READ_OWN_ORG,
        Permission.AUDIT_READ,
        Permission.AUDIT_EXPORT,
        Permission.SPEC_READ_ALL,
        Permission.STANDARD_READ,
        Permission.LICENCE_READ,
        Permission.SERVING_READ_ALL,
        Permission.SERVING_AGGREGATES,
        Permission.OVERSIGHT_READ,
        Permission.REPORT_READ,
        Permission.INCIDENT_READ,
        Permission.SECURITY_READ,
        Permission.EVIDENCE_EXPORT,
    }
    | _SEES_VALUES,
}

# Which roles a user of each kind of organization may hold.
ROLES_BY_ORG_KIND: dict[OrgKind, frozenset[Role]] = {
    OrgKind.REGULATOR: frozenset({Role.REGULATOR_VIEWER, Role.AUDITOR}),
    OrgKind.OPERATOR: frozenset(
        {
            Role.OPERATOR_ADMIN,
            Role.OPERATOR_REVIEWER,
            Role.OPERATOR_DATA_STEWARD,
            Role.AUDITOR,
        }
    ),
    OrgKind.COMPONENT_DEVELOPER: frozenset({Role.COMPONENT_DEVELOPER}),
    OrgKind.PRODUCT_DEVELOPER: frozenset({Role.PRODUCT_DEVELOPER}),
    OrgKind.THIRD_PARTY_REVIEWER: frozenset({Role.THIRD_PARTY_REVIEWER}),
}

# Kinds that carry a qualification rating (Art. 7).
RATED_KINDS = frozenset({OrgKind.COMPONENT_DEVELOPER, OrgKind.PRODUCT_DEVELOPER})


def permissions_for(roles: set[Role] | frozenset[Role]) -> frozenset[Permission]:
    """The union of the permissions of the given roles."""
    out: set[Permission] = set()
    for role in roles:
        out |= ROLE_PERMISSIONS[role]
    return frozenset(out)
