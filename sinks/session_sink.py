"""Writers from one topic-partition's batch of messages into ClickHouse, one per topic.

Each turns `(offset, value, key)` messages into rows and inserts them in one call under
the batch's deduplication token, so a retried or rebuilt batch is dropped by ClickHouse.
Bytes that do not decode are never dropped: a sessions message becomes a DeadLetter that
the caller publishes to the dead-letters topic; a dead-letters message that does not
decode is stored as its own dead_letters row (publishing it back would loop).
The intent store (`load_intents`, `record_intents`) lives here too: it is ClickHouse I/O,
while sinks/batches.py stays pure.

CDRs (migration 0009, charging/cdr.py): in the same write, every session version of the
batch goes through `issue` against the session's CDRs already stored (plus those issued
earlier in the batch), and what it issues (a credit for the previous CDR, the new CDR) is
inserted into `cdrs` under the same token, after the sessions. The rows depend only on
the batch and on immutable stored CDRs, so a retry rebuilds the same rows (dropped by the
token) or, when the first insert landed, finds them issued and writes nothing.

Versions (migration 0004): `charging_sessions` is a VersionedCollapsingMergeTree, so the
sink writes a session only when it is newer than the stored one, together with a cancel
row (sign -1) of the stored version, in the same insert. Rollup views sum `sign * x` and
so follow corrections; a version already stored (a processor replay republishes the same
records at new offsets) is not written again. A rebuilt batch whose first insert landed
looks different after that check, but it carries the same token, so ClickHouse drops it.

First versions (migration 0013, `SessionSink`): a batch's first versions of sessions with
no stored row skip Python decoding altogether; ClickHouse reads them from one Avro
container and its views write the same session row and CDR the rules above give.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from charging.cdr import Cdr, Price, issue
from infra.clock import now_ms
from schemas.catalog import SchemaVersion, default_catalog
from schemas.codec import SINGLE_OBJECT_MAGIC, Codec
from schemas.errors import DecodeError
from schemas.records import Anomaly, ChargingSession, DeadLetter, SessionPeriod, SessionState
from sinks.avro_blocks import SOURCE_FIELDS, container, leading_string_and_int, sourced_container
from sinks.batches import Intent
from sinks.clickhouse import check_identifier
from sinks.reports import latest_live

STAGE = "sink"

SESSION_COLUMNS = [
    "session_id", "version", "sign", "state", "station_id", "connector_id", "transaction_id",
    "id_tag", "vehicle_id", "start_time", "end_time", "meter_start_wh", "meter_end_wh", "energy_wh",
    "soc_start_pct", "soc_end_pct", "max_power_w", "avg_power_w", "charging_ms", "plugged_ms",
    "cost", "currency", "event_count", "stop_reason", "flags", "_topic", "_partition", "_offset",
]
_AS_MS = {"start_time": "toUnixTimestamp64Milli(start_time)",
          "end_time": "toUnixTimestamp64Milli(end_time)"}
"""Stored times read back as epoch ms, the form `session_row` writes."""
DEAD_LETTER_COLUMNS = [
    "original", "original_key", "source_topic", "source_partition", "source_offset", "stage",
    "error", "failed_at", "_partition", "_offset",
]
ANOMALY_COLUMNS = [
    "anomaly_id", "kind", "severity", "station_id", "connector_id", "session_id", "detected_at",
    "message", "evidence", "status", "occurrences", "last_at", "updated_at", "_partition",
    "_offset",
]


CDR_COLUMNS = [
    "cdr_id", "session_id", "session_version", "issued_version", "credit",
    "credit_reference_id", "station_id", "connector_id", "id_tag", "vehicle_id", "start_time",
    "end_time", "currency", "tariff_id", "total_cost_excl_vat", "total_cost_incl_vat",
    "fixed_cost_excl_vat", "fixed_cost_incl_vat", "total_energy_wh", "energy_cost_excl_vat",
    "energy_cost_incl_vat", "total_time_ms", "time_cost_excl_vat", "time_cost_incl_vat",
    "total_parking_ms", "parking_cost_excl_vat", "parking_cost_incl_vat", "periods",
    "last_updated",
]
_CDR_MS = {"start_time": "toUnixTimestamp64Milli(start_time)",
           "end_time": "toUnixTimestamp64Milli(end_time)",
           "last_updated": "toUnixTimestamp64Milli(last_updated)"}


@dataclass(slots=True)
class Message:
    """One consumed message: what a batch is made of (not frozen: the sink builds one per
    message read, and a frozen one took 5x as long)."""

    offset: int
    value: bytes | None
    key: bytes | None = None


def dead_letter_for(topic: str, partition: int, message: Message, error: str) -> DeadLetter:
    """The dead letter of a message this sink could not use."""
    return DeadLetter(original=message.value or b"", source_topic=topic,
                      source_partition=partition, source_offset=message.offset, stage=STAGE,
                      error=error, failed_ms=now_ms(), original_key=message.key)


def _decode_failure(message: Message, decode: Any) -> tuple[Any, str | None]:
    """Decode `message.value`, or say why it cannot be used."""
    if message.value is None:
        return None, "empty message (tombstone): no record to store"
    try:
        return decode(message.value), None
    except DecodeError as exc:
        return None, str(exc) or type(exc).__name__


def session_row(session: ChargingSession, topic: str, partition: int, offset: int,
                sign: int = 1) -> tuple:
    """The charging_sessions row of one session; times stay epoch ms (DateTime64(3) takes them).

    `sign` -1 makes the cancel row of a stored version (see the module docstring).
    """
    s = session
    return (s.session_id, s.version, sign, str(s.state), s.station_id, s.connector_id,
            s.transaction_id, s.id_tag, s.vehicle_id, s.start_ms, s.end_ms, s.meter_start_wh,
            s.meter_end_wh, s.energy_wh, s.soc_start_pct, s.soc_end_pct, s.max_power_w,
            s.avg_power_w, s.charging_ms, s.plugged_ms, s.cost, s.currency, s.event_count,
            s.stop_reason, list(s.flags), topic, partition, offset)


def cdr_row(cdr: Cdr) -> tuple:
    """The cdrs row of one CDR (times as epoch ms, each period as a dict of its fields, the
    form ClickHouse reads and returns a named tuple in; migration 0014)."""
    c = cdr
    return (c.cdr_id, c.session_id, c.session_version, c.issued_version, c.credit,
            c.credit_reference_id, c.station_id, c.connector_id, c.id_tag, c.vehicle_id,
            c.start_ms, c.end_ms, c.currency, c.tariff_id, *_amounts(c.total_cost),
            *_amounts(c.total_fixed_cost), c.total_energy_wh, *_amounts(c.total_energy_cost),
            c.total_time_ms, *_amounts(c.total_time_cost), c.total_parking_ms,
            *_amounts(c.total_parking_cost), [asdict(p) for p in c.periods], c.last_updated_ms)


def _amounts(price: Price | None) -> tuple[Decimal | None, Decimal | None]:
    return (None, None) if price is None else (price.excl_vat, price.incl_vat)


def cdr_from_row(row: dict[str, Any]) -> Cdr:
    """A CDR read back from `cdrs` (CDR_COLUMNS, times as epoch ms)."""

    def price(prefix: str) -> Price | None:
        incl = row[f"{prefix}_incl_vat"]
        return None if incl is None else Price(row[f"{prefix}_excl_vat"], incl)

    total = price("total_cost")
    assert total is not None  # the column is not nullable
    return Cdr(
        cdr_id=row["cdr_id"], session_id=row["session_id"],
        session_version=int(row["session_version"]), issued_version=int(row["issued_version"]),
        credit=bool(row["credit"]), credit_reference_id=row["credit_reference_id"],
        station_id=row["station_id"], connector_id=int(row["connector_id"]),
        id_tag=row["id_tag"], vehicle_id=row["vehicle_id"], start_ms=int(row["start_time"]),
        end_ms=int(row["end_time"]), currency=row["currency"], tariff_id=row["tariff_id"],
        periods=tuple(SessionPeriod(**p) for p in row["periods"]), total_cost=total,
        total_fixed_cost=price("fixed_cost"), total_energy_wh=float(row["total_energy_wh"]),
        total_energy_cost=price("energy_cost"), total_time_ms=int(row["total_time_ms"]),
        total_time_cost=price("time_cost"), total_parking_ms=int(row["total_parking_ms"]),
        total_parking_cost=price("parking_cost"), last_updated_ms=int(row["last_updated"]))


def load_cdrs(client: Client, database: str, session_ids: Iterable[str]) -> dict[str, list[Cdr]]:
    """The issued CDRs of these sessions, each session's in issue order (FINAL: a replayed
    row counts once). A primary-key lookup: `cdrs` is ordered by (session_id, cdr_id)."""
    ids = sorted(set(session_ids))
    if not ids:
        return {}
    columns = ", ".join(_CDR_MS.get(c, c) for c in CDR_COLUMNS)
    result = client.query(
        f"SELECT {columns} FROM {{db:Identifier}}.cdrs FINAL "
        "WHERE session_id IN {ids:Array(String)}",
        parameters={"db": check_identifier(database), "ids": ids})
    found: dict[str, list[Cdr]] = {}
    for values in result.result_rows:
        cdr = cdr_from_row(dict(zip(CDR_COLUMNS, values, strict=True)))
        found.setdefault(cdr.session_id, []).append(cdr)
    for cdrs in found.values():
        cdrs.sort(key=lambda c: c.issue_order)
    return found


def dead_letter_row(letter: DeadLetter, partition: int, offset: int) -> tuple:
    """The dead_letters row of one dead letter read at (partition, offset) of its topic."""
    return (letter.original, letter.original_key, letter.source_topic, letter.source_partition,
            letter.source_offset, letter.stage, letter.error, letter.failed_ms, partition, offset)


def anomaly_row(anomaly: Anomaly, partition: int, offset: int) -> tuple:
    """The anomalies row of one anomaly read at (partition, offset) of its topic."""
    a = anomaly
    return (a.anomaly_id, a.kind, str(a.severity), a.station_id, a.connector_id, a.session_id,
            a.first_ms if a.first_ms is not None else a.detected_ms, a.message, dict(a.evidence),
            a.status, a.occurrences, a.last_ms, a.detected_ms, partition, offset)


@dataclass(frozen=True, slots=True)
class Written:
    """What one batch write did: records stored (or found stored already) and dead letters
    for the caller to publish."""

    rows: int
    dead_letters: list[DeadLetter]


class _TableSink:
    """A sink writing one topic's records into one table of `database`."""

    table: str

    def __init__(self, client: Client, database: str, codec: Codec) -> None:
        self.client = client
        self.database = check_identifier(database)
        self.codec = codec

    def write(self, topic: str, partition: int, messages: Sequence[Message],
              token: str) -> Written:
        raise NotImplementedError

    def prepare(self, topic: str, partition: int, messages: Sequence[Message]) -> Any:
        """The part of writing a batch that asks ClickHouse nothing: the runner runs it
        ahead, while the previous batch is inserted. By default the batch as it is."""
        return topic, partition, messages

    def insert(self, prepared: Any, token: str) -> Written:
        """Write a batch `prepare` returned, under `token`."""
        return self.write(*prepared, token)


