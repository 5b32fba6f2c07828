"""`chargewatch bench gateway` end to end: a few chargers for a few seconds; the output's
shape (every measure, numbers where numbers belong), never its speed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli import run_cli

pytestmark = pytest.mark.e2e


def test_bench_gateway_reports_rate_latency_profile_and_replicas(tmp_path: Path) -> None:
    result = run_cli("bench", "gateway", "--chargers", "6", "--seconds", "2",
                     "--run-dir", str(tmp_path), env={"COLUMNS": "300"}, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.stdout.splitlines() if line.count("│") == 4}
    assert re.fullmatch(r"[\d,]+", rows["OCPP messages/s, one gateway process (closed loop)"])
    for measure in ("answer latency, closed loop", "answer latency at half that rate"):
        assert re.fullmatch(r"p50 [\d,.]+ ms, p99 [\d,.]+ ms", rows[measure])
    assert rows["chargers with a dead letter"] == "0"
    shares = [int(value[:-1]) for measure, value in rows.items()
              if measure.startswith("gateway time:") and value.endswith("%")]
    assert len(shares) >= 5 and 95 <= sum(shares) <= 105
    assert "gateway time: ocpp: JSON-schema validation (executor threads)" in rows
    replicas = next(v for m, v in rows.items() if m.startswith("gateway replicas for 100,000"))
    assert int(replicas) >= 2
