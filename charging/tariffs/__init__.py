"""OCPI 2.2.1 tariffs: the model, the file loader, and the incremental pricing engine."""

from charging.tariffs.cost import Cost, CostLine
from charging.tariffs.engine import TariffEngine
from charging.tariffs.errors import TariffFileError
from charging.tariffs.loader import load_tariff_book, parse_tariff_book
from charging.tariffs.meter import Meter
from charging.tariffs.model import Dimension, Tariff, TariffBook

__all__ = ["Cost", "CostLine", "Dimension", "Meter", "Tariff", "TariffBook", "TariffEngine",
           "TariffFileError", "load_tariff_book", "parse_tariff_book"]
