"""The progress bar of bounded runs: shown on slow runs when asked (or when someone is
watching), with the sources' total when they know it; closed whatever ends the run."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import vstream as vs
from vstream.runtime.progress import Progress, wants_progress

ROWS = 20_000
BATCH = 1_000  # 20 batches
PAUSE_S = 0.05  # per batch: a run of ~1 s, over the bar's 0.5 s delay


def _slow(df: pl.DataFrame) -> pl.DataFrame:
    time.sleep(PAUSE_S)
    return df


def _stream() -> vs.Stream:
    frame = pl.DataFrame({"x": range(ROWS)})
    return vs.from_polars(frame, batch_size=BATCH).map_batches(_slow)


def test_collect_shows_the_total_and_reaches_it(capsys: pytest.CaptureFixture[str]) -> None:
    out = _stream().collect(progress=True)
    assert out.height == ROWS
    err = capsys.readouterr().err
    assert "100%" in err
    assert "20.0k/20.0k" in err  # tqdm's unit_scale format of ROWS
    assert "events/s" in err


def test_sinks_and_collect_all_show_a_bar(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _stream().sink_parquet(tmp_path / "out", progress=True)
    assert "20.0k/20.0k" in capsys.readouterr().err
    _stream().sink_callback(lambda df: None, progress=True)
    assert "20.0k/20.0k" in capsys.readouterr().err
    s = _stream()
    vs.collect_all([s, s.filter(pl.col("x") > 5)], progress=True)
    err = capsys.readouterr().err
    assert "2 outputs" in err
    assert "20.0k/20.0k" in err  # one source, read once


def test_progress_false_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert _stream().collect(progress=False).height == ROWS
    assert capsys.readouterr().err == ""


def test_automatic_mode_is_silent_when_nobody_watches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not wants_progress(None)  # stderr is captured, not a terminal; no kernel
    assert _stream().collect().height == ROWS
    assert capsys.readouterr().err == ""


def test_short_runs_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    vs.from_polars(pl.DataFrame({"x": range(10)})).collect(progress=True)
    assert capsys.readouterr().err == ""


def test_unknown_total_counts_without_a_percentage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def batches() -> Iterator[pa.RecordBatch]:
        for k in range(ROWS // BATCH):
            yield pa.record_batch({"x": pa.array(range(k * BATCH, (k + 1) * BATCH))})

    s = vs.from_arrow(batches(), bounded=True).map_batches(_slow)
    assert s.collect(progress=True).height == ROWS
    err = capsys.readouterr().err
    assert "20.0k events" in err
    assert "%" not in err


def test_the_bar_is_closed_when_the_run_fails(capsys: pytest.CaptureFixture[str]) -> None:
    calls = 0

    def fail_late(df: pl.DataFrame) -> pl.DataFrame:
        nonlocal calls
        calls += 1
        if calls == 15:
            msg = "boom"
            raise RuntimeError(msg)
        return _slow(df)

    s = vs.from_polars(pl.DataFrame({"x": range(ROWS)}), batch_size=BATCH)
    with pytest.raises(Exception, match="boom"):
        s.map_batches(fail_late).collect(progress=True)
    err = capsys.readouterr().err
    assert "/20.0k" in err  # the bar appeared, then was closed at the rows read
    assert "100%" not in err
    from tqdm.auto import tqdm

    assert not [b for b in tqdm._instances if "20.0k" in str(b)]


def test_progress_updates_only_on_ticks() -> None:
    out = io.StringIO()
    p = Progress(100, "demo", delay=0.5, file=out)
    p.update(50, elapsed=0.1)
    assert out.getvalue() == ""  # before the delay: no bar
    p.update(60, elapsed=0.6)
    p.close()
    text = out.getvalue()
    assert "demo" in text
    assert "60.0/100" in text
    assert "00:00<" in text  # dated from the run's start: 0.6 s, not a jump at creation
    assert "M events/s" not in text  # 60 rows in 0.6 s, not 60 rows in microseconds
    p.close()  # a second close is a no-op


def test_terminal_stderr_turns_automatic_mode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert wants_progress(None)
    assert not wants_progress(False)
