"""One frozen settings object for every command.

Sources, strongest first: environment variables (`CHARGEWATCH_` prefix, nested groups
joined with `__`, e.g. `CHARGEWATCH_KAFKA__PARTITIONS=8`), the conventional unprefixed
`KAFKA_BOOTSTRAP_SERVERS`, `CLICKHOUSE_URL` and `SCHEMA_REGISTRY_URL`, an optional YAML,
JSON or TOML file named by `CHARGEWATCH_CONFIG` (or `--config`), then the defaults below.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from charging.anomalies import AnomalyRules
from charging.pricing import Pricing, SimpleTariff
from charging.rules import StitchRules
from charging.session_ids import IdTemplate
from charging.stations import StationRegistry, StationRegistryError
from charging.tariffs import TariffFileError, load_tariff_book
from infra.errors import ConfigError
from schemas.records import MAX_EVENTS_PER_MESSAGE

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_CONFIG_FILE: ContextVar[str | None] = ContextVar("chargewatch_config_file", default=None)
"""`--config`'s file while `load_settings` builds (the environment's CHARGEWATCH_CONFIG
otherwise): passed this way, not through os.environ, so loading settings changes nothing."""
_UNPREFIXED = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "SCHEMA_REGISTRY_URL": ("kafka", "schema_registry_url"),
    "CLICKHOUSE_URL": ("clickhouse", "url"),
}


class KafkaSettings(BaseModel):
    model_config = _FROZEN
    bootstrap_servers: str | None = Field(
        None, description="Kafka bootstrap servers; unset = start the embedded Tansu broker.")
    namespace: str = Field("chargewatch", description="Prefix of every topic name.")
    partitions: int = Field(4, ge=1, le=1000, description="Partitions of each topic.")
    schema_registry_url: str | None = Field(
        None, description="Confluent Schema Registry; set = Confluent wire format.")
    session_timeout_ms: int = Field(6000, ge=1000, description="Consumer group session timeout.")
    fetch_max_wait_ms: int = Field(
        50, ge=1, le=5000, description="Longest a consumer's fetch waits for data: a bound on "
        "each hop's latency where the broker does not answer a waiting fetch early.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects (infra/kafka_config.py).")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism; required with SASL_*.")
    sasl_username: str | None = Field(None, description="SASL user; required with SASL_*.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    ssl_ca_location: Path | None = Field(
        None, description="CA bundle (PEM) of the brokers' certificates; unset = system CAs.")
    ssl_certificate_location: Path | None = Field(
        None, description="Client certificate (PEM) for brokers that require mutual TLS.")
    ssl_key_location: Path | None = Field(None, description="Client certificate's key (PEM).")
    ssl_key_password: SecretStr | None = Field(None, description="Password of that key (secret).")

    @model_validator(mode="after")
    def _complete_security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            missing = [name for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                       if not getattr(self, name)]
            if missing:
                raise ValueError(f"security_protocol {self.security_protocol} needs "
                                 f"{', '.join(missing)}")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("ssl_certificate_location and ssl_key_location go together")
        return self

    def secret_values(self) -> dict[str, str]:
        """The secrets in clear, for a child process's config file (never for display)."""
        return {name: secret.get_secret_value()
                for name in ("sasl_password", "ssl_key_password")
                if (secret := getattr(self, name)) is not None}


class ClickHouseSettings(BaseModel):
    model_config = _FROZEN
    url: SecretStr = Field(
        SecretStr("chdb://.data/chdb"),
        description="chdb:///path (embedded) or http(s)://user:password@host:port.")
    database: str = Field("chargewatch", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    cluster: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="ClickHouse cluster name: migrations run ON CLUSTER with Replicated engines.")
    bi_user: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Read-only login for BI tools, created by `chargewatch grant`.")
    bi_password: SecretStr | None = Field(None, description="Password of bi_user (secret).")
    sink_user: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Insert-only login for the sink, created by `chargewatch grant`.")
    sink_password: SecretStr | None = Field(None, description="Password of sink_user (secret).")

    @model_validator(mode="after")
    def _user_has_password(self) -> ClickHouseSettings:
        for user, password in (("bi_user", self.bi_password), ("sink_user", self.sink_password)):
            if getattr(self, user) and not (password and password.get_secret_value()):
                raise ValueError(f"{user} is set but its password is not")
        return self


class TariffSettings(BaseModel):
    model_config = _FROZEN
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency.")
    per_kwh: Decimal = Field(Decimal("0.39"), ge=0)
    per_minute: Decimal = Field(Decimal("0.02"), ge=0)


class OcpiSettings(BaseModel):
    """Who this CPO is in OCPI roaming: on every CDR and tariff `chargewatch cdr` prints."""

    model_config = _FROZEN
    country_code: str | None = Field(
        None, pattern=r"^[A-Z]{2}$",
        description="ISO 3166-1 alpha-2 country code of the CPO (OCPI `country_code`).")
    party_id: str | None = Field(
        None, pattern=r"^[A-Z0-9]{3}$",
        description="The CPO's party id (ISO 15118, 3 characters; OCPI `party_id`).")


