"""The command line (demo, --version, --help) and explain() on plans that are graphs."""

from __future__ import annotations

import re
from importlib import metadata

import polars as pl
import pytest

import vstream as vs
from vstream.cli import _agree, main


def test_demo_prints_results_and_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--events", "200000", "--hosts", "100", "--batch-size", "16384"]) == 0
    out = capsys.readouterr().out
    assert "throughput:" in out
    assert "events/s" in out
    assert "200,000 in" in out
    assert "dead letters: 0" in out
    # the per-region table lists every region the generator makes
    assert out.count("us-east-1") >= 1
    # window bounds read as datetimes; 200 s of events: minutes 0 and 1 are complete,
    # the minute before (events up to 2 s early) and minute 3 are partial and not shown
    assert "┆ 2024-01-01 00:00:00 ┆ 2024-01-01 00:01:00 ┆" in out
    assert "┆ 2024-01-01 00:01:00 ┆ 2024-01-01 00:02:00 ┆" in out
    assert "2023-12-31 23:59:00" not in out
    assert "2024-01-01 00:03:00 ┆" not in out
    assert "16 partial windows not shown" in out
    assert not re.search(r"┆ 17040\d{8} ┆", out)  # no epoch milliseconds
    # the same query in Polars, timed beside vstream's, with the same results
    assert f"\nthe same query in Polars {pl.__version__} on the same 200,000 rows" in out
    assert re.search(r"\n  Polars \d+\.\d+ s, vstream \d+\.\d+ s: \d+\.\d+x Polars' time\n", out)
    assert "\n  results agree: 40 windows with the same keys, bounds and counts;" in out


def test_demo_says_when_every_window_is_partial(capsys: pytest.CaptureFixture[str]) -> None:
    # 50 s of events: the minute before the data's start and minute 0 are both partial
    assert main(["demo", "--events", "50000", "--hosts", "100", "--batch-size", "4096"]) == 0
    out = capsys.readouterr().out
    assert "(none is complete: the events run from 2023-12-31 23:59:58" in out
    assert "┆ 2023-12-31 23:59:00 ┆ 2024-01-01 00:00:00 ┆" in out
    assert "results agree: 16 windows" in out


def test_demo_agreement_check_fails_on_a_difference() -> None:
    frame = pl.DataFrame(
        {
            "region": ["a", "b"],
            "window_start": [0, 0],
            "window_end": [60_000, 60_000],
            "events": pl.Series([3, 4], dtype=pl.UInt32),
            "cpu_mean": [1.5, float("nan")],
        }
    )
    # rows in another order, a float off in its last bits: the same result
    same = frame.reverse().with_columns(pl.col("cpu_mean") * (1 + 1e-15))
    assert _agree(frame, same)
    assert not _agree(frame, frame.with_columns(pl.col("cpu_mean") * 1.001))
    assert not _agree(frame, frame.with_columns(events=pl.Series([3, 5], dtype=pl.UInt32)))
    assert not _agree(frame, frame.head(1))
    assert not _agree(frame, frame.with_columns(pl.col("cpu_mean").fill_nan(None)))
    assert not _agree(frame, frame.with_columns(pl.col("cpu_mean").fill_nan(2.0)))


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"vstream {metadata.version('vstream')}\n"


# reStructuredText a docstring may carry: ``literal``, :role:`target`, `link`_
_RST = re.compile(r"``|:[a-z]+:`|`_")


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"]])
def test_help_is_plain_text(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vstream")
    assert not _RST.search(out), out
    assert max(len(line) for line in out.splitlines()) <= 100
    if argv == ["--help"]:
        assert "demo" in out
        assert "--version" in out
    else:
        assert "--events" in out
        assert "(default: 5000000)" in out


def test_explain_shows_every_step_with_its_schema() -> None:
    s = (
        vs.from_polars(pl.DataFrame({"ts": [1, 2], "x": [1.0, 2.0]}))
        .with_watermark("ts", 0)
        .with_columns(y=pl.col("x") * 2)
    )
    text = s.explain()
    assert "with_columns(y=" in text
    assert "with_watermark('ts'" in text
    assert "from_polars(2 rows" in text
    assert "y: Float64" in text
    assert "event time 'ts'" in text


def test_explain_prints_a_shared_node_once() -> None:
    base = vs.from_polars(pl.DataFrame({"x": [1, 2, 3]})).with_columns(z=pl.col("x") + 1)
    union = vs.concat([base.filter(pl.col("x") > 1), base.filter(pl.col("x") <= 1)])
    text = union.explain()
    assert text.count("with_columns(z=") == 2  # once in full, once as a reference
    assert "shared, see above" in text
    assert text.count("from_polars(") == 1
    # the shared step runs once per run: every input row comes out exactly once
    assert sorted(union.collect()["x"].to_list()) == [1, 2, 3]


def test_explain_marks_unbounded_sources() -> None:
    s = vs.from_records(iter([{"a": 1}]), schema={"a": pl.Int64})
    assert "(unbounded)" in s.explain()
