"""The schema is built by Alembic only, and matches the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from yuanjian.db import migrate
from yuanjian.db.base import Base, import_all_models
from yuanjian.instance import Instance


def test_database_is_at_head(instance: Instance) -> None:
    assert migrate.current_revision(instance.engine) == migrate.head_revision(instance.engine)


def test_autogenerate_finds_no_difference(instance: Instance) -> None:
    import_all_models()
    with instance.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_every_model_table_exists(instance: Instance) -> None:
    import_all_models()
    tables = set(inspect(instance.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_upgrade_is_idempotent(instance: Instance) -> None:
    migrate.upgrade(instance.engine)
    assert migrate.current_revision(instance.engine) == migrate.head_revision(instance.engine)
