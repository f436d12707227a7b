"""Run `yuanjian resources ingest ...` in this process, then print its peak RSS (VmHWM, kB)."""

from __future__ import annotations

import sys

from yuanjian.cli import app


def peak_kb() -> int:
    """This process's peak resident set size."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


if __name__ == "__main__":
    try:
        app(["resources", "ingest", *sys.argv[1:]], standalone_mode=False)
    finally:
        print(f"PEAK_KB={peak_kb()}", flush=True)
