"""Fixtures for components: an approved component spec over the small registry."""

from __future__ import annotations

import pytest

from tests.reviews import conftest as _reviews
from tests.reviews.conftest import Cast, component_doc
from yuanjian.instance import Instance
from yuanjian.reviews import service as reviews
from yuanjian.reviews.models import SpecRevision

# The review fixtures (registry, people) are shared with the component tests.
registry = _reviews.registry
cast = _reviews.cast


def approve_revision(instance: Instance, cast: Cast, rev_id: int) -> None:
    """Assign a senior and a third-party reviewer to a submitted revision and approve it."""

    def v() -> int:
        with instance.sessions() as s:
            return s.get(SpecRevision, rev_id).version

    for username, senior in (("reviewer-senior", True), ("third-a", False)):
        with instance.sessions() as s:
            reviews.assign(
                session=s,
                actor=cast.admin,
                revision_id=rev_id,
                reviewer_username=username,
                senior=senior,
                expected_version=v(),
            )
    for actor in (cast.senior, cast.third):
        with instance.sessions() as s:
            r = s.get(SpecRevision, rev_id)
            if r.state == "approved":
                break
            if r.state == "submitted":
                reviews.act(
                    session=s,
                    actor=actor,
                    revision_id=rev_id,
                    action="start_review",
                    expected_version=r.version,
                )
            reviews.answer_checklist(
                session=s,
                actor=actor,
                revision_id=rev_id,
                answers={i: "yes" for i in r.risk["unanswered"]},
            )
            reviews.act(
                session=s,
                actor=actor,
                revision_id=rev_id,
                action="approve",
                expected_version=s.get(SpecRevision, rev_id).version,
            )
    with instance.sessions() as s:
        assert s.get(SpecRevision, rev_id).state == "approved"


def approve(instance: Instance, cast: Cast, document: dict) -> int:
    """Create, submit and approve a component spec; return the spec id."""
    with instance.sessions() as s:
        spec, rev = reviews.create_spec(
            session=s, actor=cast.dev, kind="component", document=document
        )
        reviews.submit(session=s, actor=cast.dev, revision_id=rev.id, expected_version=1)
    approve_revision(instance, cast, rev.id)
    return spec.id


@pytest.fixture
def approved_spec(instance: Instance, cast: Cast) -> int:
    """The enterprise operating-score spec, approved, with the development agreement signed."""
    spec_id = approve(instance, cast, component_doc())
    with instance.sessions() as s:
        a = reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="development",
            title="数据开发利用协议",
            text="乙方应在平台内开发，不得泄露样本。" * 4,
        )
        reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256=a.sha256)
    return spec_id
