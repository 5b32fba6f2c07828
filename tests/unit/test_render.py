"""Tables stay readable when piped (issue 16 §4): nothing is cut to "…"."""

from __future__ import annotations

import io

import pytest

from chargewatch.render import print_rows

pytestmark = pytest.mark.unit


def test_a_piped_table_shows_every_header_and_value_in_full() -> None:
    columns = ["station_id"] + [f"a_rather_long_column_header_{n}" for n in range(10)]
    row = ("CS-0000000042-with-a-long-station-name",) + tuple(
        f"value-{n}-" + "x" * 30 for n in range(10))
    out = io.StringIO()
    print_rows(columns, [row], title="station-daily", out=out)
    text = out.getvalue()
    assert "…" not in text
    for word in (*columns, *row):
        assert word in text, word
    assert max(len(line) for line in text.splitlines()) < 1_000  # as wide as needed, no more
