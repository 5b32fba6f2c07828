"""`chargewatch bench scale` end to end: 1 and 2 workers on a small workload; the output's
shape (a row per count, events/s, the ratio to one worker), never its speed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli import run_cli

pytestmark = pytest.mark.e2e


def test_bench_scale_reports_each_worker_count_against_one(tmp_path: Path) -> None:
    result = run_cli("bench", "scale", "--workers", "1,2", "--events", "8000",
                     "--partitions", "4", "--run-dir", str(tmp_path), env={"COLUMNS": "200"},
                     timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [[cell.strip() for cell in line.split("│")[1:-1]]
            for line in result.stdout.splitlines() if line.count("│") == 6]
    assert [row[:2] for row in rows] == [["1", "4"], ["2", "2"]]
    for _, _, rate, ratio, timed in rows:
        assert re.fullmatch(r"[\d,]+", rate) and int(rate.replace(",", "")) > 0
        assert re.fullmatch(r"\d+\.\d\d", ratio)
        assert re.fullmatch(r"\d+%", timed) and 0 < int(timed[:-1]) <= 100
    assert rows[0][3] == "1.00"
    configs = [json.loads(path.read_text())["processor"]
               for path in sorted(tmp_path.glob("scale*/worker*/config.json"))]
    assert len(configs) == 3  # one worker, then two
    two = configs[1:]
    assert two[0]["web_port"] != two[1]["web_port"]
    assert two[0]["data_dir"] != two[1]["data_dir"]


def test_bench_scale_refuses_more_workers_than_partitions(tmp_path: Path) -> None:
    result = run_cli("bench", "scale", "--workers", "1,8", "--partitions", "4",
                     "--run-dir", str(tmp_path))
    assert result.returncode == 2
    assert "8 workers on 4 partitions" in result.stderr
