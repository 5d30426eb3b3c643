"""The batching property (DESIGN.md "Equality"): without late events the result does not
depend on batch size or arrival chunking, and equals the Polars query on the same data.

One bounded source keeps its order, so frames are compared exactly; the union of two
sources is compared as a multiset of rows.
"""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import strategies
import vstream as vs

BOUND_MS = 3_000  # above every disorder strategies.disorders() draws
ONE_ROW_CAP = 300  # batch size 1 costs ~0.5 ms a row; hypothesis runs it on a prefix


def pipeline(stream: vs.Stream) -> vs.Stream:
    unit = "ms" if stream.schema["ts"] == pl.Int64 else None
    return (
        stream.with_watermark("ts", "3s", time_unit=unit)
        .filter(pl.col("cpu").is_null() | (pl.col("cpu") > 30), pl.col("status") != 404)
        .with_columns(
            lat_s=pl.col("latency_ms") / 1_000,
            hot=pl.col("cpu") > 70,
            kind=pl.when(pl.col("status") >= 500).then(pl.lit("error")).otherwise(pl.lit("ok")),
        )
        .select("ts", "host", "region", "lat_s", "hot", "kind", kb=pl.col("bytes") / 1_024)
    )


def reference(df: pl.DataFrame) -> pl.DataFrame:
    return (
        df.filter(pl.col("cpu").is_null() | (pl.col("cpu") > 30), pl.col("status") != 404)
        .with_columns(
            lat_s=pl.col("latency_ms") / 1_000,
            hot=pl.col("cpu") > 70,
            kind=pl.when(pl.col("status") >= 500).then(pl.lit("error")).otherwise(pl.lit("ok")),
        )
        .select("ts", "host", "region", "lat_s", "hot", "kind", kb=pl.col("bytes") / 1_024)
    )


def run(df: pl.DataFrame, batch_size: int) -> pl.DataFrame:
    out, m = pipeline(vs.from_polars(df, batch_size=batch_size)).collect(return_metrics=True)
    assert m.behind_watermark == 0  # disorder within the bound: no event is late
    assert m.events_in == df.height
    return out


