"""The station registry: what each charger's connectors are rated for, and where it stands.

The stitcher checks readings for plausibility (Wh vs kWh, power above rating) against a
connector's rated power. Without an entry it falls back to a network-wide ceiling
(`StitchRules.max_plausible_power_w`), so the registry is an improvement, never a
requirement. Station health reads model and firmware; OCPI CDRs (charging/cdr.py) read
the location and the connector types, which a roaming partner requires. File format (YAML
or JSON; docs/stations.example.yaml):

    stations:
      CS-0001:
        model: Terra 54          # optional
        firmware: 1.8.3          # optional
        name: Market Square      # optional, below: what an OCPI CDR needs
        address: Marktplatz 1
        city: Bonn
        postal_code: "53111"     # optional
        country: DEU             # ISO 3166-1 alpha-3
        coordinates: {latitude: 50.735851, longitude: 7.10066}
        connectors:              # connector id -> rated power in W, or a mapping:
          1: 22000
          2: {power_w: 50000, standard: IEC_62196_T2_COMBO, format: CABLE, power_type: DC,
              evse_id: "DE*CWT*E0001*2"}   # evse_id optional (else derived, charging/cdr.py)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from charging.errors import ChargingError

CONNECTOR_STANDARDS = frozenset({
    "CHADEMO", "CHAOJI", "GBT_AC", "GBT_DC", "IEC_60309_2_single_16", "IEC_60309_2_three_16",
    "IEC_60309_2_three_32", "IEC_60309_2_three_64", "IEC_62196_T1", "IEC_62196_T1_COMBO",
    "IEC_62196_T2", "IEC_62196_T2_COMBO", "IEC_62196_T3A", "IEC_62196_T3C", "NEMA_5_20",
    "NEMA_6_30", "NEMA_6_50", "NEMA_10_30", "NEMA_10_50", "NEMA_14_30", "NEMA_14_50",
    "PANTOGRAPH_BOTTOM_UP", "PANTOGRAPH_TOP_DOWN", "TESLA_R", "TESLA_S",
    *(f"DOMESTIC_{letter}" for letter in "ABCDEFGHIJKLMNO")})
"""OCPI 2.2.1 ConnectorType."""
CONNECTOR_FORMATS = frozenset({"SOCKET", "CABLE"})
POWER_TYPES = frozenset({"AC_1_PHASE", "AC_2_PHASE", "AC_2_PHASE_SPLIT", "AC_3_PHASE", "DC"})
_LOCATION = ("name", "address", "city", "postal_code", "country")
_CONNECTOR_KEYS = {"power_w", "standard", "format", "power_type", "evse_id"}


class StationRegistryError(ChargingError, ValueError):
    """A station registry file that cannot be used; the message names the entry."""


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """A connector as OCPI describes it (None: not in the registry)."""

    standard: str | None = None
    format: str | None = None
    power_type: str | None = None
    evse_id: str | None = None


@dataclass(frozen=True, slots=True)
class StationInfo:
    connectors: dict[int, float]
    """Connector id -> rated power in W."""
    model: str | None = None
    firmware: str | None = None
    name: str | None = None
    address: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None
    """ISO 3166-1 alpha-3."""
    coordinates: tuple[str, str] | None = None
    """(latitude, longitude) as OCPI GeoLocation strings."""
    sockets: dict[int, ConnectorInfo] = field(default_factory=dict)
    """Connector id -> its OCPI type, for those the registry describes."""


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
        return cls({str(station_id): _station(entry, f"{source}: station {station_id!r}")
                    for station_id, entry in doc["stations"].items()})

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


def _station(entry: Any, where: str) -> StationInfo:
    if not isinstance(entry, dict) or not isinstance(entry.get("connectors"), dict):
        raise StationRegistryError(f"{where}: expected a 'connectors' mapping")
    unknown = set(entry) - {"connectors", "model", "firmware", "coordinates", *_LOCATION}
    if unknown:
        raise StationRegistryError(f"{where}: unknown keys {sorted(unknown)}")
    connectors: dict[int, float] = {}
    sockets: dict[int, ConnectorInfo] = {}
    for cid, value in entry["connectors"].items():
        number, watts, socket = _connector(cid, value, where)
        connectors[number] = watts
        if socket is not None:
            sockets[number] = socket
    text = {key: None if entry.get(key) is None else str(entry[key])
            for key in ("model", "firmware", *_LOCATION)}
    country = text["country"]
    if country is not None and not (len(country) == 3 and country.isalpha()
                                    and country.isupper()):
        raise StationRegistryError(f"{where}: country {country!r} is not an ISO 3166-1 "
                                   "alpha-3 code (e.g. DEU)")
    return StationInfo(connectors, coordinates=_coordinates(entry.get("coordinates"), where),
                       sockets=sockets, **text)


def _connector(cid: Any, value: Any, where: str) -> tuple[int, float, ConnectorInfo | None]:
    """(id, rated power in W, OCPI type if given) of one `connectors` entry."""
    details = value if isinstance(value, dict) else {"power_w": value}
    unknown = set(details) - _CONNECTOR_KEYS
    if unknown:
        raise StationRegistryError(f"{where}: connector {cid!r}: unknown keys {sorted(unknown)}")
    power = details.get("power_w")
    try:
        number, watts = int(cid), float(power)
    except (TypeError, ValueError):
        raise StationRegistryError(
            f"{where}: connector {cid!r} -> {power!r} is not an id and a power in W") from None
    if number < 0 or not 0 < watts < float("inf"):
        raise StationRegistryError(
            f"{where}: connector {cid!r} needs id >= 0 and a positive power in W")
    for key, allowed in (("standard", CONNECTOR_STANDARDS), ("format", CONNECTOR_FORMATS),
                         ("power_type", POWER_TYPES)):
        if details.get(key) is not None and details[key] not in allowed:
            raise StationRegistryError(f"{where}: connector {cid!r}: {key} {details[key]!r} "
                                       f"is not one of {', '.join(sorted(allowed))}")
    if not isinstance(value, dict):
        return number, watts, None
    return number, watts, ConnectorInfo(*(None if details.get(k) is None else str(details[k])
                                          for k in ("standard", "format", "power_type",
                                                    "evse_id")))


def _coordinates(value: Any, where: str) -> tuple[str, str] | None:
    """OCPI GeoLocation strings (decimal degrees, 6 places) from numbers or strings."""
    if value is None:
        return None
    try:
        latitude, longitude = float(value["latitude"]), float(value["longitude"])
    except (TypeError, KeyError, ValueError):
        raise StationRegistryError(f"{where}: coordinates need latitude and longitude in "
                                   "decimal degrees") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise StationRegistryError(f"{where}: coordinates {latitude}, {longitude} are out of "
                                   "range")
    return f"{latitude:.6f}", f"{longitude:.6f}"
