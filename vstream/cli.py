"""The ``vstream`` command: ``vstream demo`` runs a telemetry pipeline and reports throughput."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # imported when the demo runs: --help and --version stay quick
    import polars as pl

    import vstream as vs

_DESCRIPTION = """\
vstream: stream processing on one machine. Events are buffered into Apache Arrow
micro-batches; stateless steps run as Polars expressions, windows and joins as
compiled kernels."""

_EPILOG = """\
examples:
  vstream demo                    5,000,000 generated events: the plan, results, events/s,
                                  the same query's time in Polars
  vstream demo --events 200000    a shorter run
  vstream demo --help             the demo's options

The library is used from Python: import vstream as vs (see the README)."""


_MINUTE_MS = 60_000
_COLUMNS = ["ts", "region", "cpu", "latency_ms", "status"]  # what the demo query reads
# the Polars peer's float columns must match vstream's within this relative difference
# (sums taken in another order differ in the last bits)
_REL_TOL = 1e-9
# numba's first compilation of the demo's kernels on this project's 2-core machine
_COMPILE_S = "~10 s"


@dataclass(frozen=True)
class _Query:
    """The demo query's parts, shared by the vstream pipeline and its Polars peer."""

    filters: list[pl.Expr]
    derived: dict[str, pl.Expr]
    aggs: list[pl.Expr]

    @classmethod
    def build(cls) -> _Query:
        import polars as pl

        return cls(
            filters=[pl.col("cpu") >= 5, pl.col("status") < 600],
            derived={"lat_s": pl.col("latency_ms") / 1000, "error": pl.col("status") >= 500},
            aggs=[
                pl.len().alias("events"),
                pl.col("cpu").mean().alias("cpu_mean"),
                pl.col("cpu").max().alias("cpu_max"),
                pl.col("lat_s").mean().alias("lat_mean_s"),
                pl.col("error").mean().alias("error_rate"),
            ],
        )

    def vstream(self, source: vs.Stream) -> vs.Stream:
        import vstream as vs

        return (
            source.with_watermark("ts", "2s", time_unit="ms")
            .filter(*self.filters)
            .with_columns(**self.derived)
            .window(vs.tumbling("1m"), by="region")
            .agg(*self.aggs)
        )

    def polars(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The same query in Polars: tumbling minutes are ``ts // 1 min``, epoch-aligned
        as vstream's windows are."""
        import polars as pl

        start = pl.col("ts") // _MINUTE_MS * _MINUTE_MS
        return (
            frame.lazy()
            .filter(*self.filters)
            .with_columns(**self.derived)
            .group_by("region", start.alias("window_start"))
            .agg(*self.aggs)
            .with_columns(window_end=pl.col("window_start") + _MINUTE_MS)
            .select(
                "region", "window_start", "window_end", *(a.meta.output_name() for a in self.aggs)
            )
            .collect()
        )


def _warm_up(run: Callable[[], object]) -> None:
    """Run ``run`` (the pipeline on one batch), showing progress while numba compiles
    kernels (a dot a kernel), then what it took."""
    from numba.core import event

    class Compiles(event.Listener):
        def __init__(self) -> None:
            self.depth = 0
            self.kernels = 0

        def on_start(self, ev: event.Event) -> None:
            if self.depth == 0 and self.kernels == 0:
                print(
                    f"compiling kernels (first run only: {_COMPILE_S} on a 2-core machine, "
                    "then numba's cache) ",
                    end="",
                    flush=True,
                )
            self.depth += 1

        def on_end(self, ev: event.Event) -> None:
            self.depth -= 1
            if self.depth == 0:  # a kernel, with those it calls
                self.kernels += 1
                print(".", end="", flush=True)

    compiles = Compiles()
    t0 = time.perf_counter()
    with event.install_listener("numba:compile", compiles):
        run()
    took = time.perf_counter() - t0
    from numba import config

    if getattr(config, "DISABLE_JIT", False):  # set from the environment at import
        print(f"kernels run as Python (NUMBA_DISABLE_JIT is set): warm-up {took:.2f} s")
    elif compiles.kernels:
        print(f"\ncompiled {compiles.kernels} kernels in {took:.1f} s; later runs load them")
    else:
        print(f"kernels loaded from numba's cache in {took:.2f} s")


def _datetime(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _print_sample(out: pl.DataFrame, t_lo: int, t_hi: int) -> None:
    """The first two minutes the events cover entirely, window bounds as datetimes."""
    import polars as pl

    full = out.filter(pl.col("window_start") >= t_lo, pl.col("window_end") - 1 <= t_hi)
    span = f"the events run from {_datetime(t_lo)} to\n{_datetime(t_hi)}"
    print("\nper region and minute of event time (UTC), the first two complete minutes")
    if full.height:
        sample = full
        print(
            f"({out.height - full.height} partial windows not shown: {span}, "
            "so the first and last minute hold only part of theirs)"
        )
    else:
        sample = out
        print(f"(none is complete: {span}; partial windows shown)")
    starts = sample.get_column("window_start").unique().sort().head(2)
    sample = (
        sample.filter(pl.col("window_start").is_in(starts.implode()))
        .sort("window_start", "region")
        .with_columns(
            pl.from_epoch(c, time_unit="ms").cast(pl.Datetime("ms"))
            for c in ("window_start", "window_end")
        )
    )
    with pl.Config(tbl_rows=20, tbl_cols=12, tbl_width_chars=120, float_precision=4):
        print(sample)
    print(f"{out.height:,} result rows")


def _agree(got: pl.DataFrame, expected: pl.DataFrame) -> bool:
    """Whether two results have the same rows: keys, bounds and counts equal, floats
    within :data:`_REL_TOL` (rows in any order)."""
    if got.schema != expected.schema or got.height != expected.height:
        return False
    keys = ["window_start", "region"]
    got, expected = got.sort(keys), expected.sort(keys)
    exact = [c for c, t in got.schema.items() if not t.is_float()]
    if not got.select(exact).equals(expected.select(exact)):
        return False
    for c in (c for c, t in got.schema.items() if t.is_float()):
        a, b = got.get_column(c), expected.get_column(c)
        off = ((a - b).abs() > _REL_TOL * b.abs()) | (a.is_nan() != b.is_nan())
        if (off | (a.is_null() != b.is_null())).fill_null(False).any():
            return False
    return True


def _compare_with_polars(query: _Query, df: pl.DataFrame, out: pl.DataFrame, vs_s: float) -> int:
    """Time the same query in Polars on the same rows (one DataFrame), print both times
    and whether the results agree: 0 if they do, else 1."""
    import polars as pl

    query.polars(df.head(10_000))  # first-call costs (thread pool, allocations): not timed
    t0 = time.perf_counter()
    expected = query.polars(df)
    pl_s = time.perf_counter() - t0
    agree = _agree(out, expected)
    print(
        f"\nthe same query in Polars {pl.__version__} on the same {df.height:,} rows "
        "(a group_by of region and ts // 1 min):"
    )
    ratio = vs_s / max(pl_s, 1e-9)
    print(f"  Polars {pl_s:.3f} s, vstream {vs_s:.3f} s: {ratio:.2f}x Polars' time")
    if agree:
        print(
            f"  results agree: {out.height:,} windows with the same keys, bounds and counts; "
            f"floats within {_REL_TOL:g} relative"
        )
    else:
        print("  results DIFFER from Polars': please report it, with this output")
    return 0 if agree else 1


def _demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("POLARS_MAX_THREADS", str(args.threads))
    import polars as pl
    import pyarrow as pa

    import vstream as vs

    n, hosts = args.events, args.hosts
    print(f"vstream {vs.__version__} demo: {n:,} telemetry events from {hosts:,} hosts")
    t0 = time.perf_counter()
    batches = list(
        vs.datasets.telemetry_batches(
            n, hosts=hosts, batch_size=args.batch_size, max_disorder="2s"
        )
    )
    print(f"generated {len(batches):,} Arrow batches in {time.perf_counter() - t0:.2f} s")
    query = _Query.build()
    # numba compiles the kernels on their first call (then caches them): not timed
    _warm_up(lambda: query.vstream(vs.from_arrow(batches[:1])).collect())
    stream = query.vstream(vs.from_arrow(batches))
    print("\nplan:")
    print(stream.explain())
    t0 = time.perf_counter()
    out, metrics = stream.collect(return_metrics=True)
    vs_s = time.perf_counter() - t0
    # the same batches as Polars sees them: the query's columns, chunks as they are
    table = pa.Table.from_batches(batches).select(_COLUMNS)
    df = cast("pl.DataFrame", pl.from_arrow(table, rechunk=False))  # a table gives a frame
    bounds = df.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
    _print_sample(out, bounds.item(0, "lo"), bounds.item(0, "hi"))
    print(
        f"\nthroughput: {metrics.events_per_s:,.0f} events/s "
        f"({metrics.events_in:,} in, {metrics.events_out:,} out, {metrics.elapsed_s:.3f} s, "
        f"{metrics.batches_in:,} batches, POLARS_MAX_THREADS={os.environ['POLARS_MAX_THREADS']})"
    )
    print(
        f"late events: {metrics.late_events:,}; behind watermark: "
        f"{metrics.behind_watermark:,}; dead letters: {metrics.dead_letters:,}"
    )
    return _compare_with_polars(query, df, out, vs_s)


def _version() -> str:
    """The installed distribution's version, or the package's when run from a checkout."""
    try:
        return metadata.version("vstream")
    except metadata.PackageNotFoundError:
        from vstream import __version__

        return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vstream`` command."""
    parser = argparse.ArgumentParser(
        prog="vstream",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"vstream {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run a telemetry pipeline on generated data and report its throughput",
        description=(
            "Generate telemetry events, run a windowed aggregation over them (per region "
            "and minute of event time) and print the plan, the first complete minutes, the "
            "throughput and the same query's time in Polars, with a check that the results "
            "agree. The first run compiles the kernels (~10 s on 2 cores; numba caches them "
            "on disk for later runs)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--events", type=int, default=5_000_000, help="events to generate")
    demo.add_argument("--hosts", type=int, default=10_000, help="distinct hosts")
    demo.add_argument("--batch-size", type=int, default=65_536, help="rows per micro-batch")
    demo.add_argument(
        "--threads", type=int, default=1, help="POLARS_MAX_THREADS, unless already set"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
