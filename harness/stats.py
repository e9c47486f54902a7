"""The one percentile of the project (nearest rank, ceil), imported by the harness, the benchmarks and the examples."""
from __future__ import annotations

import math
from typing import Iterable


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The q-th percentile (0..100) by the nearest-rank method (rank ceil(q/100 * n)); None for no values."""
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    # round() first so that float noise (e.g. 0.07 * 100 = 7.000000000000001) cannot push the rank up by one
    rank = max(1, math.ceil(round(q * len(data) / 100, 9)))
    return data[rank - 1]
