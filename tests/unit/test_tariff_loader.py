"""Tariff files: the shipped ones load; a bad one is refused naming file, tariff and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charging.tariffs import TariffFileError, load_tariff_book
from charging.tariffs.model import Dimension

pytestmark = pytest.mark.unit

TARIFFS = Path(__file__).resolve().parents[2] / "tariffs"
GOOD = {
    "time_zone": "Europe/Berlin",
    "id_tag_groups": {"fleet": ["04A2B3C4D5E6F7"]},
    "tariffs": [
        {"id": "A", "currency": "EUR", "party_id": "CWX", "last_updated": "2024-01-01T00:00:00Z",
         "elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "vat": 19,
                                             "step_size": 1}]}]},
        {"id": "B", "currency": "EUR", "start_date_time": "2026-01-01T00:00:00Z",
         "elements": [{"price_components": [{"type": "ENERGY", "price": 0.2, "step_size": 1}],
                       "restrictions": {"start_time": "22:00", "end_time": "06:00",
                                        "day_of_week": ["MONDAY"]}}]},
    ],
    "assignments": [
        {"tariff": "A"},
        {"tariff": "B", "stations": ["CS-1"], "connectors": [2]},
        {"tariff": "B", "id_tag_group": "fleet", "valid_until": "2027-01-01T00:00:00Z"},
    ],
}


def write(tmp_path: Path, doc: object, name: str = "t.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_the_shipped_example_loads() -> None:
    book = load_tariff_book(TARIFFS / "example.yaml")
    assert set(book.tariffs) == {"STANDARD", "FAST"}
    assert book.zone("CS-0003").key == "Europe/London"
    assert book.tariffs["STANDARD"].elements[0].components[0].dimension is Dimension.FLAT


def test_assignment_by_specificity_and_validity(tmp_path: Path) -> None:
    book = load_tariff_book(write(tmp_path, GOOD))
    jan_2026 = 1_767_225_600_000
    assert book.select("CS-1", 2, None, jan_2026).tariff_id == "B"
    assert book.select("CS-1", 1, None, jan_2026).tariff_id == "A"
    assert book.select("CS-9", 1, "04A2B3C4D5E6F7", jan_2026).tariff_id == "B"
    assert book.select("CS-9", 1, "04A2B3C4D5E6F7", jan_2026 - 1).tariff_id == "A"  # B not yet
    assert book.select("CS-9", 1, "04A2B3C4D5E6F7", 1_830_297_600_000).tariff_id == "A"


def bad(change: str, value: object) -> dict[str, object]:
    doc = json.loads(json.dumps(GOOD))
    target: dict[str, object] = doc
    *path, last = change.split(".")
    for part in path:
        target = target[int(part)] if part.isdigit() else target[part]  # type: ignore[index]
    target[last] = value  # type: ignore[index]
    return doc


@pytest.mark.parametrize(("change", "value", "message"), [
    ("tariffs.1.elements.0.restrictions.start_time", "25:00",
     "tariff 'B': elements[0].restrictions.start_time: '25:00' is not a time of day"),
    ("tariffs.0.currency", "euro", "tariff 'A': currency: 'euro' is not an ISO 4217"),
    ("tariffs.0.elements.0.price_components.0.type", "KWH",
     "tariff 'A': elements[0].price_components[0].type: 'KWH' is not one of"),
    ("tariffs.0.elements.0.price_components.0.step_size", 0,
     "elements[0].price_components[0].step_size: 0 is not a whole number >= 1"),
    ("tariffs.0.elements.0.price_components.0.price", -1,
     "elements[0].price_components[0].price: -1 must be a finite number >= 0"),
    ("tariffs.0.elements.0.price_components.0.vat", 120, "vat: 120 is a percentage above 100"),
    ("tariffs.1.elements.0.restrictions.day_of_week", ["MON"], "'MON' is not one of MONDAY"),
    ("tariffs.1.elements.0.restrictions.min_kwh", 5, None),
    ("tariffs.1.elements.0.restrictions.reservation", "RESERVATION",
     "restrictions.reservation: reservations are not metered"),
    ("tariffs.1.elements.0.restrictions.max_duraton", 10, "unknown field(s) max_duraton"),
    ("tariffs.1.id", "A", "tariffs[1].id: duplicate tariff id 'A'"),
    ("time_zone", "Mars/Olympus", "time_zone: 'Mars/Olympus' is not an IANA time zone"),
    ("assignments.1.tariff", "C", "assignments[1]: tariff: 'C' is not a tariff id"),
    ("assignments.2.id_tag_group", "vip", "id_tag_group: 'vip' is not defined"),
    ("tariffs.1.start_date_time", "soon", "start_date_time: 'soon' is not an ISO-8601"),
])
def test_errors_name_the_file_the_tariff_and_the_field(
        tmp_path: Path, change: str, value: object, message: str | None) -> None:
    path = write(tmp_path, bad(change, value))
    if message is None:  # a valid change: min_kwh alone is fine
        load_tariff_book(path)
        return
    with pytest.raises(TariffFileError) as caught:
        load_tariff_book(path)
    assert str(caught.value).startswith(f"{path}:")
    assert message in str(caught.value)


def test_min_above_max_and_unreadable_files(tmp_path: Path) -> None:
    doc = bad("tariffs.1.elements.0.restrictions.min_kwh", 10)
    doc["tariffs"][1]["elements"][0]["restrictions"]["max_kwh"] = 5  # type: ignore[index]
    with pytest.raises(TariffFileError, match=r"restrictions\.max_kwh: must be above min_kwh"):
        load_tariff_book(write(tmp_path, doc))
    broken = tmp_path / "broken.yaml"
    broken.write_text("tariffs: [\n")
    with pytest.raises(TariffFileError, match=r"broken\.yaml: not valid YAML"):
        load_tariff_book(broken)
    with pytest.raises(TariffFileError, match="cannot read"):
        load_tariff_book(tmp_path / "missing.yaml")
    two = {"tariffs": GOOD["tariffs"]}
    with pytest.raises(TariffFileError, match="assignments: required"):
        load_tariff_book(write(tmp_path, two))


@pytest.mark.parametrize("module", sorted(
    f"charging.tariffs.{p.stem}"
    for p in (Path(__file__).resolve().parents[2] / "processors" / "tariffs").glob("*.py")
    if p.stem != "__init__") + ["charging.tariffs"])
def test_the_tariff_package_is_pure(module: str) -> None:
    from tests.unit.test_purity import engine_imports
    assert engine_imports(module) == []
