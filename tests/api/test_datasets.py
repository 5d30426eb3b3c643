"""Tests of the synthetic telemetry generator."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from vstream import datasets
from vstream.datasets import telemetry, telemetry_arrow, telemetry_batches
from vstream.datasets.telemetry import _Generator
from vstream.errors import DurationError, PipelineError

# The module, which the package's function of the same name hides as an attribute.
TELEMETRY_MODULE = importlib.import_module("vstream.datasets.telemetry")

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z

NAMES = ["ts", "host", "host_id", "region", "cpu", "mem", "latency_ms", "status", "bytes"]
REST = [pl.String, pl.Int32, pl.String, pl.Float64, pl.Float64, pl.Float64, pl.Int32, pl.Int64]


def _concat(batches: list[pa.RecordBatch], time_type: str = "int") -> pl.DataFrame:
    schema = telemetry_arrow(0, time_type=time_type).schema  # type: ignore[arg-type]
    return pl.from_arrow(pa.Table.from_batches(batches, schema=schema))  # type: ignore[return-value]


# --- schema and shape -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("time_type", "ts_dtype", "ts_arrow"),
    [("int", pl.Int64, pa.int64()), ("datetime", pl.Datetime("ms"), pa.timestamp("ms"))],
)
def test_schema(time_type: str, ts_dtype: pl.DataType, ts_arrow: pa.DataType) -> None:
    for n in (0, 5):
        df = telemetry(n, time_type=time_type)  # type: ignore[arg-type]
        assert df.columns == NAMES
        assert df.dtypes == [ts_dtype, *REST]
    table = telemetry_arrow(5, time_type=time_type)  # type: ignore[arg-type]
    assert table.schema.names == NAMES
    assert table.schema.field("ts").type == ts_arrow
    assert table.schema.field("host").type == pa.large_string()
    batch = next(telemetry_batches(5, time_type=time_type))  # type: ignore[arg-type]
    assert batch.schema == table.schema


@pytest.mark.parametrize("n", [0, 1, 2, 65_535, 65_536, 65_537])
def test_row_count(n: int) -> None:
    assert telemetry(n).height == n
    assert telemetry_arrow(n).num_rows == n
    assert sum(b.num_rows for b in telemetry_batches(n)) == n


def test_numpy_integer_arguments() -> None:
    assert_frame_equal(
        telemetry(np.int64(10), hosts=np.int32(4), max_disorder=np.int64(5)),
        telemetry(10, hosts=4, max_disorder=5),
    )


# --- determinism ------------------------------------------------------------------------


def test_deterministic() -> None:
    kwargs = {"hosts": 50, "null_fraction": 0.2, "max_disorder": "1s"}
    assert_frame_equal(telemetry(1000, seed=3, **kwargs), telemetry(1000, seed=3, **kwargs))
    a = telemetry(1000, seed=3, **kwargs)
    b = telemetry(1000, seed=4, **kwargs)
    for name in ("ts", "host", "cpu", "latency_ms", "bytes"):
        assert not a[name].equals(b[name]), name


def test_short_dataset_is_prefix_of_longer() -> None:
    long = telemetry(70_000, hosts=100)
    for n in (0, 1, 1000, 65_536, 65_537):
        assert_frame_equal(telemetry(n, hosts=100), long.head(n))


def test_options_only_change_their_columns() -> None:
    base = telemetry(2000, hosts=30)
    unordered = telemetry(2000, hosts=30, max_disorder="10s")
    assert_frame_equal(base.drop("ts"), unordered.drop("ts"))
    assert not base["ts"].equals(unordered["ts"])
    # nulls blank values, they never change the values that remain
    holes = telemetry(2000, hosts=30, null_fraction=0.3)
    assert_frame_equal(
        base.drop("cpu", "mem", "latency_ms"), holes.drop("cpu", "mem", "latency_ms")
    )
    for name in ("cpu", "mem", "latency_ms"):
        kept = holes[name].is_not_null()
        assert base[name].filter(kept).equals(holes[name].filter(kept))


# --- batches ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "batch_size"),
    [(20, 1), (70_000, 7), (140_000, 65_536), (140_000, 100_000), (10, 1000), (0, 3)],
)
def test_batches_concatenate_to_telemetry(n: int, batch_size: int) -> None:
    batches = list(telemetry_batches(n, batch_size=batch_size, hosts=500, null_fraction=0.1))
    sizes = [b.num_rows for b in batches]
    expected = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    assert sizes == expected
    assert_frame_equal(_concat(batches), telemetry(n, hosts=500, null_fraction=0.1))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 140_000),
    batch_size=st.integers(1, 200_000),
    seed=st.integers(0, 2**32),
    time_type=st.sampled_from(["int", "datetime"]),
)
def test_batches_any_size(n: int, batch_size: int, seed: int, time_type: str) -> None:
    n = min(n, batch_size * 300)  # keep the number of batches (and the test) small
    kwargs = {"seed": seed, "time_type": time_type, "hosts": 1000}
    batches = list(telemetry_batches(n, batch_size=batch_size, **kwargs))  # type: ignore[arg-type]
    assert all(0 < b.num_rows <= batch_size for b in batches)
    assert all(b.num_rows == batch_size for b in batches[:-1])
    assert_frame_equal(_concat(batches, time_type), telemetry(n, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (70_000, 65_536), (100, 1000), (0, 5)])
def test_arrow_chunks(n: int, batch_size: int) -> None:
    table = telemetry_arrow(n, batch_size=batch_size, seed=9)
    sizes = [len(chunk) for chunk in table.column("ts").chunks]
    expected = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    assert sizes == expected
    assert [b.num_rows for b in table.to_batches()] == expected
    assert_frame_equal(pl.from_arrow(table), telemetry(n, seed=9))  # type: ignore[arg-type]


def test_batches_are_generated_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    original = _Generator.chunk

    def counting(self: _Generator, index: int) -> pa.RecordBatch:
        made.append(index)
        return original(self, index)

    monkeypatch.setattr(_Generator, "chunk", counting)
    batches = telemetry_batches(10**12, batch_size=1000)
    assert made == []
    for _ in range(70):
        next(batches)
    assert made == [0, 1]


def test_batches_memory_is_flat() -> None:
    before = pa.total_allocated_bytes()
    peak = 0
    rows = 0
    for batch in telemetry_batches(2_000_000, batch_size=50_000):
        rows += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes() - before)
    assert rows == 2_000_000
    # keeping every batch would take about 150 MB of Arrow memory; a chunk and a batch in
    # flight take under 10 MB
    assert peak < 20_000_000


# --- time model -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_disorder", "bound"),
    [(0, 0), (1, 1), (250, 250), ("2s", 2000), ("1m", 60_000), (timedelta(milliseconds=30), 30)],
)
@pytest.mark.parametrize("events_per_second", [1000, 3, 50_000, 333.3])
def test_disorder_bound(
    max_disorder: str | timedelta | int, bound: int, events_per_second: float
) -> None:
    n = 100_000
    ts = telemetry(n, max_disorder=max_disorder, events_per_second=events_per_second, hosts=10)[
        "ts"
    ].to_numpy()
    seen = np.maximum.accumulate(ts)[:-1]
    lateness = seen - ts[1:]
    # a watermark of max seen - bound never makes an event late
    assert (lateness <= bound).all()
    if bound == 0:
        assert (np.diff(ts) >= 0).all()
    elif events_per_second * bound >= 10_000:
        # many events share the window, so the bound is nearly reached
        assert lateness.max() >= 0.9 * bound
    i = np.arange(n, dtype=np.int64)
    if float(events_per_second).is_integer():
        base = START_MS + i * 1000 // int(events_per_second)
    else:
        base = START_MS + np.floor(i * 1000.0 / events_per_second).astype(np.int64)
    delay = base - ts
    assert delay.min() >= 0
    assert delay.max() <= bound


@pytest.mark.parametrize("events_per_second", [1000, 50_000, 0.5, 333.3])
def test_rate(events_per_second: float) -> None:
    n = 50_000
    ts = telemetry(n, events_per_second=events_per_second, max_disorder="2s")["ts"]
    span_ms = ts.max() - ts.min()  # type: ignore[operator]
    expected = (n - 1) * 1000 / events_per_second
    assert expected - 2000 <= span_ms <= expected + 2001
    assert ts.min() >= START_MS - 2000  # type: ignore[operator]


def test_start_and_time_types() -> None:
    ints = telemetry(1000, max_disorder=0, start=datetime(2030, 5, 6, 7, 8, 9))
    assert ints["ts"][0] == int(datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp() * 1000)
    aware = telemetry(
        1000,
        max_disorder=0,
        start=datetime(2030, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2))),
    )
    assert_frame_equal(ints, aware)
    dt = telemetry(1000, max_disorder=0, start=datetime(2030, 5, 6, 7, 8, 9), time_type="datetime")
    assert dt["ts"][0] == datetime(2030, 5, 6, 7, 8, 9)
    assert_frame_equal(dt.with_columns(pl.col("ts").dt.epoch("ms")), ints)


# --- hosts and values -------------------------------------------------------------------


def test_every_host_appears_with_some_hotter() -> None:
    hosts = 1000
    df = telemetry(200_000, hosts=hosts)
    counts = df["host_id"].value_counts()
    assert counts.height == hosts
    assert df["host"].n_unique() == hosts
    assert df["host_id"].min() == 0
    assert df["host_id"].max() == hosts - 1
    # mild skew: the hottest host gets well above an even share
    assert counts["count"].max() > 5 * 200_000 / hosts  # type: ignore[operator]


def test_host_names_match_ids_and_regions_are_per_host() -> None:
    df = telemetry(50_000, hosts=300)
    expected = pl.format("host-{}", pl.col("host_id").cast(pl.String).str.zfill(5))
    assert df.select((pl.col("host") == expected).all()).item()
    per_host = df.group_by("host_id").agg(pl.col("region").n_unique())
    assert (per_host["region"] == 1).all()
    assert df["region"].n_unique() == 8
    # the same host is in the same region in other datasets too
    other = telemetry(50_000, hosts=300, seed=5)
    joined = df.unique("host_id").join(other.unique("host_id"), on="host_id")
    assert (joined["region"] == joined["region_right"]).all()


@pytest.mark.parametrize(
    ("hosts", "example"),
    [(1, "host-00000"), (100_000, "host-00000"), (100_001, "host-000000")],
)
def test_host_name_width(hosts: int, example: str) -> None:
    names = telemetry(100, hosts=hosts)["host"]
    assert (names.str.len_bytes() == len(example)).all()
    if hosts == 1:
        assert (names == example).all()


def test_many_hosts_without_name_table(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = telemetry(5000, hosts=20_000)
    monkeypatch.setattr(TELEMETRY_MODULE, "_HOST_TABLE_LIMIT", 100)
    assert_frame_equal(telemetry(5000, hosts=20_000), expected)


def test_value_ranges() -> None:
    df = telemetry(100_000, hosts=100)
    assert df.null_count().sum_horizontal().item() == 0
    for name in ("cpu", "mem"):
        assert 0 <= df[name].min() <= df[name].max() <= 100  # type: ignore[operator]
    assert df["latency_ms"].min() > 0  # type: ignore[operator]
    assert 15 < df["latency_ms"].median() < 25  # type: ignore[operator]
    assert set(df["status"].unique()) <= {200, 404, 500, 503}
    assert (df["status"] == 200).mean() > 0.9  # type: ignore[operator]
    assert df["status"].n_unique() == 4
    assert df["bytes"].min() >= 0  # type: ignore[operator]


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9])
def test_null_fraction(fraction: float) -> None:
    n = 100_000
    df = telemetry(n, null_fraction=fraction, hosts=100)
    for name in ("cpu", "mem", "latency_ms"):
        assert abs(df[name].null_count() / n - fraction) < 0.01, name
    for name in ("ts", "host", "host_id", "region", "status", "bytes"):
        assert df[name].null_count() == 0, name
    if fraction:
        # independent per value, not whole rows
        both = (df["cpu"].is_null() & df["mem"].is_null()).mean()
        assert abs(both - fraction**2) < 0.01  # type: ignore[operator]


# --- argument checking ------------------------------------------------------------------

BAD = [
    ({"n": -1}, PipelineError, "n must be >= 0"),
    ({"n": 2.0}, PipelineError, "n must be an int"),
    ({"n": True}, PipelineError, "n must be an int"),
    ({"hosts": 0}, PipelineError, "hosts must be between 1"),
    ({"hosts": 2**31}, PipelineError, "hosts must be between 1"),
    ({"hosts": "10"}, PipelineError, "hosts must be an int"),
    ({"events_per_second": 0}, PipelineError, "events_per_second must be a finite number > 0"),
    ({"events_per_second": -5.0}, PipelineError, "events_per_second must be"),
    ({"events_per_second": float("inf")}, PipelineError, "events_per_second must be"),
    ({"events_per_second": float("nan")}, PipelineError, "events_per_second must be"),
    ({"events_per_second": "fast"}, PipelineError, "events_per_second must be"),
    ({"max_disorder": -1}, DurationError, "max_disorder must be >= 0"),
    ({"max_disorder": "2 seconds"}, DurationError, "cannot parse max_disorder"),
    ({"max_disorder": "1mo"}, DurationError, "max_disorder"),
    ({"max_disorder": "500us"}, DurationError, "max_disorder .* whole number of ms"),
    ({"max_disorder": 1.5}, DurationError, "max_disorder must be an int"),
    ({"max_disorder": timedelta(seconds=-1)}, DurationError, "max_disorder must be >= 0"),
    ({"null_fraction": 1.0}, PipelineError, r"null_fraction must be a number in \[0, 1\)"),
    ({"null_fraction": -0.1}, PipelineError, "null_fraction"),
    ({"null_fraction": None}, PipelineError, "null_fraction"),
    ({"time_type": "ms"}, PipelineError, "time_type must be 'int' or 'datetime'"),
    ({"seed": -1}, PipelineError, "seed must be >= 0"),
    ({"seed": 1.5}, PipelineError, "seed must be an int"),
    ({"start": "2024-01-01"}, PipelineError, "start must be a datetime"),
    (
        {"n": 10**6, "events_per_second": 1e-12},
        PipelineError,
        "events_per_second=1e-12 .* overflow",
    ),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD)
@pytest.mark.parametrize("func", [telemetry, telemetry_arrow, telemetry_batches])
def test_bad_arguments(
    func: object, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    kwargs = dict(kwargs)
    n = kwargs.pop("n", 10)
    # telemetry_batches must refuse at the call, before any batch is drawn
    with pytest.raises(error, match=match):
        func(n, **kwargs)  # type: ignore[operator]


@pytest.mark.parametrize("batch_size", [0, -3, 1.5, None])
@pytest.mark.parametrize("func", [telemetry_arrow, telemetry_batches])
def test_bad_batch_size(func: object, batch_size: object) -> None:
    with pytest.raises(PipelineError, match="batch_size must be"):
        func(10, batch_size=batch_size)  # type: ignore[operator]


def test_public_names() -> None:
    assert datasets.__all__ == [
        "Nexmark",
        "NexmarkKind",
        "nexmark",
        "nexmark_arrow",
        "nexmark_batches",
        "telemetry",
        "telemetry_arrow",
        "telemetry_batches",
    ]
