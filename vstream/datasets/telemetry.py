"""Synthetic telemetry: :func:`telemetry` and its Arrow forms.

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

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._duration import parse_duration
from vstream.datasets._common import EPOCH, ONE_MS, check_int, is_real, rebatch
from vstream.errors import PipelineError

__all__ = ["telemetry", "telemetry_arrow", "telemetry_batches"]

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
    n = check_int(n, "n", 0)
    hosts = check_int(hosts, "hosts", 1, _MAX_HOSTS)
    seed = check_int(seed, "seed", 0)
    if not is_real(events_per_second) or not (
        math.isfinite(events_per_second) and events_per_second > 0  # type: ignore[arg-type,operator]
    ):
        msg = f"events_per_second must be a finite number > 0, got {events_per_second!r}"
        raise PipelineError(msg)
    eps = float(events_per_second)  # type: ignore[arg-type]
    if isinstance(max_disorder, np.integer):
        max_disorder = int(max_disorder)
    disorder = parse_duration(max_disorder, "ms", what="max_disorder")  # type: ignore[arg-type]
    if not is_real(null_fraction) or not (0 <= null_fraction < 1):  # type: ignore[operator]
        msg = f"null_fraction must be a number in [0, 1), got {null_fraction!r}"
        raise PipelineError(msg)
    if time_type not in _TIME_TYPES:
        msg = f"time_type must be 'int' or 'datetime', got {time_type!r}"
        raise PipelineError(msg)
    if not isinstance(start, datetime):
        msg = f"start must be a datetime, got {type(start).__name__} {start!r}"
        raise PipelineError(msg)
    aware = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    start_ms = (aware - EPOCH) // ONE_MS
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
    >>> from vstream.datasets.telemetry import telemetry
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
    >>> import polars as pl
    >>> from vstream.datasets.telemetry import telemetry_batches
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
    batch_size = check_int(batch_size, "batch_size", 1)
    gen = _Generator(
        _spec(n, hosts, events_per_second, max_disorder, seed, start, time_type, null_fraction)
    )
    return rebatch(gen.chunks(), batch_size)


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
    >>> import polars as pl
    >>> from vstream.datasets.telemetry import telemetry_arrow
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
    batch_size = check_int(batch_size, "batch_size", 1)
    gen = _Generator(
        _spec(n, hosts, events_per_second, max_disorder, seed, start, time_type, null_fraction)
    )
    return pa.Table.from_batches(list(rebatch(gen.chunks(), batch_size)), schema=gen.schema)