class ProcessorSettings(BaseModel):
    model_config = _FROZEN
    id_template: str = Field("EV-{num:09d}", description="Session ID template (docs/settings.md).")

    @field_validator("id_template")
    @classmethod
    def _unique_by_construction(cls, value: str) -> str:
        IdTemplate.parse(value)  # InvalidIdTemplate is a ValueError: a clear config error
        return value

    batch_max: int = Field(4000, ge=1, description="Messages per processing batch.")
    stitching_processes: int = Field(
        2, ge=1, le=64, description="Processes that decode, stitch and publish for a worker, "
        "partition p going to process p % n (processors/stitching_process.py).")
    batch_within_s: float = Field(0.1, gt=0, description="Longest the oldest waiting "
                                  "event waits for its batch to fill.")
    web_port: int = Field(6066, ge=0, le=65535)
    web_host: str = Field("127.0.0.1", description="Address the web port binds (0.0.0.0: "
                          "reachable by Prometheus and health checks from other hosts).")
    stall_s: float = Field(
        60.0, gt=0, description="Unhealthy when a partition with lag has not moved this long.")
    expire_every_s: float = Field(
        30.0, gt=0, description="How often open sessions are checked for inactivity.")
    data_dir: Path = Path(".data/faust")
    tariff: TariffSettings = TariffSettings()
    rules: StitchRules = Field(
        StitchRules(), description="Thresholds for messy input: every field of "
        "charging/rules.py `StitchRules`, with its defaults.")
    anomalies: AnomalyRules = Field(
        AnomalyRules(), description="Thresholds of the anomaly detectors: every field of "
        "charging/anomalies.py `AnomalyRules`, with its defaults.")
    stations_file: Path | None = Field(
        None, description="Station registry (YAML/JSON: rated power per connector, model, "
                          "firmware) for plausibility checks.")
    tariff_file: Path | None = Field(
        None, description="OCPI 2.2.1 tariff file (YAML or JSON, e.g. tariffs/example.yaml); "
                          "unset: the simple tariff in processor.tariff.")


class SinkSettings(BaseModel):
    model_config = _FROZEN
    batch_size: int = Field(50000, ge=1, description="Most rows in one insert.")
    batch_ms: int = Field(500, ge=1, description="Longest a row waits before its insert.")
    coalesce: bool = Field(True, description="One insert per topic for the batches of its "
                           "partitions that are ready together (sinks/DESIGN.md).")
    web_port: int = Field(6067, ge=0, le=65535)
    web_host: str = Field("127.0.0.1", description="Address the web port binds.")
    stall_s: float = Field(
        60.0, gt=0, description="Unhealthy when a partition with lag has committed nothing "
                                "this long.")


class SimulatorSettings(BaseModel):
    model_config = _FROZEN
    seed: int = 7
    stations: int = Field(200, ge=1)
    duration_h: float = Field(24.0, gt=0)
    meter_interval_s: int = Field(60, ge=1)
    events_per_message: int = Field(20, ge=1, le=1000)
    start: str = Field("2026-11-23T00:00:00Z", description="Simulated start, UTC.")
    faults: bool = Field(False, description="Connectors fail and get repaired, more often on "
                         "some models and firmware (the truth lists every fault).")


class GatewaySettings(BaseModel):
    model_config = _FROZEN
    host: str = Field("0.0.0.0", description="Address the OCPP gateway listens on.")
    port: int = Field(9000, ge=0, le=65535,
                      description="OCPP websocket port: ws://host:port/<charge point id>.")
    web_port: int = Field(6068, ge=0, le=65535,
                          description="/health, /ready and /metrics (0: a free port).")
    web_host: str = Field("127.0.0.1", description="Address the web port binds.")
    heartbeat_interval_s: int = Field(300, ge=1,
                                      description="Heartbeat interval told to chargers at boot.")
    security_profile: int = Field(
        0, ge=0, le=2, description="OCPP security profile: 0 none, 1 HTTP Basic per charger, "
                       "2 TLS (wss://) + Basic.")
    chargers_file: Path | None = Field(
        None, description="Charger allow-list (YAML, hashed passwords); profiles 1 and 2.")
    tls_cert_file: Path | None = Field(None, description="Server certificate (PEM); profile 2.")
    tls_key_file: Path | None = Field(None, description="Server key (PEM); profile 2.")
    max_message_bytes: int = Field(65_536, ge=1024, description="Largest OCPP message "
                                   "accepted; larger closes the connection (1009).")
    max_messages_per_s: float = Field(10.0, gt=0, description="Sustained messages a second "
                                      "per charger; over it the connection is closed (1008).")
    burst_messages: int = Field(50, ge=1, description="Messages a charger may send at once "
                                "above that rate (token bucket size).")

    @model_validator(mode="after")
    def _profile_has_its_files(self) -> GatewaySettings:
        if self.security_profile >= 1 and self.chargers_file is None:
            raise ValueError(f"security_profile {self.security_profile} needs chargers_file")
        if self.security_profile == 2 and (self.tls_cert_file is None or self.tls_key_file is None):
            raise ValueError("security_profile 2 needs tls_cert_file and tls_key_file")
        return self


