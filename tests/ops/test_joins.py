"""Joins (/tmp/joinspec/API.md; DESIGN.md "Semantics": Equality, Late events) against the
Polars references in ``join_reference.py``.

Both inputs are bounded, cut into Arrow record batches chosen per side (one row, random
cuts, large, one batch; different on each side), with event-time disorder within the
watermark bound, so no row is late and the result must equal the reference whatever the
batching and whichever side runs ahead. Output order is unspecified: results are compared
as multisets of rows (the ``same_rows`` fixture), with the columns and dtypes of the
Polars join.

Also here: null keys (Polars never matches them), state that stays bounded while the
watermarks advance, pipelines refused when they are built, and rows behind their input's
watermark, which go to ``late_events(side)``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import join_reference as ref
import strategies
import vstream as vs

SameRows = Callable[..., None]

BOUND = "3s"  # >= every disorder strategies.disorders() draws (<= 3,000 ms): nothing is late
ONE_ROW_CAP = 120  # rows per side when every row is its own micro-batch
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
START = 1_704_067_200_000  # 2024-01-01 in ms since the epoch

#: the key columns both sides have: String, Int64, and a two-column key
KEYS: dict[str, Any] = {"string": "k", "int": "ki", "two_columns": ["g", "k"]}


# ------------------------------------------------------------------ data


def side(
    n: int,
    *,
    seed: int,
    keys: int = 6,
    span: int = 20_000,
    disorder: int = 2_000,
    null_keys: float = 0.0,
    right: bool = False,
    datetime: bool = False,
) -> pl.DataFrame:
    """``n`` events over ``span`` ms, each at most ``disorder`` ms older than the newest
    event before it (arrival order is row order).

    Left: ``ts, k, ki, g, x``; right: ``ts, k, ki, g, y, x`` (``ts`` and ``x`` clash, so
    the suffix shows). ``k`` (String) and ``ki`` (Int64) are the same key id, null in a
    ``null_keys`` fraction of the rows; ``g`` is a second key column with two values.
    ``y`` (right) is never null, so a null ``y`` in a join result means "no partner".
    """
    rng = np.random.default_rng(seed)
    base = np.sort(rng.integers(0, span, n)) + START
    ts = base - rng.integers(0, disorder + 1, n)
    key = rng.integers(0, keys, n)
    null = rng.random(n) < null_keys
    columns: dict[str, Any] = {
        "ts": ts,
        "k": [None if z else f"k{v:02d}" for v, z in zip(key, null, strict=True)],
        "ki": [None if z else int(v) for v, z in zip(key, null, strict=True)],
        "g": [f"g{v}" for v in rng.integers(0, 2, n)],
    }
    if right:
        columns["y"] = rng.random(n).round(6)
    columns["x"] = rng.integers(0, 1_000, n)
    df = pl.DataFrame(
        columns,
        schema_overrides={
            "ts": pl.Int64,
            "k": pl.String,
            "ki": pl.Int64,
            "g": pl.String,
            "x": pl.Int64,
        },
    )
    if datetime:
        df = df.with_columns(pl.col("ts").cast(pl.Datetime("ms")))
    return df


def inputs(
    n_left: int, n_right: int, *, seed: int = 0, **kwargs: Any
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A left and a right input over the same span of time."""
    left = side(n_left, seed=seed, **kwargs)
    return left, side(n_right, seed=seed + 1, right=True, **kwargs)


