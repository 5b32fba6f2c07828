"""The settings take every rule's default from the domain and change nothing while loading."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from charging.anomalies import AnomalyRules
from charging.rules import StitchRules
from infra.errors import ConfigError
from infra.settings import Settings, load_settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("group", "rules"), [("rules", StitchRules),
                                              ("anomalies", AnomalyRules)])
def test_every_rule_field_is_a_setting_with_the_domains_default(
        group: str, rules: type, monkeypatch: pytest.MonkeyPatch) -> None:
    assert getattr(load_settings().processor, group) == rules()
    for f in dataclasses.fields(rules):
        value = f.default * 2 if f.default else 1
        monkeypatch.setenv(f"CHARGEWATCH_PROCESSOR__{group.upper()}__{f.name.upper()}",
                           str(value))
    loaded = getattr(load_settings().processor, group)
    assert isinstance(loaded, rules)
    assert all(getattr(loaded, f.name) == (f.default * 2 if f.default else 1)
               for f in dataclasses.fields(rules))


def test_a_rule_out_of_bounds_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEWATCH_PROCESSOR__RULES__INACTIVITY_MS", "0")
    with pytest.raises(ConfigError, match=r"^invalid setting processor\.rules: inactivity_ms "
                                          r"must be greater than 0$"):
        load_settings()
    monkeypatch.delenv("CHARGEWATCH_PROCESSOR__RULES__INACTIVITY_MS")
    with pytest.raises(ConfigError, match=r"processor\.anomalies\.nope"):
        load_settings(processor={"anomalies": {"nope": 1}})


def test_loading_a_config_file_leaves_the_environment_alone(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("kafka:\n  namespace: fromfile\n")
    before = dict(os.environ)
    assert load_settings(config).kafka.namespace == "fromfile"
    assert dict(os.environ) == before
    assert load_settings().kafka.namespace == "chargewatch"


@pytest.mark.parametrize(("group", "rules"), [("rules", StitchRules),
                                              ("anomalies", AnomalyRules)])
def test_the_settings_page_documents_every_rule_with_its_default(group: str, rules: type) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    for f in dataclasses.fields(rules):
        default = f"{f.default:g}" if isinstance(f.default, float) else str(f.default)
        row = f"| `CHARGEWATCH_PROCESSOR__{group.upper()}__{f.name.upper()}` | `{default}` |"
        assert row in page, f"docs/settings.md lacks {row}"


def _leaf_env_names(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        nested = info.annotation
        if name in ("rules", "anomalies"):  # their own test above, field by field
            continue
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            names += _leaf_env_names(nested, env + "__")
        else:
            names.append(env)
    return names


def _listed(page: str, name: str) -> bool:
    """`NAME` in a row of its own, or `__LEAF` beside a sibling (`..._USER` / `__PASSWORD`)."""
    if f"`{name}`" in page:
        return True
    group, leaf = name.rsplit("__", 1)
    return bool(re.search(rf"^\| `{re.escape(group)}__[A-Z_]+`( / `__[A-Z_]+`)* / `__{leaf}` ",
                          page, re.M))


def test_the_settings_page_lists_every_setting() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    names = _leaf_env_names(Settings, "CHARGEWATCH_")
    assert "CHARGEWATCH_HEALTH__UNREACHABLE_S" in names
    missing = [name for name in names if not _listed(page, name)]
    assert missing == [], f"docs/settings.md lacks {missing}"
