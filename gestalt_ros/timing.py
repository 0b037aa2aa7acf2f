"""Per-stage wall time, as every result reports it (``timings``, seconds)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def percentiles(seconds: Iterable[float]) -> dict[str, float]:
    """p50 / p95 / p99 of a non-empty series, rounded to 0.1 ms: how latency is reported everywhere."""
    values = list(seconds)
    return {f"p{q}": round(float(np.percentile(values, q)), 4) for q in (50, 95, 99)}