@st.composite
def join_inputs(
    draw: st.DrawFn, *, max_n: int = 700, datetime: bool | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Random left and right inputs: sizes, key counts, disorder, null keys, time type."""
    return inputs(
        draw(st.integers(0, max_n)),
        draw(st.integers(0, max_n)),
        seed=draw(st.integers(0, 2**31)),
        keys=draw(st.integers(1, 12)),
        span=draw(st.sampled_from([3_000, 20_000, 60_000])),
        disorder=draw(strategies.disorders()),
        null_keys=draw(st.sampled_from([0.0, 0.0, 0.15])),
        datetime=draw(st.booleans()) if datetime is None else datetime,
    )


def by_size(df: pl.DataFrame, size: int) -> list[pa.RecordBatch]:
    return strategies.split_frame(df, list(range(size, df.height, size)))


@st.composite
def arrivals(draw: st.DrawFn, df: pl.DataFrame) -> list[pa.RecordBatch]:
    """``df`` cut into micro-batches: one, a random fixed size, or random cuts."""
    kind = draw(st.sampled_from(["whole", "size", "cuts"]))
    if kind == "whole":
        return strategies.split_frame(df, [])
    if kind == "size":
        return by_size(df, draw(strategies.random_batch_sizes(300)))
    return strategies.split_frame(df, draw(strategies.split_points(df.height)))


def watermarked(
    batches: list[pa.RecordBatch] | Iterator[pa.RecordBatch],
    datetime: bool,
    *,
    bound: Any = BOUND,
    time: str = "ts",
) -> vs.Stream:
    """A bounded stream of the batches with event time ``time`` (ms) and ``bound``."""
    unit = None if datetime else "ms"
    return vs.from_arrow(batches, bounded=True).with_watermark(time, bound, time_unit=unit)


def is_datetime(df: pl.DataFrame, time: str = "ts") -> bool:
    return isinstance(df.schema[time], pl.Datetime)


def run(stream: vs.Stream) -> pl.DataFrame:
    out, metrics = stream.collect(return_metrics=True)
    assert metrics.late_events == 0, "disorder within the bound: no row may be late"
    return out


def dur(value: int, datetime: bool) -> str | timedelta:
    """A duration of ``value`` ms as vstream takes it: a string, or a timedelta for a
    Datetime column (both work for either; this varies the spelling)."""
    if datetime:
        return timedelta(milliseconds=value)
    return f"-{-value}ms" if value < 0 else f"{value}ms"


def dedupe_right(right: pl.DataFrame, by: Any) -> pl.DataFrame:
    """Right rows with unique ``(by, ts)`` (as-of ties are ambiguous under disorder)."""
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    return right.unique(subset=[*keys, "ts"], keep="first", maintain_order=True)


# ------------------------------------------------------------------ one case per join kind


@dataclass(frozen=True)
class Case:
    """A join: how to build it from two streams and its reference on two frames."""

    build: Callable[[vs.Stream, vs.Stream], vs.Stream]
    reference: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame]
    asof_by: Any = ()  # the as-of ``by`` (the right input needs unique (by, time)); () if none
    keys: tuple[str, ...] = ("k",)  # left key columns (null keys never match)
    inner: bool = False  # whether left rows without a partner are dropped

    def prepare_right(self, right: pl.DataFrame) -> pl.DataFrame:
        return right if self.asof_by == () else dedupe_right(right, self.asof_by)


CASES: dict[str, Case] = {
    "asof_backward": Case(
        lambda a, b: a.join_asof(b, by="k", tolerance="1s"),
        lambda a, b: ref.asof(a, b, by="k", tolerance=1_000),
        asof_by="k",
    ),
    "asof_forward": Case(
        lambda a, b: a.join_asof(b, by=["g", "k"], strategy="forward", tolerance="2s"),
        lambda a, b: ref.asof(a, b, by=["g", "k"], strategy="forward", tolerance=2_000),
        asof_by=["g", "k"],
        keys=("g", "k"),
    ),
    "asof_nearest": Case(
        lambda a, b: a.join_asof(b, by="ki", strategy="nearest"),
        lambda a, b: ref.asof(a, b, by="ki", strategy="nearest"),
        asof_by="ki",
        keys=("ki",),
    ),
    "interval_left": Case(
        lambda a, b: a.join_interval(b, on="k", lower="-1s", upper="500ms", how="left"),
        lambda a, b: ref.interval(a, b, on="k", lower=-1_000, upper=500, how="left"),
    ),
    "interval_full": Case(
        lambda a, b: a.join_interval(b, on=["g", "k"], lower="200ms", upper="2s", how="full"),
        lambda a, b: ref.interval(a, b, on=["g", "k"], lower=200, upper=2_000, how="full"),
        keys=("g", "k"),
    ),
    "tumbling_inner": Case(
        lambda a, b: a.join(b, on="ki", window=vs.tumbling("2s")),
        lambda a, b: ref.windowed(a, b, on="ki", size=2_000),
        keys=("ki",),
        inner=True,
    ),
    "hopping_full": Case(
        lambda a, b: a.join(b, on="k", window=vs.hopping("3s", "1s"), how="full"),
        lambda a, b: ref.windowed(a, b, on="k", size=3_000, slide=1_000, how="full"),
    ),
    "ttl_left": Case(
        lambda a, b: a.join(b, on="k", ttl="1s", how="left"),
        lambda a, b: ref.ttl(a, b, on="k", ttl=1_000, how="left"),
    ),
    "ttl_full": Case(
        lambda a, b: a.join(b, on=["g", "k"], ttl="700ms", how="full"),
        lambda a, b: ref.ttl(a, b, on=["g", "k"], ttl=700, how="full"),
        keys=("g", "k"),
    ),
}
case_params = pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())


def check_case(
    same_rows: SameRows,
    case: Case,
    left: pl.DataFrame,
    right: pl.DataFrame,
    left_batches: list[pa.RecordBatch] | Iterator[pa.RecordBatch],
    right_batches: list[pa.RecordBatch] | Iterator[pa.RecordBatch],
) -> pl.DataFrame:
    """Run ``case`` over the batches (which must hold ``left`` and ``right``) and compare
    with its reference."""
    dt = is_datetime(left)
    out = run(case.build(watermarked(left_batches, dt), watermarked(right_batches, dt)))
    same_rows(out, case.reference(left, right))
    return out


# ------------------------------------------------------------------ the references


def nulls_last(row: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    """A sort key for rows with nulls (``None`` sorts after every value of its column)."""
    return tuple((v is None, 0 if v is None else v) for v in row)


def test_reference_polars_never_matches_null_keys() -> None:
    """The contract is "as Polars": null keys match nothing, in join and in join_asof."""
    left = pl.DataFrame({"ts": [1, 2], "k": [None, "a"]}, schema_overrides={"k": pl.String})
    right = pl.DataFrame(
        {"ts": [0, 1], "k": [None, "a"], "v": [1, 2]}, schema_overrides={"k": pl.String}
    )
    assert left.join(right, on="k").rows() == [(2, "a", 1, 2)]
    assert sorted(left.join(right, on="k", how="left").rows(), key=nulls_last) == sorted(
        [
            (1, None, None, None),
            (2, "a", 1, 2),
        ],
        key=nulls_last,
    )
    assert left.join_asof(right, on="ts", by="k", check_sortedness=False).rows() == [
        (1, None, None),
        (2, "a", 2),
    ]


def test_reference_asof_by_hand() -> None:
    left = pl.DataFrame(
        {"ts": [10, 1, 20, 5], "k": ["a", "a", "b", None], "x": [1, 2, 3, 4]},
        schema_overrides={"k": pl.String},
    )
    right = pl.DataFrame(
        {
            "ts": [0, 6, 4, 11, 19, 14],
            "k": ["a", "a", None, "a", "b", "b"],
            "x": [0, 1, 2, 3, 4, 5],
        }
    )

    def rows(**kwargs: Any) -> list[tuple[Any, ...]]:
        out = ref.asof(left, right, by="k", **kwargs)
        assert out.columns == ["ts", "k", "x", "x_right"]
        return sorted(out.rows(), key=nulls_last)

    # (ts, k, x, x_right) sorted by ts; ts=5 has a null key: never matched
    assert rows() == [(1, "a", 2, 0), (5, None, 4, None), (10, "a", 1, 1), (20, "b", 3, 4)]
    assert rows(strategy="forward") == [
        (1, "a", 2, 1),
        (5, None, 4, None),
        (10, "a", 1, 3),
        (20, "b", 3, None),
    ]
    # nearest: 10 is 4 from 6 and 1 from 11; 20 is 1 from 19
    assert rows(strategy="nearest") == [
        (1, "a", 2, 0),
        (5, None, 4, None),
        (10, "a", 1, 3),
        (20, "b", 3, 4),
    ]
    # tolerance 1: 1 - 0 = 1 is within it, 10 - 6 = 4 is not
    assert rows(tolerance=1) == [
        (1, "a", 2, 0),
        (5, None, 4, None),
        (10, "a", 1, None),
        (20, "b", 3, 4),
    ]
    # between right rows at 3 and 7, backward takes 3; nearest takes the later of two
    # at the same distance (Polars' rule, which the contract inherits)
    tie = ref.asof(pl.DataFrame({"ts": [5]}), pl.DataFrame({"ts": [3, 7], "v": [1, 2]}))
    assert tie.rows() == [(5, 1)]
    tie = ref.asof(
        pl.DataFrame({"ts": [5]}), pl.DataFrame({"ts": [3, 7], "v": [1, 2]}), strategy="nearest"
    )
    assert tie.rows() == [(5, 2)]


def test_reference_asof_datetime_tolerance_and_renamed_columns() -> None:
    left = pl.DataFrame({"ts": [1_000, 5_000]}).with_columns(pl.col("ts").cast(pl.Datetime("ms")))
    right = pl.DataFrame({"rt": [0, 4_500], "v": [1, 2]}).with_columns(
        pl.col("rt").cast(pl.Datetime("ms"))
    )
    out = ref.asof(left, right, right_time="rt", tolerance=600)
    assert out.columns == ["ts", "rt", "v"]  # a right time of another name stays
    assert out.schema["rt"] == pl.Datetime("ms")
    assert out["v"].to_list() == [None, 2]


def test_reference_interval_by_hand() -> None:
    left = pl.DataFrame({"ts": [10, 20, 30, 40], "k": ["a", "a", "b", None], "x": [1, 2, 3, 4]})
    right = pl.DataFrame(
        {"ts": [8, 12, 19, 100, 41], "k": ["a", "a", "a", "b", None], "y": [1, 2, 3, 4, 5]}
    )
    # pairs: r.t in [l.t - 2, l.t + 3]
    inner = ref.interval(left, right, on="k", lower=-2, upper=3)
    assert inner.columns == ["ts", "k", "x", "ts_right", "y"]
    assert sorted(inner.rows()) == [(10, "a", 1, 8, 1), (10, "a", 1, 12, 2), (20, "a", 2, 19, 3)]
    left_join = ref.interval(left, right, on="k", lower=-2, upper=3, how="left")
    assert left_join.columns == inner.columns
    assert sorted(left_join.rows(), key=nulls_last) == sorted(
        [
            (10, "a", 1, 8, 1),
            (10, "a", 1, 12, 2),
            (20, "a", 2, 19, 3),
            (30, "b", 3, None, None),
            (40, None, 4, None, None),  # null key: no partner, though 41 is in its interval
        ],
        key=nulls_last,
    )
    full = ref.interval(left, right, on="k", lower=-2, upper=3, how="full")
    assert full.columns == ["ts", "k", "x", "ts_right", "k_right", "y"]
    assert sorted(full.rows(), key=nulls_last) == sorted(
        [
            (10, "a", 1, 8, "a", 1),
            (10, "a", 1, 12, "a", 2),
            (20, "a", 2, 19, "a", 3),
            (30, "b", 3, None, None, None),
            (40, None, 4, None, None, None),
            (None, None, None, 100, "b", 4),
            (None, None, None, 41, None, 5),
        ],
        key=nulls_last,
    )
    # a negative interval: r.t in [l.t - 5, l.t - 1]
    before = ref.interval(left, right, on="k", lower=-5, upper=-1)
    assert sorted(before.rows()) == [(10, "a", 1, 8, 1), (20, "a", 2, 19, 3)]


def test_reference_interval_left_on_right_on_and_suffix() -> None:
    left = pl.DataFrame({"ts": [10], "k": ["a"], "v": [1]})
    right = pl.DataFrame({"rt": [11, 30], "rk": ["a", "a"], "v": [2, 3]})
    out = ref.interval(
        left,
        right,
        left_on="k",
        right_on="rk",
        right_time="rt",
        lower=0,
        upper=5,
        how="full",
        suffix="_r",
    )
    assert out.columns == ["ts", "k", "v", "rt", "rk", "v_r"]
    assert sorted(out.rows(), key=nulls_last) == sorted(
        [
            (10, "a", 1, 11, "a", 2),
            (None, None, None, 30, "a", 3),
        ],
        key=nulls_last,
    )


def test_reference_ttl_by_hand() -> None:
    left = pl.DataFrame({"ts": [10, 50], "k": [1, 1]})
    right = pl.DataFrame({"ts": [5, 14, 15, 70], "k": [1, 1, 1, 2], "v": [1, 2, 3, 4]})
    assert sorted(ref.ttl(left, right, on="k", ttl=5).rows()) == [
        (10, 1, 5, 1),
        (10, 1, 14, 2),
        (10, 1, 15, 3),
    ]
    assert sorted(
        ref.ttl(left, right, on="k", ttl=4, how="full").rows(), key=nulls_last
    ) == sorted(
        [
            (10, 1, 14, 1, 2),
            (50, 1, None, None, None),
            (None, None, 15, 1, 3),
            (None, None, 5, 1, 1),
            (None, None, 70, 2, 4),
        ],
        key=nulls_last,
    )
    assert ref.ttl(left, right, on="k", ttl=None).height == 6  # a plain Polars join


def test_reference_windowed_by_hand() -> None:
    left = pl.DataFrame({"ts": [1, 9, 12], "k": ["a", "a", "a"], "x": [1, 2, 3]})
    right = pl.DataFrame({"ts": [8, 11, 25], "k": ["a", "a", "a"], "x": [10, 20, 30]})
    tumbling = ref.windowed(left, right, on="k", size=10)
    assert tumbling.columns == [
        "ts",
        "k",
        "x",
        "ts_right",
        "x_right",
        "window_start",
        "window_end",
    ]
    assert sorted(tumbling.rows()) == [
        (1, "a", 1, 8, 10, 0, 10),
        (9, "a", 2, 8, 10, 0, 10),
        (12, "a", 3, 11, 20, 10, 20),
    ]
    # hopping 10/5: 1 in [-5, 5), [0, 10); 9 in [0, 10), [5, 15); 12 in [5, 15), [10, 20);
    # right 8 in [0, 10), [5, 15); 11 in [5, 15), [10, 20); 25 in [20, 30), [25, 35)
    full = ref.windowed(left, right, on="k", size=10, slide=5, how="full")
    assert full.columns == [
        "ts",
        "k",
        "x",
        "ts_right",
        "k_right",
        "x_right",
        "window_start",
        "window_end",
    ]
    assert sorted(full.rows(), key=nulls_last) == sorted(
        [
            (1, "a", 1, None, None, None, -5, 5),
            (1, "a", 1, 8, "a", 10, 0, 10),
            (9, "a", 2, 8, "a", 10, 0, 10),
            (9, "a", 2, 8, "a", 10, 5, 15),
            (9, "a", 2, 11, "a", 20, 5, 15),
            (12, "a", 3, 8, "a", 10, 5, 15),
            (12, "a", 3, 11, "a", 20, 5, 15),
            (12, "a", 3, 11, "a", 20, 10, 20),
            (None, None, None, 25, "a", 30, 20, 30),
            (None, None, None, 25, "a", 30, 25, 35),
        ],
        key=nulls_last,
    )


def test_reference_windowed_datetime_and_null_keys() -> None:
    left = pl.DataFrame({"ts": [1_500, 1_600], "k": [None, 1]}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms"))
    )
    right = pl.DataFrame({"ts": [1_700, 1_800], "k": [None, 1]}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms"))
    )
    out = ref.windowed(left, right, on="k", size=1_000, how="left")
    assert out.schema["window_start"] == pl.Datetime("ms")
    assert out.schema["window_end"] == pl.Datetime("ms")
    rows = sorted(out.with_columns(pl.all().to_physical()).rows(), key=nulls_last)
    assert rows == [(1_500, None, None, 1_000, 2_000), (1_600, 1, 1_800, 1_000, 2_000)]


def test_reference_lookup_and_latest_per_key() -> None:
    updates = pl.DataFrame({"k": [1, 2, 1, None, 3, 2], "v": ["a", "b", "c", "n", "d", "e"]})
    table = ref.latest_per_key(updates, "k")
    assert sorted(table.rows(), key=nulls_last) == sorted(
        [(1, "c"), (2, "e"), (3, "d"), (None, "n")], key=nulls_last
    )
    events = pl.DataFrame({"k": [2, None, 4, 1]})
    assert sorted(ref.lookup(events, table, on="k", how="left").rows(), key=nulls_last) == sorted(
        [
            (1, "c"),
            (2, "e"),
            (4, None),
            (None, None),
        ],
        key=nulls_last,
    )
    assert sorted(ref.lookup(events, table, on="k").rows()) == [(1, "c"), (2, "e")]


@settings(max_examples=20, deadline=None)
@given(data=join_inputs(max_n=300), lower=st.integers(-3_000, 3_000), width=st.integers(0, 3_000))
def test_reference_interval_agrees_with_a_cross_join(
    data: tuple[pl.DataFrame, pl.DataFrame], lower: int, width: int
) -> None:
    """The interval reference against the definition: all pairs, filtered."""
    left, right = data
    got = ref.interval(left, right, on="k", lower=lower, upper=lower + width)
    lt, rt = pl.col("ts").to_physical(), pl.col("ts_right").to_physical()
    want = left.join(right, how="cross").filter(
        pl.col("k") == pl.col("k_right"), lt + lower <= rt, rt <= lt + lower + width
    )
    assert_rows = sorted(want.drop("k_right").rows(), key=nulls_last)
    assert sorted(got.rows(), key=nulls_last) == assert_rows


# ------------------------------------------------------------------ as-of


STRATEGIES = ["backward", "forward", "nearest"]


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    inputs_=join_inputs(),
    strategy=st.sampled_from(STRATEGIES),
    tolerance=st.sampled_from([None, 40, 700, 3_000]),
    by=st.sampled_from([None, *KEYS.values()]),
    data=st.data(),
)
def test_asof_matches_polars(
    same_rows: SameRows,
    inputs_: tuple[pl.DataFrame, pl.DataFrame],
    strategy: Any,
    tolerance: int | None,
    by: Any,
    data: st.DataObject,
) -> None:
    left, right = inputs_
    right = dedupe_right(right, by)
    dt = is_datetime(left)
    tol = None if tolerance is None else dur(tolerance, dt)
    out = run(
        watermarked(data.draw(arrivals(left)), dt).join_asof(
            watermarked(data.draw(arrivals(right)), dt), by=by, strategy=strategy, tolerance=tol
        )
    )
    expected = ref.asof(left, right, by=by, strategy=strategy, tolerance=tolerance)
    same_rows(out, expected)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_asof_renamed_time_and_by_columns(same_rows: SameRows, strategy: Any) -> None:
    left, right = inputs(800, 800, seed=3, keys=5)
    right = dedupe_right(right, "k").rename({"ts": "rt", "k": "rk"})
    left_s = watermarked(by_size(left, 64), False)
    right_s = watermarked(by_size(right, 150), False, time="rt")
    out = run(
        left_s.join_asof(
            right_s,
            left_on="ts",
            right_on="rt",
            by_left="k",
            by_right="rk",
            strategy=strategy,
            tolerance="1500ms",
            suffix="_r",
        )
    )
    expected = ref.asof(
        left,
        right,
        right_time="rt",
        by_left="k",
        by_right="rk",
        strategy=strategy,
        tolerance=1_500,
        suffix="_r",
    )
    assert out.columns == ["ts", "k", "ki", "g", "x", "rt", "ki_r", "g_r", "y", "x_r"]
    same_rows(out, expected)


def test_asof_output_keeps_the_left_time_and_every_left_row(same_rows: SameRows) -> None:
    left, right = inputs(1_000, 300, seed=11, keys=3, datetime=True)
    right = dedupe_right(right, "ki")
    out = run(
        watermarked(by_size(left, 33), True).join_asof(
            watermarked(by_size(right, 1_000), True), by="ki", strategy="nearest"
        )
    )
    assert out.height == left.height
    assert out.schema["ts"] == pl.Datetime("ms")
    same_rows(out.select("ts", "x"), left.select("ts", "x"))
    same_rows(out, ref.asof(left, right, by="ki", strategy="nearest"))


# ------------------------------------------------------------------ interval

INTERVALS = [(-1_000, 1_000), (0, 2_000), (-3_000, -500), (500, 4_000), (0, 0), (-200, 0)]


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    inputs_=join_inputs(),
    bounds=st.sampled_from(INTERVALS),
    how=st.sampled_from(["inner", "left", "full"]),
    on=st.sampled_from(list(KEYS.values())),
    data=st.data(),
)
def test_interval_join_matches_the_reference(
    same_rows: SameRows,
    inputs_: tuple[pl.DataFrame, pl.DataFrame],
    bounds: tuple[int, int],
    how: Any,
    on: Any,
    data: st.DataObject,
) -> None:
    left, right = inputs_
    dt = is_datetime(left)
    lower, upper = bounds
    out = run(
        watermarked(data.draw(arrivals(left)), dt).join_interval(
            watermarked(data.draw(arrivals(right)), dt),
            on=on,
            lower=dur(lower, dt),
            upper=dur(upper, dt),
            how=how,
        )
    )
    same_rows(out, ref.interval(left, right, on=on, lower=lower, upper=upper, how=how))


@pytest.mark.parametrize("how", ["inner", "left", "full"])
def test_interval_join_left_on_right_on_and_another_time_name(
    same_rows: SameRows, how: Any
) -> None:
    left, right = inputs(900, 700, seed=5, keys=4, null_keys=0.1)
    right = right.rename({"ts": "rt", "ki": "rk"})
    out = run(
        watermarked(by_size(left, 100), False).join_interval(
            watermarked(by_size(right, 37), False, time="rt"),
            left_on="ki",
            right_on="rk",
            lower="-700ms",
            upper="300ms",
            how=how,
            suffix="_other",
        )
    )
    expected = ref.interval(
        left,
        right,
        left_on="ki",
        right_on="rk",
        right_time="rt",
        lower=-700,
        upper=300,
        how=how,
        suffix="_other",
    )
    same_rows(out, expected)


# ------------------------------------------------------------------ windowed

WINDOWS: list[tuple[int, int | None, int]] = [  # size, slide (None: tumbling), offset
    (1_000, None, 0),
    (2_500, None, 300),
    (3_000, 1_000, 0),
    (2_000, 700, 100),
    (1_000, 1_000, 0),
]


def window_spec(size: int, slide: int | None, offset: int, dt: bool) -> Any:
    if slide is None:
        return vs.tumbling(dur(size, dt), offset=dur(offset, dt))
    return vs.hopping(dur(size, dt), dur(slide, dt), offset=dur(offset, dt))


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    inputs_=join_inputs(max_n=500),
    window=st.sampled_from(WINDOWS),
    how=st.sampled_from(["inner", "left", "full"]),
    on=st.sampled_from(list(KEYS.values())),
    data=st.data(),
)
def test_windowed_join_matches_the_reference(
    same_rows: SameRows,
    inputs_: tuple[pl.DataFrame, pl.DataFrame],
    window: tuple[int, int | None, int],
    how: Any,
    on: Any,
    data: st.DataObject,
) -> None:
    left, right = inputs_
    dt = is_datetime(left)
    size, slide, offset = window
    out = run(
        watermarked(data.draw(arrivals(left)), dt).join(
            watermarked(data.draw(arrivals(right)), dt),
            on=on,
            window=window_spec(size, slide, offset, dt),
            how=how,
        )
    )
    expected = ref.windowed(left, right, on=on, size=size, slide=slide, offset=offset, how=how)
    same_rows(out, expected)


def test_windowed_join_columns_and_window_dtypes(same_rows: SameRows) -> None:
    for dt in (False, True):
        left, right = inputs(400, 400, seed=8, keys=3, datetime=dt)
        out = run(
            watermarked(by_size(left, 50), dt).join(
                watermarked(by_size(right, 70), dt),
                on="k",
                window=vs.hopping("2s", "500ms"),
                how="left",
            )
        )
        expected = ref.windowed(left, right, on="k", size=2_000, slide=500, how="left")
        assert out.columns[-2:] == ["window_start", "window_end"]
        assert out.schema["window_start"] == left.schema["ts"]
        assert out.schema["window_end"] == left.schema["ts"]
        same_rows(out, expected)


# ------------------------------------------------------------------ regular (TTL)


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    inputs_=join_inputs(max_n=500),
    ttl=st.sampled_from([1, 250, 1_000, 4_000]),
    how=st.sampled_from(["inner", "left", "full"]),
    on=st.sampled_from(list(KEYS.values())),
    data=st.data(),
)
def test_ttl_join_matches_the_reference(
    same_rows: SameRows,
    inputs_: tuple[pl.DataFrame, pl.DataFrame],
    ttl: int,
    how: Any,
    on: Any,
    data: st.DataObject,
) -> None:
    left, right = inputs_
    dt = is_datetime(left)
    out = run(
        watermarked(data.draw(arrivals(left)), dt).join(
            watermarked(data.draw(arrivals(right)), dt), on=on, ttl=dur(ttl, dt), how=how
        )
    )
    same_rows(out, ref.ttl(left, right, on=on, ttl=ttl, how=how))


@pytest.mark.parametrize("how", ["inner", "left", "full"])
def test_ttl_join_left_on_right_on(same_rows: SameRows, how: Any) -> None:
    left, right = inputs(700, 900, seed=9, keys=5, null_keys=0.1)
    right = right.rename({"ts": "rt", "k": "rk", "g": "rg"})
    out = run(
        watermarked(by_size(left, 256), False).join(
            watermarked(by_size(right, 9), False, time="rt"),
            left_on=["g", "k"],
            right_on=["rg", "rk"],
            ttl="1s",
            how=how,
        )
    )
    expected = ref.ttl(
        left, right, left_on=["g", "k"], right_on=["rg", "rk"], right_time="rt", ttl=1_000, how=how
    )
    same_rows(out, expected)


@pytest.mark.parametrize("how", ["inner", "left", "full"])
@pytest.mark.parametrize("on", KEYS.values(), ids=KEYS.keys())
def test_join_without_ttl_on_bounded_inputs_is_the_polars_join(
    same_rows: SameRows, how: Any, on: Any
) -> None:
    left, right = inputs(300, 200, seed=12, keys=20, null_keys=0.1)
    out = run(
        watermarked(by_size(left, 41), False).join(
            watermarked(by_size(right, 77), False), on=on, how=how
        )
    )
    same_rows(out, left.join(right, on=on, how=how))
    same_rows(out, ref.ttl(left, right, on=on, ttl=None, how=how))


# ------------------------------------------------------------------ lookup


def lookup_table(n_keys: int) -> pl.DataFrame:
    """One row per key (the null key included), for the keys of :func:`side`."""
    ids = list(range(0, n_keys, 2))  # odd keys are missing from the table
    return pl.DataFrame(
        {
            "k": [*(f"k{i:02d}" for i in ids), None],
            "ki": [*ids, None],
            "g": ["g0"] * (len(ids) + 1),
            "label": [*(f"label{i}" for i in ids), "null"],
            "weight": [*(float(i) for i in ids), -1.0],
        },
        schema_overrides={"k": pl.String, "ki": pl.Int64},
    )


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("on", KEYS.values(), ids=KEYS.keys())
@pytest.mark.parametrize("kind", ["polars", "arrow"])
def test_lookup_join_with_a_static_table(
    same_rows: SameRows, how: Any, on: Any, kind: str
) -> None:
    events, _ = inputs(1_500, 0, seed=13, keys=10, null_keys=0.1)
    keys = [on] if isinstance(on, str) else on
    table = lookup_table(10).select(*keys, "label", "weight")
    table_arg = table if kind == "polars" else table.to_arrow()
    out = run(watermarked(by_size(events, 97), False).join(table_arg, on=on, how=how))
    same_rows(out, ref.lookup(events, table, on=on, how=how))


def test_lookup_join_on_events_without_event_time(same_rows: SameRows) -> None:
    events, _ = inputs(500, 0, seed=14, keys=10, null_keys=0.1)
    table = lookup_table(10).select("ki", "label")
    out = vs.from_polars(events, batch_size=64).join(table, on="ki", how="left").collect()
    same_rows(out, ref.lookup(events, table, on="ki", how="left"))


def updates_for(n: int, n_keys: int, seed: int) -> pl.DataFrame:
    """Table updates: ``n`` rows over ``n_keys`` keys (and the null key), in order."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, n_keys, n)
    return pl.DataFrame(
        {
            "k": [None if i < 0 else f"k{i:02d}" for i in ids],
            "ki": [None if i < 0 else int(i) for i in ids],
            "label": [f"v{j}" for j in range(n)],
        },
        schema_overrides={"k": pl.String, "ki": pl.Int64},
    )


@pytest.mark.parametrize("on", ["k", "ki"])
@pytest.mark.parametrize("update_batch", [1, 7, strategies.WHOLE])
def test_lookup_join_with_a_table_from_an_update_stream(
    same_rows: SameRows, on: str, update_batch: int
) -> None:
    events, _ = inputs(1_200, 0, seed=15, keys=12, null_keys=0.1)
    updates = updates_for(300, 9, seed=16).select(on, "label")  # several updates per key
    table = vs.table(vs.from_polars(updates, batch_size=update_batch))
    out = run(watermarked(by_size(events, 50), False).join(table, on=on, how="left"))
    expected = ref.lookup(events, ref.latest_per_key(updates, on), on=on, how="left")
    assert expected["label"].null_count() < expected.height  # keys do match
    same_rows(out, expected)


# ------------------------------------------------------------------ batching independence


def no_late_rows(metrics: vs.Metrics) -> None:
    assert metrics.late_events == 0, "disorder within the bound: no row may be late"


@case_params
def test_every_join_under_every_executor(
    same_rows: SameRows, run_everywhere: Any, case: Case
) -> None:
    """Both sides in one-row batches, in random cuts (others on each side) and whole."""
    left, right = inputs(ONE_ROW_CAP, ONE_ROW_CAP, seed=21, keys=3, span=6_000, disorder=1_500)
    right = case.prepare_right(right)

    def build(a: vs.Stream, b: vs.Stream) -> vs.Stream:
        return case.build(
            a.with_watermark("ts", BOUND, time_unit="ms"),
            b.with_watermark("ts", BOUND, time_unit="ms"),
        )

    out = run_everywhere(build, left, right, metrics=no_late_rows)
    same_rows(out, case.reference(left, right))


@case_params
def test_one_row_batches_against_one_batch(same_rows: SameRows, case: Case) -> None:
    """A side in one-row batches, the other all in one batch of many more rows."""
    left, right = inputs(ONE_ROW_CAP, 2_000, seed=22, keys=4, span=8_000, disorder=3_000)
    right = case.prepare_right(right)
    check_case(same_rows, case, left, right, by_size(left, 1), by_size(right, strategies.WHOLE))
    left, right = inputs(2_000, ONE_ROW_CAP, seed=23, keys=4, span=8_000, disorder=3_000)
    right = case.prepare_right(right)
    check_case(same_rows, case, left, right, by_size(left, strategies.WHOLE), by_size(right, 1))


@case_params
def test_large_batches_of_different_sizes(same_rows: SameRows, case: Case) -> None:
    left, right = inputs(6_000, 5_000, seed=23, keys=8, span=40_000, datetime=True)
    right = case.prepare_right(right)
    check_case(same_rows, case, left, right, by_size(left, 4_096), by_size(right, 1_000))
    check_case(same_rows, case, left, right, by_size(left, 999), by_size(right, 5_000))


@case_params
def test_right_in_few_huge_bursts_left_in_many_small_batches(
    same_rows: SameRows, case: Case
) -> None:
    left, right = inputs(3_000, 3_000, seed=24, keys=6, span=30_000)
    right = case.prepare_right(right)
    check_case(same_rows, case, left, right, by_size(left, 10), by_size(right, 1_500))
    # and the other way round
    check_case(same_rows, case, left, right, by_size(left, 3_000), by_size(right, 7))


def slowly(batches: list[pa.RecordBatch], delay: float) -> Iterator[pa.RecordBatch]:
    """The batches from a generator that waits ``delay`` seconds before each."""
    for batch in batches:
        time.sleep(delay)
        yield batch


@case_params
def test_a_right_source_whose_batches_come_late(same_rows: SameRows, case: Case) -> None:
    """The right input's batches are yielded slowly while the left one is all there: the
    join must wait for the right watermark, not emit what it has."""
    left, right = inputs(2_000, 2_000, seed=25, keys=5, span=20_000)
    right = case.prepare_right(right)
    check_case(same_rows, case, left, right, by_size(left, 25), slowly(by_size(right, 400), 0.03))


@case_params
def test_a_left_source_whose_batches_come_late(same_rows: SameRows, case: Case) -> None:
    left, right = inputs(2_000, 2_000, seed=26, keys=5, span=20_000)
    right = case.prepare_right(right)
    check_case(same_rows, case, left, right, slowly(by_size(left, 400), 0.03), by_size(right, 25))


@case_params
@pytest.mark.parametrize("ends_first", ["left", "right"])
def test_one_input_ends_long_before_the_other(
    same_rows: SameRows, case: Case, ends_first: str
) -> None:
    """One input holds only the first 2 s and ends (its watermark becomes +inf) while the
    other goes on for 20 s in many batches: rows that arrive after that still join, and
    outer joins still emit the rows without a partner."""
    short = side(60, seed=33, keys=3, span=2_000, disorder=500)
    long_left, long_right = inputs(1_500, 1_500, seed=34, keys=3, span=20_000)
    if ends_first == "left":
        left, right = short, case.prepare_right(long_right)
        check_case(same_rows, case, left, right, by_size(left, 60), by_size(right, 50))
    else:
        right = case.prepare_right(side(60, seed=35, keys=3, span=2_000, right=True))
        left = long_left
        check_case(same_rows, case, left, right, by_size(left, 50), by_size(right, 60))


@settings(max_examples=15, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    case=st.sampled_from(list(CASES.values())),
    inputs_=join_inputs(max_n=1_500),
    data=st.data(),
)
def test_every_join_on_random_batching(
    same_rows: SameRows,
    case: Case,
    inputs_: tuple[pl.DataFrame, pl.DataFrame],
    data: st.DataObject,
) -> None:
    left, right = inputs_
    right = case.prepare_right(right)
    check_case(same_rows, case, left, right, data.draw(arrivals(left)), data.draw(arrivals(right)))


# ------------------------------------------------------------------ time types, null keys


@case_params
def test_datetime_time_columns(same_rows: SameRows, case: Case) -> None:
    left, right = inputs(1_500, 1_200, seed=27, keys=6, datetime=True)
    right = case.prepare_right(right)
    out = check_case(same_rows, case, left, right, by_size(left, 128), by_size(right, 300))
    assert out.schema["ts"] == pl.Datetime("ms")


def test_integer_time_without_a_unit_takes_integer_durations(same_rows: SameRows) -> None:
    left, right = inputs(1_000, 1_000, seed=28, keys=4)
    rdedup = dedupe_right(right, "k")

    def stream(df: pl.DataFrame, size: int) -> vs.Stream:
        return vs.from_arrow(by_size(df, size)).with_watermark("ts", 3_000)

    out = run(stream(left, 70).join_asof(stream(rdedup, 130), by="k", tolerance=800))
    same_rows(out, ref.asof(left, rdedup, by="k", tolerance=800))
    out = run(stream(left, 70).join_interval(stream(right, 130), on="k", lower=-600, upper=900))
    same_rows(out, ref.interval(left, right, on="k", lower=-600, upper=900))
    out = run(stream(left, 70).join(stream(right, 130), on="k", window=vs.tumbling(1_500)))
    same_rows(out, ref.windowed(left, right, on="k", size=1_500))
    out = run(stream(left, 70).join(stream(right, 130), on="k", ttl=400, how="full"))
    same_rows(out, ref.ttl(left, right, on="k", ttl=400, how="full"))


@case_params
def test_null_keys_match_nothing(same_rows: SameRows, case: Case) -> None:
    left, right = inputs(1_500, 1_500, seed=29, keys=3, null_keys=0.3)
    right = case.prepare_right(right)
    out = check_case(same_rows, case, left, right, by_size(left, 111), by_size(right, 222))
    null_left_key = pl.any_horizontal(pl.col(k).is_null() for k in case.keys)
    from_left = out.filter(null_left_key & pl.col("x").is_not_null())
    if case.inner:
        assert from_left.height == 0
    else:
        assert from_left.height > 0
        # y is never null in the right input: a null y means no partner
        assert from_left["y"].null_count() == from_left.height


# ------------------------------------------------------------------ state stays bounded


def join_step(metrics: vs.Metrics) -> Any:
    # step labels read "[4] join_asof(...)": the step's index, then its name
    steps = [
        s
        for label, s in metrics.steps.items()
        if re.sub(r"^\[\d+\] ", "", label).startswith("join")
    ]
    assert len(steps) == 1, f"one join step expected among {list(metrics.steps)}"
    return steps[0]


def peak_state(case: Case, n: int) -> tuple[int, int]:
    """(peak_state_rows, rows out) of ``case`` over ``n`` events a side, 100 a second,
    in batches of 1 s, disorder <= 300 ms, watermark bound 500 ms."""
    left, right = inputs(n, n, seed=30, keys=20, span=n * 10, disorder=300)
    right = case.prepare_right(right)
    lstream = vs.from_arrow(by_size(left, 100)).with_watermark("ts", "500ms", time_unit="ms")
    rstream = vs.from_arrow(by_size(right, 100)).with_watermark("ts", "500ms", time_unit="ms")
    out, metrics = case.build(lstream, rstream).collect(return_metrics=True)
    assert metrics.late_events == 0
    return join_step(metrics).peak_state_rows, out.height


# The state bound holds for pipelines that may run on unbounded input, so the nearest
# as-of gets a tolerance here (without one, it is only allowed on bounded input).
STATE_CASES = {
    **CASES,
    "asof_nearest": Case(
        lambda a, b: a.join_asof(b, by="ki", strategy="nearest", tolerance="1500ms"),
        lambda a, b: ref.asof(a, b, by="ki", strategy="nearest", tolerance=1_500),
        asof_by="ki",
        keys=("ki",),
    ),
}


@pytest.mark.parametrize("case", STATE_CASES.values(), ids=STATE_CASES.keys())
def test_state_stays_bounded_as_watermarks_advance(case: Case) -> None:
    n = 2_000
    small, out_small = peak_state(case, n)
    large, out_large = peak_state(case, 10 * n)
    assert out_large > 5 * out_small  # the long run did produce results
    assert small > 0
    assert large <= 1.5 * small, f"peak state grew from {small} to {large} rows"
    assert large < n, f"peak state {large} rows is not far below the {n} events a side"


# ------------------------------------------------------------------ refused at build time

LEFT, RIGHT = inputs(50, 50, seed=31)


def streams(
    left: pl.DataFrame = LEFT, right: pl.DataFrame = RIGHT, *, rt: str = "ts"
) -> tuple[vs.Stream, vs.Stream]:
    return (
        vs.from_polars(left).with_watermark("ts", BOUND, time_unit="ms"),
        vs.from_polars(right).with_watermark(rt, BOUND, time_unit="ms"),
    )


BUILDERS: dict[str, Callable[[vs.Stream, vs.Stream, Any], vs.Stream]] = {
    "asof": lambda a, b, key: a.join_asof(b, by=key),
    "interval": lambda a, b, key: a.join_interval(b, on=key, lower="-1s", upper="1s"),
    "windowed": lambda a, b, key: a.join(b, on=key, window=vs.tumbling("1s")),
    "ttl": lambda a, b, key: a.join(b, on=key, ttl="1s"),
}
builder_params = pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())


