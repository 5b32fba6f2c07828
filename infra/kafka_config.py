"""Every Kafka client's connection settings, from the one settings object.

confluent-kafka clients (producers, consumers, admin) take `client_config(...)` merged with
their own tuning keys; the Faust app takes `faust_credentials(...)` as `broker_credentials`.
No other module writes `bootstrap.servers` or a security key itself (a unit test checks), so
TLS and SASL (PLAIN, SCRAM-SHA-256/512) reach every producer, processor, sink and command,
and librdkafka's own log reaches our logging (logger `chargewatch.kafka`, each distinct line
at most once a minute: librdkafka repeats a refused connection at every reconnect).
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from infra.errors import ConfigError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from infra.settings import KafkaSettings


class RepeatFilter(logging.Filter):
    """Lets each distinct line (numbers aside: "after 0ms" and "after 3ms" are one line)
    through at most once per `quiet_s` seconds; the next one that passes says how many
    were held back meanwhile, so a flood is one line a minute that still counts.
    With `prefixes`, only loggers named so are limited (on a handler: aiokafka's, which
    repeats every failed connection ten times a second while Kafka is away)."""

    def __init__(self, quiet_s: float = 60.0, clock: Any = time.monotonic,
                 prefixes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self.prefixes = prefixes
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}
        """key -> (when it last passed, how many were held back since)."""
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.prefixes and not record.name.startswith(self.prefixes):
            return True
        message = record.getMessage()
        key = re.sub(r"\d+", "#", message)
        now = self._clock()
        with self._lock:
            passed, held = self._last.get(key, (-self.quiet_s, 0))
            if now - passed < self.quiet_s:
                self._last[key] = (passed, held + 1)
                return False
            if len(self._last) > 1000:  # many distinct lines: forget the old ones
                self._last.clear()
            self._last[key] = (now, 0)
        if held:
            record.msg, record.args = (f"{message} (and {held} more like it in the last "
                                       f"{now - passed:.0f} s)"), ()
        return True


KAFKA_LOG = logging.getLogger("chargewatch.kafka")
"""Where every confluent-kafka client logs (the `logger` key of `client_config`)."""
KAFKA_LOG.addFilter(RepeatFilter())


def client_config(kafka: KafkaSettings, bootstrap: str) -> dict[str, Any]:
    """librdkafka connection keys: bootstrap servers, security protocol, SASL and TLS files."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap,
                            "security.protocol": kafka.security_protocol,
                            "logger": KAFKA_LOG}
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
    """Ask the brokers for metadata; raise ConfigError naming the address with librdkafka's
    own first complaint (a refused connection, a failed TLS handshake, a refused SASL login)
    as soon as every broker is down, or at `timeout_s` (an address that never answers),
    instead of retrying forever. librdkafka's log is off here: the error is the one line."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[Any] = []
    admin = AdminClient({**conf, "error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            failure = str(exc.args[0].str())
        admin.poll(0)  # serves the error callback, which says why
        all_down = any(e.code() == KafkaError._ALL_BROKERS_DOWN for e in errors)
        if all_down or time.monotonic() >= deadline:
            break
    reasons = [str(e.str()) for e in errors]
    causes = [r for r in reasons if "brokers are down" not in r] or reasons or [failure]
    raise ConfigError(f"cannot use Kafka at {conf.get('bootstrap.servers')} with "
                      f"security.protocol {conf.get('security.protocol')}: {causes[0]}")
