"""Kafka TLS/SASL settings map to the right librdkafka keys and Faust credentials, secrets stay
masked for display but reach child processes, and no Kafka client in the code is built
without going through `client_config`."""

from __future__ import annotations

import ast
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from chargewatch.cli import main
from chargewatch.worker import write_config
from infra.errors import ConfigError
from infra.kafka_config import KAFKA_LOG, RepeatFilter, client_config, faust_credentials
from infra.settings import KafkaSettings, load_settings
from tests.tls import self_signed

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SECURITY_KEYS = {"sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location",
                 "ssl.certificate.location", "ssl.key.location", "ssl.key.password"}


def _kafka(**values: Any) -> KafkaSettings:
    return load_settings(kafka=values).kafka


def _connection(conf: dict[str, Any]) -> dict[str, Any]:
    """The connection keys of a client config; every config logs through our logging."""
    assert conf["logger"] is KAFKA_LOG
    return {key: value for key, value in conf.items() if key != "logger"}


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert _connection(client_config(KafkaSettings(), "k:9092")) == {
        "bootstrap.servers": "k:9092", "security.protocol": "PLAINTEXT"}
    assert faust_credentials(KafkaSettings()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext(mechanism: str) -> None:
    kafka = _kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                   sasl_username="app", sasl_password="pw")
    assert _connection(client_config(kafka, "k:9092")) == {
        "bootstrap.servers": "k:9092", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism, "sasl.username": "app", "sasl.password": "pw"}
    credentials = faust_credentials(kafka)
    assert isinstance(credentials, SASLCredentials)
    assert credentials_to_aiokafka_auth(credentials) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
        "sasl_plain_username": "app", "sasl_plain_password": "pw", "ssl_context": None}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_with_a_private_ca(tmp_path: Path, mechanism: str) -> None:
    ca, _ = self_signed(tmp_path)
    kafka = _kafka(security_protocol="SASL_SSL", sasl_mechanism=mechanism,
                   sasl_username="app", sasl_password="pw", ssl_ca_location=str(ca))
    assert _connection(client_config(kafka, "k:9093")) == {
        "bootstrap.servers": "k:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism, "sasl.username": "app", "sasl.password": "pw",
        "ssl.ca.location": str(ca)}
    auth = credentials_to_aiokafka_auth(faust_credentials(kafka))
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", mechanism)
    context = auth["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(c["subject"] == ((("commonName", "localhost"),),)
               for c in context.get_ca_certs())


def test_ssl_with_a_client_certificate(tmp_path: Path) -> None:
    ca, _ = self_signed(tmp_path, "ca")
    cert, key = self_signed(tmp_path, "client")
    kafka = _kafka(security_protocol="SSL", ssl_ca_location=str(ca),
                   ssl_certificate_location=str(cert), ssl_key_location=str(key),
                   ssl_key_password="kp")
    conf = client_config(kafka, "k:9093")
    assert _connection(conf) == {"bootstrap.servers": "k:9093", "security.protocol": "SSL",
                    "ssl.ca.location": str(ca), "ssl.certificate.location": str(cert),
                    "ssl.key.location": str(key), "ssl.key.password": "kp"}
    assert not any(key.startswith("sasl.") for key in conf)
    credentials = faust_credentials(kafka)  # an unencrypted key ignores the password
    assert isinstance(credentials, SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_tls_files_do_not_leak_into_a_plaintext_config(tmp_path: Path) -> None:
    ca, _ = self_signed(tmp_path)
    kafka = _kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                   sasl_username="a", sasl_password="b", ssl_ca_location=str(ca))
    assert "ssl.ca.location" not in client_config(kafka, "k")
    assert not SECURITY_KEYS & set(client_config(_kafka(sasl_username="a"), "k"))


def test_unreadable_tls_files_are_a_config_error(tmp_path: Path) -> None:
    kafka = _kafka(security_protocol="SSL", ssl_ca_location=str(tmp_path / "absent.pem"))
    with pytest.raises(ConfigError, match="Kafka TLS files"):
        faust_credentials(kafka)


