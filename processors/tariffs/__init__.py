"""OCPI 2.2.1 tariffs: the model, the file loader, and the incremental pricing engine."""

from processors.tariffs.cost import Cost, CostLine
from processors.tariffs.engine import TariffEngine
from processors.tariffs.errors import TariffFileError
from processors.tariffs.loader import load_tariff_book, parse_tariff_book
from processors.tariffs.meter import Meter
from processors.tariffs.model import Dimension, Tariff, TariffBook

__all__ = ["Cost", "CostLine", "Dimension", "Meter", "Tariff", "TariffBook", "TariffEngine",
           "TariffFileError", "load_tariff_book", "parse_tariff_book"]