def sort_rows(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(df.columns, nulls_last=True)


# ------------------------------------------------------------------ one bounded source


@settings(max_examples=20, deadline=None)
@given(
    df=strategies.telemetry_frames(max_n=5_000, max_hosts=200),
    batch_size=strategies.random_batch_sizes(1_000),
)
def test_same_result_for_every_batch_size(df: pl.DataFrame, batch_size: int) -> None:
    expected = reference(df)
    assert_frame_equal(run(df, batch_size), expected)
    assert_frame_equal(run(df, strategies.WHOLE), expected)
    prefix = df.head(ONE_ROW_CAP)
    expected_prefix = reference(prefix)
    assert_frame_equal(run(prefix, 1), expected_prefix)
    assert_frame_equal(run(prefix, batch_size), expected_prefix)


@settings(max_examples=8, deadline=None)
@given(
    df=strategies.telemetry_frames(max_n=2_000, max_hosts=20, time_type="datetime"),
    batch_size=strategies.batch_sizes(),
)
def test_same_result_on_a_datetime_event_time(df: pl.DataFrame, batch_size: int) -> None:
    if batch_size == 1:
        df = df.head(ONE_ROW_CAP)
    assert_frame_equal(run(df, batch_size), reference(df))


def test_one_row_per_batch_on_a_longer_input() -> None:
    df = vs.datasets.telemetry(1_500, hosts=30, seed=41, null_fraction=0.1, max_disorder="2s")
    expected = reference(df)
    assert_frame_equal(run(df, 1), expected)
    assert_frame_equal(run(df, 37), expected)
    assert_frame_equal(run(df, strategies.WHOLE), expected)


@settings(max_examples=20, deadline=None)
@given(df=strategies.telemetry_frames(max_n=2_000, max_hosts=50), data=st.data())
def test_same_result_for_any_arrival_chunking(df: pl.DataFrame, data: st.DataObject) -> None:
    points = data.draw(strategies.split_points(df.height))
    out, m = pipeline(vs.from_arrow(strategies.split_frame(df, points))).collect(
        return_metrics=True
    )
    assert m.behind_watermark == 0
    assert m.batches_in == len(points) + 1 or df.height == 0
    assert_frame_equal(out, reference(df))


# ------------------------------------------------------------------ two sources


@settings(max_examples=15, deadline=None)
@given(
    a=strategies.telemetry_frames(max_n=2_000, max_hosts=20),
    b=strategies.telemetry_frames(max_n=2_000, max_hosts=20),
    size_a=strategies.batch_sizes(),
    size_b=strategies.batch_sizes(),
)
def test_concat_gives_the_union_whatever_the_batch_sizes(
    a: pl.DataFrame, b: pl.DataFrame, size_a: int, size_b: int
) -> None:
    if size_a == 1:
        a = a.head(ONE_ROW_CAP)
    if size_b == 1:
        b = b.head(ONE_ROW_CAP)
    union = vs.concat([vs.from_polars(a, batch_size=size_a), vs.from_polars(b, batch_size=size_b)])
    out, m = pipeline(union).collect(return_metrics=True)
    assert m.behind_watermark == 0
    assert m.events_in == a.height + b.height
    assert_frame_equal(sort_rows(out), sort_rows(reference(pl.concat([a, b]))))


@settings(max_examples=10, deadline=None)
@given(
    df=strategies.telemetry_frames(min_n=1, max_n=3_000, max_hosts=20, max_disorder=BOUND_MS),
    size_a=strategies.batch_sizes(),
    size_b=strategies.batch_sizes(),
)
def test_concat_of_pipelines_over_one_split_input(
    df: pl.DataFrame, size_a: int, size_b: int
) -> None:
    """Each input runs the pipeline (its own watermark); the union is the same rows."""
    if 1 in (size_a, size_b):
        df = df.head(ONE_ROW_CAP)
    a, b = df.filter(pl.col("host_id") % 2 == 0), df.filter(pl.col("host_id") % 2 == 1)
    union = vs.concat(
        [
            pipeline(vs.from_polars(a, batch_size=size_a)),
            pipeline(vs.from_polars(b, batch_size=size_b)),
        ]
    )
    out, m = union.collect(return_metrics=True)
    assert m.behind_watermark == 0
    assert_frame_equal(sort_rows(out), sort_rows(reference(df)))


# ------------------------------------------------------------------ branches of one plan


def branches(stream: vs.Stream) -> tuple[vs.Stream, vs.Stream]:
    events = stream.with_watermark("ts", BOUND_MS)
    errors = events.filter(pl.col("status") >= 500).select("ts", "host", "status")
    busy = events.with_columns(load=pl.col("cpu") + pl.col("mem")).filter(pl.col("load") > 90)
    return errors, busy


@settings(max_examples=15, deadline=None)
@given(
    df=strategies.telemetry_frames(max_n=3_000, max_hosts=30, max_disorder=BOUND_MS),
    batch_size=strategies.batch_sizes(),
)
def test_collect_all_equals_separate_collects(df: pl.DataFrame, batch_size: int) -> None:
    if batch_size == 1:
        df = df.head(ONE_ROW_CAP)
    errors, busy = branches(vs.from_polars(df, batch_size=batch_size))
    (both_errors, both_busy), m = vs.collect_all([errors, busy], return_metrics=True)
    assert m.events_in == df.height  # the shared source is read once
    alone_errors, alone_busy = errors.collect(), busy.collect()
    assert_frame_equal(both_errors, alone_errors)
    assert_frame_equal(both_busy, alone_busy)
    # and each is the Polars query
    assert_frame_equal(
        both_errors, df.filter(pl.col("status") >= 500).select("ts", "host", "status")
    )
    assert_frame_equal(
        both_busy,
        df.with_columns(load=pl.col("cpu") + pl.col("mem")).filter(pl.col("load") > 90),
    )
    assert m.events_out == both_errors.height + both_busy.height


def test_collect_all_with_the_same_branch_twice() -> None:
    df = vs.datasets.telemetry(2_000, hosts=10, seed=42)
    errors, _ = branches(vs.from_polars(df, batch_size=123))
    first, second = vs.collect_all([errors, errors])
    assert_frame_equal(first, second)
    assert_frame_equal(first, errors.collect())