@pytest.mark.parametrize(("values", "message"), [
    ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism, sasl_username, sasl_password"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
      "sasl_username": "a"}, "needs sasl_password"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "sasl_username": "a",
      "sasl_password": "b"}, "sasl_mechanism"),
    ({"security_protocol": "TLS"}, "security_protocol"),
    ({"security_protocol": "SSL", "ssl_certificate_location": "c.pem"}, "go together"),
])
def test_incomplete_security_settings_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(kafka=values)


def test_secrets_are_masked_in_config_show_but_reach_the_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = {f"CHARGEWATCH_KAFKA__{name}": value for name, value in {
        "SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512",
        "SASL_USERNAME": "chargewatch", "SASL_PASSWORD": "kafka-s3cret-pw",
        "SSL_KEY_PASSWORD": "key-s3cret-pw"}.items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for args in (["config", "show"], ["config", "show", "--json"]):
        assert main(args) == 0
        shown = capsys.readouterr().out
        assert "kafka-s3cret-pw" not in shown and "key-s3cret-pw" not in shown
        assert "SCRAM-SHA-512" in shown
    settings = load_settings()
    path = write_config(settings, tmp_path / "worker.json")
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert (data["kafka"]["sasl_password"], data["kafka"]["ssl_key_password"]) == (
        "kafka-s3cret-pw", "key-s3cret-pw")
    for name in env:  # the worker process reads the file, not this environment
        monkeypatch.delenv(name)
    monkeypatch.setenv("CHARGEWATCH_CONFIG", str(path))
    assert load_settings().kafka == settings.kafka


def _client_dicts(tree: ast.AST) -> list[int]:
    """Lines of dict literals with a literal "bootstrap.servers" key."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Dict)
            and any(isinstance(k, ast.Constant) and k.value == "bootstrap.servers"
                    for k in node.keys)]


def _faust_apps_without_credentials(tree: ast.AST) -> list[int]:
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "App"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "faust"
            and "broker_credentials" not in {k.arg for k in node.keywords}]


EXEMPT = {"infra/kafka_config.py": "the one place that writes the keys",
          "chargewatch/embedded.py": "the embedded broker's own readiness probe: it starts "
                                     "a plaintext loopback broker, never a configured one"}


def test_every_kafka_client_goes_through_client_config() -> None:
    offenders = []
    for package in ("chargewatch", "producers", "processors", "sinks", "schemas"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in EXEMPT:
                continue
            tree = ast.parse(path.read_text(), relative)
            offenders += [f"{relative}:{line} builds a Kafka client config by hand"
                          for line in _client_dicts(tree)]
            offenders += [f"{relative}:{line} faust.App without broker_credentials"
                          for line in _faust_apps_without_credentials(tree)]
    assert offenders == []


def test_the_source_check_finds_what_it_looks_for() -> None:
    tree = ast.parse('Consumer({"bootstrap.servers": b, "group.id": g})\n'
                     'faust.App("x", broker="kafka://b")\n'
                     'faust.App("y", broker_credentials=None)\n')
    assert _client_dicts(tree) == [1]
    assert _faust_apps_without_credentials(tree) == [2]


def test_librdkafka_repeats_are_logged_once_a_minute() -> None:
    """A refused connection is retried (and logged by librdkafka) at every reconnect."""
    now = [0.0]
    repeats = RepeatFilter(quiet_s=60, clock=lambda: now[0])

    def passes(message: str) -> bool:
        return repeats.filter(logging.LogRecord("chargewatch.kafka", logging.ERROR, "", 0,
                                                message, None, None))

    refused = "FAIL [thrd:k:9092/bootstrap]: Connect to k:9092 failed (after {}ms)"
    assert passes(refused.format(0))
    now[0] = 10.0
    assert not passes(refused.format(3))  # the same line, numbers aside
    assert passes("FAIL [thrd:k:9092/bootstrap]: SSL handshake failed")
    now[0] = 61.0
    assert passes(refused.format(7))


def test_the_sinks_dead_letter_producer_logs_through_ours_and_connects_alike() -> None:
    """The sink's producer shares the consumer's connection keys and its logger, and none
    of the consumer's own keys (librdkafka warns on them)."""
    from sinks.runner import producer_config

    kafka = _kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                   sasl_username="app", sasl_password="pw")
    connection = client_config(kafka, "k:9092")
    conf = producer_config({**connection, "group.id": "g", "enable.auto.commit": False})
    assert conf == connection
    assert conf["logger"] is KAFKA_LOG
