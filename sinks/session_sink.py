"""sessions-completed → `charging_sessions`, and each session's CDRs → `cdrs`.

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
container and its views write the same session row and CDR the rules above give (both
paths derive from sinks/row_mappings.py; the views from sinks/derived_views.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from charging.cdr import issue
from schemas.catalog import default_catalog
from schemas.codec import SINGLE_OBJECT_MAGIC, Codec
from schemas.errors import DecodeError
from schemas.records import ChargingSession, DeadLetter, SessionState
from sinks.avro_blocks import leading_string_and_int, sourced_container
from sinks.derived_views import SESSIONS_IN
from sinks.reports import latest_live
from sinks.row_mappings import cdr_row, session_row
from sinks.session_rows import CDR_COLUMNS, SESSION_AS_MS, SESSION_COLUMNS, load_cdrs
from sinks.table_sink import (
    Message,
    Part,
    TableSink,
    Written,
    dead_letter_for,
    decode_failure,
    dedup,
    insert_rows,
)

_FAST_VIEWS = {"parallel_view_processing": 1, "optimize_on_insert": 0}
"""The sessions insert feeds five views: run them side by side, and leave collapsing rows
of the same key to the merges (every reader uses FINAL or GROUP BY). x1.7 here."""


Sourced = tuple[int, Message]
"""A message with the partition it was read from (a coalesced batch holds several)."""


@dataclass(frozen=True, slots=True)
class _SessionBatch:
    """A sessions batch split for writing (SessionSink.prepare)."""

    topic: str
    parts: Sequence[Part]
    firsts: dict[str, tuple[int, Message, bytes]]
    rest: list[Sourced]
    container: bytes
    """The Avro container of every first version, for when none is stored yet."""


class SessionSink(TableSink):
    """sessions-completed → `{database}.charging_sessions` (and its CDRs into `cdrs`).

    Most of a batch is first versions of sessions not stored yet: those ClickHouse reads
    itself, as one sourced Avro container into `sessions_in` (sinks/derived_views.py), whose views
    write the session row and its CDR. Python reads only each message's header, session id
    and version for that. A session that is stored already, comes in another version, or
    appears twice in the batch goes through `_write_decoded`, as does every message that
    is not a current-schema ChargingSession and a container ClickHouse refuses.

    The two parts hold different sessions, so neither depends on the other. A retry of a
    batch whose container landed finds those sessions stored and sends them through
    `_write_decoded`, which skips their rows and issues only CDRs still missing. So writing
    a batch again writes only what is missing, whatever its token (`stored_offsets`).
    """

    table = "charging_sessions"

    def __init__(self, client: Client, database: str, codec: Codec) -> None:
        super().__init__(client, database, codec)
        self._schema = default_catalog().current("ChargingSession")
        self._columns = SESSIONS_IN.columns
        self._header = SINGLE_OBJECT_MAGIC + self._schema.fingerprint
        self._probe_table = f"stored_probe_{uuid.uuid4().hex}"
        """Per sink: sinks sharing a client (and so its session) never mix their ids."""

    def prepare(self, topic: str, parts: Sequence[Part]) -> _SessionBatch:
        firsts, rest = self._first_versions(parts)
        return _SessionBatch(topic, parts, firsts, rest, self._container(
            topic, [(p, m.offset, body) for p, m, body in firsts.values()]))

    def insert(self, prepared: _SessionBatch, token: str) -> Written:
        topic, firsts = prepared.topic, prepared.firsts
        stored = self._stored_ids(set(firsts))
        rest = [*prepared.rest, *((p, m) for sid, (p, m, _) in firsts.items() if sid in stored)]
        fresh = len(firsts) - len(stored)
        if fresh:
            block = prepared.container if not stored else self._container(
                topic, [(p, m.offset, body) for sid, (p, m, body) in firsts.items()
                        if sid not in stored])
            try:
                self.client.raw_insert(
                    f"{self.database}.sessions_in", self._columns, insert_block=block,
                    fmt="Avro", settings={**dedup(f"{token}-avro"), **_FAST_VIEWS})
            except Exception:  # noqa: BLE001 - decode in Python; it raises again if ClickHouse is down
                return self._write_decoded(topic, prepared.parts, token)
        if not rest:
            return Written(fresh, [])
        rest.sort(key=lambda pm: (pm[0], pm[1].offset))
        parts: dict[int, list[Message]] = {}
        for partition, message in rest:
            parts.setdefault(partition, []).append(message)
        written = self._write_decoded(topic, list(parts.items()), token)
        return Written(fresh + written.rows, written.dead_letters)

    def stored_offsets(self, partition: int, first: int, last: int) -> None:
        """None: writing a batch again writes only what is missing (class docstring)."""
        return None

    def _container(self, topic: str, bodies: list[tuple[int, int, bytes]]) -> bytes:
        return sourced_container(self._schema, topic, bodies) if bodies else b""

    def _first_versions(self, parts: Sequence[Part]
                        ) -> tuple[dict[str, tuple[int, Message, bytes]], list[Sourced]]:
        """Version-1 messages of the current schema whose session the batch holds once
        (by session id, with their partitions and bodies), and every other message."""
        firsts: dict[str, tuple[int, Message, bytes]] = {}
        rest: list[Sourced] = []
        seen: set[str] = set()
        header = self._header
        for partition, messages in parts:
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
                    rest.append((partition, message))
                    continue
                if session_id in seen or "\n" in session_id:  # "\n": see _stored_ids
                    if (first := firsts.pop(session_id, None)) is not None:
                        rest.append(first[:2])
                    rest.append((partition, message))
                    continue
                seen.add(session_id)
                if version == 1:
                    firsts[session_id] = (partition, message, value[start:])
                else:
                    rest.append((partition, message))
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

    def _write_decoded(self, topic: str, parts: Sequence[Part], token: str) -> Written:
        """Decode in Python: check stored versions, write cancel rows and issue CDRs."""
        decoded: list[tuple[ChargingSession, int, int]] = []
        letters: list[DeadLetter] = []
        for partition, messages in parts:
            for message in messages:
                session, error = decode_failure(message, self.codec.decode_session)
                if error is None:
                    decoded.append((session, partition, message.offset))
                else:
                    letters.append(dead_letter_for(topic, partition, message, error))
        live = self._stored({s.session_id for s, _, _ in decoded})
        stored_before = set(live)
        rows: list[tuple] = []
        for session, partition, offset in decoded:
            stored = live.get(session.session_id)
            if stored is not None and stored[1] >= session.version:
                continue  # this version (or a newer one) is already stored
            if stored is not None:
                rows.append((*stored[:2], -1, *stored[3:]))
            row = session_row(session, topic, partition, offset)
            rows.append(row)
            live[session.session_id] = row
        insert_rows(self.client, f"{self.database}.{self.table}", rows, SESSION_COLUMNS, token)
        insert_rows(self.client, f"{self.database}.cdrs", self._cdr_rows(decoded, stored_before),
                CDR_COLUMNS, token)
        return Written(len(decoded), letters)

    def _cdr_rows(self, decoded: list[tuple[ChargingSession, int, int]],
                  stored_before: set[str]) -> list[tuple]:
        """The CDRs this batch's session versions issue (module docstring).

        A session with no stored row before this batch has no CDR yet (its CDRs are
        inserted after its row), so only stored or corrected sessions are looked up: the
        common case, a first version, costs no query.
        """
        closed = [s for s, _, _ in decoded if s.state is not SessionState.OPEN and s.version >= 1]
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
        columns = ", ".join(SESSION_AS_MS.get(c, c) for c in SESSION_COLUMNS)
        result = self.client.query(
            f"SELECT {columns} FROM {{db:Identifier}}.charging_sessions "
            "WHERE session_id IN {ids:Array(String)}",
            parameters={"db": self.database, "ids": sorted(session_ids)})
        rows: dict[str, list[dict[str, Any]]] = {}
        for row in result.result_rows:
            rows.setdefault(row[0], []).append(dict(zip(SESSION_COLUMNS, row, strict=True)))
        live = {sid: latest_live(versions) for sid, versions in rows.items()}
        return {sid: tuple(row.values()) for sid, row in live.items() if row is not None}
