"""Session ID templates: the seed shapes, refusals with reasons, and uniqueness as a property.

Expected IDs come from the formula the docs state (tests/id_formula.py), never from
`IdTemplate.render` or `position_number` themselves.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from charging.errors import InvalidIdTemplate, PositionOutOfRange
from charging.session_ids import (
    DEFAULT_ID_TEMPLATE,
    IdContext,
    IdTemplate,
    position_number,
    utc_date,
)
from schemas.records import MAX_EVENTS_PER_MESSAGE, EventPosition
from tests.id_formula import EVENTS_PER_MESSAGE, num, session_id

pytestmark = pytest.mark.unit

SEPT_25_2021_NOON = 1_632_571_200_000
FIRST = EventPosition(0, 0, 0)


def ctx(*, station: str = "LS", connector: int = 1, start_ms: int = SEPT_25_2021_NOON,
        position: EventPosition = FIRST, partitions: int = 1,
        seq: int = 1, daily: int = 1) -> IdContext:
    return IdContext(station, connector, start_ms, position, partitions, seq, daily)


def position_for(num: int, partitions: int = 1) -> EventPosition:
    """The position whose {num} is `num` (inverse of the formula)."""
    rest, partition = divmod(num, partitions)
    offset, index = divmod(rest, MAX_EVENTS_PER_MESSAGE)
    return EventPosition(partition, offset, index)


def test_the_three_seed_shapes() -> None:
    assert DEFAULT_ID_TEMPLATE == "EV-{num:09d}"
    ev = IdTemplate.parse(DEFAULT_ID_TEMPLATE)
    assert ev.render(ctx(position=position_for(123456789))) == "EV-123456789"
    hexa = IdTemplate.parse("SESSION-{num:012X}")
    assert hexa.render(ctx(position=position_for(0xABCDEF123456, 3), partitions=3)) \
        == "SESSION-ABCDEF123456"
    daily = IdTemplate.parse("{station}-{date}-{station_daily:03d}")
    assert daily.render(ctx(station="LS", daily=1)) == "LS-2021-09-25-001"


def test_num_formula_and_padding_never_truncates() -> None:
    assert MAX_EVENTS_PER_MESSAGE == EVENTS_PER_MESSAGE  # the docs' formula says 1000
    position = EventPosition(partition=2, offset=5, index=3)
    assert position_number(position, 4) == (5 * 1000 + 3) * 4 + 2
    template = IdTemplate.parse("EV-{num:03d}")
    assert template.render(ctx(position=position_for(123456))) == "EV-123456"


def test_other_placeholders() -> None:
    template = IdTemplate.parse("{compact_date}/{station}/{connector:02d}/{station_seq:x}")
    assert template.render(ctx(station="CS-9", connector=2, seq=255)) == "20210925/CS-9/02/ff"
    assert utc_date(-1).isoformat() == "1969-12-31"


@pytest.mark.parametrize(("template", "why"), [
    ("{station}-{connector}", "none of its placeholder combinations is unique"),
    ("{date}-{station_daily}", "none of its placeholder combinations is unique"),
    ("{station}-{station_daily}", "none of its placeholder combinations is unique"),
    ("{station}{station_seq}", "not separated by a literal with a non-alphanumeric"),
    ("{station}x{station_seq}", "not separated by a literal with a non-alphanumeric"),
    ("{num:09d}{connector}", "not separated by a literal with a non-alphanumeric"),
    ("{station}-{station}-{num}", "more than one free-text placeholder"),
    ("EV-{id}", "unknown placeholder {id}"),
    ("EV-{num.real}", "unknown placeholder {num.real}"),
    ("EV-{num:9d}", "format spec '9d' on {num} is not allowed"),
    ("EV-{num:.3}", "format spec '.3' on {num} is not allowed"),
    ("EV-{num:,d}", "format spec ',d' on {num} is not allowed"),
    ("EV-{num:09b}", "format spec '09b' on {num} is not allowed"),
    ("{station:.2}-{num}", "{station} takes no format spec"),
    ("EV-{num!s}", "conversion !s on {num} is not allowed"),
    ("EV-{num", "not a valid format string"),
    ("no placeholders", "none of its placeholder combinations is unique"),
])
def test_refused_templates_say_why_and_show_a_working_example(template: str, why: str) -> None:
    with pytest.raises(InvalidIdTemplate) as caught:
        IdTemplate.parse(template)
    message = str(caught.value)
    assert why in message
    assert repr(template) in message
    assert "'EV-{num:09d}'" in message
    IdTemplate.parse("EV-{num:09d}")  # the example given really works


def test_the_adjacency_rule_prevents_a_real_collision() -> None:
    # What the refused '{station}{station_seq}' would render: two sessions, one ID.
    assert "S1" + "11" == "S11" + "1"
    separated = IdTemplate.parse("{station}-{station_seq}")
    assert separated.render(ctx(station="S1", seq=11)) \
        != separated.render(ctx(station="S11", seq=1))


def test_position_outside_the_configured_ranges_is_refused() -> None:
    template = IdTemplate.parse(DEFAULT_ID_TEMPLATE)
    with pytest.raises(PositionOutOfRange, match="more partitions than configured"):
        template.render(ctx(position=EventPosition(4, 1, 0), partitions=4))
    with pytest.raises(PositionOutOfRange, match="MAX_EVENTS_PER_MESSAGE"):
        template.render(ctx(position=EventPosition(0, 1, MAX_EVENTS_PER_MESSAGE)))


# --- properties --------------------------------------------------------------------------

# Small, overlapping value ranges so that near-collisions are common: station ids that share
# the separators and digits, ordinals that are prefixes of each other, days years apart.
stations = st.one_of(st.sampled_from(["S1", "S11", "S1-1", "S1-10", "1", "S-", "a.b"]),
                     st.text(alphabet="S1a-_/.0", min_size=1, max_size=6))
instants = st.one_of(st.sampled_from([0, SEPT_25_2021_NOON, SEPT_25_2021_NOON + 86_400_000,
                                      SEPT_25_2021_NOON + 365 * 86_400_000]),
                     st.integers(0, 4 * 10**12))
ordinals = st.one_of(st.integers(1, 12), st.integers(1, 5000))
positions = st.builds(EventPosition, partition=st.integers(0, 3),
                      offset=st.one_of(st.integers(0, 12), st.integers(0, 10**7)),
                      index=st.one_of(st.integers(0, 12),
                                      st.integers(0, MAX_EVENTS_PER_MESSAGE - 1)))
contexts = st.builds(IdContext, station_id=stations, connector_id=st.integers(0, 12),
                     start_ms=instants, position=positions, partitions=st.just(4),
                     station_seq=ordinals, station_daily=ordinals)

INT_SPECS = ["", "d", "03d", "x", "02x", "X", "012X"]
KEY_SETS = [["num"], ["station", "station_seq"], ["station", "date", "station_daily"],
            ["station", "compact_date", "station_daily"]]
EXTRAS = ["connector", "date", "compact_date", "station_seq", "station_daily", "num"]
edge_literals = st.text(alphabet="EVS1a-_/.", max_size=3)
separators = st.tuples(st.text(alphabet="S1a", max_size=2), st.sampled_from("-_/.:"),
                       st.text(alphabet="S1a-", max_size=2)).map("".join)


@st.composite
def accepted_templates(draw: st.DrawFn) -> IdTemplate:
    """Templates that follow the rules, from every placeholder, spec and separator shape.

    Built to be acceptable, so `parse` must accept each one (it does not over-refuse).
    """
    names = list(draw(st.sampled_from(KEY_SETS)))
    names += draw(st.lists(st.sampled_from(EXTRAS), max_size=2))
    names = draw(st.permutations(names))
    text = draw(edge_literals)
    for i, name in enumerate(names):
        if i:
            text += draw(separators)
        spec = draw(st.sampled_from(INT_SPECS)) if name in (
            "num", "connector", "station_seq", "station_daily") else ""
        text += f"{{{name}{':' + spec if spec else ''}}}"
    return IdTemplate.parse(text + draw(edge_literals))


def key(template: IdTemplate, c: IdContext) -> tuple[object, ...]:
    """The values the template's uniqueness rule rests on (the documented {num})."""
    if "num" in template.names:
        p = c.position
        return (num(p.partition, p.offset, p.index, c.partitions),)
    if "station_seq" in template.names:
        return (c.station_id, c.station_seq)
    return (c.station_id, utc_date(c.start_ms), c.station_daily)


