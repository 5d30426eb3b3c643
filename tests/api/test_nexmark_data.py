"""Tests of the Nexmark event generator (``vstream.datasets.nexmark*``)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import vstream as vs
from vstream import datasets
from vstream.datasets import Nexmark, _nexmark_events, nexmark, nexmark_arrow, nexmark_batches
from vstream.errors import PipelineError

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
FIRST_ID = 1000
MS = pl.Datetime("ms")
S, I64 = pl.String, pl.Int64

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "person": {
        "id": I64,
        "name": S,
        "email_address": S,
        "credit_card": S,
        "city": S,
        "state": S,
        "date_time": MS,
        "extra": S,
    },
    "auction": {
        "id": I64,
        "item_name": S,
        "description": S,
        "initial_bid": I64,
        "reserve": I64,
        "date_time": MS,
        "expires": MS,
        "seller": I64,
        "category": I64,
        "extra": S,
    },
    "bid": {
        "auction": I64,
        "bidder": I64,
        "price": I64,
        "channel": S,
        "url": S,
        "date_time": MS,
        "extra": S,
    },
}
KINDS = ("person", "auction", "bid")
FIRST_NAMES = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah"]
FIRST_NAMES += ["Deiter", "Walter"]
LAST_NAMES = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones"]
LAST_NAMES += ["Noris"]
CITIES = ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond"]
CITIES += ["Seattle", "Kent", "Cheyenne"]
STATES = ["AZ", "CA", "ID", "OR", "WA", "WY"]
HOT_CHANNELS = ["Google", "Facebook", "Baidu", "Apple"]


# --- the model, computed independently from the row positions -----------------------------


def person_events(rows: int) -> np.ndarray:
    return np.arange(rows, dtype=np.int64) * 50


def auction_events(rows: int) -> np.ndarray:
    j = np.arange(rows, dtype=np.int64)
    return 50 * (j // 3) + j % 3 + 1


def bid_events(rows: int) -> np.ndarray:
    b = np.arange(rows, dtype=np.int64)
    return 50 * (b // 46) + 4 + b % 46


def expected_counts(n: int) -> tuple[int, int, int]:
    pos = np.arange(n) % 50
    return int((pos == 0).sum()), int(((pos >= 1) & (pos <= 3)).sum()), int((pos >= 4).sum())


def ms_of(df: pl.DataFrame, column: str = "date_time") -> np.ndarray:
    return df[column].cast(pl.Int64).to_numpy()


def expected_ms(events: np.ndarray, rate: float, start_ms: int = START_MS) -> list[int]:
    return [start_ms + math.floor(int(e) * 1000 / rate) for e in events]


def check_invariants(data: Nexmark[pl.DataFrame], n: int, rate: float) -> None:
    """Everything the model promises about any dataset."""
    person, auction, bid = data
    assert (person.height, auction.height, bid.height) == expected_counts(n)
    for kind, df in zip(KINDS, data, strict=True):
        assert dict(df.schema) == SCHEMAS[kind]
        assert df.null_count().sum_horizontal().item() == 0
    p_ev, a_ev, b_ev = (
        person_events(person.height),
        auction_events(auction.height),
        bid_events(bid.height),
    )
    # dense ids, in event order
    assert person["id"].to_list() == list(range(FIRST_ID, FIRST_ID + person.height))
    assert auction["id"].to_list() == list(range(FIRST_ID, FIRST_ID + auction.height))
    # event times from the event number only
    assert ms_of(person).tolist() == expected_ms(p_ev, rate)
    assert ms_of(auction).tolist() == expected_ms(a_ev, rate)
    assert ms_of(bid).tolist() == expected_ms(b_ev, rate)
    # references exist at the time of the event
    last_auction = 3 * (b_ev // 50) + 2  # base 0
    a = bid["auction"].to_numpy() - FIRST_ID
    assert (a >= 0).all()
    assert (a <= last_auction).all()
    b = bid["bidder"].to_numpy() - FIRST_ID
    assert (b >= 0).all()
    assert (b <= b_ev // 50).all()
    s = auction["seller"].to_numpy() - FIRST_ID
    assert (s >= 0).all()
    assert (s <= a_ev // 50).all()
    # hot or recent
    hot_a = last_auction // 100 * 100
    assert ((a == hot_a) | (a >= np.maximum(last_auction - 100, 0))).all()
    last_p = b_ev // 50
    hot_b = np.minimum(last_p // 100 * 100 + 1, last_p)
    assert ((b == hot_b) | (b >= np.maximum(last_p - 999, 0))).all()
    last_s = a_ev // 50
    assert ((s == last_s // 100 * 100) | (s >= np.maximum(last_s - 999, 0))).all()
    # values
    assert (ms_of(auction, "expires") > ms_of(auction)).all()
    assert (auction["reserve"] >= auction["initial_bid"] + 100).all()
    assert auction["category"].is_between(10, 14).all()
    for prices in (bid["price"], auction["initial_bid"]):
        assert prices.is_between(100, 100_000_000).all()


# --- schema, counts, batching ----------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 4, 5, 49, 50, 51, 1_000])
def test_schema_and_counts(n: int) -> None:
    data = nexmark(n)
    assert isinstance(data, Nexmark)
    check_invariants(data, n, 10_000)
    tables = nexmark_arrow(n)
    for kind, table, df in zip(KINDS, tables, data, strict=True):
        assert table.schema.names == list(SCHEMAS[kind])
        for field in table.schema:
            if field.name in ("date_time", "expires"):
                assert field.type == pa.timestamp("ms")
            elif SCHEMAS[kind][field.name] == S:
                assert field.type == pa.large_string()
            else:
                assert field.type == pa.int64()
        assert_frame_equal(pl.from_arrow(table), df)  # type: ignore[arg-type]


def test_nexmark_holder() -> None:
    data = nexmark(60)
    person, auction, bid = data
    assert person is data.person
    assert auction is data.auction
    assert bid is data.bid
    with pytest.raises(AttributeError):
        data.bid = bid  # type: ignore[misc]


@pytest.mark.parametrize("n", [0, 3, 10_000, 100_050, 150_001])
def test_arrow_batches(n: int) -> None:
    data = nexmark(n)
    tables = nexmark_arrow(n, batch_size=7_000)
    for table, df in zip(tables, data, strict=True):
        sizes = [b.num_rows for b in table.to_batches()]
        assert all(size == 7_000 for size in sizes[:-1])
        assert sizes == [] or 0 < sizes[-1] <= 7_000
        assert_frame_equal(pl.from_arrow(table), df)  # type: ignore[arg-type]
    pieces: dict[str, list[pa.RecordBatch]] = {kind: [] for kind in KINDS}
    runs: list[tuple[str, int]] = []  # (kind, rows) of consecutive batches of one kind
    for kind, batch in nexmark_batches(n, batch_size=7_000):
        assert 0 < batch.num_rows <= 7_000
        assert batch.schema == getattr(tables, kind).schema
        pieces[kind].append(batch)
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + batch.num_rows)
        else:
            runs.append((kind, batch.num_rows))
    # chunk by chunk of 100,000 event ids: its persons, its auctions, its bids
    expected = []
    for first in range(0, n, 100_000):
        end = min(first + 100_000, n)
        counts = np.subtract(expected_counts(end), expected_counts(first))
        expected += [(kind, int(c)) for kind, c in zip(KINDS, counts, strict=True) if c]
    assert runs == expected
    for kind, df in zip(KINDS, data, strict=True):
        table = pa.Table.from_batches(pieces[kind], schema=getattr(tables, kind).schema)
        assert_frame_equal(pl.from_arrow(table), df)  # type: ignore[arg-type]


def test_batches_are_lazy_and_interleaved() -> None:
    it = nexmark_batches(10**12)  # would never fit in memory
    kinds = [next(it)[0] for _ in range(6)]
    assert kinds[:3] == ["person", "auction", "bid"]
    assert kinds[4:] == ["person", "auction"]  # the 92,000 bids of a chunk: 2 batches


def test_from_arrow_reads_the_tables() -> None:
    data = nexmark_arrow(5_000, batch_size=1_000)
    out = vs.from_arrow(data.bid).filter(pl.col("channel") == "Google").collect()
    expected = nexmark(5_000).bid.filter(pl.col("channel") == "Google")
    assert_frame_equal(out, expected)


# --- determinism -----------------------------------------------------------------------------


def test_deterministic_and_prefix_stable() -> None:
    short, long = nexmark(10_000), nexmark(25_000)
    again = nexmark(10_000)
    for a, b, c in zip(short, long, again, strict=True):
        assert_frame_equal(a, c)
        assert_frame_equal(a, b.head(a.height))
    other = nexmark(10_000, seed=1)
    assert not short.bid.equals(other.bid)
    assert not short.auction.equals(other.auction)
    assert not short.person.equals(other.person)


def test_prefix_stable_across_chunks() -> None:
    # a chunk holds 100,000 event ids; cut one inside the second chunk, at odd places
    long = nexmark(230_000, seed=3)
    for n in (100_000, 100_001, 100_004, 163_317):
        short = nexmark(n, seed=3)
        for a, b in zip(short, long, strict=True):
            assert_frame_equal(a, b.head(a.height))


def test_rate_and_start_only_move_times() -> None:
    base = nexmark(3_000)
    other = nexmark(3_000, rate=123.5, start=datetime(2030, 5, 6, 7, 8, 9))
    for a, b in zip(base, other, strict=True):
        keep = [c for c in a.columns if c not in ("date_time", "expires")]
        assert_frame_equal(a.select(keep), b.select(keep))
    start_ms = int(datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp() * 1000)
    events = bid_events(other.bid.height)
    assert ms_of(other.bid).tolist() == expected_ms(events, 123.5, start_ms)


def test_aware_start() -> None:
    aware = datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert_frame_equal(nexmark(500, start=aware).bid, nexmark(500).bid)


def test_numpy_arguments() -> None:
    a = nexmark(np.int64(2_000), rate=np.float64(500.0), seed=np.uint32(4))
    b = nexmark(2_000, rate=500, seed=4)
    for x, y in zip(a, b, strict=True):
        assert_frame_equal(x, y)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(0, 3_000),
    rate=st.one_of(st.integers(1, 10**7), st.floats(0.01, 1e7, allow_nan=False)),
    seed=st.integers(0, 2**63),
)
def test_invariants_hold_for_any_arguments(n: int, rate: float, seed: int) -> None:
    check_invariants(nexmark(n, rate=rate, seed=seed), n, rate)


def test_invariants_over_a_long_run() -> None:
    n = 400_000  # persons and auctions past the windows of 100 and 1000
    check_invariants(nexmark(n, seed=9), n, 10_000)


# --- the distributions -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def big() -> Nexmark[pl.DataFrame]:
    return nexmark(200_000, seed=5)


def test_hot_auctions_and_bidders(big: Nexmark[pl.DataFrame]) -> None:
    bid = big.bid
    per_auction = bid["auction"].value_counts()["count"]
    uniform = bid.height / big.auction.height
    assert per_auction.max() > 20 * uniform  # type: ignore[operator]
    # half the bids go to the hot auction of their block of 100
    events = bid_events(bid.height)
    hot = (3 * (events // 50) + 2) // 100 * 100 + FIRST_ID
    assert 0.48 < (bid["auction"].to_numpy() == hot).mean() < 0.53
    per_bidder = bid["bidder"].value_counts()["count"]
    assert per_bidder.max() > 20 * bid.height / big.person.height  # type: ignore[operator]


def test_channels_and_urls(big: Nexmark[pl.DataFrame]) -> None:
    bid = big.bid
    hot = bid["channel"].is_in(HOT_CHANNELS)
    assert 0.88 < hot.mean() < 0.92  # type: ignore[operator]
    assert bid.filter(~hot)["channel"].str.contains(r"^channel-\d{1,4}$").all()
    assert bid["url"].str.starts_with("https://www.nexmark.com/").all()
    assert bid["url"].str.contains(r"^https://www\.nexmark\.com/[a-z]{5}/item\.htm\?query=1").all()
    # one url per channel
    urls = bid.group_by("channel").agg(pl.col("url").n_unique())
    assert (urls["url"] == 1).all()


def test_person_fields(big: Nexmark[pl.DataFrame]) -> None:
    person = big.person
    names = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES]
    assert person["name"].is_in(names).all()
    assert person["city"].is_in(CITIES).all()
    assert person["state"].is_in(STATES).all()
    assert person["email_address"].str.contains(r"^[a-z]{3,6}@[a-z]{3,4}\.com$").all()
    assert person["credit_card"].str.contains(r"^\d{4} \d{4} \d{4} \d{4}$").all()
    assert person["name"].n_unique() > 50
    assert person["city"].n_unique() == len(CITIES)


def test_row_sizes(big: Nexmark[pl.DataFrame]) -> None:
    def mean_size(df: pl.DataFrame) -> float:
        size = sum(
            pl.col(name).str.len_bytes() if dtype == S else pl.lit(8)
            for name, dtype in df.schema.items()
        )
        return float(df.select(size.mean()).item())  # type: ignore[union-attr]

    assert 95 < mean_size(big.bid) < 105
    assert 190 < mean_size(big.person) < 210
    assert 475 < mean_size(big.auction) < 525
    assert big.auction["item_name"].n_unique() > 1_000
    assert big.auction["description"].str.len_bytes().max() < 100  # type: ignore[operator]


@pytest.mark.parametrize("rate", [1_000, 10_000])
def test_about_100_auctions_in_flight(rate: int) -> None:
    auction = nexmark(15 * rate, rate=rate, seed=2).auction  # 15 s of events
    opened, closes = ms_of(auction), ms_of(auction, "expires")
    lo, hi = opened[0] + (closes - opened).max(), opened[-1]
    for t in np.linspace(lo, hi, 7).astype(np.int64):
        open_now = int(((opened <= t) & (t < closes)).sum())
        assert 50 <= open_now <= 200, (t, open_now)


def test_categories_are_all_used(big: Nexmark[pl.DataFrame]) -> None:
    assert sorted(big.auction["category"].unique().to_list()) == [10, 11, 12, 13, 14]


# --- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_events": -1}, "n_events must be >= 0"),
        ({"n_events": 1.5}, "n_events must be an int"),
        ({"n_events": True}, "n_events must be an int"),
        ({"n_events": "10"}, "n_events must be an int"),
        ({"rate": 0}, "rate must be"),
        ({"rate": -5.0}, "rate must be"),
        ({"rate": float("nan")}, "rate must be"),
        ({"rate": float("inf")}, "rate must be"),
        ({"rate": "fast"}, "rate must be"),
        ({"rate": True}, "rate must be"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": 2.0}, "seed must be an int"),
        ({"start": "2024-01-01"}, "start must be a datetime"),
        ({"n_events": 2**44}, "overflow"),
        ({"rate": 1e-12, "n_events": 10**6}, "overflow"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"n_events": 10, **kwargs}
    n = args.pop("n_events")
    for fn in (nexmark, nexmark_arrow, nexmark_batches):
        with pytest.raises(PipelineError, match=match):
            fn(n, **args)  # type: ignore[operator]


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_bad_batch_size(batch_size: object) -> None:
    with pytest.raises(PipelineError, match="batch_size"):
        nexmark_arrow(10, batch_size=batch_size)  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="batch_size"):
        nexmark_batches(10, batch_size=batch_size)  # type: ignore[arg-type]


def test_exported() -> None:
    for name in ("Nexmark", "nexmark", "nexmark_arrow", "nexmark_batches"):
        assert name in datasets.__all__
    assert vs.datasets.nexmark is nexmark


def test_extra_text_without_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # Extras longer than the repeated text are copied from it: the same strings.
    expected = nexmark(20_000, seed=4)
    never = -_nexmark_events._NX_TEXT  # never a window
    monkeypatch.setattr(_nexmark_events, "_NX_TEXT_LEAD", never)
    copied = nexmark(20_000, seed=4)
    for a, b in zip(expected, copied, strict=True):
        assert_frame_equal(a, b)