@builder_params
def test_mismatched_key_dtypes_are_refused(build: Any) -> None:
    right = RIGHT.drop("k").rename({"ki": "k"})  # k: String on the left, Int64 on the right
    left_s, right_s = streams(right=right)
    with pytest.raises(vs.SchemaError) as info:
        build(left_s, right_s, "k")
    message = str(info.value)
    assert "String" in message
    assert "Int64" in message


@pytest.mark.parametrize("kind", ["polars", "arrow"])
def test_lookup_with_mismatched_key_dtypes_is_refused(kind: str) -> None:
    table = lookup_table(4).select(pl.col("ki").cast(pl.String), "label")
    left_s, _ = streams()
    with pytest.raises(vs.SchemaError) as info:
        left_s.join(table if kind == "polars" else table.to_arrow(), on="ki")
    assert "String" in str(info.value)
    assert "Int64" in str(info.value)


@builder_params
@pytest.mark.parametrize("missing", ["left", "right"])
def test_missing_key_columns_are_refused(build: Any, missing: str) -> None:
    left, right = LEFT.rename({"g": "zone"}), RIGHT.rename({"g": "zone"})
    left, right = (left.drop("zone"), right) if missing == "left" else (left, right.drop("zone"))
    with pytest.raises(vs.SchemaError, match="zone"):
        build(*streams(left, right), ["zone", "k"])
    with pytest.raises(vs.SchemaError, match="nope"):
        build(*streams(), "nope")


