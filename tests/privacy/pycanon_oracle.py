"""Run pycanon on Parquet files and print its figures as JSON (the oracle for our risk tests).

pycanon pins older typer/typing_extensions than the project, so it lives in its own venv
(/work/main/.venv-oracle) and this script runs there, called through a subprocess. One job:

    .venv-oracle/bin/python tests/privacy/pycanon_oracle.py DATA.parquet \
        --qi age --qi sex --sensitive income --measures k,l,t,rir

prints one JSON object. Many jobs in one process (pandas and pycanon imported once):

    .venv-oracle/bin/python tests/privacy/pycanon_oracle.py --jobs JOBS.json

where JOBS.json is a list of {"data", "qi", "sensitive", "measures"} objects; prints a JSON
list in the same order. Only the pycanon calls are timed (``seconds``), not reading files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import version
from typing import Any

import pandas as pd
from pycanon import anonymity, metrics


def run_job(
    data_path: str,
    qi: list[str],
    sensitive: list[str],
    measures: list[str],
    *,
    warmup: bool = False,
) -> dict:
    """Run the requested pycanon measures on one Parquet file.

    With ``warmup`` each measure first runs once untimed (allocator and caches warmed, as a
    long-running service would have them).
    """
    data = pd.read_parquet(data_path)
    out: dict[str, Any] = {"pycanon_version": version("pycanon"), "seconds": {}}
    for measure in measures:
        for _ in range(2 if warmup else 1):
            _measure(out, data, qi, sensitive, measure)
    return out


def _measure(
    out: dict[str, Any], data: pd.DataFrame, qi: list[str], sensitive: list[str], measure: str
) -> None:
    start = time.perf_counter()
    if measure == "k":
        out["k"] = int(anonymity.k_anonymity(data, qi))
    elif measure == "l":
        out["l"] = int(anonymity.l_diversity(data, qi, sensitive))
    elif measure == "t":
        out["t"] = float(anonymity.t_closeness(data, qi, sensitive))
    elif measure == "rir":
        out["max_rir"] = float(metrics.max_rir(data, qi))
        out["average_rir"] = float(metrics.average_rir(data, qi))
    else:
        raise SystemExit(f"unknown measure {measure!r}")
    out["seconds"][measure] = time.perf_counter() - start


def _measures(text: str | list[str]) -> list[str]:
    return [m for m in text.split(",") if m] if isinstance(text, str) else list(text)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the requested pycanon measures, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="Parquet file (one job)")
    parser.add_argument("--qi", action="append", default=[], help="quasi-identifier")
    parser.add_argument("--sensitive", action="append", default=[], help="sensitive attribute")
    parser.add_argument("--measures", default="k,l,t,rir", help="comma-separated: k,l,t,rir")
    parser.add_argument("--jobs", help="JSON file with a list of jobs")
    parser.add_argument("--warmup", action="store_true", help="time a second call of each")
    args = parser.parse_args(argv)
    if args.jobs:
        with open(args.jobs, encoding="utf-8") as handle:
            jobs = json.load(handle)
        result: Any = [
            run_job(
                job["data"],
                list(job["qi"]),
                list(job.get("sensitive") or []),
                _measures(job.get("measures", "k,l,t,rir")),
                warmup=bool(job.get("warmup", False)),
            )
            for job in jobs
        ]
    else:
        if not args.data or not args.qi:
            parser.error("give a Parquet file and at least one --qi, or --jobs")
        result = run_job(
            args.data, args.qi, args.sensitive, _measures(args.measures), warmup=args.warmup
        )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