@dataclass(frozen=True, slots=True)
class _SessionBatch:
    """A sessions batch split for writing (SessionSink.prepare)."""

    topic: str
    partition: int
    messages: Sequence[Message]
    firsts: dict[str, tuple[Message, bytes]]
    rest: list[Message]
    container: bytes
    """The Avro container of every first version, for when none is stored yet."""


class SessionSink(_TableSink):
    """sessions-completed → `{database}.charging_sessions` (and its CDRs into `cdrs`).

    Most of a batch is first versions of sessions not stored yet: those ClickHouse reads
    itself, as one sourced Avro container into `sessions_in` (migration 0013), whose views
    write the session row and its CDR. Python reads only each message's header, session id
    and version for that. A session that is stored already, comes in another version, or
    appears twice in the batch goes through `_write_decoded`, as does every message that
    is not a current-schema ChargingSession and a container ClickHouse refuses.

    The two parts hold different sessions, so neither depends on the other. A retry of a
    batch whose container landed finds those sessions stored and sends them through
    `_write_decoded`, which skips their rows and issues only CDRs still missing.
    """

    table = "charging_sessions"

    def __init__(self, client: Client, database: str, codec: Codec) -> None:
        super().__init__(client, database, codec)
        self._schema = default_catalog().current("ChargingSession")
        self._columns = [*(f["name"] for f in self._schema.parsed["fields"]), *SOURCE_FIELDS]
        self._header = SINGLE_OBJECT_MAGIC + self._schema.fingerprint
        self._probe_table = f"stored_probe_{uuid.uuid4().hex}"
        """Per sink: sinks sharing a client (and so its session) never mix their ids."""

    def write(self, topic: str, partition: int, messages: Sequence[Message],
              token: str) -> Written:
        return self.insert(self.prepare(topic, partition, messages), token)

    def prepare(self, topic: str, partition: int,
                messages: Sequence[Message]) -> _SessionBatch:
        firsts, rest = self._first_versions(messages)
        return _SessionBatch(topic, partition, messages, firsts, rest, self._container(
            topic, partition, [(m.offset, body) for m, body in firsts.values()]))

    def insert(self, prepared: _SessionBatch, token: str) -> Written:
        topic, partition, firsts = prepared.topic, prepared.partition, prepared.firsts
        stored = self._stored_ids(set(firsts))
        rest = [*prepared.rest, *(m for sid, (m, _) in firsts.items() if sid in stored)]
        fresh = len(firsts) - len(stored)
        if fresh:
            block = prepared.container if not stored else self._container(
                topic, partition,
                [(m.offset, body) for sid, (m, body) in firsts.items() if sid not in stored])
            try:
                self.client.raw_insert(
                    f"{self.database}.sessions_in", self._columns, insert_block=block,
                    fmt="Avro", settings={**_dedup(f"{token}-avro"), **_FAST_VIEWS})
            except Exception:  # noqa: BLE001 - decode in Python; it raises again if ClickHouse is down
                return self._write_decoded(topic, partition, prepared.messages, token)
        if not rest:
            return Written(fresh, [])
        rest.sort(key=lambda m: m.offset)
        written = self._write_decoded(topic, partition, rest, token)
        return Written(fresh + written.rows, written.dead_letters)

    def _container(self, topic: str, partition: int, bodies: list[tuple[int, bytes]]) -> bytes:
        return sourced_container(self._schema, topic, partition, bodies) if bodies else b""

    def _first_versions(self, messages: Sequence[Message]
                        ) -> tuple[dict[str, tuple[Message, bytes]], list[Message]]:
        """Version-1 messages of the current schema whose session the batch holds once
        (by session id, with their bodies), and every other message."""
        firsts: dict[str, tuple[Message, bytes]] = {}
        rest: list[Message] = []
        seen: set[str] = set()
        header = self._header
        for message in messages:
            value = message.value or b""
            try:
                if value.startswith(header):
                    start = len(header)
                else:
                    writer, start = self.codec.writer_of(value)
                    if writer is not self._schema:
                        raise ValueError(writer.label)
                session_id, version = leading_string_and_int(value, start)
            except (DecodeError, ValueError, EOFError, IndexError, UnicodeDecodeError):
                rest.append(message)
                continue
            if session_id in seen or "\n" in session_id:  # "\n": see _stored_ids
                if (first := firsts.pop(session_id, None)) is not None:
                    rest.append(first[0])
                rest.append(message)
                continue
            seen.add(session_id)
            if version == 1:
                firsts[session_id] = (message, message.value[start:])
            else:
                rest.append(message)
        return firsts, rest

    def _stored_ids(self, session_ids: set[str]) -> set[str]:
        """Which of these sessions have any row in charging_sessions.

        The ids go to ClickHouse as data, one per line into this sink's own temporary
        table, not as a query parameter: ClickHouse took 33 ms to read 25,000 ids in a
        parameter and 3 ms to insert them as lines (a temporary table lives in the client's
        session, which clickhouse-connect opens by default; it is created if missing on
        every call, since a server restart ends the session). So an id holding a newline
        never comes here.
        """
        if not session_ids:
            return set()
        table = self._probe_table
        self.client.command(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} "
                            "(session_id String) ENGINE = Memory")
        self.client.command(f"TRUNCATE TABLE {table}")
        self.client.raw_insert(table, ["session_id"], fmt="LineAsString",
                               insert_block=("\n".join(session_ids) + "\n").encode())
        result = self.client.query(
            "SELECT DISTINCT session_id FROM {db:Identifier}.charging_sessions "
            f"WHERE session_id IN {table}", parameters={"db": self.database})
        return {row[0] for row in result.result_rows}

    def _write_decoded(self, topic: str, partition: int, messages: Sequence[Message],
                       token: str) -> Written:
        """Decode in Python: check stored versions, write cancel rows and issue CDRs."""
        decoded: list[tuple[ChargingSession, int]] = []
        letters: list[DeadLetter] = []
        for message in messages:
            session, error = _decode_failure(message, self.codec.decode_session)
            if error is None:
                decoded.append((session, message.offset))
            else:
                letters.append(dead_letter_for(topic, partition, message, error))
        live = self._stored({s.session_id for s, _ in decoded})
        stored_before = set(live)
        rows: list[tuple] = []
        for session, offset in decoded:
            stored = live.get(session.session_id)
            if stored is not None and stored[1] >= session.version:
                continue  # this version (or a newer one) is already stored
            if stored is not None:
                rows.append((*stored[:2], -1, *stored[3:]))
            row = session_row(session, topic, partition, offset)
            rows.append(row)
            live[session.session_id] = row
        _insert(self.client, f"{self.database}.{self.table}", rows, SESSION_COLUMNS, token)
        _insert(self.client, f"{self.database}.cdrs", self._cdr_rows(decoded, stored_before),
                CDR_COLUMNS, token)
        return Written(len(decoded), letters)

    def _cdr_rows(self, decoded: list[tuple[ChargingSession, int]],
                  stored_before: set[str]) -> list[tuple]:
        """The CDRs this batch's session versions issue (module docstring).

        A session with no stored row before this batch has no CDR yet (its CDRs are
        inserted after its row), so only stored or corrected sessions are looked up: the
        common case, a first version, costs no query.
        """
        closed = [s for s, _ in decoded if s.state is not SessionState.OPEN and s.version >= 1]
        issued = load_cdrs(self.client, self.database,
                           {s.session_id for s in closed
                            if s.version > 1 or s.session_id in stored_before})
        rows: list[tuple] = []
        for session in closed:
            known = issued.setdefault(session.session_id, [])
            new = issue(session, known)
            known.extend(new)
            rows.extend(cdr_row(c) for c in new)
        return rows

    def _stored(self, session_ids: set[str]) -> dict[str, tuple]:
        """The stored (live, sign +1) row of each of these sessions, in SESSION_COLUMNS order."""
        if not session_ids:
            return {}
        columns = ", ".join(_AS_MS.get(c, c) for c in SESSION_COLUMNS)
        result = self.client.query(
            f"SELECT {columns} FROM {{db:Identifier}}.charging_sessions "
            "WHERE session_id IN {ids:Array(String)}",
            parameters={"db": self.database, "ids": sorted(session_ids)})
        rows: dict[str, list[dict[str, Any]]] = {}
        for row in result.result_rows:
            rows.setdefault(row[0], []).append(dict(zip(SESSION_COLUMNS, row, strict=True)))
        live = {sid: latest_live(versions) for sid, versions in rows.items()}
        return {sid: tuple(row.values()) for sid, row in live.items() if row is not None}


