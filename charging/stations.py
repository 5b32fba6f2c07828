"""The station registry: what each charger's connectors are rated for.

The stitcher checks readings for plausibility (Wh vs kWh, power above rating) against a
connector's rated power. Without an entry it falls back to a network-wide ceiling
(`StitchRules.max_plausible_power_w`), so the registry is an improvement, never a
requirement. File format (YAML or JSON):

    stations:
      CS-0001:
        model: Terra 54          # optional
        firmware: 1.8.3          # optional
        connectors: {1: 50000, 2: 22000}   # connector id -> rated power in W
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from charging.errors import ChargingError


class StationRegistryError(ChargingError, ValueError):
    """A station registry file that cannot be used; the message names the entry."""


@dataclass(frozen=True, slots=True)
class StationInfo:
    connectors: dict[int, float]
    """Connector id -> rated power in W."""
    model: str | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class StationRegistry:
    stations: dict[str, StationInfo] = field(default_factory=dict)

    def rated_power_w(self, station_id: str, connector_id: int) -> float | None:
        info = self.stations.get(station_id)
        return info.connectors.get(connector_id) if info is not None else None

    @classmethod
    def parse(cls, doc: Any, source: str = "station registry") -> StationRegistry:
        """Build from a decoded document; raises StationRegistryError saying what is wrong."""
        if not isinstance(doc, dict) or not isinstance(doc.get("stations"), dict):
            raise StationRegistryError(f"{source}: expected a mapping with a 'stations' mapping")
        stations: dict[str, StationInfo] = {}
        for station_id, entry in doc["stations"].items():
            where = f"{source}: station {station_id!r}"
            if not isinstance(entry, dict) or not isinstance(entry.get("connectors"), dict):
                raise StationRegistryError(f"{where}: expected a 'connectors' mapping")
            unknown = set(entry) - {"connectors", "model", "firmware"}
            if unknown:
                raise StationRegistryError(f"{where}: unknown keys {sorted(unknown)}")
            connectors: dict[int, float] = {}
            for cid, power in entry["connectors"].items():
                try:
                    number, watts = int(cid), float(power)
                except (TypeError, ValueError):
                    raise StationRegistryError(
                        f"{where}: connector {cid!r} -> {power!r} is not an id and a power "
                        f"in W") from None
                if number < 0 or not 0 < watts < float("inf"):
                    raise StationRegistryError(
                        f"{where}: connector {cid!r} needs id >= 0 and a positive power in W")
                connectors[number] = watts
            model, firmware = entry.get("model"), entry.get("firmware")
            stations[str(station_id)] = StationInfo(
                connectors, None if model is None else str(model),
                None if firmware is None else str(firmware))
        return cls(stations)

    @classmethod
    def load(cls, path: str | Path) -> StationRegistry:
        """Read a YAML or JSON registry file (by suffix; anything but .json is YAML)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise StationRegistryError(f"station registry {path}: cannot read: {exc}") from exc
        return cls.parse(doc, f"station registry {path}")
