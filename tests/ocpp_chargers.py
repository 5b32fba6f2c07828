"""Simulated chargers for the gateway tests: the `ocpp` library's own client classes over
real websockets, driving one charging session each (1.6-J and 2.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect

from infra.clock import now_ms
from producers.ocpp_mapping import format_time

MINUTE = 60_000
T0 = now_ms() // MINUTE * MINUTE - 60 * MINUTE
"""The simulated start: an hour before the product's now, so that the chargers' clocks
agree with the gateway's on any date (the gateway stamps receive time from that clock)."""


def at(minutes: float) -> str:
    return format_time(T0 + int(minutes * MINUTE))


@contextlib.asynccontextmanager
async def charger(url: str, charger_id: str, version: str) -> AsyncIterator[Any]:
    """A connected charge point (its `call` sends a request and returns the response)."""
    cls = ChargePoint16 if version == "ocpp1.6" else ChargePoint201
    target = f"{url}/{quote(charger_id, safe='')}"
    async with connect(target, subprotocols=[version]) as ws:  # type: ignore[list-item]
        cp = cls(charger_id, ws, response_timeout=15)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@dataclass(frozen=True)
class Session16:
    """What a 1.6 charger sent and got: the values the tests compare with."""

    transaction_id: int
    boot: Any
    heartbeat: Any
    authorize: Any
    stop: Any


async def run_session_16(cp: Any, id_tag: str = "RFID-16", connector: int = 1) -> Session16:
    """Boot, status, authorize, start at 1000 Wh, two meter values, stop at 23.5 kWh."""
    boot = await cp.call(call16.BootNotification(charge_point_model="CW-1",
                                                 charge_point_vendor="ChargeWatch"))
    heartbeat = await cp.call(call16.Heartbeat())
    await cp.call(call16.StatusNotification(connector_id=connector, error_code="NoError",
                                            status="Preparing", timestamp=at(0)))
    authorize = await cp.call(call16.Authorize(id_tag=id_tag))
    start = await cp.call(call16.StartTransaction(connector_id=connector, id_tag=id_tag,
                                                  meter_start=1000, timestamp=at(1)))
    tx = start.transaction_id
    await cp.call(call16.MeterValues(connector_id=connector, transaction_id=tx, meter_value=[
        {"timestamp": at(11), "sampledValue": [
            {"value": "8.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
            {"value": "11", "measurand": "Power.Active.Import", "unit": "kW"},
            {"value": "42", "measurand": "SoC", "unit": "Percent", "location": "EV"},
            {"value": "16.1", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
            {"value": "15.9", "measurand": "Current.Import", "unit": "A", "phase": "L2"},
            {"value": "230", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
            {"value": "232", "measurand": "Voltage", "unit": "V", "phase": "L2-N"},
        ]},
        {"timestamp": at(21), "sampledValue": [{"value": "16000"}]},
    ]))
    stop = await cp.call(call16.StopTransaction(
        meter_stop=23500, timestamp=at(31), transaction_id=tx, reason="EVDisconnected",
        id_tag=id_tag, transaction_data=[{"timestamp": at(31), "sampledValue": [
            {"value": "23500", "context": "Transaction.End"},
            {"value": "80", "measurand": "SoC", "unit": "Percent", "location": "EV",
             "context": "Transaction.End"}]}]))
    return Session16(tx, boot, heartbeat, authorize, stop)


async def run_session_201(cp: Any, tx: str = "tx-201-a", id_token: str = "RFID-201",
                          evse: int = 2) -> Any:
    """Boot, status, authorize, Started (2 kWh), Updated, Ended (12 kWh); returns the boot."""
    boot = await cp.call(call201.BootNotification(
        charging_station={"model": "CW-2", "vendor_name": "ChargeWatch"}, reason="PowerUp"))
    await cp.call(call201.StatusNotification(timestamp=at(0), connector_status="Occupied",
                                             evse_id=evse, connector_id=1))
    token = {"id_token": id_token, "type": "ISO14443",
             "additional_info": [{"additional_id_token": "WVWZZZ1JZXW000001", "type": "VIN"}]}
    await cp.call(call201.Authorize(id_token=token))
    await cp.call(call201.TransactionEvent(
        event_type="Started", timestamp=at(2), trigger_reason="Authorized", seq_no=0,
        transaction_info={"transaction_id": tx, "charging_state": "Charging"},
        evse={"id": evse, "connector_id": 1}, id_token=token,
        meter_value=[{"timestamp": at(2), "sampled_value": [
            {"value": 2.0, "context": "Transaction.Begin",
             "unit_of_measure": {"unit": "kWh"}},
            {"value": 30, "measurand": "SoC", "context": "Transaction.Begin",
             "location": "EV", "unit_of_measure": {"unit": "Percent"}}]}]))
    await cp.call(call201.TransactionEvent(
        event_type="Updated", timestamp=at(12), trigger_reason="MeterValuePeriodic", seq_no=1,
        transaction_info={"transaction_id": tx},
        meter_value=[{"timestamp": at(12), "sampled_value": [
            {"value": 7, "unit_of_measure": {"unit": "Wh", "multiplier": 3}},
            {"value": 22, "measurand": "Power.Active.Import",
             "unit_of_measure": {"unit": "kW"}}]}]))
    await cp.call(call201.TransactionEvent(
        event_type="Ended", timestamp=at(42), trigger_reason="EVDeparted", seq_no=2,
        transaction_info={"transaction_id": tx, "stopped_reason": "EVDisconnected"},
        meter_value=[{"timestamp": at(42), "sampled_value": [
            {"value": 12000.0, "context": "Transaction.End"}]}]))
    return boot