class DeadLetterSink(_TableSink):
    """dead-letters → `{database}.dead_letters`; its own undecodable input becomes a row too."""

    table = "dead_letters"

    def write(self, topic: str, partition: int, messages: Sequence[Message],
              token: str) -> Written:
        rows: list[tuple] = []
        for message in messages:
            letter, error = _decode_failure(message, self.codec.decode_dead_letter)
            if error is not None:
                letter = dead_letter_for(topic, partition, message, error)
            rows.append(dead_letter_row(letter, partition, message.offset))
        _insert(self.client, f"{self.database}.{self.table}", rows, DEAD_LETTER_COLUMNS, token)
        return Written(len(rows), [])


class AnomalySink(_TableSink):
    """anomalies → `{database}.anomalies`; undecodable input becomes a dead letter.

    Anomaly IDs are deterministic, so a republished anomaly is a second row with the same
    key that ReplacingMergeTree merges away (read with FINAL); no lookup before the insert.
    """

    table = "anomalies"

    def write(self, topic: str, partition: int, messages: Sequence[Message],
              token: str) -> Written:
        rows: list[tuple] = []
        letters: list[DeadLetter] = []
        for message in messages:
            anomaly, error = _decode_failure(message, self.codec.decode_anomaly)
            if error is None:
                rows.append(anomaly_row(anomaly, partition, message.offset))
            else:
                letters.append(dead_letter_for(topic, partition, message, error))
        _insert(self.client, f"{self.database}.{self.table}", rows, ANOMALY_COLUMNS, token)
        return Written(len(rows), letters)


