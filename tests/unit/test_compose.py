"""docker-compose.yml and the Dockerfile, checked as far as this machine can (no Docker engine):
every app service runs a real `chargewatch` command, every variable it sets is a real
setting with a valid value, and the topics it creates match the settings it runs with."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from chargewatch.cli import build_parser
from infra.settings import Settings, load_settings
from infra.topics import Topics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
UNPREFIXED = {"KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
              "SCHEMA_REGISTRY_URL": ("kafka", "schema_registry_url"),
              "CLICKHOUSE_URL": ("clickhouse", "url")}


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _app_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in _compose()["services"].items()
            if svc.get("image", "").startswith("chargewatch")}


def _field_path(name: str) -> tuple[str, ...]:
    if name in UNPREFIXED:
        return UNPREFIXED[name]
    assert name.startswith("CHARGEWATCH_"), f"{name} is not a ChargeWatch setting"
    return tuple(part.lower() for part in name.removeprefix("CHARGEWATCH_").split("__"))


def _walk(settings: Settings, path: tuple[str, ...]) -> Any:
    node: Any = settings
    for part in path:
        model = type(node)
        assert issubclass(model, BaseModel) and part in model.model_fields, \
            f"{'.'.join(path)}: no setting {part!r} in {model.__name__}"
        node = getattr(node, part)
    return node


def test_the_stack_has_its_parts_and_dependencies_exist() -> None:
    services = _compose()["services"]
    assert {"kafka", "topic-init", "schema-registry", "clickhouse", "migrate", "worker", "sink",
            "gateway", "simulator", "grafana"} <= set(services)
    for name, svc in services.items():
        for dependency in svc.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        if svc.get("restart", "no") != "no":
            assert "healthcheck" in svc, f"long-running {name} has no health check"
    assert services["worker"]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("name", sorted(_app_services()))
def test_app_services_run_real_commands(name: str) -> None:
    command = _app_services()[name]["command"]
    args = build_parser().parse_args(command)
    assert args.command == command[0]


@pytest.mark.parametrize("name", sorted(_app_services()))
def test_app_services_set_real_settings_with_valid_values(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: str(v) for k, v in _app_services()[name].get("environment", {}).items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    for key, value in env.items():
        actual = _walk(settings, _field_path(key))
        shown = actual.get_secret_value() if hasattr(actual, "get_secret_value") else actual
        assert str(shown) == value or str(shown) == value.upper() or shown == type(shown)(value)


def test_topic_init_creates_the_topics_the_services_use() -> None:
    compose = _compose()
    script = compose["services"]["topic-init"]["command"][0]
    env = compose["services"]["worker"]["environment"]
    partitions = re.search(r"--partitions (\d+)", script)
    prefix = re.search(r'--topic "([^$]+)\$\$1"', script)
    assert partitions and prefix
    assert partitions.group(1) == env["CHARGEWATCH_KAFKA__PARTITIONS"]
    created = {prefix.group(1) + base for base in re.findall(r"^create (\S+) ", script, re.M)}
    assert created == set(Topics(env["CHARGEWATCH_KAFKA__NAMESPACE"]).all())
    assert re.search(r"^create session-updates compact ", script, re.M)


def test_dockerfile_installs_every_package_and_grafana_is_provisioned() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]
    copied = set(re.findall(r"^COPY (\S+) \1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert {package.split(".")[0] for package in packages} <= copied
    provisioning = ROOT / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "clickhouse.yml").read_text())
    assert datasource["datasources"][0]["type"] == "grafana-clickhouse-datasource"
    dashboards = yaml.safe_load((provisioning / "dashboards" / "chargewatch.yml").read_text())
    mounts = _compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{dashboards['providers'][0]['options']['path']}:ro" in mounts


def test_app_services_use_the_authenticated_kafka_listener_with_an_interpolated_secret() -> None:
    kafka = _compose()["services"]["kafka"]["environment"]
    protocols = dict(pair.split(":") for pair in
                     kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    advertised = dict(entry.split("://") for entry in
                      kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    jaas = kafka["KAFKA_LISTENER_NAME_APP_PLAIN_SASL_JAAS_CONFIG"]
    for name, svc in _app_services().items():
        env = svc["environment"]
        listener = next(n for n, address in advertised.items()
                        if address == env["KAFKA_BOOTSTRAP_SERVERS"])
        assert protocols[listener] == env["CHARGEWATCH_KAFKA__SECURITY_PROTOCOL"], name
        assert env["CHARGEWATCH_KAFKA__SASL_MECHANISM"] in kafka["KAFKA_SASL_ENABLED_MECHANISMS"]
        user, password = env["CHARGEWATCH_KAFKA__SASL_USERNAME"], \
            env["CHARGEWATCH_KAFKA__SASL_PASSWORD"]
        assert password.startswith("${KAFKA_APP_PASSWORD"), f"{name}: a literal secret"
        assert f'user_{user}="{password}"' in jaas, name
