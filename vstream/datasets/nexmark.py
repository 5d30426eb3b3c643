"""The events of the Nexmark online-auction benchmark: :func:`nexmark` and its Arrow forms.

The model is described in :func:`nexmark`'s notes; the generator that draws the events is
in :mod:`vstream.datasets._nexmark_events`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import polars as pl
import pyarrow as pa

from vstream.datasets._common import check_int
from vstream.datasets._nexmark_events import KINDS, NexmarkGenerator, NexmarkKind, nexmark_spec

__all__ = ["Nexmark", "NexmarkKind", "nexmark", "nexmark_arrow", "nexmark_batches"]

_FrameT = TypeVar("_FrameT")


@dataclass(frozen=True, slots=True)
class Nexmark(Generic[_FrameT]):
    """The three event streams of a Nexmark dataset, each in event (and time) order.

    Attributes
    ----------
    person
        New people: ``id``, ``name``, ``email_address``, ``credit_card``, ``city``,
        ``state``, ``date_time``, ``extra``.
    auction
        New auctions: ``id``, ``item_name``, ``description``, ``initial_bid``,
        ``reserve``, ``date_time``, ``expires``, ``seller``, ``category``, ``extra``.
    bid
        Bids: ``auction``, ``bidder``, ``price``, ``channel``, ``url``, ``date_time``,
        ``extra``.

    Examples
    --------
    >>> from vstream.datasets.nexmark import nexmark
    >>> data = nexmark(100)
    >>> data.person.height, data.auction.height, data.bid.height
    (2, 6, 92)
    >>> person, auction, bid = data
    """

    person: _FrameT
    auction: _FrameT
    bid: _FrameT

    def __iter__(self) -> Iterator[_FrameT]:
        """The person, auction and bid streams, in this order."""
        return iter((self.person, self.auction, self.bid))


def nexmark(
    n_events: int,
    *,
    rate: float = 10_000,
    seed: int = 0,
    start: datetime = datetime(2024, 1, 1),
) -> Nexmark[pl.DataFrame]:
    """Generate the first ``n_events`` events of the Nexmark online-auction benchmark.

    Events are numbered ``0, 1, 2, ...``; in every 50 consecutive ids the first is a new
    person, the next three are new auctions and the other 46 are bids (1:3:46, as in the
    Nexmark reference generator of Apache Beam and Flink). The data depends only on the
    arguments, never on the wall clock, and the first ``n`` events of a longer dataset are
    the dataset of ``n`` events.

    Parameters
    ----------
    n_events
        Number of events, >= 0, over the three kinds.
    rate
        Events per second of event time: event ``e`` happens at
        ``start + floor(e * 1000 / rate)`` ms (the float64 quotient, exact for integral
        rates). Nexmark's default first-event rate is 10,000 events per second.
    seed
        Seed (>= 0) of the random streams; the same arguments always give the same data.
    start
        Time of event 0; a naive datetime is taken as UTC.

    Returns
    -------
    Nexmark[polars.DataFrame]
        ``person``, ``auction`` and ``bid`` frames, each in event order (hence sorted by
        ``date_time``). Ids, prices, sellers, bidders and categories are Int64, times are
        ``Datetime("ms")`` without time zone, the rest are String:

        - person: ``id``, ``name``, ``email_address``, ``credit_card``, ``city``,
          ``state``, ``date_time``, ``extra``;
        - auction: ``id``, ``item_name``, ``description``, ``initial_bid``, ``reserve``,
          ``date_time``, ``expires``, ``seller``, ``category``, ``extra``;
        - bid: ``auction``, ``bidder``, ``price``, ``channel``, ``url``, ``date_time``,
          ``extra``.

    Raises
    ------
    PipelineError
        If an argument is out of range or of the wrong type.

    Notes
    -----
    The model, with base-0 indices (an id is the index + 1000):

    - Person ``p`` is event ``50 p``; auction ``a`` is event ``50 (a // 3) + a % 3 + 1``.
      Ids are dense and increasing in event order. At a bid of epoch ``k = e // 50`` the
      newest person is ``k`` and the newest auction ``3 k + 2``.
    - A bid is on the hot auction ``(last // 100) * 100`` with probability 1/2 (hot
      auction ratio 2), else on an auction drawn uniformly from
      ``[max(last - 100, 0), last + 10]`` and clipped to ``last``: never on an auction that
      does not exist yet.
    - A bidder is the hot person ``min((last // 100) * 100 + 1, last)`` with probability
      3/4 (hot bidder ratio 4), else uniform over the (up to) 1000 newest people
      ``[max(last - 999, 0), last]``; a seller likewise, with hot person
      ``(last // 100) * 100`` (hot seller ratio 4).
    - Prices (``price``, ``initial_bid``, ``reserve - initial_bid``) are
      ``round(10 ** (6 u) * 100)`` cents for a uniform ``u``: from 100 to 10**8.
    - An auction ``expires`` ``1 + floor(h * (0.5 + u))`` ms after its ``date_time``,
      where ``h`` is the event time of 100 auctions (``100 * 50 / 3`` events): about 100
      auctions are open at any time. ``category`` is uniform in ``[10, 15)``.
    - 9 bids in 10 come from one of the channels ``Google``, ``Facebook``, ``Baidu`` and
      ``Apple``, the others from ``channel-<n>``, ``n`` uniform in ``[0, 10000)``; each
      channel has a fixed url ``https://www.nexmark.com/<5 letters>/item.htm?query=1``,
      with ``&channel_id=<n>`` for the ``channel-<n>`` ones.
    - Names, cities and states come from Nexmark's small fixed lists, item names and
      descriptions from fixed pools of 10,000 random words; emails and credit card
      numbers are random per person.
    - ``extra`` pads the average person, auction and bid to 200, 500 and 100 bytes
      (8 bytes per number or time plus the string lengths), each row within 20% of the
      missing bytes. Its text is cut from a fixed random text.

    Events are drawn in chunks of 100,000 event ids, each kind of event of each chunk from
    its own random stream seeded by ``seed`` and the chunk.

    Examples
    --------
    >>> from vstream.datasets.nexmark import nexmark
    >>> data = nexmark(1_000, seed=1)
    >>> data.person.height, data.auction.height, data.bid.height
    (20, 60, 920)
    >>> data.bid.select("auction", "bidder", "price", "channel", "date_time").head(4)
    shape: (4, 5)
    ┌─────────┬────────┬──────────┬──────────────┬─────────────────────┐
    │ auction ┆ bidder ┆ price    ┆ channel      ┆ date_time           │
    │ ---     ┆ ---    ┆ ---      ┆ ---          ┆ ---                 │
    │ i64     ┆ i64    ┆ i64      ┆ str          ┆ datetime[ms]        │
    ╞═════════╪════════╪══════════╪══════════════╪═════════════════════╡
    │ 1002    ┆ 1000   ┆ 1951363  ┆ Google       ┆ 2024-01-01 00:00:00 │
    │ 1000    ┆ 1000   ┆ 485      ┆ channel-9307 ┆ 2024-01-01 00:00:00 │
    │ 1002    ┆ 1000   ┆ 19586164 ┆ Apple        ┆ 2024-01-01 00:00:00 │
    │ 1000    ┆ 1000   ┆ 170962   ┆ channel-9505 ┆ 2024-01-01 00:00:00 │
    └─────────┴────────┴──────────┴──────────────┴─────────────────────┘
    >>> data.auction.select("id", "seller", "category", "date_time", "expires").tail(2)
    shape: (2, 5)
    ┌──────┬────────┬──────────┬─────────────────────────┬─────────────────────────┐
    │ id   ┆ seller ┆ category ┆ date_time               ┆ expires                 │
    │ ---  ┆ ---    ┆ ---      ┆ ---                     ┆ ---                     │
    │ i64  ┆ i64    ┆ i64      ┆ datetime[ms]            ┆ datetime[ms]            │
    ╞══════╪════════╪══════════╪═════════════════════════╪═════════════════════════╡
    │ 1058 ┆ 1000   ┆ 10       ┆ 2024-01-01 00:00:00.095 ┆ 2024-01-01 00:00:00.181 │
    │ 1059 ┆ 1000   ┆ 13       ┆ 2024-01-01 00:00:00.095 ┆ 2024-01-01 00:00:00.226 │
    └──────┴────────┴──────────┴─────────────────────────┴─────────────────────────┘
    """
    gen = NexmarkGenerator(nexmark_spec(n_events, rate, seed, start))
    tables = gen.tables(None)
    person, auction, bid = (pl.from_arrow(tables[kind], rechunk=True) for kind in KINDS)
    return Nexmark(person=person, auction=auction, bid=bid)  # type: ignore[arg-type]


def nexmark_arrow(
    n_events: int,
    *,
    batch_size: int = 65_536,
    rate: float = 10_000,
    seed: int = 0,
    start: datetime = datetime(2024, 1, 1),
) -> Nexmark[pa.Table]:
    """Generate the events of :func:`nexmark` as three Arrow tables.

    Each table is made of record batches of ``batch_size`` rows (the last one may be
    shorter), ready for :func:`vstream.from_arrow`. Strings are ``large_string`` and times
    ``timestamp[ms]``; the ``extra`` strings share one fixed text buffer rather than each
    having a copy.

    Parameters
    ----------
    n_events
        Number of events, >= 0.
    batch_size
        Rows per record batch of each table, >= 1.
    rate, seed, start
        As in :func:`nexmark`.

    Returns
    -------
    Nexmark[pyarrow.Table]
        ``person``, ``auction`` and ``bid`` tables with the rows and columns of
        :func:`nexmark`.

    Raises
    ------
    PipelineError
        If an argument is out of range or of the wrong type.

    Examples
    --------
    >>> import polars as pl
    >>> from vstream.datasets.nexmark import nexmark_arrow
    >>> import vstream as vs
    >>> data = nexmark_arrow(10_000, batch_size=4_096)
    >>> [b.num_rows for b in data.bid.to_batches()]
    [4096, 4096, 1008]
    >>> vs.from_arrow(data.bid).filter(pl.col("price") > 1_000_000).collect().height
    3093
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    gen = NexmarkGenerator(nexmark_spec(n_events, rate, seed, start))
    tables = gen.tables(batch_size)
    return Nexmark(person=tables["person"], auction=tables["auction"], bid=tables["bid"])


def nexmark_batches(
    n_events: int,
    *,
    batch_size: int = 65_536,
    rate: float = 10_000,
    seed: int = 0,
    start: datetime = datetime(2024, 1, 1),
) -> Iterator[tuple[NexmarkKind, pa.RecordBatch]]:
    """Generate the events of :func:`nexmark` lazily, as ``(kind, batch)`` pairs.

    Events are generated 100,000 event ids at a time as the iterator is consumed, so
    memory stays flat however large ``n_events`` is. Each chunk of event ids gives its
    ``"person"``, then its ``"auction"``, then its ``"bid"`` batches, so the three kinds
    stay interleaved in event time; a batch never spans two chunks, hence batches have at
    most ``batch_size`` rows (never 0). The batches of one kind, concatenated, are the
    table of :func:`nexmark_arrow`. Arguments are checked when this function is called.

    Parameters
    ----------
    n_events
        Number of events, >= 0.
    batch_size
        Largest number of rows per batch, >= 1.
    rate, seed, start
        As in :func:`nexmark`.

    Returns
    -------
    Iterator[tuple[str, pyarrow.RecordBatch]]
        ``(kind, batch)`` with ``kind`` one of ``"person"``, ``"auction"`` and ``"bid"``
        and ``batch`` holding the columns of :func:`nexmark_arrow`'s table of that kind.

    Raises
    ------
    PipelineError
        If an argument is out of range or of the wrong type.

    Examples
    --------
    >>> from vstream.datasets.nexmark import nexmark_batches
    >>> [(kind, b.num_rows) for kind, b in nexmark_batches(150_000, batch_size=50_000)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('person', 2000), ('auction', 6000), ('bid', 50000), ('bid', 42000),
     ('person', 1000), ('auction', 3000), ('bid', 46000)]
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    gen = NexmarkGenerator(nexmark_spec(n_events, rate, seed, start))
    return _nexmark_pieces(gen, batch_size)


def _nexmark_pieces(
    gen: NexmarkGenerator, batch_size: int
) -> Iterator[tuple[NexmarkKind, pa.RecordBatch]]:
    for chunk in gen.chunks():
        for kind, batch in zip(KINDS, chunk, strict=True):
            for offset in range(0, batch.num_rows, batch_size):
                yield kind, batch.slice(offset, batch_size)