UPDATE_COLUMNS = [
    "session_id", "station_id", "connector_id", "transaction_id", "vehicle_id", "start_time",
    "updated_time", "energy_wh", "soc_pct", "power_w", "cost", "currency",
]
UPDATE_AVRO_FIELDS = [
    "session_id", "station_id", "connector_id", "transaction_id", "vehicle_id", "start_ms",
    "end_ms", "energy_wh", "soc_end_pct", "avg_power_w", "cost", "currency",
]
"""The ChargingSession fields `session_updates_in` takes (migration 0012), UPDATE_COLUMNS
under their Avro names."""


class SessionUpdateSink(_TableSink):
    """session-updates → `{database}.session_updates`: open sessions for live monitoring.

    The table keeps the newest update of each session (ReplacingMergeTree on the update
    time) for a day (TTL); `power_w` is the session's average power so far.

    Updates are most of what the sink reads, so ClickHouse decodes them: the bodies of a
    batch go in as Avro containers, one per writer schema (sinks/avro_blocks.py, migration
    0012); Python only reads each header. A container ClickHouse refuses (a corrupt body)
    sends the batch through the decoding path, which dead-letters what does not decode.
    """

    table = "session_updates"

    def write(self, topic: str, partition: int, messages: Sequence[Message],
              token: str) -> Written:
        bodies: dict[SchemaVersion, list[bytes]] = {}
        letters: list[DeadLetter] = []
        for message in messages:
            found, error = _decode_failure(message, self.codec.writer_of)
            if error is None:
                writer, start = found
                if writer.name == "ChargingSession":
                    bodies.setdefault(writer, []).append(message.value[start:])
                    continue
                error = f"expected ChargingSession, got {writer.label}"
            letters.append(dead_letter_for(topic, partition, message, error))
        try:
            for n, (writer, group) in enumerate(bodies.items()):
                self.client.raw_insert(
                    f"{self.database}.session_updates_in", UPDATE_AVRO_FIELDS,
                    insert_block=container(writer, group), fmt="Avro",
                    settings=_dedup(f"{token}-{n}"))
        except Exception:  # noqa: BLE001 - decode in Python; it raises again if ClickHouse is down
            return self._write_decoded(topic, partition, messages, token)
        return Written(sum(map(len, bodies.values())), letters)

    def _write_decoded(self, topic: str, partition: int, messages: Sequence[Message],
                       token: str) -> Written:
        rows: list[tuple] = []
        letters: list[DeadLetter] = []
        for message in messages:
            s, error = _decode_failure(message, self.codec.decode_session)
            if error is None:
                rows.append((s.session_id, s.station_id, s.connector_id, s.transaction_id,
                             s.vehicle_id, s.start_ms, s.end_ms, s.energy_wh, s.soc_end_pct,
                             s.avg_power_w, s.cost, s.currency))
            else:
                letters.append(dead_letter_for(topic, partition, message, error))
        _insert(self.client, f"{self.database}.{self.table}", rows, UPDATE_COLUMNS, token)
        return Written(len(rows), letters)


