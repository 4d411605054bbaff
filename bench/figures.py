"""What the benchmarks share: progress lines, nearest-rank percentiles, durations, and their abort signal."""

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


def ms(seconds: float) -> str:
    """A duration for a report line: milliseconds with sensible precision, seconds from 10 s on."""
    if seconds < 0.001:
        return f"{1000 * seconds:.2f} ms"
    if seconds < 0.01:
        return f"{1000 * seconds:.1f} ms"
    return f"{1000 * seconds:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


class BenchAbort(Exception):
    """--timeout reached, or SIGTERM."""