class PublisherSettings(BaseModel):
    """How the gateway, replay and the simulator gather events into meter-events messages."""

    model_config = _FROZEN
    window_ms: int = Field(
        20, ge=0, le=1000, description="The gateway sends the events bound for one partition "
        "within this many ms as one message (chargers still get their answer only after Kafka "
        "has their events); replay and simulate cut by window_max_events only, so a file "
        "published twice gives the same messages; 0 = one message per publish call.")
    window_max_events: int = Field(
        500, ge=1, le=MAX_EVENTS_PER_MESSAGE,
        description="A partition's window is cut at this many events.")


class HealthSettings(BaseModel):
    model_config = _FROZEN
    unreachable_s: float = Field(
        30.0, gt=0, description="A worker answers 503 once Kafka or ClickHouse has failed "
                                "this long with no success in between.")
    probe_every_s: float = Field(5.0, gt=0, description="How often Kafka is asked for metadata.")
    probe_timeout_s: float = Field(5.0, gt=0, description="Longest one such ask waits.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHARGEWATCH_", env_nested_delimiter="__", frozen=True, extra="ignore")

    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    processor: ProcessorSettings = ProcessorSettings()
    sink: SinkSettings = SinkSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    gateway: GatewaySettings = GatewaySettings()
    publisher: PublisherSettings = PublisherSettings()
    health: HealthSettings = HealthSettings()
    ocpi: OcpiSettings = OcpiSettings()
    log_level: str = Field("WARNING", description="Python log level of our loggers.")
    log_format: Literal["text", "json"] = Field(
        "text", description="text for people, json for log pipelines (one object per line).")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get() or os.environ.get("CHARGEWATCH_CONFIG")
        if config_file:
            sources.append(_file_source(settings_cls, Path(config_file)))
        return tuple(sources)

    def pricing(self) -> Pricing:
        """The tariff file's book when one is configured, else the simple tariff."""
        path = self.processor.tariff_file
        if path is not None:
            try:
                return load_tariff_book(path)
            except TariffFileError as exc:
                raise ConfigError(str(exc)) from None
        tariff = self.processor.tariff
        return SimpleTariff(tariff.currency, tariff.per_kwh, tariff.per_minute)

    def stitch_rules(self) -> StitchRules:
        return self.processor.rules

    def anomaly_rules(self) -> AnomalyRules:
        return self.processor.anomalies

    def station_registry(self) -> StationRegistry | None:
        path = self.processor.stations_file
        if path is None:
            return None
        try:
            return StationRegistry.load(path)
        except StationRegistryError as exc:
            raise ConfigError(str(exc)) from None

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets masked, for `config show`."""
        data = self.model_dump(mode="json")
        data["clickhouse"]["url"] = mask_url(self.clickhouse.url.get_secret_value())
        return data


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in {".yaml", ".yml"}:
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    if suffix == ".json":
        return JsonConfigSettingsSource(settings_cls, json_file=path)
    if suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    raise ConfigError(f"config file {path}: use .yaml, .json or .toml")


def mask_url(url: str) -> str:
    """Hide the password of a `scheme://user:password@host` URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; any invalid value raises ConfigError with one clear line."""
    token = _CONFIG_FILE.set(str(config_file) if config_file is not None else None)
    try:
        return _build(overrides)
    finally:
        _CONFIG_FILE.reset(token)


def _build(overrides: dict[str, Any]) -> Settings:
    nested: dict[str, dict[str, Any]] = {}
    for env_name, (group, key) in _UNPREFIXED.items():
        prefixed = f"CHARGEWATCH_{group.upper()}__{key.upper()}"
        if env_name in os.environ and prefixed not in os.environ:
            nested.setdefault(group, {})[key] = os.environ[env_name]
    try:
        base = Settings()
        if not nested and not overrides:
            return base
        data = base.model_dump()
        for group, values in nested.items():
            data[group] = {**data[group], **values}
        data["clickhouse"]["url"] = data["clickhouse"]["url"].get_secret_value() \
            if isinstance(data["clickhouse"]["url"], SecretStr) else data["clickhouse"]["url"]
        for key, value in overrides.items():
            merge = isinstance(value, dict) and isinstance(data.get(key), dict)
            data[key] = {**data[key], **value} if merge else value
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {where}: {message}") from None
