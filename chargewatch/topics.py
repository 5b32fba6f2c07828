"""Topic names and creation. Every name carries the configured namespace prefix."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True, slots=True)
class Topics:
    namespace: str = "chargewatch"

    def _name(self, base: str) -> str:
        return f"{self.namespace}.{base}" if self.namespace else base

    @property
    def meter_events(self) -> str:
        return self._name("meter-events")

    @property
    def session_updates(self) -> str:
        return self._name("session-updates")

    @property
    def sessions_completed(self) -> str:
        return self._name("sessions-completed")

    @property
    def anomalies(self) -> str:
        return self._name("anomalies")

    @property
    def dead_letters(self) -> str:
        return self._name("dead-letters")

    @property
    def connector_status(self) -> str:
        """Every applied connector status (key = station id): the status history's source."""
        return self._name("connector-status")

    @property
    def gateway_transactions(self) -> str:
        """The OCPP gateway's open transactions per charger (compacted; ocpp_transactions)."""
        return self._name("gateway-transactions")

    def all(self) -> list[str]:
        return [self.meter_events, self.session_updates, self.sessions_completed,
                self.anomalies, self.dead_letters, self.connector_status,
                self.gateway_transactions]


COMPACTED = {"cleanup.policy": "compact", "retention.ms": "-1"}
RETAINED = {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)}


def ensure_topics(admin_conf: dict[str, str], topics: Topics, partitions: int) -> None:
    """Create the pipeline's topics if missing, with the configs clients read set explicitly.

    Tansu returns only configs that were set explicitly, so both policies are always set.
    """
    admin = AdminClient(admin_conf)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(name, partitions, 1,
                 config=COMPACTED if name in (topics.session_updates, topics.gateway_transactions)
                 else RETAINED)
        for name in topics.all() if name not in existing
    ]
    if not wanted:
        return
    for future in admin.create_topics(wanted, operation_timeout=10).values():
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