def test_lookup_with_a_missing_key_column_is_refused() -> None:
    left_s, _ = streams()
    with pytest.raises(vs.SchemaError, match="label"):
        left_s.join(lookup_table(4), on="label")
    with pytest.raises(vs.SchemaError, match="nope"):
        left_s.join(lookup_table(4), on=["k", "nope"])


def test_asof_on_a_column_that_is_not_the_event_time_is_refused() -> None:
    left_s, right_s = (s.with_columns(other_time=pl.col("ts")) for s in streams())
    with pytest.raises(vs.PipelineError, match="other_time"):
        left_s.join_asof(right_s, on="other_time")
    with pytest.raises(vs.PipelineError, match="other_time"):
        left_s.join_asof(right_s, left_on="ts", right_on="other_time")
    with pytest.raises(vs.PipelineError, match="other_time"):
        left_s.join_asof(right_s, left_on="other_time", right_on="ts")


@builder_params
@pytest.mark.parametrize("without", ["left", "right", "both"])
def test_a_side_without_event_time_is_refused(build: Any, without: str) -> None:
    left_s, right_s = streams()
    if without in ("left", "both"):
        left_s = vs.from_polars(LEFT)
    if without in ("right", "both"):
        right_s = vs.from_polars(RIGHT)
    with pytest.raises(vs.PipelineError) as info:
        build(left_s, right_s, "k")
    assert any(w in str(info.value).lower() for w in ("watermark", "event time", "event-time"))


