"""The command line (demo, --version, --help) and explain() on plans that are graphs."""

from __future__ import annotations

import re
from importlib import metadata

import polars as pl
import pytest

import vstream as vs
from vstream.cli import main


def test_demo_prints_results_and_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--events", "50000", "--hosts", "100", "--batch-size", "4096"]) == 0
    out = capsys.readouterr().out
    assert "throughput:" in out
    assert "events/s" in out
    assert "50,000 in" in out
    # the per-region table lists every region the generator makes
    assert out.count("us-east-1") >= 1
    assert "dead letters: 0" in out


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
