"""A separate process that appends audit events (used by the crash and concurrency tests)."""

from __future__ import annotations

import sys

from yuanjian.audit import service as audit
from yuanjian.config import Settings
from yuanjian.instance import open_instance


def main() -> None:
    """argv: DATA_DIR DATABASE_URL TRANSACTIONS EVENTS_PER_TRANSACTION NAME (0 = forever)."""
    data_dir, url, txs, per_tx, name = sys.argv[1:6]
    inst = open_instance(Settings(data_dir=data_dir, database_url=url))
    n, per = int(txs), int(per_tx)
    done = 0
    with inst.sessions() as s:
        actor = inst.cli_actor(s)
        while n == 0 or done < n:
            for j in range(per):
                audit.record(
                    s,
                    actor,
                    "test.writer",
                    object_type="writer",
                    object_id=name,
                    detail={"tx": done, "j": j, "pad": "x" * 200},
                )
            s.commit()
            done += 1
            print(done, flush=True)


if __name__ == "__main__":
    main()
