"""Deterministic synthetic data, for examples, tests and benchmarks.

Two datasets: synthetic telemetry (:func:`telemetry` and its Arrow forms) and the events
of the Nexmark online-auction benchmark (:func:`nexmark` and its Arrow forms; its model
is described there). Both are vectorized with numpy, drawn chunk by chunk from random
streams seeded by ``seed`` and the chunk, and never depend on the wall clock.

Telemetry
---------
Each row is one event from a fleet of hosts: an event time, the host (as a string and
as an integer id), its region and a few metrics. Generation is vectorized with numpy in
fixed internal chunks of 65,536 rows, each chunk drawn from its own random stream derived
from ``seed`` and the chunk index. The data therefore depends only on the arguments that
describe it, never on how it is delivered: :func:`telemetry`, :func:`telemetry_arrow` and
:func:`telemetry_batches` return the same rows for every ``batch_size``, and the first
``n`` rows of a longer dataset are the dataset of ``n`` rows.

Time model
----------
Event ``i`` (counting from 0) has the base time ``start + floor(i * 1000 /
events_per_second)`` milliseconds and is emitted ``d_i`` ms earlier, with ``d_i`` a
uniform integer in ``[0, D]`` where ``D`` is ``max_disorder``. Hence every event is at
most ``D`` ms older than the newest event before it: a watermark of ``max seen - D`` never
makes an event late, and ``D = 0`` gives non-decreasing times.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, Literal, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._duration import parse_duration
from vstream.errors import PipelineError

__all__ = [
    "Nexmark",
    "NexmarkKind",
    "nexmark",
    "nexmark_arrow",
    "nexmark_batches",
    "telemetry",
    "telemetry_arrow",
    "telemetry_batches",
]

# Fixed so the values never depend on the batch size the caller asks for.
_CHUNK = 65_536
_MAX_HOSTS = 2**31 - 1  # host_id is Int32
# Above this many hosts the name table would cost more memory than formatting per chunk.
_HOST_TABLE_LIMIT = 1 << 22
_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
    "sa-east-1",
)
_STATUS_CODES = np.array([200, 404, 500, 503], dtype=np.int32)
_STATUS_CUMULATIVE = np.cumsum([0.95, 0.03, 0.015])  # the rest (0.005) is 503
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_TIME_TYPES = ("int", "datetime")


@dataclass(frozen=True, slots=True)
class _Spec:
    """Validated arguments of one dataset."""

    n: int
    hosts: int
    events_per_second: float
    disorder_ms: int
    seed: int
    start_ms: int
    time_type: Literal["int", "datetime"]
    null_fraction: float


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value: object) -> bool:
    return _is_int(value) or isinstance(value, float | np.floating)


def _check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    if not _is_int(value):
        msg = f"{name} must be an int, got {type(value).__name__} {value!r}"
        raise PipelineError(msg)
    out = int(value)  # type: ignore[call-overload]
    if out < low or (high is not None and out > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        msg = f"{name} must be {allowed}, got {out}"
        raise PipelineError(msg)
    return int(out)


def _spec(
    n: object,
    hosts: object,
    events_per_second: object,
    max_disorder: object,
    seed: object,
    start: object,
    time_type: object,
    null_fraction: object,
) -> _Spec:
    n = _check_int(n, "n", 0)
    hosts = _check_int(hosts, "hosts", 1, _MAX_HOSTS)
    seed = _check_int(seed, "seed", 0)
    if not _is_real(events_per_second) or not (
        math.isfinite(events_per_second) and events_per_second > 0  # type: ignore[arg-type,operator]
    ):
        msg = f"events_per_second must be a finite number > 0, got {events_per_second!r}"
        raise PipelineError(msg)
    eps = float(events_per_second)  # type: ignore[arg-type]
    if isinstance(max_disorder, np.integer):
        max_disorder = int(max_disorder)
    disorder = parse_duration(max_disorder, "ms", what="max_disorder")  # type: ignore[arg-type]
    if not _is_real(null_fraction) or not (0 <= null_fraction < 1):  # type: ignore[operator]
        msg = f"null_fraction must be a number in [0, 1), got {null_fraction!r}"
        raise PipelineError(msg)
    if time_type not in _TIME_TYPES:
        msg = f"time_type must be 'int' or 'datetime', got {time_type!r}"
        raise PipelineError(msg)
    if not isinstance(start, datetime):
        msg = f"start must be a datetime, got {type(start).__name__} {start!r}"
        raise PipelineError(msg)
    aware = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    start_ms = (aware - _EPOCH) // _ONE_MS
    # The last base time has to fit an Int64 of milliseconds, with room for the disorder.
    span = max(n - 1, 0) * 1000.0 / eps
    if abs(start_ms) + span + disorder >= 2**62:
        msg = (
            f"n={n} events at events_per_second={events_per_second!r} from {start} "
            "overflow a millisecond timestamp: use a higher events_per_second or fewer rows"
        )
        raise PipelineError(msg)
    return _Spec(
        n=n,
        hosts=hosts,
        events_per_second=eps,
        disorder_ms=disorder,
        seed=seed,
        start_ms=start_ms,
        time_type=time_type,  # type: ignore[arg-type]
        null_fraction=float(null_fraction),  # type: ignore[arg-type]
    )


def _schema(time_type: Literal["int", "datetime"]) -> pa.Schema:
    ts = pa.int64() if time_type == "int" else pa.timestamp("ms")
    return pa.schema(
        [
            ("ts", ts),
            ("host", pa.large_string()),
            ("host_id", pa.int32()),
            ("region", pa.large_string()),
            ("cpu", pa.float64()),
            ("mem", pa.float64()),
            ("latency_ms", pa.float64()),
            ("status", pa.int32()),
            ("bytes", pa.int64()),
        ]
    )


def _host_width(hosts: int) -> int:
    return max(5, len(str(hosts - 1)))


def _format_hosts(ids: np.ndarray, width: int) -> pa.LargeStringArray:
    """``"host-"`` and the zero-padded id of each entry, built as raw bytes."""
    length = 5 + width
    chars = np.empty((len(ids), length), dtype=np.uint8)
    chars[:, :5] = np.frombuffer(b"host-", dtype=np.uint8)
    rest = ids.astype(np.int64)
    for pos in range(length - 1, 4, -1):
        chars[:, pos] = rest % 10 + ord("0")
        rest //= 10
    offsets = np.arange(len(ids) + 1, dtype=np.int64) * length
    return pa.LargeStringArray.from_buffers(
        len(ids), pa.py_buffer(offsets), pa.py_buffer(chars.ravel())
    )


def _mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a cheap bijective hash of each uint64."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = x ^ (x >> np.uint64(31))
    return out


class _Generator:
    """Draws the chunks of one dataset; holds what is shared between chunks."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.schema = _schema(spec.time_type)
        self.width = _host_width(spec.hosts)
        # Per-host traits come from a hash of the host id rather than a table, so memory
        # stays independent of the number of hosts.
        self.host_keys = np.random.SeedSequence(spec.seed, spawn_key=(1,)).generate_state(
            2, np.uint64
        )
        self.names = (
            _format_hosts(np.arange(spec.hosts, dtype=np.int64), self.width)
            if spec.hosts <= _HOST_TABLE_LIMIT
            else None
        )
        self.regions = pa.array(_REGIONS, pa.large_string())

    def _host_uniform(self, ids: np.ndarray, which: int) -> np.ndarray:
        """A fixed value in [0, 1) per host id, different for each ``which``."""
        mixed = _mix64(ids.astype(np.uint64) ^ self.host_keys[which])
        return (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def chunk(self, index: int) -> pa.RecordBatch:
        """Rows ``[index * _CHUNK, (index + 1) * _CHUNK)`` clipped to ``n``."""
        spec = self.spec
        first = index * _CHUNK
        rows = min(_CHUNK, spec.n - first)
        seq = np.random.SeedSequence(spec.seed, spawn_key=(0, index))
        rng = np.random.Generator(np.random.PCG64(seq))
        # Draw whole chunks in a fixed order, whatever the options, so a short dataset is
        # a prefix of a longer one and an option only changes the columns it is about.
        u_host = rng.random(_CHUNK)[:rows]
        u_delay = rng.random(_CHUNK)[:rows]
        cpu_noise = rng.standard_normal(_CHUNK)[:rows]
        mem_noise = rng.standard_normal(_CHUNK)[:rows]
        lat_noise = rng.standard_normal(_CHUNK)[:rows]
        u_status = rng.random(_CHUNK)[:rows]
        bytes_noise = rng.standard_normal(_CHUNK)[:rows]

        i = np.arange(first, first + rows, dtype=np.float64)
        # i * 1000 is exact in float64 (i < 2**43), so the floor is exact for integral rates
        base = spec.start_ms + np.floor(i * 1000.0 / spec.events_per_second).astype(np.int64)
        delay = np.minimum((u_delay * (spec.disorder_ms + 1)).astype(np.int64), spec.disorder_ms)
        ts = base - delay

        # Density of host x/hosts is proportional to x**-0.5: low ids are hotter (host 0
        # gets ~1/sqrt(hosts) of the events) but every host keeps at least half of its
        # uniform share, so all of them show up in long runs.
        host_id = np.minimum((u_host * u_host * spec.hosts).astype(np.int32), spec.hosts - 1)
        if self.names is not None:
            host = self.names.take(pa.array(host_id))
        else:
            host = _format_hosts(host_id, self.width)
        region = self.regions.take(pa.array(host_id % len(_REGIONS)))

        cpu = np.clip(5.0 + 60.0 * self._host_uniform(host_id, 0) + 10.0 * cpu_noise, 0, 100)
        mem = np.clip(20.0 + 60.0 * self._host_uniform(host_id, 1) + 5.0 * mem_noise, 0, 100)
        latency = 20.0 * np.exp(0.6 * lat_noise)
        status = _STATUS_CODES[np.searchsorted(_STATUS_CUMULATIVE, u_status, side="right")]
        nbytes = np.floor(2048.0 * np.exp(bytes_noise)).astype(np.int64)
        nbytes[status >= 500] = 0

        masks: list[np.ndarray | None] = [None, None, None]
        if spec.null_fraction > 0:
            # Drawn last so that nulls only blank values, never change them.
            masks = [rng.random((3, _CHUNK))[k, :rows] < spec.null_fraction for k in range(3)]

        ts_array = pa.array(ts) if spec.time_type == "int" else pa.array(ts.view("M8[ms]"))
        columns = [
            ts_array,
            host,
            pa.array(host_id),
            region,
            pa.array(cpu, mask=masks[0]),
            pa.array(mem, mask=masks[1]),
            pa.array(latency, mask=masks[2]),
            pa.array(status),
            pa.array(nbytes),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def chunks(self) -> Iterator[pa.RecordBatch]:
        for index in range(-(-self.spec.n // _CHUNK)):
            yield self.chunk(index)


def _rebatch(chunks: Iterator[pa.RecordBatch], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Re-slice ``chunks`` into batches of exactly ``batch_size`` rows (the last may be short)."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for chunk in chunks:
        offset = 0
        while offset < chunk.num_rows:
            take = min(batch_size - pending_rows, chunk.num_rows - offset)
            pending.append(chunk.slice(offset, take))
            pending_rows += take
            offset += take
            if pending_rows == batch_size:
                yield _concat(pending)
                pending, pending_rows = [], 0
    if pending_rows:
        yield _concat(pending)


def _concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]


def telemetry(
    n: int,
    *,
    hosts: int = 10_000,
    events_per_second: float = 1_000,
    max_disorder: str | timedelta | int = "2s",
    seed: int = 0,
    start: datetime = datetime(2024, 1, 1),
    time_type: Literal["int", "datetime"] = "int",
    null_fraction: float = 0.0,
) -> pl.DataFrame:
    """Generate ``n`` synthetic telemetry events as a Polars DataFrame.

    Parameters
    ----------
    n
        Number of rows, >= 0.
    hosts
        Number of distinct hosts, between 1 and 2**31 - 1. Hosts with a low id are
        hotter than others, but each gets at least half of a uniform share of events.
    events_per_second
        Rate of the base event times: event ``i`` has base time
        ``start + floor(i * 1000 / events_per_second)`` ms.
    max_disorder
        Largest delay ``D`` subtracted from the base time, uniform in ``[0, D]``: a
        Polars duration string (``"2s"``), a timedelta, or an int of milliseconds. Each
        event is at most ``D`` older than the newest event before it; 0 gives sorted times.
    seed
        Seed (>= 0) of the random streams; the same arguments always give the same data.
    start
        Base time of the first event; a naive datetime is taken as UTC.
    time_type
        ``"int"`` for ``ts`` as Int64 milliseconds since the Unix epoch, ``"datetime"``
        for a ``Datetime("ms")`` column without time zone.
    null_fraction
        Fraction in [0, 1) of the ``cpu``, ``mem`` and ``latency_ms`` values that are
        null, drawn independently per value. Other columns are never null.

    Returns
    -------
    polars.DataFrame
        Columns ``ts`` (Int64 or Datetime("ms")), ``host`` (String, ``"host-00042"``),
        ``host_id`` (Int32), ``region`` (String, fixed per host), ``cpu`` and ``mem``
        (Float64 in [0, 100]), ``latency_ms`` (Float64 > 0, median about 20),
        ``status`` (Int32: 200, 404, 500 or 503) and ``bytes`` (Int64 >= 0).

    Raises
    ------
    PipelineError
        If an argument is out of range; :class:`~vstream.errors.DurationError` if
        ``max_disorder`` is not a valid duration.

    Examples
    --------
    >>> telemetry(4, hosts=3, max_disorder=0, time_type="datetime").select(
    ...     "ts", "host", "region", "status"
    ... )
    shape: (4, 4)
    ┌─────────────────────────┬────────────┬───────────┬────────┐
    │ ts                      ┆ host       ┆ region    ┆ status │
    │ ---                     ┆ ---        ┆ ---       ┆ ---    │
    │ datetime[ms]            ┆ str        ┆ str       ┆ i32    │
    ╞═════════════════════════╪════════════╪═══════════╪════════╡
    │ 2024-01-01 00:00:00     ┆ host-00000 ┆ us-east-1 ┆ 200    │
    │ 2024-01-01 00:00:00.001 ┆ host-00002 ┆ us-west-2 ┆ 200    │
    │ 2024-01-01 00:00:00.002 ┆ host-00000 ┆ us-east-1 ┆ 200    │
    │ 2024-01-01 00:00:00.003 ┆ host-00001 ┆ us-east-2 ┆ 200    │
    └─────────────────────────┴────────────┴───────────┴────────┘
    """
    gen = _Generator(
        _spec(n, hosts, events_per_second, max_disorder, seed, start, time_type, null_fraction)
    )
    table = pa.Table.from_batches(list(gen.chunks()), schema=gen.schema)
    return pl.from_arrow(table, rechunk=True)  # type: ignore[return-value]


def telemetry_batches(
    n: int,
    *,
    batch_size: int = 65_536,
    hosts: int = 10_000,
    events_per_second: float = 1_000,
    max_disorder: str | timedelta | int = "2s",
    seed: int = 0,
    start: datetime = datetime(2024, 1, 1),
    time_type: Literal["int", "datetime"] = "int",
    null_fraction: float = 0.0,
) -> Iterator[pa.RecordBatch]:
    """Generate the rows of :func:`telemetry` lazily, as Arrow record batches.

    Rows are generated chunk by chunk as the iterator is consumed, so memory stays flat
    however large ``n`` is. The concatenated batches equal ``telemetry(n, ...)`` for
    every ``batch_size``. Arguments are checked when this function is called, not when
    the first batch is drawn.

    Parameters
    ----------
    n
        Number of rows, >= 0.
    batch_size
        Rows per batch, >= 1; the last batch may be shorter. No batch is empty.
    hosts, events_per_second, max_disorder, seed, start, time_type, null_fraction
        As in :func:`telemetry`.

    Returns
    -------
    Iterator[pyarrow.RecordBatch]
        Batches with the columns of :func:`telemetry`; strings are ``large_string``.

    Raises
    ------
    PipelineError
        If an argument is out of range.

    Examples
    --------
    >>> [b.num_rows for b in telemetry_batches(10, batch_size=4)]
    [4, 4, 2]
    >>> batch = next(telemetry_batches(3, hosts=2, max_disorder="1s", seed=7))
    >>> pl.from_arrow(batch).select("ts", "host", "host_id")
    shape: (3, 3)
    ┌───────────────┬────────────┬─────────┐
    │ ts            ┆ host       ┆ host_id │
    │ ---           ┆ ---        ┆ ---     │
    │ i64           ┆ str        ┆ i32     │
    ╞═══════════════╪════════════╪═════════╡
    │ 1704067199605 ┆ host-00000 ┆ 0       │
    │ 1704067199495 ┆ host-00000 ┆ 0       │
    │ 1704067199583 ┆ host-00000 ┆ 0       │
    └───────────────┴────────────┴─────────┘
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    gen = _Generator(
        _spec(n, hosts, events_per_second, max_disorder, seed, start, time_type, null_fraction)
    )
    return _rebatch(gen.chunks(), batch_size)


def telemetry_arrow(
    n: int,
    *,
    batch_size: int = 65_536,
    hosts: int = 10_000,
    events_per_second: float = 1_000,
    max_disorder: str | timedelta | int = "2s",
    seed: int = 0,
    start: datetime = datetime(2024, 1, 1),
    time_type: Literal["int", "datetime"] = "int",
    null_fraction: float = 0.0,
) -> pa.Table:
    """Generate the rows of :func:`telemetry` as an Arrow table.

    Parameters
    ----------
    n
        Number of rows, >= 0.
    batch_size
        Rows per chunk of the table, >= 1; the last chunk may be shorter.
    hosts, events_per_second, max_disorder, seed, start, time_type, null_fraction
        As in :func:`telemetry`.

    Returns
    -------
    pyarrow.Table
        The columns of :func:`telemetry`; strings are ``large_string``.

    Raises
    ------
    PipelineError
        If an argument is out of range.

    Examples
    --------
    >>> table = telemetry_arrow(5, batch_size=2, hosts=2, null_fraction=0.5, seed=1)
    >>> [len(b) for b in table.to_batches()]
    [2, 2, 1]
    >>> pl.from_arrow(table).select("host", "host_id", cpu_null=pl.col("cpu").is_null())
    shape: (5, 3)
    ┌────────────┬─────────┬──────────┐
    │ host       ┆ host_id ┆ cpu_null │
    │ ---        ┆ ---     ┆ ---      │
    │ str        ┆ i32     ┆ bool     │
    ╞════════════╪═════════╪══════════╡
    │ host-00001 ┆ 1       ┆ false    │
    │ host-00001 ┆ 1       ┆ true     │
    │ host-00000 ┆ 0       ┆ false    │
    │ host-00000 ┆ 0       ┆ false    │
    │ host-00001 ┆ 1       ┆ true     │
    └────────────┴─────────┴──────────┘
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    gen = _Generator(
        _spec(n, hosts, events_per_second, max_disorder, seed, start, time_type, null_fraction)
    )
    return pa.Table.from_batches(list(_rebatch(gen.chunks(), batch_size)), schema=gen.schema)


# --- Nexmark ------------------------------------------------------------------------------

_NX_EPOCH = 50  # events per epoch: 1 person, 3 auctions, then 46 bids
_NX_AUCTIONS = 3
_NX_BIDS = _NX_EPOCH - 1 - _NX_AUCTIONS
_NX_FIRST_ID = 1000  # first person id and first auction id
_NX_CHUNK = 100_000  # event ids per random stream; a multiple of _NX_EPOCH
_NX_IN_FLIGHT = 100  # auctions open at a time, on average
_NX_ACTIVE_PEOPLE = 1000  # non-hot bidders and sellers are among the newest people
_NX_HOT_WINDOW = 100  # the hot auction / person is the first of each block of 100
_NX_AUCTION_LEAD = 10  # non-hot auction draws reach 10 past the newest, then are clipped
# A hot ratio r: the hot choice with probability (r - 1) / r, as Nexmark's hot*Ratio.
_NX_HOT_AUCTION_RATIO = 2
_NX_HOT_BIDDER_RATIO = 4
_NX_HOT_SELLER_RATIO = 4
_NX_HOT_CHANNEL_RATIO = 10  # 9 bids in 10 from a hot channel, the rest from channel-<n>
_NX_CHANNELS = 10_000
_NX_FIRST_CATEGORY = 10
_NX_CATEGORIES = 5
_NX_PRICE_DECADES = 6.0  # prices are 100 * 10**(6u) cents
# Average size of each kind in bytes (8 per number or time, the length of each string):
# ``extra`` pads a row to this size, give or take 20%.
_NX_PERSON_SIZE = 200
_NX_AUCTION_SIZE = 500
_NX_BID_SIZE = 100
_NX_POOL = 10_000  # random item names and descriptions to pick from
_NX_TEXT = 1 << 20  # period of the random text the ``extra`` strings are cut from
_NX_TEXT_LEAD = 4 << 20  # the text repeats this far, so a chunk's extras are one window
_NX_POOL_SEED = 20_240_101  # pools and text are fixed: the seed only picks from them
_FIRST_NAMES = (
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"
)  # fmt: skip
_LAST_NAMES = (
    "Shultz",
    "Abrams",
    "Spencer",
    "White",
    "Bartels",
    "Walton",
    "Smith",
    "Jones",
    "Noris",
)
_CITIES = (
    "Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle",
    "Kent", "Cheyenne",
)  # fmt: skip
_STATES = ("AZ", "CA", "ID", "OR", "WA", "WY")
_HOT_CHANNELS = ("Google", "Facebook", "Baidu", "Apple")
_NX_URL = "https://www.nexmark.com/{}/item.htm?query=1"

NexmarkKind = Literal["person", "auction", "bid"]
_NX_KINDS: tuple[NexmarkKind, ...] = ("person", "auction", "bid")

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


def _nexmark_schemas() -> dict[NexmarkKind, pa.Schema]:
    text, ms, i64 = pa.large_string(), pa.timestamp("ms"), pa.int64()
    return {
        "person": pa.schema(
            [
                ("id", i64),
                ("name", text),
                ("email_address", text),
                ("credit_card", text),
                ("city", text),
                ("state", text),
                ("date_time", ms),
                ("extra", text),
            ]
        ),
        "auction": pa.schema(
            [
                ("id", i64),
                ("item_name", text),
                ("description", text),
                ("initial_bid", i64),
                ("reserve", i64),
                ("date_time", ms),
                ("expires", ms),
                ("seller", i64),
                ("category", i64),
                ("extra", text),
            ]
        ),
        "bid": pa.schema(
            [
                ("auction", i64),
                ("bidder", i64),
                ("price", i64),
                ("channel", text),
                ("url", text),
                ("date_time", ms),
                ("extra", text),
            ]
        ),
    }


@dataclass(frozen=True, slots=True)
class _NexmarkSpec:
    """Validated arguments of one Nexmark dataset."""

    n: int
    rate: float
    seed: int
    start_ms: int


def _nexmark_spec(n_events: object, rate: object, seed: object, start: object) -> _NexmarkSpec:
    n = _check_int(n_events, "n_events", 0)
    seed = _check_int(seed, "seed", 0)
    if not _is_real(rate) or not (math.isfinite(rate) and rate > 0):  # type: ignore[arg-type,operator]
        msg = f"rate must be a finite number of events per second > 0, got {rate!r}"
        raise PipelineError(msg)
    eps = float(rate)  # type: ignore[arg-type]
    if not isinstance(start, datetime):
        msg = f"start must be a datetime, got {type(start).__name__} {start!r}"
        raise PipelineError(msg)
    aware = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    start_ms = (aware - _EPOCH) // _ONE_MS
    # The last expiry (an auction lasts less than 1.5 times the in-flight horizon plus one
    # ms; 2 leaves room) has to fit an Int64 of milliseconds, and event id * 1000 a float64
    # exactly.
    span = (n + 2 * _NX_IN_FLIGHT * _NX_EPOCH / _NX_AUCTIONS) * 1000.0 / eps + 1
    if n > 2**43 or abs(start_ms) + span >= 2**62:
        msg = (
            f"n_events={n} at rate={rate!r} from {start} overflow a millisecond "
            "timestamp: use a higher rate or fewer events"
        )
        raise PipelineError(msg)
    return _NexmarkSpec(n=n, rate=eps, seed=seed, start_ms=start_ms)


def _letters(u: np.ndarray) -> np.ndarray:
    """Lowercase ASCII letters (uint8) from uniforms in [0, 1)."""
    out: np.ndarray = (u * 26).astype(np.uint8) + np.uint8(ord("a"))
    return out


def _offsets(lengths: np.ndarray, start: int = 0) -> np.ndarray:
    out = np.empty(len(lengths) + 1, dtype=np.int64)
    out[0] = start
    np.cumsum(lengths, out=out[1:])
    if start:
        out[1:] += start
    return out


def _strings(lengths: np.ndarray, data: np.ndarray | pa.Buffer, start: int = 0) -> pa.Array:
    """A large_string array of consecutive pieces of ``data`` of the given lengths."""
    buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(np.ascontiguousarray(data))
    return pa.LargeStringArray.from_buffers(
        len(lengths), pa.py_buffer(_offsets(lengths, start)), buffer
    )


@dataclass(frozen=True, slots=True)
class _Pool:
    """Strings to pick from by index, with their lengths in bytes."""

    values: pa.Array
    lengths: np.ndarray

    @classmethod
    def of(cls, values: list[str] | tuple[str, ...]) -> _Pool:
        array = pa.array(values, pa.large_string())
        lengths = np.array([len(v.encode()) for v in values], dtype=np.int64)
        return cls(array, lengths)

    def pick(self, u: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        """The strings at ``floor(u * len)`` for uniforms ``u``, and their lengths."""
        index = np.minimum((u * len(self.lengths)).astype(np.int64), len(self.lengths) - 1)
        return self.values.take(pa.array(index)), self.lengths[index]


def _random_pool(rng: np.random.Generator, count: int, low: int, high: int) -> _Pool:
    """``count`` random strings of letters (1 in 13 a space) with lengths in [low, high)."""
    lengths = rng.integers(low, high, count)
    total = int(lengths.sum())
    data = _letters(rng.random(total))
    data[rng.random(total) < 1 / 13] = ord(" ")
    ends = np.cumsum(lengths)
    # Words never start or end with a space.
    data[ends - lengths] = _letters(rng.random(count))
    data[ends - 1] = _letters(rng.random(count))
    return _Pool(_strings(lengths, data), lengths.astype(np.int64))


@dataclass(frozen=True, slots=True)
class _NexmarkPools:
    """Fixed strings shared by every Nexmark dataset."""

    names: _Pool
    cities: _Pool
    states: _Pool
    items: _Pool
    descriptions: _Pool
    channels: _Pool  # the hot channels, then channel-0, channel-1, ...
    urls: _Pool  # the url of each channel
    channel_of: np.ndarray  # the channel of each of _NX_HOT_CHANNEL_RATIO * _NX_CHANNELS slots
    bid_pad_base: np.ndarray  # the padding of a bid, per channel (see _padding)
    bid_pad_width: np.ndarray
    text: pa.Buffer  # random text; byte i + _NX_TEXT is byte i


@functools.cache
def _nexmark_pools() -> _NexmarkPools:
    rng = np.random.Generator(np.random.PCG64(_NX_POOL_SEED))
    names = [f"{first} {last}" for first in _FIRST_NAMES for last in _LAST_NAMES]
    items = _random_pool(rng, _NX_POOL, 3, 20)
    descriptions = _random_pool(rng, _NX_POOL, 3, 100)
    n_channels = len(_HOT_CHANNELS) + _NX_CHANNELS
    paths = _letters(rng.random((n_channels, 5))).tobytes().decode()
    urls = [_NX_URL.format(paths[5 * i : 5 * i + 5]) for i in range(n_channels)]
    channels = list(_HOT_CHANNELS)
    for n in range(_NX_CHANNELS):
        channels.append(f"channel-{n}")
        urls[len(_HOT_CHANNELS) + n] += f"&channel_id={n}"
    period = _letters(rng.random(_NX_TEXT))
    period[rng.random(_NX_TEXT) < 1 / 8] = ord(" ")
    text = np.resize(period, _NX_TEXT + _NX_TEXT_LEAD)
    # A uniform slot picks the channel: the first (ratio - 1) * _NX_CHANNELS slots share
    # the hot channels, each other slot is one channel-<n>.
    slot = np.arange(_NX_HOT_CHANNEL_RATIO * _NX_CHANNELS, dtype=np.int64)
    hot_slots = (_NX_HOT_CHANNEL_RATIO - 1) * _NX_CHANNELS
    n_hot = len(_HOT_CHANNELS)
    channel_of = np.where(slot < hot_slots, slot * n_hot // hot_slots, n_hot + slot - hot_slots)
    channel_pool, url_pool = _Pool.of(channels), _Pool.of(urls)
    bid_size = 8 * 4 + channel_pool.lengths + url_pool.lengths
    pad_base, pad_width = _padding(bid_size, _NX_BID_SIZE)
    return _NexmarkPools(
        names=_Pool.of(names),
        cities=_Pool.of(_CITIES),
        states=_Pool.of(_STATES),
        items=items,
        descriptions=descriptions,
        channels=channel_pool,
        urls=url_pool,
        channel_of=channel_of,
        bid_pad_base=pad_base,
        bid_pad_width=pad_width,
        text=pa.py_buffer(text),
    )


def _padding(size: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Extra lengths ``base + floor(u * width)`` that pad rows of ``size`` bytes to ``target``.

    As in the Nexmark reference: the missing bytes ``m``, give or take 20% of ``m``.
    """
    rest = np.maximum(target - size, 0)
    delta = (rest * 0.2 + 0.5).astype(np.int64)
    return rest - delta, 2 * delta


def _extras(text: pa.Buffer, lengths: np.ndarray, u_start: float) -> pa.Array:
    """Strings of the given lengths, consecutive pieces of the random text.

    They start at byte ``floor(u_start * _NX_TEXT)`` of the text: usually a window of the
    text itself, without copying.
    """
    start = int(u_start * _NX_TEXT)
    total = int(lengths.sum())
    if start + total <= _NX_TEXT + _NX_TEXT_LEAD:
        return _strings(lengths, text, start)
    period = np.frombuffer(text, dtype=np.uint8)[:_NX_TEXT]
    return _strings(lengths, np.resize(np.roll(period, -start), total))


def _hot_or_recent(
    u: np.ndarray, ratio: int, hot: np.ndarray, low: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """``hot`` with probability ``(ratio - 1) / ratio``, else uniform in ``[low, low + count)``.

    One uniform ``u`` decides both: ``t = floor(u * ratio * count)`` picks the hot value
    below ``(ratio - 1) * count`` and ``low + t - (ratio - 1) * count`` above.
    """
    n_hot = (ratio - 1) * count
    t = (u * (ratio * count)).astype(np.int64)
    out: np.ndarray = np.where(t < n_hot, hot, t + (low - n_hot))
    return out


def _people(last: np.ndarray, u: np.ndarray, ratio: int, offset: int) -> np.ndarray:
    """Base-0 people who exist once person ``last`` does.

    The hot person ``(last // 100) * 100 + offset`` (at most ``last``) with probability
    ``(ratio - 1) / ratio``, else one of the ``_NX_ACTIVE_PEOPLE`` newest, uniformly.
    """
    active = np.minimum(last + 1, _NX_ACTIVE_PEOPLE)
    hot = np.minimum(last // _NX_HOT_WINDOW * _NX_HOT_WINDOW + offset, last)
    out: np.ndarray = np.minimum(_hot_or_recent(u, ratio, hot, last + 1 - active, active), last)
    return out


def _prices(u: np.ndarray) -> np.ndarray:
    """``round(10 ** (6 * u) * 100)`` cents: from $1 to $1,000,000, log-uniform."""
    x = np.exp(u * (_NX_PRICE_DECADES * math.log(10)) + math.log(100))
    x += 0.5
    out: np.ndarray = x.astype(np.int64)
    return out


def _rows(first: int, end: int, low: int, high: int) -> int:
    """How many event ids in [first, end) have their position in the epoch in [low, high)."""
    whole, part = divmod(end - first, _NX_EPOCH)
    return whole * (high - low) + min(max(part - low, 0), high - low)


def _timestamps(ms: np.ndarray) -> pa.Array:
    return pa.array(ms.view("M8[ms]"))


class _NexmarkGenerator:
    """Draws the chunks of one Nexmark dataset.

    Chunk ``c`` holds the event ids ``[c * _NX_CHUNK, (c + 1) * _NX_CHUNK)`` (clipped to
    ``n``): whole epochs. Each kind of event draws from its own random stream, seeded by
    ``(seed, chunk, kind)``: first the offset of its ``extra`` text, then a block of
    uniforms with one row per field and one column per event of a whole chunk, so that a
    row's values do not depend on where the dataset ends.
    """

    def __init__(self, spec: _NexmarkSpec) -> None:
        self.spec = spec
        self.schemas = _nexmark_schemas()
        self.pools = _nexmark_pools()
        self.ms_per_event = 1000.0 / spec.rate
        # Auctions last about as long as it takes to create _NX_IN_FLIGHT of them.
        self.horizon_ms = _NX_IN_FLIGHT * _NX_EPOCH / _NX_AUCTIONS * self.ms_per_event
        epochs = _NX_CHUNK // _NX_EPOCH
        self.full = {"person": epochs, "auction": epochs * _NX_AUCTIONS, "bid": epochs * _NX_BIDS}

    def _uniforms(self, index: int, kind: int, fields: int, rows: int) -> tuple[float, np.ndarray]:
        seq = np.random.SeedSequence(self.spec.seed, spawn_key=(2, index, kind))
        rng = np.random.Generator(np.random.PCG64(seq))
        text_start = rng.random()
        return text_start, rng.random((fields, rows))

    def _times(self, events: np.ndarray) -> np.ndarray:
        # events * 1000 is exact in float64 (events < 2**43), so this is exactly Python's
        # floor(event * 1000 / rate) (a truncation, the quotient is >= 0).
        ms = (events * 1000.0 / self.spec.rate).astype(np.int64)
        ms += self.spec.start_ms
        return ms

    def person(self, index: int, first: int, end: int) -> pa.RecordBatch:
        n = _rows(first, end, 0, 1)
        text_start, u = self._uniforms(index, 0, 20, self.full["person"])
        u = u[:, :n]
        pools = self.pools
        base = np.arange(first // _NX_EPOCH, first // _NX_EPOCH + n, dtype=np.int64)
        name, name_len = pools.names.pick(u[0])
        city, city_len = pools.cities.pick(u[1])
        state, state_len = pools.states.pick(u[2])
        # email: 3 to 6 letters, "@", 3 or 4 letters, ".com"
        local = 3 + (u[3] * 4).astype(np.int64)
        domain = 3 + (u[4] * 2).astype(np.int64)
        chars = np.empty((n, 15), dtype=np.uint8)
        chars[:, :6] = _letters(u[5:11].T)
        chars[:, 6] = ord("@")
        chars[:, 7:11] = _letters(u[11:15].T)
        chars[:, 11:] = np.frombuffer(b".com", dtype=np.uint8)
        keep = np.ones((n, 15), dtype=bool)
        keep[:, :6] = np.arange(6) < local[:, None]
        keep[:, 7:11] = np.arange(4) < domain[:, None]
        email_len = local + domain + 5
        email = _strings(email_len, chars[keep])
        # credit card: four groups of four digits
        groups = (u[15:19].T * 10_000).astype(np.int64)
        card = np.full((n, 4, 5), ord(" "), dtype=np.uint8)
        for pos, scale in enumerate((1000, 100, 10, 1)):
            card[:, :, pos] = groups // scale % 10 + ord("0")
        card_len = np.full(n, 19, dtype=np.int64)
        credit_card = _strings(card_len, card.reshape(n, 20)[:, :19])
        size = 8 * 2 + name_len + email_len + card_len + city_len + state_len
        pad_base, pad_width = _padding(size, _NX_PERSON_SIZE)
        extra_len = pad_base + (u[19] * pad_width).astype(np.int64)
        columns = [
            pa.array(base + _NX_FIRST_ID),
            name,
            email,
            credit_card,
            city,
            state,
            _timestamps(self._times(base * _NX_EPOCH)),
            _extras(pools.text, extra_len, text_start),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schemas["person"])

    def auction(self, index: int, first: int, end: int) -> pa.RecordBatch:
        n = _rows(first, end, 1, 1 + _NX_AUCTIONS)
        text_start, u = self._uniforms(index, 1, 8, self.full["auction"])
        u = u[:, :n]
        pools = self.pools
        base = np.arange(n, dtype=np.int64) + first // _NX_EPOCH * _NX_AUCTIONS
        epoch = base // _NX_AUCTIONS
        events = base + epoch * (_NX_EPOCH - _NX_AUCTIONS) + 1
        item, item_len = pools.items.pick(u[0])
        description, description_len = pools.descriptions.pick(u[1])
        initial = _prices(u[2])
        reserve = initial + _prices(u[3])
        ms = self._times(events)
        expires = ms + 1 + (self.horizon_ms * (0.5 + u[4])).astype(np.int64)
        seller = _people(epoch, u[5], _NX_HOT_SELLER_RATIO, 0)
        category = _NX_FIRST_CATEGORY + np.minimum(
            (u[6] * _NX_CATEGORIES).astype(np.int64), _NX_CATEGORIES - 1
        )
        size = 8 * 7 + item_len + description_len
        pad_base, pad_width = _padding(size, _NX_AUCTION_SIZE)
        extra_len = pad_base + (u[7] * pad_width).astype(np.int64)
        columns = [
            pa.array(base + _NX_FIRST_ID),
            item,
            description,
            pa.array(initial),
            pa.array(reserve),
            _timestamps(ms),
            _timestamps(expires),
            pa.array(seller + _NX_FIRST_ID),
            pa.array(category),
            _extras(pools.text, extra_len, text_start),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schemas["auction"])

    def bid(self, index: int, first: int, end: int) -> pa.RecordBatch:
        n = _rows(first, end, 1 + _NX_AUCTIONS, _NX_EPOCH)
        text_start, u_all = self._uniforms(index, 2, 5, self.full["bid"])
        # Work on (epoch, bid of the epoch) grids: what only depends on the epoch is
        # computed once per epoch and broadcast.
        epochs = -(-n // _NX_BIDS)
        u = u_all[:, : epochs * _NX_BIDS].reshape(5, epochs, _NX_BIDS)
        pools = self.pools
        epoch = np.arange(first // _NX_EPOCH, first // _NX_EPOCH + epochs, dtype=np.int64)
        epoch = epoch[:, None]
        # The auctions: every bid comes after the three auctions of its epoch.
        last = epoch * _NX_AUCTIONS + _NX_AUCTIONS - 1
        low = np.maximum(last - _NX_IN_FLIGHT, 0)
        hot = last // _NX_HOT_WINDOW * _NX_HOT_WINDOW
        count = last + _NX_AUCTION_LEAD + 1 - low
        auction = np.minimum(_hot_or_recent(u[0], _NX_HOT_AUCTION_RATIO, hot, low, count), last)
        bidder = _people(epoch, u[1], _NX_HOT_BIDDER_RATIO, 1)
        price = _prices(u[2])
        slot = (u[3] * len(pools.channel_of)).astype(np.int64)
        channel_index = pools.channel_of[slot].ravel()[:n]
        extra_len = pools.bid_pad_base[channel_index] + (
            u[4].ravel()[:n] * pools.bid_pad_width[channel_index]
        ).astype(np.int64)
        events = epoch * _NX_EPOCH + np.arange(1 + _NX_AUCTIONS, _NX_EPOCH)
        take = pa.array(channel_index)
        columns = [
            pa.array(auction.ravel()[:n] + _NX_FIRST_ID),
            pa.array(bidder.ravel()[:n] + _NX_FIRST_ID),
            pa.array(price.ravel()[:n]),
            pools.channels.values.take(take),
            pools.urls.values.take(take),
            _timestamps(self._times(events).ravel()[:n]),
            _extras(pools.text, extra_len, text_start),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schemas["bid"])

    def chunk(self, index: int) -> tuple[pa.RecordBatch, pa.RecordBatch, pa.RecordBatch]:
        """The events with ids in [index * _NX_CHUNK, (index + 1) * _NX_CHUNK), up to n."""
        first = index * _NX_CHUNK
        end = min(first + _NX_CHUNK, self.spec.n)
        return (
            self.person(index, first, end),
            self.auction(index, first, end),
            self.bid(index, first, end),
        )

    def chunks(self) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch, pa.RecordBatch]]:
        for index in range(-(-self.spec.n // _NX_CHUNK)):
            yield self.chunk(index)

    def tables(self, batch_size: int | None) -> dict[NexmarkKind, pa.Table]:
        parts: dict[NexmarkKind, list[pa.RecordBatch]] = {kind: [] for kind in _NX_KINDS}
        for chunk in self.chunks():
            for kind, batch in zip(_NX_KINDS, chunk, strict=True):
                if batch.num_rows:
                    parts[kind].append(batch)
        return {
            kind: pa.Table.from_batches(
                list(_rebatch(iter(batches), batch_size)) if batch_size else batches,
                schema=self.schemas[kind],
            )
            for kind, batches in parts.items()
        }


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
    gen = _NexmarkGenerator(_nexmark_spec(n_events, rate, seed, start))
    tables = gen.tables(None)
    person, auction, bid = (pl.from_arrow(tables[kind], rechunk=True) for kind in _NX_KINDS)
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
    >>> import vstream as vs
    >>> data = nexmark_arrow(10_000, batch_size=4_096)
    >>> [b.num_rows for b in data.bid.to_batches()]
    [4096, 4096, 1008]
    >>> vs.from_arrow(data.bid).filter(pl.col("price") > 1_000_000).collect().height
    3093
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    gen = _NexmarkGenerator(_nexmark_spec(n_events, rate, seed, start))
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
    >>> [(kind, b.num_rows) for kind, b in nexmark_batches(150_000, batch_size=50_000)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('person', 2000), ('auction', 6000), ('bid', 50000), ('bid', 42000),
     ('person', 1000), ('auction', 3000), ('bid', 46000)]
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    gen = _NexmarkGenerator(_nexmark_spec(n_events, rate, seed, start))
    return _nexmark_pieces(gen, batch_size)


def _nexmark_pieces(
    gen: _NexmarkGenerator, batch_size: int
) -> Iterator[tuple[NexmarkKind, pa.RecordBatch]]:
    for chunk in gen.chunks():
        for kind, batch in zip(_NX_KINDS, chunk, strict=True):
            for offset in range(0, batch.num_rows, batch_size):
                yield kind, batch.slice(offset, batch_size)
