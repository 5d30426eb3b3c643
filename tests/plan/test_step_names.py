"""User-given step names (``name=``, issue 17 item 5): a named step's id in checkpoints is
its name, whatever changes around it; bad and duplicate names are refused, naming them;
``explain()`` shows them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import vstream as vs
from vstream.plan.ids import StepIdentity, step_identities
from vstream.plan.nodes import ancestors

SameRows = Callable[[pl.DataFrame, pl.DataFrame], None]


class Crash(Exception):
    """The simulated process failure."""


class Fuse:
    """A map_batches step that raises once it has seen ``after`` batches (0: never) and
    counts the rows it passed on."""

    def __init__(self, after: int = 0) -> None:
        self.after = after
        self.rows = 0

    def __call__(self, df: pl.DataFrame) -> pl.DataFrame:
        if self.after:
            self.after -= 1
            if self.after == 0:
                raise Crash
        self.rows += df.height
        return df


def _identities(*streams: vs.Stream) -> dict[str, StepIdentity]:
    """The plan's stateful steps by label."""
    idents = step_identities(ancestors([s.node for s in streams]))
    return {i.label: i for i in idents if i.stateful}


def _parts(folder: Path) -> pl.DataFrame:
    files = sorted(folder.glob("part-*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files])


# ---------------------------------------------------------------------- changed pipelines
def _hot_and_cool(df: pl.DataFrame, changed: bool, named: bool) -> Callable[[Fuse], vs.Stream]:
    """Two windows with the same configuration over two halves of the events. The
    changed pipeline computes the halves with other stateless steps (same rows) and
    lists the branches in the other order."""

    def build(fuse: Fuse) -> vs.Stream:
        ev = (
            vs.from_polars(df, batch_size=700, name="telemetry" if named else None)
            .map_batches(fuse)
            .with_watermark("ts", "2s", time_unit="ms", name="events" if named else None)
        )
        if changed:
            hot = ev.with_columns(hot=pl.col("cpu") >= 50).filter(pl.col("hot")).drop("hot")
            cool = ev.filter(~(pl.col("cpu") >= 50))
        else:
            hot = ev.filter(pl.col("cpu") >= 50)
            cool = ev.filter(pl.col("cpu") < 50)
        windows = {
            kind: half.window(vs.tumbling("1s"), by="host", name=kind if named else None)
            .agg(pl.len(), pl.col("cpu").mean())
            .with_columns(kind=pl.lit(kind))
            for kind, half in (("hot", hot), ("cool", cool))
        }
        order = ["cool", "hot"] if changed else ["hot", "cool"]
        return vs.concat([windows[k] for k in order])

    return build


def test_a_named_window_keeps_its_state_when_the_steps_around_it_change(
    tmp_path: Path, telemetry_small: pl.DataFrame, same_rows: SameRows
) -> None:
    before, after = (_hot_and_cool(telemetry_small, c, named=True) for c in (False, True))
    with pytest.raises(vs.VStreamError):
        before(Fuse(after=9)).sink_parquet(
            tmp_path / "out", checkpoint_dir=tmp_path / "ckpt", checkpoint_interval=2
        )
    fuse = Fuse()
    after(fuse).sink_parquet(tmp_path / "out", checkpoint_dir=tmp_path / "ckpt")
    assert 0 < fuse.rows < telemetry_small.height  # resumed, not started afresh
    expected = after(Fuse()).collect()
    assert set(expected["kind"]) == {"hot", "cool"}
    same_rows(_parts(tmp_path / "out"), expected)  # each window found its own state


def test_without_names_two_equal_windows_are_told_apart_by_their_order_only(
    telemetry_small: pl.DataFrame,
) -> None:
    # what the names above are for: the derived ids of two windows with the same
    # configuration follow the plan's order, so listing the branches in another order
    # swaps them (each window would take the other's state); a name stays with its window
    def window_ids(changed: bool, named: bool) -> dict[str, str]:
        plan = _hot_and_cool(telemetry_small, changed, named)(Fuse())
        order = ["cool", "hot"] if changed else ["hot", "cool"]
        # concat <- with_columns(kind=...) <- window
        kind_of = {b.inputs[0].id: k for k, b in zip(order, plan.node.inputs, strict=True)}
        nodes = ancestors([plan.node])
        return {
            kind_of[n.id]: ident.id
            for n, ident in zip(nodes, step_identities(nodes), strict=True)
            if n.id in kind_of
        }

    assert window_ids(False, named=True) == window_ids(True, named=True)
    assert window_ids(True, named=True) == {"hot": "hot", "cool": "cool"}
    before, after = window_ids(False, named=False), window_ids(True, named=False)
    assert (before["hot"], before["cool"]) == (after["cool"], after["hot"])


def test_a_named_window_keeps_its_id_when_an_unnamed_stateful_step_is_added_elsewhere(
    tmp_path: Path, telemetry_small: pl.DataFrame
) -> None:
    def build(extra: bool) -> Callable[[Fuse], list[vs.Stream]]:
        def make(fuse: Fuse) -> list[vs.Stream]:
            ev = (
                vs.from_polars(telemetry_small, batch_size=700)
                .map_batches(fuse)
                .with_watermark("ts", "2s", time_unit="ms")
            )
            other = ev.filter(pl.col("status") >= 500)
            if extra:  # the same window, unnamed, on the other branch, listed first
                other = other.window(vs.tumbling("1s"), by="host").agg(
                    pl.len(), pl.col("cpu").mean()
                )
            else:
                other = other.select("ts", "host", "cpu")
            w = ev.window(vs.tumbling("1s"), by="host", name="cpu_per_host").agg(
                pl.len(), pl.col("cpu").mean()
            )
            return [other, w]

        return make

    old = _identities(*build(False)(Fuse()))
    new = _identities(*build(True)(Fuse()))
    (label,) = [k for k in old if k.startswith("window(")]
    assert "name='cpu_per_host'" in label
    assert (new[label].id, new[label].fingerprint) == ("cpu_per_host", old[label].fingerprint)
    (added,) = [k for k in new if k not in old]
    assert new[added].id.startswith("window-")

    # a checkpointed run judges each step by its id: the named window finds its state;
    # the added window has none, and a stateful step cannot be added to a checkpointed
    # run (it would have missed the events before the checkpoint), so the run is refused
    # naming that step alone
    with pytest.raises(vs.VStreamError):
        vs.collect_all(
            [
                s.sink_parquet(tmp_path / f"out{k}", lazy=True)
                for k, s in enumerate(build(False)(Fuse(after=9)))
            ],
            checkpoint_dir=tmp_path / "ckpt",
            checkpoint_interval=2,
        )
    with pytest.raises(vs.CheckpointError) as err:
        vs.collect_all(
            [
                s.sink_parquet(tmp_path / f"out{k}", lazy=True)
                for k, s in enumerate(build(True)(Fuse()))
            ],
            checkpoint_dir=tmp_path / "ckpt",
        )
    text = str(err.value)
    assert f"step {added!r} (window) is not in it" in text
    assert "cpu_per_host" not in text


# ---------------------------------------------------------------------- refused names
def _df() -> pl.DataFrame:
    return pl.DataFrame({"ts": [0, 1, 12], "k": ["a", "a", "b"], "x": [1, 2, 3]})


def _events(name: str | None = None) -> vs.Stream:
    return vs.from_polars(_df(), name=name).with_watermark("ts", 0)


@pytest.mark.parametrize(
    "build",
    [
        lambda name: vs.from_polars(_df(), name=name),
        lambda name: vs.from_arrow(_df().to_arrow(), name=name),
        lambda name: vs.from_records(_df().to_dicts(), name=name),
        lambda name: vs.from_ndjson([b'{"a": 1}'], name=name),
        lambda name: vs.from_polars(_df()).with_watermark("ts", 0, name=name),
        lambda name: _events().window(vs.tumbling(10), by="k", name=name),
        lambda name: _events().join(_df().unique("k"), on="k", name=name),
        lambda name: _events().join(_events(), on="k", ttl=5, name=name),
        lambda name: _events().join(_events(), on="k", window=vs.tumbling(5), name=name),
        lambda name: _events().join_asof(_events(), on="ts", by="k", name=name),
        lambda name: _events().join_interval(_events(), on="k", lower=0, upper=5, name=name),
    ],
)
@pytest.mark.parametrize("bad", ["", "a b", "../x", "x" * 65, 7])
def test_a_name_that_cannot_be_an_id_is_refused_when_the_step_is_built(
    build: Callable[[object], object], bad: object
) -> None:
    with pytest.raises(vs.PipelineError, match=rf"name={bad!r} cannot name a step"):
        build(bad)


def test_parquet_sources_take_a_name(tmp_path: Path) -> None:
    _df().write_parquet(tmp_path / "a.parquet")
    s = vs.from_parquet(tmp_path, name="files")
    assert s.node.name == "files"
    with pytest.raises(vs.PipelineError, match="cannot name a step"):
        vs.from_parquet(tmp_path, name="a/b")


def test_a_name_taken_upstream_is_refused_when_the_step_is_built() -> None:
    ev = vs.from_polars(_df()).with_watermark("ts", 0, name="events")
    w = ev.window(vs.tumbling(10), by="k", name="events")
    with pytest.raises(vs.PipelineError, match=r"name='events' is already the name of the step"):
        w.agg(pl.len())


def test_two_branches_with_one_name_are_refused_when_the_run_starts() -> None:
    a = _events("input")
    b = vs.from_polars(_df().with_columns(pl.col("x") * 2), name="input").with_watermark("ts", 0)
    both = vs.concat([a, b])  # each branch alone is fine
    with pytest.raises(vs.PipelineError, match="two steps are named 'input'"):
        both.collect()
    j = a.join_interval(b, on="k", lower=0, upper=5)
    with pytest.raises(vs.PipelineError, match="two steps are named 'input'"):
        j.collect()
    w1 = a.window(vs.tumbling(10), name="w").agg(pl.len())
    w2 = a.window(vs.tumbling(10), name="w").agg(pl.len())
    with pytest.raises(vs.PipelineError, match="two steps are named 'w'"):
        vs.collect_all([w1, w2])


# ---------------------------------------------------------------------- explain
def test_explain_shows_the_names() -> None:
    w = (
        vs.from_polars(_df(), name="telemetry")
        .with_watermark("ts", 0, name="events")
        .window(vs.tumbling(10), by="k", name="per_k")
        .agg(pl.len())
        .join(pl.DataFrame({"k": ["a"], "dc": ["eu"]}), on="k", how="left", name="dc_lookup")
    )
    text = w.explain()
    for name in ("telemetry", "events", "per_k", "dc_lookup"):
        assert f"name={name!r}" in text
    assert "window(tumbling(10), by='k', name='per_k').agg(len())" in text
    assert [i.id for i in step_identities(ancestors([w.node]))] == [
        "telemetry",
        "events",
        "per_k",
        "dc_lookup",
    ]
    unnamed = vs.from_polars(_df()).with_watermark("ts", 0)
    assert "name=" not in unnamed.explain()