@st.composite
def context_pairs(draw: st.DrawFn) -> tuple[IdContext, IdContext]:
    """Two contexts that share a random subset of their fields (near-collisions are likely)."""
    a, b = draw(contexts), draw(contexts)
    fields = list(IdContext.__dataclass_fields__)
    differ = draw(st.sets(st.sampled_from(fields), min_size=1, max_size=2))
    return a, IdContext(**{f: getattr(b if f in differ else a, f) for f in fields})


@settings(max_examples=300, deadline=None)
@given(accepted_templates(), context_pairs())
def test_accepted_templates_give_distinct_ids_to_distinct_sessions(
    template: IdTemplate, pair: tuple[IdContext, IdContext]
) -> None:
    a, b = pair
    assume(key(template, a) != key(template, b))
    assert template.render(a) != template.render(b)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["EV-{num:09d}", "SESSION-{num:012X}", "{num}", "{station}-{num:x}"]),
       positions, positions)
def test_num_templates_distinct_positions_distinct_ids(
    text: str, a: EventPosition, b: EventPosition
) -> None:
    assume(a != b)
    template = IdTemplate.parse(text)
    assert template.render(ctx(position=a, partitions=4)) != \
        template.render(ctx(position=b, partitions=4))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["{station}-{station_seq:03d}", "{station}/{station_seq:x}",
                        "{station}-{date}-{station_daily:03d}",
                        "{compact_date}.{station}.{station_daily}"]),
       stations, stations, ordinals, ordinals, instants, instants)
