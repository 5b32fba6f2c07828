"""The house rules, read from the imports (every `import`, also inside functions).

- the contract (`schemas/`) imports nothing of ours;
- the domain (`charging/`) imports only the contract;
- shared infrastructure (`infra/`) imports the contract and the domain;
- the stages (`producers/`, `processors/`, `sinks/`) import the contract, the domain and
  shared infrastructure, never the face (`chargewatch/`) and never each other;
- the face (`chargewatch/`) wires them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
OURS = {"schemas", "charging", "infra", "producers", "processors", "sinks", "chargewatch"}
BELOW = {"schemas": set(), "charging": {"schemas"}, "infra": {"schemas", "charging"}}
STAGE = {"schemas", "charging", "infra"}
ALLOWED = {**BELOW, "producers": STAGE, "processors": STAGE, "sinks": STAGE,
           "chargewatch": OURS}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """Our top-level packages a module imports, with the line of each import."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(name.split(".")[0], node.lineno) for name in names
                  if name.split(".")[0] in OURS}
    return found


def violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    return [f"{path.relative_to(ROOT)}:{line} imports {imported}"
            for path in sorted((ROOT / package).rglob("*.py"))
            for imported, line in sorted(imported_packages(path)) if imported not in allowed]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    assert violations(package) == []


def test_the_reader_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from chargewatch.cli import main\n    import sinks.runner\n")
    assert imported_packages(module) == {("chargewatch", 2), ("sinks", 3)}


def test_every_package_of_ours_has_a_layer() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(ALLOWED)
