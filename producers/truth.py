"""Ground truth of a simulation: the sessions that really happened, for an independent verifier.

File format (JSON Lines, UTF-8): the first line is `{"meta": {...}}` with the simulation's
seed, period and counts; every following line is one session with the `TrueSession` field
names, `cost` as a decimal string (money is never a float) and times as epoch milliseconds,
or `{"fault": {...}}` with the `TrueFault` field names (a simulation with faults).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from pathlib import Path

from producers.errors import ProducerError


@dataclass(frozen=True, slots=True)
class TrueSession:
    """One session exactly as the simulator's events describe it.

    `start_ms`/`end_ms` are the STARTED and ENDED event times, `energy_wh` is the ENDED
    register minus the STARTED register, the SoC values are the ones those events carry,
    and `cost` is the total incl. VAT that the reference pricer (producers/reference_pricing.py:
    written from the OCPI text, no code shared with the product's tariff engine) computes
    over the session's true readings (simple tariff: `SimplePrices.cost(energy_wh,
    end_ms - start_ms)`).
    """

    station_id: str
    connector_id: int
    transaction_id: str
    id_tag: str
    vehicle_id: str
    start_ms: int
    end_ms: int
    energy_wh: int
    soc_start_pct: float
    soc_end_pct: float
    cost: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class TrueFault:
    """One connector fault as the simulator's status events describe it: Faulted (with
    `error_code`) at `start_ms`, Available again at `end_ms`."""

    station_id: str
    connector_id: int
    start_ms: int
    end_ms: int
    error_code: str


@dataclass(frozen=True, slots=True)
class TruthMeta:
    """What was simulated and how much of it went out."""

    seed: int
    stations: int
    connectors: int
    start_ms: int
    end_ms: int
    events: int
    messages: int
    sessions: int


@dataclass(frozen=True, slots=True)
class Truth:
    meta: TruthMeta
    sessions: list[TrueSession]
    faults: list[TrueFault] = field(default_factory=list)


def session_to_dict(session: TrueSession) -> dict[str, object]:
    row = asdict(session)
    row["cost"] = str(session.cost)
    return row


def write_truth(path: Path | str, sessions: Iterable[TrueSession], meta: TruthMeta,
                faults: Iterable[TrueFault] = ()) -> int:
    """Write the meta line, one line per session, then one per fault; returns the number of
    sessions written."""
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write(json.dumps({"meta": asdict(meta)}) + "\n")
        for session in sessions:
            out.write(json.dumps(session_to_dict(session)) + "\n")
            count += 1
        for fault in faults:
            out.write(json.dumps({"fault": asdict(fault)}) + "\n")
    return count


_SESSION_FIELDS = {f.name for f in fields(TrueSession)}


def read_truth(path: Path | str) -> Truth:
    """Read a file written by `write_truth`; a malformed file fails with its line number."""
    with open(path, encoding="utf-8") as src:
        lines = src.read().splitlines()
    if not lines:
        raise ProducerError(f"{path}: empty truth file (expected a meta line first)")
    try:
        meta = TruthMeta(**json.loads(lines[0])["meta"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ProducerError(f"{path}:1: not a truth meta line: {exc}") from exc
    sessions = []
    faults = []
    for no, line in enumerate(lines[1:], start=2):
        try:
            row = json.loads(line)
            if set(row) == {"fault"}:
                faults.append(TrueFault(**row["fault"]))
                continue
            if set(row) != _SESSION_FIELDS:
                raise ValueError(f"fields {sorted(row)} != {sorted(_SESSION_FIELDS)}")
            row["cost"] = Decimal(row["cost"])
            sessions.append(TrueSession(**row))
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise ProducerError(f"{path}:{no}: not a truth session line: {exc}") from exc
    return Truth(meta=meta, sessions=sessions, faults=faults)