def test_station_templates_distinct_station_or_ordinal_distinct_ids(
    text: str, s1: str, s2: str, n1: int, n2: int, t1: int, t2: int
) -> None:
    template = IdTemplate.parse(text)
    a = ctx(station=s1, seq=n1, daily=n1, start_ms=t1)
    b = ctx(station=s2, seq=n2, daily=n2, start_ms=t2)
    assume(key(template, a) != key(template, b))
    assert template.render(a) != template.render(b)


# --- the documented formula, at any scale -------------------------------------------------

LARGE_OFFSETS = st.one_of(st.integers(0, 3), st.integers(0, 10**9), st.integers(0, 2**63 - 1))
"""Kafka offsets are 64-bit: a topic that has carried billions of messages."""


@st.composite
def partitioned_positions(draw: st.DrawFn) -> tuple[int, EventPosition]:
    """(partition count, a position in it): every partition, any offset, any batch index."""
    partitions = draw(st.one_of(st.integers(1, 8), st.integers(1, 10_000)))
    return partitions, EventPosition(
        draw(st.integers(0, partitions - 1)), draw(LARGE_OFFSETS),
        draw(st.one_of(st.integers(0, 3), st.integers(0, MAX_EVENTS_PER_MESSAGE - 1))))


def formula(template: IdTemplate, c: IdContext) -> str:
    p = c.position
    return session_id(template.text, partition=p.partition, offset=p.offset, index=p.index,
                      partitions=c.partitions, station=c.station_id, connector=c.connector_id,
                      start_ms=c.start_ms, station_seq=c.station_seq,
                      station_daily=c.station_daily)


@settings(max_examples=300, deadline=None)
@given(accepted_templates(), contexts, partitioned_positions())
def test_rendered_ids_follow_the_documented_formula(
    template: IdTemplate, c: IdContext, where: tuple[int, EventPosition]
) -> None:
    partitions, position = where
    c = IdContext(c.station_id, c.connector_id, c.start_ms, position, partitions,
                  c.station_seq, c.station_daily)
    assert template.render(c) == formula(template, c)


def neighbours(position: EventPosition, partitions: int) -> set[EventPosition]:
    """The positions next to one in every direction: where a formula that mixes up offset,
    index and partition would collide (e.g. without the factor `partitions`, (o, i, p + 1)
    and (o, i + 1, p) share a number)."""
    out = {position}
    for d_partition, d_offset, d_index in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0),
                                           (0, 0, 1), (0, 0, -1), (1, 0, -1), (-1, 0, 1),
                                           (0, 1, -1), (0, -1, 1)):
        partition = position.partition + d_partition
        offset, index = position.offset + d_offset, position.index + d_index
        if 0 <= partition < partitions and offset >= 0 and 0 <= index < MAX_EVENTS_PER_MESSAGE:
            out.add(EventPosition(partition, offset, index))
    for partition in range(min(partitions, 64)):  # every partition, same offset and index
        out.add(EventPosition(partition, position.offset, position.index))
    out.add(EventPosition(position.partition, position.offset + 1, 0))  # next message's first
    out.add(EventPosition(position.partition, position.offset, MAX_EVENTS_PER_MESSAGE - 1))
    return out


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["EV-{num:09d}", "SESSION-{num:012X}", "{num}", "{station}-{num:x}"]),
       partitioned_positions())
def test_distinct_positions_get_distinct_ids_at_any_scale(
    text: str, where: tuple[int, EventPosition]
) -> None:
    """Large offsets, large batch indexes, every partition: one ID per position."""
    partitions, position = where
    template = IdTemplate.parse(text)
    around = neighbours(position, partitions)
    ids = {template.render(ctx(position=p, partitions=partitions)) for p in around}
    assert len(ids) == len(around)


@pytest.mark.parametrize(("template", "typed", "canonical"), [
    ("EV-{num:09d}", "ev-000000042", "EV-000000042"),
    ("SESSION-{num:012X}", "session-abcdef123456", "SESSION-ABCDEF123456"),
    ("sess-{num:x}", "SESS-ABC", "sess-abc"),
    ("{station}-{date}-{station_daily:03d}", "ls-2021-09-25-001", "ls-2021-09-25-001"),
    ("LS-{station}-{station_seq}", "ls-Cs-01-7", "LS-Cs-01-7"),
    ("EV-{num:09d}", "EV-12ab", "EV-12ab"),
])
def test_lookups_take_any_letter_case_the_template_allows(template: str, typed: str,
                                                          canonical: str) -> None:
    """Literals and hex digits are the template's case; free-text {station} keeps its own."""
    assert IdTemplate.parse(template).canonical(typed) == canonical
