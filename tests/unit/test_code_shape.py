"""Functions stay short and simple: none over 60 lines or a cyclomatic complexity of 15
(ruff's C901, the McCabe count), unless its docstring says why, naming it a measured hot
path ("Hot path: ..."), where one straight function was measured faster than its parts."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "charging", "infra", "producers", "processors", "sinks", "chargewatch")
MAX_LINES = 60
MAX_COMPLEXITY = 15
REASON = "hot path"


def _functions() -> dict[tuple[str, int], ast.FunctionDef | ast.AsyncFunctionDef]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    found[(str(path.relative_to(ROOT)), node.lineno)] = node
    return found


def _too_complex() -> set[tuple[str, int]]:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "C901", "--output-format", "json",
         "--config", f"lint.mccabe.max-complexity={MAX_COMPLEXITY}", *PACKAGES],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    return {(str(Path(d["filename"]).relative_to(ROOT)), d["location"]["row"])
            for d in json.loads(done.stdout)}


def test_long_or_complex_functions_say_why() -> None:
    functions = _functions()
    long = {key for key, node in functions.items()
            if node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_LINES}
    unexplained = sorted(
        f"{path}:{line} {functions[(path, line)].name}"
        for path, line in long | _too_complex()
        if REASON not in (ast.get_docstring(functions[(path, line)]) or "").lower())
    assert unexplained == []