def endless_times(endless: Any) -> vs.Stream:
    """An unbounded stream with event time ``i`` and a key ``k``."""
    return endless.stream("records").with_watermark("i", 10).with_columns(k=pl.col("i") % 3)


def bounded_times() -> vs.Stream:
    df = pl.DataFrame({"i": [1, 2, 3], "k": [0, 1, 2]})
    return vs.from_polars(df).with_watermark("i", 10)


@pytest.mark.parametrize("strategy", ["forward", "nearest"])
@pytest.mark.parametrize("unbounded", ["left", "right"])
def test_forward_and_nearest_asof_need_a_tolerance_on_unbounded_input(
    endless: Any, strategy: str, unbounded: str
) -> None:
    bounded = bounded_times()
    left_s, right_s = (
        (endless_times(endless), bounded)
        if unbounded == "left"
        else (bounded, endless_times(endless))
    )
    with pytest.raises(vs.PipelineError, match="tolerance"):
        left_s.join_asof(right_s, strategy=strategy)
    # with a tolerance, or backward, it is a valid pipeline (built, not run)
    assert isinstance(left_s.join_asof(right_s, strategy=strategy, tolerance=5), vs.Stream)
    assert isinstance(left_s.join_asof(right_s), vs.Stream)


def test_forward_asof_without_tolerance_on_bounded_inputs_is_accepted(same_rows: SameRows) -> None:
    left, right = inputs(300, 300, seed=32, keys=3)
    right = dedupe_right(right, None)
    out = run(
        watermarked(by_size(left, 30), False).join_asof(
            watermarked(by_size(right, 30), False), strategy="forward"
        )
    )
    same_rows(out, ref.asof(left, right, strategy="forward"))


