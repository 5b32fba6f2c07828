"""The on-call rules, tested offline by Prometheus' own `promtool`: each alert fires on the
series it is written for and stays quiet on the ones it is not (prometheus/alerts_test.yml),
and the scrape configuration is valid. `.ci/run` installs promtool, so this runs in CI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROMETHEUS = Path(__file__).resolve().parents[2] / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus; "
                             ".ci/run installs it)")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=120, check=False)


@needs_promtool
def test_every_alert_fires_when_it_should_and_not_otherwise() -> None:
    done = _promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_the_rules_and_the_scrape_configuration_are_valid() -> None:
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        done = _promtool(*args)
        assert done.returncode == 0, done.stdout + done.stderr
