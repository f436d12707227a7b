"""Audit log performance: appends, proofs and full verification, with pymerkle as the baseline.

    python benchmarks/audit.py [--quick]

Figures (JSON lines, DESIGN.md §5):
- single-event appends, one transaction each, SQLite WAL, through the service path
  (``audit.record`` + commit), against pymerkle's ``SqliteTree.append_entry`` on the same
  SQLite settings, measured side by side;
- appends in batches of 1,000 events;
- median inclusion and consistency proof time from the database at 1,000,000 entries
  (100,000 with --quick);
- ``verify_log`` over the whole log.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from yuanjian.audit import log, merkle
from yuanjian.audit import service as audit
from yuanjian.config import Settings
from yuanjian.instance import init_instance, open_instance

DETAIL = {"resource": "enterprise_registration", "rows": 1000, "purpose": "credit_lending"}


def emit(
    figure: str,
    value: float,
    unit: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
    **extra: object,
) -> None:
    """Print one figure as a JSON line."""
    ratio = round(value / baseline_value, 2) if baseline_value else None
    print(
        json.dumps(
            {
                "figure": figure,
                "value": round(value, 3),
                "unit": unit,
                "baseline": baseline,
                "baseline_value": round(baseline_value, 3) if baseline_value else None,
                "ratio": ratio,
                **extra,
            },
            ensure_ascii=False,
        ),
        flush=True,
    )


def fresh_instance(root: Path, sync: str):
    """An initialized embedded instance in ``root``."""
    settings = Settings(
        data_dir=root / "data",
        database_url=f"sqlite:///{root / 'y.db'}",
        sqlite_synchronous=sync,
        audit_checkpoint_every=10**9,
    )
    init_instance(settings, admin_password="Bench-pass-2026")
    return open_instance(settings)


def bench_single(root: Path, n: int, sync: str) -> float:
    """Events/s, one transaction per event, through the service path."""
    inst = fresh_instance(root, sync)
    with inst.sessions() as s:
        actor = inst.cli_actor(s)
        t = time.perf_counter()
        for i in range(n):
            audit.record(
                s, actor, "sample.download", object_type="sample", object_id=i, detail=DETAIL
            )
            s.commit()
        rate = n / (time.perf_counter() - t)
    inst.dispose()
    return rate


def bench_pymerkle(root: Path, n: int, sync: str | None) -> float:
    """pymerkle SqliteTree appending one leaf at a time (as shipped, or with our pragmas)."""
    from pymerkle import SqliteTree

    root.mkdir(parents=True, exist_ok=True)
    tree = SqliteTree(str(root / f"pymerkle-{sync or 'shipped'}.db"))
    if sync is not None:
        tree.con.execute("PRAGMA journal_mode=WAL")
        tree.con.execute(f"PRAGMA synchronous={sync}")
    payload = json.dumps({"action": "sample.download", "detail": DETAIL}).encode()
    t = time.perf_counter()
    for _ in range(n):
        tree.append_entry(payload)
    rate = n / (time.perf_counter() - t)
    tree.close()
    return rate


def bench_batches(inst, total: int, batch: int = 1000) -> float:
    """Events/s appending ``total`` events in transactions of ``batch``."""
    with inst.sessions() as s:
        actor = inst.cli_actor(s)
        t = time.perf_counter()
        for start in range(0, total, batch):
            for i in range(start, min(start + batch, total)):
                audit.record(
                    s,
                    actor,
                    "component.call",
                    object_type="licence",
                    object_id=i,
                    purpose="credit_lending",
                    detail=DETAIL,
                )
            s.commit()
        return total / (time.perf_counter() - t)


def bench_proofs(inst, size: int, samples: int) -> tuple[float, float]:
    """Median ms of an inclusion and a consistency proof read from the database."""
    rnd = random.Random(7)
    inc, con = [], []
    with inst.sessions() as s:
        for _ in range(samples):
            i = rnd.randrange(size)
            t = time.perf_counter()
            log.inclusion_proof(s, i, size, "sha256")
            inc.append(time.perf_counter() - t)
            old = rnd.randrange(1, size)
            t = time.perf_counter()
            log.consistency_proof(s, old, size, "sha256")
            con.append(time.perf_counter() - t)
        # Spot-check that what we timed is right.
        i = rnd.randrange(size)
        proof = log.inclusion_proof(s, i, size, "sha256")
        leaf = log.fetch_nodes(s, [(0, i)])[(0, i)]
        assert merkle.verify_inclusion(leaf, i, size, proof, log.root_at(s, size, "sha256"))
    return statistics.median(inc) * 1000, statistics.median(con) * 1000


def main() -> None:
    """Run every figure in one process, side by side."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    args = ap.parse_args()
    n_single = 2000 if args.quick else 20000
    n_log = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="yj-bench-audit-") as tmp:
        root = Path(tmp)
        try:
            shipped = bench_pymerkle(root / "pm", n_single, None)
            same = bench_pymerkle(root / "pm", n_single, "NORMAL")
        except ImportError:
            # The baseline comes from the bench extra: pip install -e '.[bench]'.
            print(
                "pymerkle is not installed (pip install -e '.[bench]'): no baseline ratios",
                file=sys.stderr,
            )
            shipped = same = None
        for sync in ("NORMAL", "FULL"):
            ours = bench_single(root / f"single-{sync}", n_single, sync)
            emit(
                f"single_append_events_per_s_wal_{sync.lower()}",
                ours,
                "events/s",
                "pymerkle SqliteTree as shipped (rollback journal, synchronous=FULL)",
                shipped,
                target=4000 if sync == "NORMAL" else None,
                events=n_single,
                note="WAL synchronous=NORMAL survives process crashes; FULL also power loss",
            )
            if sync == "NORMAL":
                emit(
                    "single_append_vs_pymerkle_same_pragmas",
                    ours,
                    "events/s",
                    "pymerkle SqliteTree with WAL synchronous=NORMAL",
                    same,
                    events=n_single,
                    note="pymerkle stores one row per leaf, no tree nodes, no canonical JSON",
                )
        inst = fresh_instance(root / "big", "NORMAL")
        rate = bench_batches(inst, n_log)
        emit("batch_append_events_per_s", rate, "events/s", target=50000, batch=1000, events=n_log)
        with inst.sessions() as s:
            size = log.read_head(s).size
        inc, con = bench_proofs(inst, size, 2000 if not args.quick else 500)
        emit("inclusion_proof_median_ms", inc, "ms", target=1, tree_size=size)
        emit("consistency_proof_median_ms", con, "ms", target=1, tree_size=size)
        with inst.sessions() as s:
            log.issue_checkpoint(s, inst.audit)
            t = time.perf_counter()
            report = log.verify_log(s, inst.audit.verifier)
            elapsed = time.perf_counter() - t
        assert report.ok, report.problems
        emit("verify_whole_log_s", elapsed, "s", target=60, tree_size=size)
        db = root / "big" / "y.db"
        emit("database_bytes_per_entry", db.stat().st_size / size, "bytes", tree_size=size)
        inst.dispose()
        sqlite3.connect(":memory:").close()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