def test_a_join_without_ttl_on_unbounded_input_is_refused(endless: Any) -> None:
    bounded = bounded_times()
    with pytest.raises(vs.PipelineError, match="ttl"):
        endless_times(endless).join(bounded, on="k")
    with pytest.raises(vs.PipelineError, match="ttl"):
        bounded.join(endless_times(endless), on="k")
    assert isinstance(endless_times(endless).join(bounded, on="k", ttl=5), vs.Stream)


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("interval", "right"),
        ("interval", "semi"),
        ("interval", "cross"),
        ("windowed", "anti"),
        ("windowed", "right"),
        ("ttl", "right"),
        ("ttl", "outer"),
        ("lookup", "full"),
        ("lookup", "right"),
    ],
)
def test_how_not_allowed_is_refused(name: str, how: str) -> None:
    left_s, right_s = streams()
    build: dict[str, Callable[[], vs.Stream]] = {
        "interval": lambda: left_s.join_interval(
            right_s, on="k", lower="-1s", upper="1s", how=how
        ),
        "windowed": lambda: left_s.join(right_s, on="k", window=vs.tumbling("1s"), how=how),
        "ttl": lambda: left_s.join(right_s, on="k", ttl="1s", how=how),
        "lookup": lambda: left_s.join(lookup_table(4), on="k", how=how),
    }
    # the message names the refused value (quoted, or as how=...)
    with pytest.raises(vs.PipelineError, match=rf"['\"]{how}['\"]|how={how}\b"):
        build[name]()


