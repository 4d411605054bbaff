"""What the benchmarks share for reporting: progress lines and nearest-rank percentiles."""

from __future__ import annotations

import math
import sys
import time


def log(msg: str) -> None:
    """A timestamped progress line on stderr (the report itself goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); nan for an empty list."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def mib(n: float) -> float:
    return n / (1024 * 1024)