def _dedup(token: str) -> dict[str, Any]:
    """Insert settings that make ClickHouse drop a repeat of `token`, in views too."""
    return {"insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1}


_FAST_VIEWS = {"parallel_view_processing": 1, "optimize_on_insert": 0}
"""The sessions insert feeds five views: run them side by side, and leave collapsing rows
of the same key to the merges (every reader uses FINAL or GROUP BY). x1.7 here."""


def _insert(client: Client, table: str, rows: list[tuple], columns: list[str],
            token: str | None) -> None:
    """Insert `rows` under `token` (None: no deduplication), with the column types read
    from ClickHouse once per table and column list (per insert it was a DESCRIBE each)."""
    if not rows:
        return
    key = (table, tuple(columns))
    types = _column_types.get(key)
    if types is None:
        types = _column_types[key] = client.create_insert_context(
            table, column_names=columns).column_types
    client.insert(table, rows, column_names=columns, column_types=types,
                  settings=None if token is None else _dedup(token))


_column_types: dict[tuple[str, tuple[str, ...]], Sequence[Any]] = {}


def load_intents(client: Client, database: str, topic: str) -> dict[int, Intent]:
    """The last recorded intent of every partition of `topic` (its highest range)."""
    result = client.query(
        "SELECT partition, argMax(first_offset, last_offset), max(last_offset) "
        "FROM {db:Identifier}.sink_batches WHERE topic = {topic:String} GROUP BY partition",
        parameters={"db": check_identifier(database), "topic": topic})
    return {int(p): Intent(topic, int(p), int(first), int(last))
            for p, first, last in result.result_rows}


def record_intents(client: Client, database: str, intents: Sequence[Intent]) -> None:
    """Record batches' ranges before their inserts (see sinks/DESIGN.md), in one insert."""
    _insert(client, f"{check_identifier(database)}.sink_batches",
            [(i.topic, i.partition, i.first, i.last) for i in intents],
            ["topic", "partition", "first_offset", "last_offset"], None)