def test_a_static_lookup_table_with_duplicate_keys_is_refused() -> None:
    table = pl.DataFrame({"k": ["k00", "k01", "k00"], "label": ["a", "b", "c"]})
    left_s, _ = streams()
    with pytest.raises(vs.SchemaError, match="k"):
        left_s.join(table, on="k")
    with pytest.raises(vs.SchemaError, match="k"):
        left_s.join(table.to_arrow(), on="k")


# ------------------------------------------------------------------ late rows


def batches_of(*frames: pl.DataFrame) -> list[pa.RecordBatch]:
    return [b for f in frames for b in f.to_arrow().combine_chunks().to_batches()]


def timed(
    times: list[int], key: str = "k01", *, right: bool = False, start: int = 0
) -> pl.DataFrame:
    n = len(times)
    cols: dict[str, Any] = {
        "ts": pl.Series(times, dtype=pl.Int64),
        "k": [key] * n,
        "ki": pl.Series([1] * n, dtype=pl.Int64),
        "g": ["g0"] * n,
    }
    if right:
        cols["y"] = [float(start + i) for i in range(n)]
    cols["x"] = pl.Series(range(start, start + n), dtype=pl.Int64)
    return pl.DataFrame(cols)


def test_late_right_rows_go_to_the_late_output(same_rows: SameRows) -> None:
    # left: every 100 ms from 0 to 20 s in batches of 1 s
    left = timed(list(range(0, 20_000, 100)))
    r1 = timed(list(range(0, 5_000, 250)), right=True, start=0)
    r2 = timed(list(range(5_000, 15_001, 250)), right=True, start=100)  # watermark -> 12,000
    # the next right batch comes when the right input is the one behind: the join's
    # watermark is the right's, 12,000; a right row is late once it is more than
    # -lower = 300 ms behind it (DESIGN.md "Lateness in joins"); 11,700 and 11,999 are
    # behind their own input's watermark but still meet left rows that are not late
    late = timed([2_000, 7_050, 11_699], right=True, start=200)
    on_time = timed([11_700, 11_999, 12_000, 13_010], right=True, start=300)
    r4 = timed(list(range(15_000, 20_000, 250)), right=True, start=400)
    right_batches = batches_of(r1, r2, pl.concat([late, on_time]), r4)
    right = pl.concat([r1, r2, late, on_time, r4])
    joined = watermarked(by_size(left, 10), False).join_interval(
        watermarked(right_batches, False), on="k", lower="-300ms", upper="300ms", how="left"
    )
    (out, late_out), metrics = vs.collect_all(
        [joined, joined.late_events("right")], return_metrics=True
    )
    same_rows(late_out, late)
    assert metrics.late_events == late.height
    kept = pl.concat([r1, r2, on_time, r4])
    expected = ref.interval(left, kept, on="k", lower=-300, upper=300, how="left")
    with_late = ref.interval(left, right, on="k", lower=-300, upper=300, how="left")
    assert expected.height != with_late.height  # the late rows would have had partners
    same_rows(out, expected)
    # the rows behind their own watermark found their partners
    assert out.filter(pl.col("x_right") == 301).height == 6  # 11,999: left 11,700 .. 12,200


