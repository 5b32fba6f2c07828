"""Load chargers for `chargewatch bench gateway`: OCPP-J frames over raw websockets.

The load runs on the same machine as the gateway, so each charger is as cheap as a charger
can be: prepared JSON frames on a plain websockets client, no `ocpp` ChargePoint (its
schema validation would cost the load what we want to measure in the gateway). One call at
a time per charger, as OCPP-J requires; half the chargers speak 1.6, half 2.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from producers.ocpp_mapping import format_time

READING_STEP_MS = 1000
"""Charger-clock time between two readings of one charger (the bench sends them faster)."""


@dataclass
class Tally:
    """What one phase of the load saw: answer latencies (ms) and message counts."""

    latencies: list[float] = field(default_factory=list)
    readings: int = 0
    transaction: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return self.readings + self.transaction


class LoadCharger:
    """One charger with one connector and one open transaction, sending readings."""

    def __init__(self, url: str, charger_id: str, version: str, t0_ms: int) -> None:
        self.url, self.charger_id, self.version, self.t0_ms = url, charger_id, version, t0_ms
        self._ws: ClientConnection | None = None
        self._ids = itertools.count()
        self._readings = 0
        self._tx: Any = f"{charger_id}-tx"

    def _at(self) -> str:
        return format_time(self.t0_ms + self._readings * READING_STEP_MS)

    async def call(self, action: str, payload: dict[str, Any], tally: Tally,
                   reading: bool = False) -> dict[str, Any]:
        """Send one CALL, wait for its CALLRESULT; a CALLERROR is noted in the tally."""
        assert self._ws is not None
        unique_id = str(next(self._ids))
        started = time.perf_counter()
        await self._ws.send(json.dumps([2, unique_id, action, payload]))
        answer = json.loads(await self._ws.recv())
        tally.latencies.append((time.perf_counter() - started) * 1000)
        if reading:
            tally.readings += 1
        else:
            tally.transaction += 1
        if answer[0] != 3 or answer[1] != unique_id:
            tally.errors.append(f"{self.charger_id} {action}: {answer}")
            return {}
        return dict(answer[2])

    async def open(self, tally: Tally) -> None:
        """Connect, boot, report the connector charging and start the transaction."""
        self._ws = await connect(f"{self.url}/{self.charger_id}",
                                 subprotocols=[self.version],  # type: ignore[list-item]
                                 ping_interval=None, open_timeout=30)
        if self.version == "ocpp1.6":
            await self.call("BootNotification", {"chargePointModel": "CW-B",
                                                 "chargePointVendor": "ChargeWatch"}, tally)
            await self.call("StatusNotification", {
                "connectorId": 1, "errorCode": "NoError", "status": "Charging",
                "timestamp": self._at()}, tally)
            started = await self.call("StartTransaction", {
                "connectorId": 1, "idTag": "RFID-BENCH", "meterStart": 0,
                "timestamp": self._at()}, tally)
            self._tx = started.get("transactionId", 0)
        else:
            await self.call("BootNotification", {
                "chargingStation": {"model": "CW-B", "vendorName": "ChargeWatch"},
                "reason": "PowerUp"}, tally)
            await self.call("TransactionEvent", self._event_201("Started", "Authorized"), tally)

    def _event_201(self, event_type: str, trigger: str) -> dict[str, Any]:
        value: dict[str, Any] = {"value": self._readings * 150.0,
                                 "measurand": "Energy.Active.Import.Register",
                                 "unitOfMeasure": {"unit": "Wh"}}
        event: dict[str, Any] = {
            "eventType": event_type, "timestamp": self._at(), "triggerReason": trigger,
            "seqNo": self._readings, "transactionInfo": {"transactionId": self._tx},
            "meterValue": [{"timestamp": self._at(), "sampledValue": [
                value, {"value": 11000.0, "measurand": "Power.Active.Import",
                        "unitOfMeasure": {"unit": "W"}}]}]}
        if event_type == "Started":
            event["evse"] = {"id": 1, "connectorId": 1}
            event["idToken"] = {"idToken": "RFID-BENCH", "type": "ISO14443"}
        return event

    async def reading(self, tally: Tally) -> None:
        """One periodic reading: 1.6 MeterValues or 2.0.1 TransactionEvent Updated."""
        self._readings += 1
        if self.version == "ocpp1.6":
            await self.call("MeterValues", {
                "connectorId": 1, "transactionId": self._tx, "meterValue": [{
                    "timestamp": self._at(), "sampledValue": [
                        {"value": str(self._readings * 150),
                         "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                        {"value": "11000", "measurand": "Power.Active.Import",
                         "unit": "W"}]}]}, tally, reading=True)
        else:
            await self.call("TransactionEvent",
                            self._event_201("Updated", "MeterValuePeriodic"), tally, reading=True)

    async def close(self, tally: Tally) -> None:
        """Stop the transaction and hang up."""
        self._readings += 1
        if self.version == "ocpp1.6":
            await self.call("StopTransaction", {
                "meterStop": self._readings * 150, "timestamp": self._at(),
                "transactionId": self._tx, "reason": "EVDisconnected"}, tally)
        else:
            event = self._event_201("Ended", "EVDeparted")
            event["transactionInfo"]["stoppedReason"] = "EVDisconnected"
            await self.call("TransactionEvent", event, tally)
        assert self._ws is not None
        await self._ws.close()


async def closed_loop(chargers: list[LoadCharger], seconds: float) -> tuple[Tally, float]:
    """Every charger sends its next reading as soon as it has the last answer: the
    gateway's capacity. Returns the tally and the seconds it covers."""
    tally = Tally()
    deadline = time.perf_counter() + seconds

    async def run(charger: LoadCharger) -> None:
        while time.perf_counter() < deadline:
            await charger.reading(tally)

    started = time.perf_counter()
    await asyncio.gather(*(run(c) for c in chargers))
    return tally, time.perf_counter() - started


async def paced(chargers: list[LoadCharger], rate: float, seconds: float) -> Tally:
    """Readings offered at `rate` messages/s in all, spread evenly over the chargers (as a
    real network's are): the answer latency of a gateway that is not saturated."""
    tally = Tally()
    interval = len(chargers) / rate
    started = time.perf_counter()

    async def run(index: int, charger: LoadCharger) -> None:
        due = started + interval * index / len(chargers)
        while due < started + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await charger.reading(tally)
            due += interval

    await asyncio.gather(*(run(i, c) for i, c in enumerate(chargers)))
    return tally
