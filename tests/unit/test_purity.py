"""The domain and the worker's pure modules import no engine: no Faust, Kafka client or
ClickHouse client (tests/unit/test_layers.py checks which of our packages each may import).

Each module is imported in a fresh interpreter, so one module's imports cannot hide or
pollute another's. Every module of `charging/` (subpackages included) is pure; in
`processors/` only the agent files (app.py, agents.py, faust_transport.py, outbox.py,
stitching_process.py) may touch the engines.
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
ROOT = Path(__file__).resolve().parents[2]

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


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


PURE_MODULES = sorted(
    [_module(path) for path in (ROOT / "charging").rglob("*.py")]
    + [_module(path) for path in (ROOT / "processors").glob("*.py")
       if path.name not in AGENT_FILES])


def test_the_core_modules_exist() -> None:
    assert {"charging", "charging.stitcher", "charging.state", "charging.session_ids",
            "charging.pricing", "charging.tariffs", "charging.tariffs.engine",
            "processors.batch"} <= set(PURE_MODULES)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_engine(module: str) -> None:
    assert engine_imports(module) == []


def test_the_probe_sees_an_engine_import() -> None:
    # infra.topics imports confluent_kafka: the probe must notice, or it proves nothing.
    assert "confluent_kafka" in engine_imports("infra.topics")
