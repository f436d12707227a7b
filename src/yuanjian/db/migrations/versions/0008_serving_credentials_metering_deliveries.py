"""serving credentials metering deliveries

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import yuanjian.db.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing licences get the defaults the licence model uses (server defaults only here).
    op.create_table(
        "client_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("spec_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", yuanjian.db.types.UTCDateTime(), nullable=False),
        sa.Column("rotated_at", yuanjian.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", yuanjian.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_client_credentials_org_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["spec_id"], ["specs.id"], name=op.f("fk_client_credentials_spec_id_specs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_credentials")),
        sa.UniqueConstraint("client_id", name=op.f("uq_client_credentials_client_id")),
    )
    with op.batch_alter_table("client_credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_client_credentials_org_id"), ["org_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_client_credentials_spec_id"), ["spec_id"], unique=False
        )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("licence_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("credential_id", sa.Integer(), nullable=True),
        sa.Column("component_code", sa.String(length=63), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key_hashes_path", sa.String(length=500), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("file_path", sa.String(length=500), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("fingerprint_path", sa.String(length=500), nullable=True),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_at", yuanjian.db.types.UTCDateTime(), nullable=False),
        sa.Column("ready_at", yuanjian.db.types.UTCDateTime(), nullable=True),
        sa.Column("expires_at", yuanjian.db.types.UTCDateTime(), nullable=True),
        sa.Column("downloaded_at", yuanjian.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["client_credentials.id"],
            name=op.f("fk_deliveries_credential_id_client_credentials"),
        ),
        sa.ForeignKeyConstraint(
            ["licence_id"], ["licences.id"], name=op.f("fk_deliveries_licence_id_licences")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_deliveries_org_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["component_versions.id"],
            name=op.f("fk_deliveries_version_id_component_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_licence_id"), ["licence_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_org_id"), ["org_id"], unique=False)

    op.create_table(
        "licence_subjects",
        sa.Column("licence_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("khash", sa.LargeBinary(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["licence_id"], ["licences.id"], name=op.f("fk_licence_subjects_licence_id_licences")
        ),
        sa.PrimaryKeyConstraint("licence_id", "day", "khash", name=op.f("pk_licence_subjects")),
    )
    op.create_table(
        "licence_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("licence_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("denied", sa.BigInteger(), nullable=False),
        sa.Column("keys", sa.BigInteger(), nullable=False),
        sa.Column("found", sa.BigInteger(), nullable=False),
        sa.Column("subjects", sa.BigInteger(), nullable=False),
        sa.Column("sequential", sa.BigInteger(), nullable=False),
        sa.Column("delivered_records", sa.BigInteger(), nullable=False),
        sa.Column("denials", sa.JSON(), nullable=False),
        sa.Column("bucket_tokens", sa.Float(), nullable=False),
        sa.Column("bucket_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["licence_id"], ["licences.id"], name=op.f("fk_licence_usage_licence_id_licences")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_usage")),
        sa.UniqueConstraint("licence_id", "day", name=op.f("uq_licence_usage_licence_id_day")),
    )
    with op.batch_alter_table("licence_usage", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_licence_usage_licence_id"), ["licence_id"], unique=False
        )

    op.create_table(
        "serving_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("licence_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("raised_at", yuanjian.db.types.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["licence_id"], ["licences.id"], name=op.f("fk_serving_alerts_licence_id_licences")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_alerts")),
        sa.UniqueConstraint(
            "licence_id", "day", "kind", name=op.f("uq_serving_alerts_licence_id_day_kind")
        ),
    )
    with op.batch_alter_table("serving_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_serving_alerts_licence_id"), ["licence_id"], unique=False
        )

    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("calls_per_day", sa.Integer(), nullable=False, server_default="1000")
        )
        batch_op.add_column(
            sa.Column("subjects_per_day", sa.Integer(), nullable=False, server_default="1000")
        )
        batch_op.add_column(
            sa.Column("batch_records", sa.Integer(), nullable=False, server_default="10000")
        )
        batch_op.add_column(
            sa.Column("rate_per_second", sa.Float(), nullable=False, server_default="20")
        )
        batch_op.add_column(sa.Column("ip_ranges", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("delivery_modes", sa.JSON(), nullable=False, server_default='["api"]')
        )
        batch_op.add_column(sa.Column("status_reason", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("status_changed_at", yuanjian.db.types.UTCDateTime(), nullable=True)
        )

    # ### end Alembic commands ###


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.drop_column("status_changed_at")
        batch_op.drop_column("status_reason")
        batch_op.drop_column("delivery_modes")
        batch_op.drop_column("ip_ranges")
        batch_op.drop_column("rate_per_second")
        batch_op.drop_column("batch_records")
        batch_op.drop_column("subjects_per_day")
        batch_op.drop_column("calls_per_day")

    with op.batch_alter_table("serving_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_serving_alerts_licence_id"))

    op.drop_table("serving_alerts")
    with op.batch_alter_table("licence_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licence_usage_licence_id"))

    op.drop_table("licence_usage")
    op.drop_table("licence_subjects")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_org_id"))
        batch_op.drop_index(batch_op.f("ix_deliveries_licence_id"))

    op.drop_table("deliveries")
    with op.batch_alter_table("client_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_credentials_spec_id"))
        batch_op.drop_index(batch_op.f("ix_client_credentials_org_id"))

    op.drop_table("client_credentials")
    # ### end Alembic commands ###
