"""Errors of the tariff package: a tariff file that cannot be used.

Each message names the file, the tariff (or assignment) and the field, so whoever edits
the file can fix it without reading code.
"""

from charging.errors import ChargingError


class TariffFileError(ChargingError, ValueError):
    """A tariff file that is unreadable or invalid (refused at start-up)."""
