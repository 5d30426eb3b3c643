"""A logical plan round-trips through bytes and gives the same results (issue 17, item 3)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import strategies
import vstream as vs
from vstream.plan.ids import describe
from vstream.plan.nodes import Node, StepNode, ancestors
from vstream.plan.serialize import PlanError, checksum, plan_from_bytes, plan_to_bytes

SameRows = Callable[[pl.DataFrame, pl.DataFrame], None]


def _round_trip(streams: list[vs.Stream]) -> list[vs.Stream]:
    nodes = plan_from_bytes(plan_to_bytes([s._node for s in streams]))
    return [vs.Stream(n) for n in nodes]


def _described(outputs: list[Node]) -> list[dict[str, object]]:
    return [describe(n) for n in ancestors(outputs)]


def _without_ids(text: str) -> str:
    return re.sub(r"\[\d+\]", "[id]", text)


def _pipeline(df: pl.DataFrame, batch_size: int) -> tuple[vs.Stream, vs.Stream]:
    windowed = (
        vs.from_polars(df, batch_size=batch_size)
        .filter(pl.col("cpu").is_not_null(), pl.col("cpu") >= 5)
        .with_columns(load=pl.col("cpu") / 100, slow=pl.col("latency_ms") > 100)
        .select("ts", "host", "load", "slow", ms="latency_ms")
        .rename({"host": "server"})
        .with_watermark("ts", "2s", time_unit="ms")
        .window(vs.tumbling("10s"), by="server", late="side")
        .agg(pl.len(), pl.col("load").mean(), slow=pl.col("slow").sum(), top=pl.col("ms").max())
    )
    return windowed, windowed.late_events()


@settings(max_examples=8, deadline=None)
@given(batch_size=strategies.batch_sizes())
@example(batch_size=1)
@example(batch_size=strategies.WHOLE)
def test_steps_and_a_window_round_trip_with_the_same_results(
    telemetry_small: pl.DataFrame, batch_size: int
) -> None:
    df = telemetry_small.head(3_000)
    original = list(_pipeline(df, batch_size))
    loaded = _round_trip(original)
    assert _described([s._node for s in loaded]) == _described([s._node for s in original])
    # the steps hold their expressions as data, never the closures of a run
    steps = [n for n in ancestors([s._node for s in loaded]) if isinstance(n, StepNode)]
    assert [n.kind for n in steps] == ["filter", "with_columns", "select", "rename"]
    assert all(isinstance(e, pl.Expr) for n in steps for e in n.exprs)
    want = vs.collect_all(original)
    got = vs.collect_all(loaded)
    assert want[0] is not None
    assert want[0].height > 0
    for a, b in zip(got, want, strict=True):
        assert a is not None
        assert b is not None
        _same_rows_in_order(a, b)


def _same_rows_in_order(a: pl.DataFrame, b: pl.DataFrame) -> None:
    """The two runs see the same batches, so their rows are equal and in the same order."""
    assert a.schema == b.schema
    assert a.rows() == b.rows()


def test_parquet_and_arrow_sources_a_join_and_concat_round_trip(
    tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    df = telemetry_small.head(2_000)
    df.head(1_000).write_parquet(tmp_path / "a.parquet")
    df.tail(1_000).write_parquet(tmp_path / "b.parquet")
    hosts = df.select("host").unique().with_columns(rack=pl.col("host").str.len_bytes())
    files = vs.from_parquet(tmp_path, batch_size=300)
    table = vs.from_arrow(df.head(500).to_arrow(), batch_size=64)
    joined = (
        vs.concat([files, table])
        .join(hosts, on="host", how="left")
        .drop("region")
        .with_columns(pl.col("rack").fill_null(0))
    )
    (loaded,) = _round_trip([joined])
    same_rows(loaded.collect(), joined.collect())
    # the same plan, but for the node ids a new process gives
    assert _without_ids(loaded.explain()) == _without_ids(joined.explain())


def test_a_map_batches_lambda_is_refused_naming_the_step() -> None:
    s = vs.from_polars(pl.DataFrame({"x": [1, 2]})).map_batches(lambda df: df, name="double")
    with pytest.raises(PlanError, match=r"map_batches\(double\).*lambda, a closure"):
        plan_to_bytes([s._node])


def test_a_map_batches_function_with_an_import_path_travels_by_its_path(
    same_rows: SameRows,
) -> None:
    df = pl.DataFrame({"x": [1, None, 3, None, 5]})
    s = (
        vs.from_polars(df, batch_size=2)
        .map_batches(pl.DataFrame.drop_nulls)
        .filter(pl.col("x") > 1)
    )
    payload = plan_to_bytes([s._node])
    assert b"polars.dataframe.frame:DataFrame.drop_nulls" in payload
    (loaded,) = _round_trip([s])
    same_rows(loaded.collect(), s.collect())


def test_a_source_without_plain_configuration_is_refused() -> None:
    s = vs.from_records([{"x": 1}]).filter(pl.col("x") > 0)
    with pytest.raises(PlanError, match=r"from_records.*cannot be serialised"):
        plan_to_bytes([s._node])


def test_a_payload_of_another_polars_version_is_refused() -> None:
    s = vs.from_polars(pl.DataFrame({"x": [1]})).with_columns(y=pl.col("x") + 1)
    payload = json.loads(plan_to_bytes([s._node]))
    assert payload["polars"] == pl.__version__
    payload["polars"] = "0.0.1"
    with pytest.raises(PlanError, match=r"Polars 0\.0\.1, this process has Polars"):
        plan_from_bytes(json.dumps(payload).encode())


def _forged(payload: bytes, old: bytes, new: bytes) -> bytes:
    """``payload`` with ``old`` replaced, and its checksum made to match again."""
    forged = json.loads(payload.replace(old, new))
    body = {"nodes": forged["nodes"], "outputs": forged["outputs"]}
    return json.dumps({**forged, "sha256": checksum(body)}).encode()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: b"not json", "not a serialised plan"),
        (lambda p: json.dumps({"format": "other"}).encode(), "not a serialised plan"),
        (lambda p: json.dumps({**json.loads(p), "version": 99}).encode(), "format version 99"),
        (lambda p: p.replace(b'{"expr":"', b'{"expr":"AAAA'), "damaged"),
        (lambda p: p.replace(b'"outputs":[2]', b'"outputs":[1]'), "damaged"),
        (lambda p: _forged(p, b'"StepNode"', b'"EvilNode"'), "unknown step type 'EvilNode'"),
        (lambda p: _forged(p, b'"EventTime"', b'"os.system"'), "unknown configuration class"),
        (lambda p: _forged(p, b'{"expr":"', b'{"expr":"////'), "a forged or damaged"),
        (lambda p: _forged(p, b'"label":', b'"needs":'), "cannot have the field 'needs'"),
        (
            lambda p: _forged(
                p, b'"exprs":{"tuple":[', b'"exprs":{"tuple":[{"function":"os:getcwd"},'
            ),
            "a function where the plan holds data .the field 'exprs'",
        ),
        (
            lambda p: _forged(p, b'"label":"filter', b'"label":{"function":"os:system"},"x":"'),
            "a function where the plan holds data .the field 'label'",
        ),
    ],
)
def test_a_damaged_or_forged_payload_is_refused_with_a_plan_error(
    damage: Callable[[bytes], bytes], message: str
) -> None:
    s = (
        vs.from_polars(pl.DataFrame({"ts": [1, 2], "x": [1, 2]}))
        .with_watermark("ts", 0)
        .filter(pl.col("x") > 1)
    )
    payload = plan_to_bytes([s._node])
    assert b'"outputs":[2]' in payload
    with pytest.raises(PlanError, match=f"plan_from_bytes: .*{message}"):
        plan_from_bytes(damage(payload))


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=50), strategies.batch_sizes(20))
@settings(max_examples=25, deadline=None)
def test_stateless_steps_round_trip_on_random_input(xs: list[int], batch_size: int) -> None:
    df = pl.DataFrame({"x": xs, "y": [str(x) for x in xs]})
    s = (
        vs.from_polars(df, batch_size=batch_size)
        .filter(x=2)
        .with_columns(z=pl.col("x") * 2, w=pl.lit("k"))
        .select(pl.all().exclude("w"))
        .rename({"z": "double"})
        .drop("y")
    )
    (loaded,) = _round_trip([s])
    assert loaded.schema == s.schema
    assert loaded.collect().rows() == s.collect().rows()


# ---------------------------------------------------------------------- the public API
def test_stream_serialize_round_trips_through_bytes_a_file_object_and_a_path(
    tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    df = telemetry_small.head(2_000)
    w = (
        vs.from_polars(df, batch_size=300, name="telemetry")
        .filter(pl.col("cpu") >= 5)
        .with_watermark("ts", "2s", time_unit="ms", name="events")
        .window(vs.tumbling("10s"), by="host", late="side", name="cpu_per_host")
        .agg(pl.len(), pl.col("cpu").mean())
    )
    want = vs.collect_all([w, w.late_events()])
    data = w.serialize()
    assert isinstance(data, bytes)
    buf = io.BytesIO()
    assert w.serialize(buf) is None
    w.serialize(tmp_path / "plan.json")
    assert buf.getvalue() == data == (tmp_path / "plan.json").read_bytes()
    for source in (data, io.BytesIO(data), tmp_path / "plan.json", str(tmp_path / "plan.json")):
        back = vs.Stream.deserialize(source)
        assert isinstance(back, vs.WindowedStream)  # late_events() is still there
        assert [n.name for n in ancestors([back.node])] == [
            "telemetry",
            None,
            "events",
            "cpu_per_host",
        ]
        assert _without_ids(back.explain()) == _without_ids(w.explain())
        got = vs.collect_all([back, back.late_events()])
        for a, b in zip(got, want, strict=True):
            assert a is not None
            assert b is not None
            _same_rows_in_order(a, b)


def test_a_joined_stream_comes_back_as_one() -> None:
    left = vs.from_polars(pl.DataFrame({"ts": [0, 10], "k": [1, 1]})).with_watermark("ts", 0)
    right = vs.from_polars(pl.DataFrame({"ts": [5], "k": [1]})).with_watermark("ts", 0)
    j = left.join_interval(right, on="k", lower=0, upper=30, name="pairs")
    back = vs.Stream.deserialize(j.serialize())
    assert isinstance(back, vs.JoinedStream)
    assert back.node.name == "pairs"
    assert back.collect().rows() == j.collect().rows()


def test_stream_serialize_refuses_what_cannot_travel_with_vs_plan_error() -> None:
    assert issubclass(vs.PlanError, vs.PipelineError)
    assert vs.PlanError is PlanError
    s = vs.from_polars(pl.DataFrame({"x": [1]})).map_batches(lambda df: df, name="inline")
    with pytest.raises(vs.PlanError, match=r"map_batches\(inline\).*lambda"):
        s.serialize()
    with pytest.raises(vs.PlanError, match="not a serialised plan"):
        vs.Stream.deserialize(b"{}")
    a = vs.from_polars(pl.DataFrame({"x": [1]}))
    two = plan_to_bytes([a.node, a.filter(pl.col("x") > 0).node])
    with pytest.raises(vs.PlanError, match="holds 2 outputs, a Stream is one"):
        vs.Stream.deserialize(two)


def test_sources_say_their_configuration_or_none(tmp_path: Path) -> None:
    df = pl.DataFrame({"x": [1, 2]})
    df.write_parquet(tmp_path / "a.parquet")
    table = df.to_arrow()

    from vstream.plan.nodes import SourceNode

    def config(s: vs.Stream) -> dict[str, object] | None:
        node = s.node
        assert isinstance(node, SourceNode)
        return node.source.config()

    polars_cfg = config(vs.from_polars(df, batch_size=7))
    assert polars_cfg is not None
    assert polars_cfg["kind"] == "polars"
    assert polars_cfg["batch_size"] == 7
    arrow_cfg = config(vs.from_arrow(table, batch_size=3, rate=10.0))
    assert arrow_cfg is not None
    assert (arrow_cfg["kind"], arrow_cfg["rate"]) == ("arrow", 10.0)
    assert config(vs.from_parquet(tmp_path)) == {
        "kind": "parquet",
        "files": [str(tmp_path / "a.parquet")],
        "batch_size": 65_536,
    }
    # read once, or code: nothing to ship
    assert config(vs.from_arrow(iter(table.to_batches()))) is None
    assert config(vs.from_arrow(lambda: table.to_batches(), bounded=True)) is None
    assert config(vs.from_records([{"x": 1}])) is None
    assert config(vs.from_ndjson([b'{"x": 1}'])) is None


def test_a_forged_step_name_is_refused_before_it_names_a_file() -> None:
    w = (
        vs.from_polars(pl.DataFrame({"ts": [0, 1], "k": ["a", "b"]}))
        .with_watermark("ts", 0)
        .window(vs.tumbling(10), by="k", name="per_k")
        .agg(pl.len())
    )
    forged = _forged(w.serialize(), b'"name":"per_k"', b'"name":"../../x"')
    back = vs.Stream.deserialize(forged)  # a name is data; a run checks it first
    with pytest.raises(vs.PipelineError, match=r"name='../../x' cannot name a step"):
        back.collect()
