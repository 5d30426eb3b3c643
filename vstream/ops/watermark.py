"""Event-time assignment: per-split watermarks, idleness, null event times."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._dtypes import datetime_range
from vstream.errors import VStreamError
from vstream.kernels.event_time import event_time_stats
from vstream.ops.base import MAX_WM, MIN_WM, Chunk, Operator

__all__ = ["WatermarkOp", "datetime_range", "dead_letters", "records"]


def records(df: pl.DataFrame) -> list[str]:
    """The rows of ``df`` as JSON lines (dead letters); a ``Datetime`` column with
    values Polars cannot format (beyond its calendar) is written as its integers."""
    cols = []
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.Datetime):
            lo, hi = datetime_range(dtype)
            phys = df.get_column(name).to_physical()
            if phys.null_count() < len(phys) and (phys.min() < lo or phys.max() > hi):  # type: ignore[operator]
                cols.append(phys)
    if cols:
        df = df.with_columns(cols)
    return df.write_ndjson().splitlines()


def dead_letters(df: pl.DataFrame, reason: str, step: str) -> pl.DataFrame:
    """Rows of the dead-letter output for the rows of ``df``, all for one reason."""
    text = records(df)
    n = len(text)
    return pl.DataFrame({"record": text, "reason": [reason] * n, "step": [step] * n})


@dataclass(slots=True)
class _Split:
    max_ts: int = MIN_WM
    lower: int | None = None  # every event of the split is >= lower (file statistics)
    started: bool = False
    finished: bool = False
    #: the time of its last data, or of the moment it was last caught up and connected
    #: again after lagging or an outage (the idle clock runs only while it is caught up)
    last_active: float = 0.0
    held: bool = False  # lagging or disconnected, as its reader last said: never idle


class WatermarkOp(Operator):
    """Tracks ``max(event time) - delay`` per split; the output is the minimum over the
    unfinished, non-idle splits, and never decreases.

    A split not yet started holds the watermark at its known lower bound (or -inf), so
    files read one after another do not make each other late. A split is idle only when
    it is connected and caught up (:meth:`hold_splits`) and has had no data for
    ``idle_timeout``. A source that may add splits while running (:meth:`expect_splits`)
    holds the watermark when none of its splits is open, until it is caught up and has
    been quiet for ``idle_timeout``. Rows with a null event time go to the dead-letter
    output.
    """

    assigns_watermark = True

    def __init__(
        self,
        name: str,
        column: str,
        delay: int,
        idle_timeout: float | None,
        ns_per_unit: int | None,
    ) -> None:
        super().__init__(name)
        self.column = column
        self.delay = delay
        self.idle_timeout = idle_timeout
        self.ns_per_unit = ns_per_unit
        self.splits: dict[int, _Split] = {}
        #: stable names of the registered splits (source step id and split name): a
        #: snapshot keys the splits by them, so a resumed run whose source has more or
        #: fewer files (other split ids) finds each split's progress again
        self.split_names: dict[int, str] = {}
        self.max_event_time = MIN_WM
        #: rows whose event time was already behind the watermark when they arrived
        self.behind_watermark = 0
        self._all_idle_since: float | None = None
        self._idle_base = MIN_WM
        #: the splits their readers report lagging or disconnected
        self._held: set[int] = set()
        #: the source may add splits while running (so no open split is not its end)
        self._expects_splits = False
        #: the source has input waiting that no split holds yet (a watched directory)
        self._source_held = False
        #: the time of the source's last data, or of the moment it was caught up again
        self._quiet_since = time.monotonic()

    def register_split(
        self, split: int, *, lower: int | None, started: bool, name: str | None = None
    ) -> None:
        self.splits[split] = _Split(lower=lower, started=started, last_active=time.monotonic())
        if name is not None:
            self.split_names[split] = name

    def expect_splits(self) -> None:
        self._expects_splits = True

    def hold_splits(self, held: set[int], *, source: bool = False) -> None:
        now = time.monotonic()
        for sid in self._held ^ held:
            st = self.splits.get(sid)
            if st is None:
                continue
            st.held = sid in held
            if not st.held:
                # caught up again: it becomes idle only after idle_timeout from now, so
                # the backlog of an outage is never judged against a wall-clock watermark
                st.last_active = now
        self._held = {sid for sid in held if sid in self.splits}
        if self._source_held and not source:
            self._quiet_since = now
        self._source_held = source

    def forget_split(self, split: int) -> None:
        self.splits.pop(split, None)
        self.split_names.pop(split, None)
        self._held.discard(split)

    def on_batch(self, port: int, chunk: Chunk) -> list[Chunk]:
        df = chunk.df
        ts = df.get_column(self.column)
        if ts.null_count():
            reason = f"null event time in column {self.column!r}"
            bad = dead_letters(df.filter(ts.is_null()), reason, self.name)
            self.emit_side("dead_letters", bad)
            df = df.filter(ts.is_not_null())
            ts = df.get_column(self.column)
        if not df.height:
            return []
        # zero-copy (no nulls are left); Series.to_physical() would cost 30-50 µs a batch
        values = ts.to_numpy()
        if values.dtype.kind == "M":
            values = values.view(np.int64)
        top, behind = event_time_stats(values, self._out_wm)
        if top == MAX_WM:
            # the largest int64 is the watermark of the end of the input: an event there
            # would end it (and make every later event late)
            reserved = values == MAX_WM
            reason = (
                f"event time {MAX_WM} (the largest int64) in column {self.column!r} is "
                "reserved for the end of the input; use event times below it"
            )
            self.emit_side("dead_letters", dead_letters(df.filter(reserved), reason, self.name))
            df = df.filter(~reserved)
            if not df.height:
                return []
            values = values[~reserved]
            top, behind = event_time_stats(values, self._out_wm)
        self.behind_watermark += behind
        st = self.splits.get(chunk.split)
        if st is None:
            st = self.splits.setdefault(chunk.split, _Split())
        st.started = True
        st.last_active = self._quiet_since = time.monotonic()
        st.max_ts = max(st.max_ts, top)
        self.max_event_time = max(self.max_event_time, st.max_ts)
        self._all_idle_since = None
        return [Chunk(df, chunk.split)]

    def split_ended(self, split: int) -> None:
        st = self.splits.setdefault(split, _Split())
        st.finished = True

    def tick(self, now: float) -> bool:
        return self.idle_timeout is not None

    def split_watermark(self, split: int) -> int | None:
        st = self.splits.get(split)
        return None if st is None or st.finished else self._split_wm(st)

    def _split_wm(self, st: _Split) -> int:
        if st.max_ts == MIN_WM:
            return st.lower if st.lower is not None else MIN_WM
        # below the smallest int64 is -inf (no watermark yet), not a wrapped value
        return max(st.max_ts - self.delay, MIN_WM)

    def output_watermark(self) -> int:
        if self.input_watermark == MAX_WM:
            return MAX_WM
        now = time.monotonic()
        live = [st for st in self.splits.values() if not st.finished]
        if not live and not self._expects_splits:
            return MAX_WM if self.splits else self._out_wm
        active = live
        timeout = self.idle_timeout
        if timeout is not None:
            active = [
                st
                for st in live
                if not (st.started and not st.held and now - st.last_active >= timeout)
            ]
        if active:
            self._all_idle_since = None
            return min(self._split_wm(st) for st in active)
        if self._source_held or (
            not live and (timeout is None or now - self._quiet_since < timeout)
        ):
            # input waits that no split holds yet, or an open-ended source with no open
            # split has not been quiet for idle_timeout: hold
            self._all_idle_since = None
            return self._out_wm
        # the whole source is idle: let its watermark follow the wall clock
        if self._all_idle_since is None:
            self._all_idle_since = now
            self._idle_base = max([self._out_wm, *(self._split_wm(st) for st in live)])
        if self.ns_per_unit is None or self._idle_base == MIN_WM:
            return self._idle_base
        elapsed = int((now - self._all_idle_since) * 1e9) // self.ns_per_unit
        return min(self._idle_base + elapsed, MAX_WM - 1)  # MAX_WM: the end of the input

    def snapshot(self) -> dict[str, pa.Table]:
        """Per-split progress and the operator's watermark, as Arrow tables."""
        ids = sorted(self.splits)
        sts = [self.splits[i] for i in ids]
        splits = pa.table(
            {
                "split": pa.array(ids, pa.int64()),
                "name": pa.array([self.split_names.get(i) for i in ids], pa.string()),
                "max_ts": pa.array([st.max_ts for st in sts], pa.int64()),
                "lower": pa.array([st.lower for st in sts], pa.int64()),
                "started": pa.array([st.started for st in sts], pa.bool_()),
                "finished": pa.array([st.finished for st in sts], pa.bool_()),
            }
        )
        progress = pa.table(
            {
                "watermark": pa.array([self._out_wm], pa.int64()),
                "max_event_time": pa.array([self.max_event_time], pa.int64()),
                "behind_watermark": pa.array([self.behind_watermark], pa.int64()),
            }
        )
        return {"splits": splits, "progress": progress}

    def restore(self, state: dict[str, pa.Table]) -> None:
        """Take back what :meth:`snapshot` returned (idle clocks restart from now).

        With named splits, a split is found by its name: a snapshot's split whose name
        is not registered (its file is gone) is dropped, and a registered split the
        snapshot does not hold (a file added since) keeps its registration."""
        missing = {"splits", "progress"} - set(state)
        if missing:
            msg = f"{self.name}: the snapshot lacks the table(s) {sorted(missing)}"
            raise VStreamError(msg)
        now = time.monotonic()
        rows = state["splits"].to_pylist()
        by_name = {name: i for i, name in self.split_names.items()}
        restored: dict[int, _Split] = {}
        for r in rows:
            name = r.get("name")
            if (by_name or self._expects_splits) and name is not None:
                sid = by_name.get(name)
                if sid is None:
                    continue  # a split that is gone
            else:
                sid = int(r["split"])
            restored[sid] = _Split(
                max_ts=int(r["max_ts"]),
                lower=None if r["lower"] is None else int(r["lower"]),
                started=bool(r["started"]),
                finished=bool(r["finished"]),
                last_active=now,
            )
        if by_name:  # splits added since the snapshot: as registered
            for sid in self.split_names:
                if sid not in restored and sid in self.splits:
                    restored[sid] = self.splits[sid]
        self.splits = restored
        self._held = set()
        self._quiet_since = now
        progress = state["progress"].to_pylist()[0]
        self._out_wm = int(progress["watermark"])
        self.max_event_time = int(progress["max_event_time"])
        self.behind_watermark = int(progress["behind_watermark"])
