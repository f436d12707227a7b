"""audit log: fewer, better indexes; inner nodes stored from level 3; SQLite rowid layout

Every index on ``audit_entries`` is a B-tree insert per event, so the log keeps only those the
searches use: ``actor_user_id`` (searched nowhere; searches go by username) loses its index, the
outcome index covers only the rare outcomes (denied, failed), and the object (type, id) lookups
that evidence packs, licence pages and supervision make get the index they lacked. On SQLite,
``audit_entries.idx`` becomes ``INTEGER PRIMARY KEY`` (the rowid itself, not a second B-tree)
and ``audit_nodes`` becomes ``WITHOUT ROWID``; SQLite cannot alter either in place, so both
tables are rebuilt, rows copied unchanged (same indexes, same bytes, so the log still verifies),
and their append-only triggers re-created.

Inner tree nodes are now stored from level 3 up (``log.STORED_MIN_LEVEL``); levels 1 and 2 are
recomputed from their 2 or 4 leaves when a proof needs them. Those stored rows are derived data
(each is a hash of entries that stay), so this revision removes them: SQLite's rebuild does not
copy them, PostgreSQL deletes them with the append-only trigger lifted for that one statement.
No entry is touched. The downgrade recomputes them from the entries.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 07:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from yuanjian.audit import log, merkle
from yuanjian.audit.log import STORED_MIN_LEVEL

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENTRY_COLUMNS = (
    "idx, ts, actor_user_id, actor_username, actor_org_id, action, object_type, object_id, "
    "outcome, request_id, payload, leaf_hash"
)


def _sqlite_rebuild(entries_pk: str, nodes_rowid: str, min_level: int) -> None:
    """Rebuild the two tables on SQLite with the given key type and rowid clause."""
    for table in ("audit_entries", "audit_nodes"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    op.execute(
        "CREATE TABLE audit_entries_new ("
        f"idx {entries_pk} NOT NULL, ts DATETIME NOT NULL, actor_user_id INTEGER, "
        "actor_username VARCHAR(64) NOT NULL, actor_org_id INTEGER, "
        "action VARCHAR(64) NOT NULL, object_type VARCHAR(64), object_id VARCHAR(128), "
        "outcome VARCHAR(16) NOT NULL, request_id VARCHAR(64), payload TEXT NOT NULL, "
        "leaf_hash BLOB NOT NULL, CONSTRAINT pk_audit_entries PRIMARY KEY (idx))"
    )
    op.execute(
        f"INSERT INTO audit_entries_new ({_ENTRY_COLUMNS}) "
        f"SELECT {_ENTRY_COLUMNS} FROM audit_entries ORDER BY idx"
    )
    op.execute("DROP TABLE audit_entries")
    op.execute("ALTER TABLE audit_entries_new RENAME TO audit_entries")
    op.execute(
        "CREATE TABLE audit_nodes_new (level SMALLINT NOT NULL, k BIGINT NOT NULL, "
        "hash BLOB NOT NULL, CONSTRAINT pk_audit_nodes PRIMARY KEY (level, k))"
        f"{nodes_rowid}"
    )
    op.execute(
        "INSERT INTO audit_nodes_new (level, k, hash) "
        f"SELECT level, k, hash FROM audit_nodes WHERE level >= {min_level} ORDER BY level, k"
    )
    op.execute("DROP TABLE audit_nodes")
    op.execute("ALTER TABLE audit_nodes_new RENAME TO audit_nodes")
    log.install_append_only_triggers(op.get_bind(), ("audit_entries", "audit_nodes"))


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # The rebuild drops the old indexes with the old table.
        _sqlite_rebuild("INTEGER", " WITHOUT ROWID", STORED_MIN_LEVEL)
        op.create_index("ix_audit_entries_ts", "audit_entries", ["ts"])
        op.create_index("ix_audit_entries_actor_org_id", "audit_entries", ["actor_org_id"])
        op.create_index("ix_audit_entries_action", "audit_entries", ["action"])
    else:
        op.execute("ALTER TABLE audit_nodes DISABLE TRIGGER audit_nodes_append_only")
        op.execute(f"DELETE FROM audit_nodes WHERE level < {STORED_MIN_LEVEL}")
        op.execute("ALTER TABLE audit_nodes ENABLE TRIGGER audit_nodes_append_only")
        op.drop_index("ix_audit_entries_actor_user_id", table_name="audit_entries")
        op.drop_index("ix_audit_entries_outcome", table_name="audit_entries")
    op.create_index(
        "ix_audit_entries_outcome",
        "audit_entries",
        ["outcome"],
        sqlite_where=sa.text("outcome != 'allowed'"),
        postgresql_where=sa.text("outcome != 'allowed'"),
    )
    op.create_index("ix_audit_entries_object", "audit_entries", ["object_type", "object_id"])


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _sqlite_rebuild("BIGINT", "", 1)
        for column in ("ts", "actor_org_id", "action"):
            op.create_index(f"ix_audit_entries_{column}", "audit_entries", [column])
    else:
        op.drop_index("ix_audit_entries_object", table_name="audit_entries")
        op.drop_index("ix_audit_entries_outcome", table_name="audit_entries")
    op.create_index("ix_audit_entries_outcome", "audit_entries", ["outcome"])
    op.create_index("ix_audit_entries_actor_user_id", "audit_entries", ["actor_user_id"])
    _restore_low_nodes()


def _restore_low_nodes() -> None:
    """Recompute the level 1 and 2 nodes the earlier revisions stored, from the entries."""
    bind = op.get_bind()
    nodes_table = sa.table(
        "audit_nodes",
        sa.column("level", sa.SmallInteger),
        sa.column("k", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    alg = bind.execute(sa.text("SELECT hash_alg FROM audit_head WHERE id = 1")).scalar() or "sha256"
    rows = bind.execute(sa.text("SELECT idx, leaf_hash FROM audit_entries ORDER BY idx"))
    frontier: list[bytes] = []
    batch: list[dict[str, object]] = []
    for size, (_, leaf) in enumerate(rows.fetchall()):
        nodes, frontier = merkle.append_leaves(size, [bytes(leaf)], frontier, alg=alg)
        batch.extend(
            {"level": lv, "k": k, "hash": h} for lv, k, h in nodes if 0 < lv < STORED_MIN_LEVEL
        )
        if len(batch) >= 5000:
            op.bulk_insert(nodes_table, batch)
            batch = []
    if batch:
        op.bulk_insert(nodes_table, batch)
