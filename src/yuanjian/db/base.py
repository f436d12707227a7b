"""Declarative base with a naming convention so Alembic batch mode can alter SQLite tables."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model; every capability's models module registers on it."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def import_all_models() -> None:
    """Import every capability's models so ``Base.metadata`` is complete."""
    # Imported for their side effect of registering tables on Base.metadata.
    from yuanjian.audit import models as _audit  # noqa: F401
    from yuanjian.components import models as _components  # noqa: F401
    from yuanjian.identity import models as _identity  # noqa: F401
    from yuanjian.oversight import models as _oversight  # noqa: F401
    from yuanjian.products import models as _products  # noqa: F401
    from yuanjian.resources import models as _resources  # noqa: F401
    from yuanjian.reviews import models as _reviews  # noqa: F401
    from yuanjian.scenarios import models as _scenarios  # noqa: F401
    from yuanjian.standards import models as _standards  # noqa: F401
