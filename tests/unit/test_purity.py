"""The processors' pure core imports no engine: no Faust, Kafka client or ClickHouse client.

Each module is imported in a fresh interpreter, so one module's imports cannot hide or
pollute another's; only the agent files (app.py, agents.py, faust_transport.py, outbox.py,
stitching_process.py) may touch
the engines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

FORBIDDEN = ("faust", "aiokafka", "confluent_kafka", "clickhouse_connect", "chdb")
AGENT_FILES = {"app.py", "agents.py", "faust_transport.py", "outbox.py",
               "stitching_process.py"}
PROCESSORS = Path(__file__).resolve().parents[2] / "processors"

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
forbidden = tuple(sys.argv[2].split(","))
print(json.dumps(sorted(
    name for name in sys.modules if name.split(".")[0] in forbidden)))
"""


def engine_imports(module: str) -> list[str]:
    """Forbidden modules present in sys.modules after importing `module` in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _PROBE, module, ",".join(FORBIDDEN)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


PURE_MODULES = sorted(f"processors.{path.stem}" for path in PROCESSORS.glob("*.py")
                      if path.name not in AGENT_FILES and path.name != "__init__.py")


def test_the_core_modules_exist() -> None:
    assert {"processors.stitcher", "processors.state", "processors.session_ids",
            "processors.errors", "processors.pricing"} <= set(PURE_MODULES)


@pytest.mark.parametrize("module", ["processors", *PURE_MODULES])
def test_pure_module_imports_no_engine(module: str) -> None:
    assert engine_imports(module) == []


def test_the_probe_sees_an_engine_import() -> None:
    # chargewatch.topics imports confluent_kafka: the probe must notice, or it proves nothing.
    assert "confluent_kafka" in engine_imports("chargewatch.topics")
