"""sample approvals; resources record the classification standard they were classified under

Sample overrides that weaken protection of sensitive personal information, and samples below the
anonymity standard's k, now need a reviewer's stored approval (``sample_approvals``); an
issuance lists the approvals it used. The classification rules in force are the
``classification_rules`` standard in force: the data steward's newest working rules (kept in
``policy_documents`` until now) are carried over as an approved standard version when no
approved version is in force yet, so the rules in force do not change on upgrade.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 04:42:47.768343
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

import yuanjian.db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CARRIED_OVER = "carried over from the data steward's working rules (migration 0010)"


def upgrade() -> None:
    op.create_table(
        "sample_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spec_id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("k_exception", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("approved_by", sa.Integer(), nullable=False),
        sa.Column("approver_org_id", sa.Integer(), nullable=True),
        sa.Column("approved_at", yuanjian.db.types.UTCDateTime(), nullable=False),
        sa.Column("revoked_by", sa.Integer(), nullable=True),
        sa.Column("revoked_at", yuanjian.db.types.UTCDateTime(), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["approved_by"], ["users.id"], name=op.f("fk_sample_approvals_approved_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["approver_org_id"],
            ["organizations.id"],
            name=op.f("fk_sample_approvals_approver_org_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["spec_revisions.id"],
            name=op.f("fk_sample_approvals_revision_id_spec_revisions"),
        ),
        sa.ForeignKeyConstraint(
            ["spec_id"], ["specs.id"], name=op.f("fk_sample_approvals_spec_id_specs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sample_approvals")),
    )
    with op.batch_alter_table("sample_approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sample_approvals_spec_id"), ["spec_id"], unique=False)

    # Existing rows: classified under version 0 (the first read reclassifies them under the
    # standard in force), and issued without approvals.
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("classified_under", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("sample_issuances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("approvals", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )

    _carry_over_steward_rules()


def _carry_over_steward_rules() -> None:
    conn = op.get_bind()
    docs = sa.table(
        "policy_documents",
        sa.column("kind", sa.String),
        sa.column("version", sa.Integer),
        sa.column("document", sa.JSON),
        sa.column("created_by", sa.Integer),
        sa.column("created_at", yuanjian.db.types.UTCDateTime()),
    )
    standards = sa.table(
        "standards",
        sa.column("kind", sa.String),
        sa.column("version", sa.Integer),
        sa.column("document", sa.JSON),
        sa.column("effective_from", sa.Date),
        sa.column("status", sa.String),
        sa.column("note", sa.Text),
        sa.column("proposed_by", sa.Integer),
        sa.column("proposed_at", yuanjian.db.types.UTCDateTime()),
        sa.column("decided_by", sa.Integer),
        sa.column("decided_at", yuanjian.db.types.UTCDateTime()),
    )
    kind = "classification_rules"
    in_force = conn.execute(
        sa.select(sa.func.count())
        .select_from(standards)
        .where(
            standards.c.kind == kind,
            standards.c.status == "approved",
            standards.c.effective_from <= date.today(),
        )
    ).scalar()
    if in_force:
        return  # the steward's working rules were already shadowed by the standard
    newest = conn.execute(
        sa.select(docs.c.document, docs.c.created_by, docs.c.created_at)
        .where(docs.c.kind == kind)
        .order_by(docs.c.version.desc())
        .limit(1)
    ).first()
    if newest is None:
        return
    top = conn.execute(
        sa.select(sa.func.max(standards.c.version)).where(standards.c.kind == kind)
    ).scalar()
    created = newest.created_at or datetime.now(UTC)
    conn.execute(
        standards.insert().values(
            kind=kind,
            version=(top or 0) + 1,
            document=newest.document,
            effective_from=created.date(),
            status="approved",
            note=CARRIED_OVER,
            proposed_by=newest.created_by,
            proposed_at=created,
            decided_by=newest.created_by,
            decided_at=datetime.now(UTC),
        )
    )


def downgrade() -> None:
    standards = sa.table("standards", sa.column("kind", sa.String), sa.column("note", sa.Text))
    op.get_bind().execute(
        standards.delete().where(
            standards.c.kind == "classification_rules", standards.c.note == CARRIED_OVER
        )
    )
    with op.batch_alter_table("sample_issuances", schema=None) as batch_op:
        batch_op.drop_column("approvals")
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.drop_column("classified_under")
    with op.batch_alter_table("sample_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sample_approvals_spec_id"))
    op.drop_table("sample_approvals")
