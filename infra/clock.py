"""The product's wall clock: every "now" of ChargeWatch reads `now_ms`.

`CHARGEWATCH_CLOCK_OFFSET_S` (test-only, default 0) moves this clock by that many seconds,
in every process that inherits the variable (workers, stitching processes, the sink). It
exists to prove that no test depends on today's date: the suite passes with the product's
clock moved 90 days ahead (docs/tests.md). Durations and timeouts use `time.monotonic`,
which the offset does not touch.
"""

from __future__ import annotations

import os
import time

OFFSET_ENV = "CHARGEWATCH_CLOCK_OFFSET_S"


def _offset_ms() -> int:
    raw = os.environ.get(OFFSET_ENV, "").strip()
    if not raw:
        return 0
    try:
        return round(float(raw) * 1000)
    except ValueError:
        raise SystemExit(f"{OFFSET_ENV}={raw!r} is not a number of seconds") from None


_OFFSET_MS = _offset_ms()


def now_ms() -> int:
    """Milliseconds since the epoch, UTC, as the product sees them."""
    return time.time_ns() // 1_000_000 + _OFFSET_MS
