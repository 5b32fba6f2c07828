"""docker-compose.yml and the Dockerfile, checked as far as this machine can (no Docker engine):
every app service runs a real `chargewatch` command, every variable it sets is a real
setting with a valid value, and the topics it creates match the settings it runs with."""

from __future__ import annotations

import json
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


def _web_port_and_host(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """The web port and bind address the service runs with: its environment read by the
    settings object, as the container would."""
    for key, value in _app_services()[name].get("environment", {}).items():
        monkeypatch.setenv(key, str(value))
    settings = load_settings()
    group = {"worker": settings.processor, "sink": settings.sink,
             "gateway": settings.gateway}[name]
    return group.web_port, group.web_host


def test_no_plaintext_kafka_port_is_published_by_default() -> None:
    kafka = _compose()["services"]["kafka"]
    protocols = dict(pair.split(":") for pair in
                     kafka["environment"]["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    ports = {entry.rsplit(":", 1)[1]: name for name, entry in
             (listener.split("://") for listener in
              kafka["environment"]["KAFKA_LISTENERS"].split(","))}
    for published in kafka.get("ports", []):
        listener = ports[str(published).rsplit(":", 1)[-1]]
        assert protocols[listener] != "PLAINTEXT", f"{published} publishes plaintext Kafka"
    for name, svc in _compose()["services"].items():
        for published in svc.get("ports", []):
            assert str(published).rsplit(":", 1)[-1] not in ("9092", "29092"), name


def test_the_gateway_authenticates_chargers_and_the_open_variant_is_an_override() -> None:
    gateway = _compose()["services"]["gateway"]
    assert int(gateway["environment"]["CHARGEWATCH_GATEWAY__SECURITY_PROFILE"]) >= 1
    mounted = {volume.rsplit(":", 2)[1]: volume.rsplit(":", 2)[0]
               for volume in gateway["volumes"]}
    chargers = gateway["environment"]["CHARGEWATCH_GATEWAY__CHARGERS_FILE"]
    # required, like the passwords: no default file that could let anyone in
    assert mounted[chargers].startswith("${GATEWAY_CHARGERS_FILE:?")
    open_variant = yaml.safe_load((ROOT / "docker-compose.open.yml").read_text())["services"]
    assert open_variant["gateway"]["environment"]["CHARGEWATCH_GATEWAY__SECURITY_PROFILE"] == "0"
    assert open_variant["kafka"]["ports"] == ["127.0.0.1:29092:29092"]
    assert "docker-compose.open.yml" in (ROOT / "docs" / "security.md").read_text()


@pytest.mark.parametrize("name", ["worker", "sink", "gateway"])
def test_health_checks_ask_the_health_endpoint_and_prometheus_scrapes_it(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    port, host = _web_port_and_host(name, monkeypatch)
    check = " ".join(_compose()["services"][name]["healthcheck"]["test"])
    assert f"urlopen('http://127.0.0.1:{port}/health'" in check  # 503 fails urlopen
    assert "socket" not in check
    assert host == "0.0.0.0", f"{name} binds {host}: Prometheus could not reach it"
    scrape = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == name)
    targets = [t for c in job.get("static_configs", []) for t in c["targets"]] + \
        [f"{n}:{c['port']}" for c in job.get("dns_sd_configs", []) for n in c["names"]]
    assert targets == [f"{name}:{port}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def _exported_metric_names() -> set[str]:
    """What the workers' /metrics really expose, every label set touched once."""
    from prometheus_client import generate_latest

    from infra.health import HealthTracker
    from infra.metrics import HealthCollector, ProcessorMetrics, sink_registry

    tracker = HealthTracker()
    tracker.committed(("t", 0), 1)
    tracker.failed("kafka", "x")
    processor = ProcessorMetrics()
    processor.registry.register(HealthCollector(tracker))
    processor.events.labels("used").inc()
    processor.published.labels("t").inc()
    processor.lag.labels("0").set(1)
    processor.anomalies.labels("critical").inc()
    processor.critical.labels("S").inc()
    text = processor.render() + generate_latest(sink_registry(dict, tracker))
    return {line.split("{")[0].split(" ")[0] for line in text.decode().splitlines()
            if line and not line.startswith("#")}


def test_every_metric_the_alert_rules_name_is_exported_and_every_alert_has_a_runbook() -> None:
    rules = yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text())
    exported = _exported_metric_names() | {"up", "ALERTS"}
    oncall = (ROOT / "docs" / "oncall.md").read_text()
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {a["alert"] for a in alerts} >= {"WorkerDown", "ConsumerLagGrowing",
                                            "CommitsStalledWithLag", "DeadLetterRate",
                                            "StationCriticalAnomalies"}
    for alert in alerts:
        for metric in re.findall(r"\b(chargewatch_\w+|up)\b(?=\s*[{\[)\s=><]|$)", alert["expr"]):
            assert metric in exported, f"{alert['alert']}: {metric} is not exported"
        anchor = alert["annotations"]["runbook"].split("#")[1]
        assert re.search(rf"^### {alert['alert']}$", oncall, re.M | re.I), anchor
        assert alert["labels"]["severity"] in ("critical", "warning")


def test_grafana_ranks_top_anomalies_by_an_explicit_severity_order() -> None:
    dashboard = json.loads((ROOT / "grafana" / "dashboards" / "chargewatch.json").read_text())
    panel = next(p for p in dashboard["panels"] if p["title"] == "Top anomalies")
    sql = panel["targets"][0]["rawSql"]
    assert "max(severity)" not in sql
    assert "ORDER BY max(indexOf(['info', 'warning', 'critical']" in sql
    sources = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p
               and isinstance(p["datasource"], dict)}
    provisioned = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert provisioned["datasources"][0]["uid"] in sources


def test_worker_and_sink_read_the_stations_file_the_stack_writes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    services = _compose()["services"]
    writer = services["stations"]["command"]
    written = writer[writer.index("--registry") + 1]
    for name in ("worker", "sink"):
        assert services[name]["environment"]["CHARGEWATCH_PROCESSOR__STATIONS_FILE"] == written
        assert services[name]["depends_on"]["stations"] == {
            "condition": "service_completed_successfully"}
    assert services["stations"]["environment"]["CHARGEWATCH_SIMULATOR__FAULTS"] == "true"