def test_late_right_rows_in_an_asof_join(same_rows: SameRows) -> None:
    left = timed(list(range(0, 20_000, 100)))
    r1 = timed(list(range(0, 10_000, 500)), right=True, start=0)  # watermark -> 6,500
    late = timed([6_499, 6_250], right=True, start=100)
    r3 = timed(list(range(10_000, 20_000, 500)), right=True, start=200)
    joined = watermarked(by_size(left, 100), False).join_asof(
        watermarked(batches_of(r1, late, r3), False), by="k"
    )
    (out, late_out), metrics = vs.collect_all(
        [joined, joined.late_events("right")], return_metrics=True
    )
    same_rows(late_out, late)
    assert metrics.late_events == late.height
    same_rows(out, ref.asof(left, pl.concat([r1, r3]), by="k"))


def test_late_left_rows_go_to_the_late_output(same_rows: SameRows) -> None:
    right = timed(list(range(0, 20_000, 100)), right=True)
    l1 = timed(list(range(0, 10_000, 200)), start=0)  # left watermark -> 6,800
    # the next left batch comes when the left input is the one behind: the join's
    # watermark is the left's, 6,800; a row is late once its window has ended: [6 s, 7 s)
    # is still open, so 6,000 and 6,799 (behind their own watermark) are not late
    late = timed([100, 5_999], start=1_000)
    on_time = timed([6_000, 6_799, 6_800], start=2_000)
    l3 = timed(list(range(10_000, 20_000, 200)), start=3_000)
    joined = watermarked(batches_of(l1, pl.concat([on_time, late]), l3), False).join(
        watermarked(by_size(right, 50), False), on="k", window=vs.tumbling("1s"), how="left"
    )
    (out, late_out, right_late), metrics = vs.collect_all(
        [joined, joined.late_events("left"), joined.late_events("right")], return_metrics=True
    )
    same_rows(late_out, late)
    assert right_late.height == 0
    assert metrics.late_events == late.height
    kept = pl.concat([l1, on_time, l3])
    same_rows(out, ref.windowed(kept, right, on="k", size=1_000, how="left"))


# ---------------------------------------------------------------------- key-only right inputs
def test_right_input_of_only_keys_and_time(same_rows: SameRows) -> None:
    # the output takes no column from the right input: its rows still count (Nexmark q5
    # joins window counts to the per-window maxima on (window_end, count) alone)
    left = pl.DataFrame({"ts": list(range(0, 200, 5)), "k": [i % 3 for i in range(40)]})
    left = left.with_columns(v=pl.int_range(pl.len()))
    right = pl.DataFrame({"ts": list(range(1, 200, 7)), "k": [i % 3 for i in range(29)]})
    lstream = vs.from_polars(left, batch_size=7).with_watermark("ts", 0)
    rstream = vs.from_polars(right, batch_size=5).with_watermark("ts", 0)
    same_rows(
        lstream.join_asof(rstream, on="ts", by="k").collect(),
        left.join_asof(right, on="ts", by="k", check_sortedness=False),
    )
    both = right.with_columns(ts=pl.col("ts") - 1)  # times shared with the left input
    got = lstream.join(
        vs.from_polars(both, batch_size=5).with_watermark("ts", 0),
        on=["k", "ts"],
        window=vs.tumbling(10),
    ).collect()
    want = left.join(both, on=["k", "ts"]).with_columns(
        window_start=pl.col("ts") // 10 * 10, window_end=pl.col("ts") // 10 * 10 + 10
    )
    assert want.height > 0
    same_rows(got, want)
    table = right.unique("k").select("k")
    same_rows(lstream.join(table, on="k").collect(), left.join(table, on="k"))


# ---------------------------------------------------------------------- time zones
def test_windowed_join_on_a_zoned_column_cuts_local_windows(same_rows: SameRows) -> None:
    """Windows over a time-zone-aware column are cut in its local time, as a window step
    (and Polars' ``group_by_dynamic``) cuts them: in Asia/Kolkata (+5:30) an hour is
    [10:00, 11:00) local, i.e. [04:30, 05:30) UTC, not [05:00, 06:00) UTC."""
    zone = pl.Datetime("ms", "Asia/Kolkata")
    utc = pl.Series([f"2024-01-01T05:{m:02d}:00" for m in (15, 20, 40)]).str.to_datetime(
        "%Y-%m-%dT%H:%M:%S", time_unit="ms", time_zone="UTC"
    )
    left = pl.DataFrame({"ts": utc[:2], "k": ["a", "a"]}).with_columns(
        pl.col("ts").dt.convert_time_zone("Asia/Kolkata")
    )
    right = pl.DataFrame({"ts": utc[2:], "k": ["a"], "y": [1]}).with_columns(
        pl.col("ts").dt.convert_time_zone("Asia/Kolkata")
    )
    assert left.schema["ts"] == zone
    a = vs.from_polars(left).with_watermark("ts", "0s")
    b = vs.from_polars(right).with_watermark("ts", "0s")
    got = a.join(b, on="k", window=vs.tumbling("1h"), how="left").collect()
    # 05:15 and 05:20 UTC are 10:45 and 10:50 local: in [10:00, 11:00) local; 05:40 UTC
    # (11:10 local) is in the next local hour, so no pair
    local = got.select(
        pl.col("window_start").dt.strftime("%H:%M"), pl.col("window_end").dt.strftime("%H:%M")
    )
    assert local.rows() == [("10:00", "11:00"), ("10:00", "11:00")]
    assert got["y"].null_count() == 2
    # Polars' own local hours agree
    polars_windows = left.sort("ts").group_by_dynamic("ts", every="1h").agg(pl.len())
    assert polars_windows["ts"].dt.strftime("%H:%M").to_list() == ["10:00"]


def test_windowed_join_over_local_days_with_dst_is_refused() -> None:
    """A local day in Europe/Berlin is 23 or 25 hours across DST; a windowed join cuts
    fixed windows only, so it is refused when built, naming the step and the fix."""
    df = pl.DataFrame({"ts": [0], "k": ["a"]}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms", "UTC")).dt.convert_time_zone("Europe/Berlin")
    )
    a = vs.from_polars(df).with_watermark("ts", "0s")
    b = vs.from_polars(df).with_watermark("ts", "0s")
    with pytest.raises(vs.VStreamError, match=r"join\(k, window=tumbling\('1d'\).*local days"):
        a.join(b, on="k", window=vs.tumbling("1d"))


@pytest.mark.parametrize("how", ["inner", "left"])
def test_a_batch_of_only_null_keys_after_the_watermarks_moved(how: str) -> None:
    """A windowed join's batch whose rows all have null keys (an inner join drops them
    before probing) once both watermarks are known."""
    nulls = timed([2_000]).with_columns(pl.lit(None, pl.String).alias("k"))
    left = watermarked(batches_of(timed([1_000]), nulls), False)
    right = watermarked(batches_of(timed([1_500], right=True)), False)
    got = left.join(right, on="k", window=vs.tumbling("1s"), how=how).collect()  # type: ignore[arg-type]
    want = [(1_000, "k01", 1_500)] + ([(2_000, None, None)] if how == "left" else [])
    assert sorted(got.select("ts", "k", "ts_right").rows(), key=str) == sorted(want, key=str)
