"""Every Kafka client's connection settings, from the one settings object.

confluent-kafka clients (producers, consumers, admin) take `client_config(...)` merged with
their own tuning keys; the Faust app takes `faust_credentials(...)` as `broker_credentials`.
No other module writes `bootstrap.servers` or a security key itself (a unit test checks), so
TLS and SASL (PLAIN, SCRAM-SHA-256/512) reach every producer, processor, sink and command.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from infra.errors import ConfigError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from infra.settings import KafkaSettings


def client_config(kafka: KafkaSettings, bootstrap: str) -> dict[str, Any]:
    """librdkafka connection keys: bootstrap servers, security protocol, SASL and TLS files."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap,
                            "security.protocol": kafka.security_protocol}
    if kafka.security_protocol.startswith("SASL_"):
        assert kafka.sasl_password is not None  # KafkaSettings refuses SASL without one
        conf |= {"sasl.mechanism": kafka.sasl_mechanism,
                 "sasl.username": kafka.sasl_username,
                 "sasl.password": kafka.sasl_password.get_secret_value()}
    if kafka.security_protocol.endswith("SSL"):
        files = {"ssl.ca.location": kafka.ssl_ca_location,
                 "ssl.certificate.location": kafka.ssl_certificate_location,
                 "ssl.key.location": kafka.ssl_key_location}
        conf |= {key: str(path) for key, path in files.items() if path is not None}
        if kafka.ssl_key_password is not None:
            conf["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    return conf


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS context aiokafka (Faust) uses: the same CA, client certificate and key."""
    ca = kafka.ssl_ca_location
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(ca) if ca else None)
        if kafka.ssl_certificate_location is not None and kafka.ssl_key_location is not None:
            password = kafka.ssl_key_password.get_secret_value() \
                if kafka.ssl_key_password is not None else None
            context.load_cert_chain(kafka.ssl_certificate_location, kafka.ssl_key_location,
                                    password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"Kafka TLS files: {exc}") from None
    return context


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Faust's `broker_credentials` for these settings; None for PLAINTEXT."""
    from faust.auth import SASLCredentials, SSLCredentials

    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return SSLCredentials(ssl_context(kafka))
    assert kafka.sasl_password is not None
    return SASLCredentials(
        username=kafka.sasl_username, password=kafka.sasl_password.get_secret_value(),
        mechanism=kafka.sasl_mechanism,
        ssl_context=ssl_context(kafka) if protocol == "SASL_SSL" else None)


def check_connection(conf: dict[str, Any], timeout_s: float = 10.0) -> None:
    """Ask the brokers for metadata once; raise ConfigError with librdkafka's own first
    complaint (a failed TLS handshake, a refused SASL login) instead of retrying forever."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[str] = []

    def on_error(error: Any) -> None:
        errors.append(str(error.str()))

    admin = AdminClient({**conf, "error_cb": on_error, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0.5)  # serves the error callback, which usually says why
        causes = [e for e in errors if "brokers are down" not in e] or errors
        reason = causes[0] if causes else str(exc.args[0].str())
        raise ConfigError(f"cannot use Kafka at {conf.get('bootstrap.servers')} with "
                          f"security.protocol {conf.get('security.protocol')}: "
                          f"{reason}") from None
