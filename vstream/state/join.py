"""Join state: what a join keeps for partners still to come, the part a checkpoint holds.

A join operator (:mod:`vstream.ops.join`) is config (its ``JoinSetup``), logic (the
operator) and one of these states: the key index both inputs share and, by key id, the
rows it keeps (:class:`SymmetricJoinState`: each side's rows; :class:`AsofJoinState`: the
right rows and the left rows waiting for their answer; :class:`LookupJoinState`: the
table).

A state splits by key group, the unit of rescaling: :meth:`JoinState.split` with
``key_groups[i]`` the group of key id ``i`` gives one state per half-open range of groups,
holding the rows of the keys whose group is in it under a key index of those keys only;
:meth:`JoinState.merge` puts parts back together. Rows without a key (a null key, kept by
outer joins: they match nothing) go with the first part.

Snapshots are Arrow tables whose columns are named after the fields they hold:
``row.<column>`` for the payload, then ``time``, ``key_id``, ``matched`` and
``next_window``. Read back they are untrusted (DESIGN.md "Untrusted input"): key ids are
checked against the key index before any kernel indexes with them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import ClassVar, Protocol, Self

import numpy as np
import polars as pl
import pyarrow as pa

from vstream.errors import VStreamError
from vstream.kernels.join import sort_by_key_time
from vstream.kernels.keyhash import DEFAULT_KEY_GROUPS, group_range
from vstream.state.key_index import KeyIndex
from vstream.state.slots import StateTable, grown

__all__ = [
    "AsofJoinState",
    "JoinSideState",
    "JoinState",
    "KeyedRows",
    "LookupJoinState",
    "LookupRows",
    "PendingRows",
    "SymmetricJoinState",
]

_I64_MAX = 2**63 - 1
#: the prefix of the payload columns in a snapshot (the state's own fields have none)
_ROW = "row."


def _remapped(kid: np.ndarray, remap: np.ndarray) -> np.ndarray:
    """``remap[kid]`` (int32), -1 where ``kid`` is -1 (a row without a key)."""
    if not remap.size:
        return np.full(kid.shape[0], -1, np.int32)
    return np.where(kid >= 0, remap[np.maximum(kid, 0)], -1).astype(np.int32)


def _with_fields(payload: pl.DataFrame, fields: dict[str, np.ndarray]) -> pa.Table:
    """A snapshot table: the payload columns under ``row.``, then the fields."""
    rows = payload.rename({c: _ROW + c for c in payload.columns})
    return rows.with_columns(pl.Series(k, v) for k, v in fields.items()).to_arrow()


def _payload_of(check: StateTable, names: list[str] | None) -> pl.DataFrame:
    """The payload columns of a snapshot table (``names``, or every ``row.`` column)."""
    have = [c for c in check.table.column_names if c.startswith(_ROW)]
    if names is not None:
        missing = [c for c in names if _ROW + c not in have]
        if missing:
            check.refuse(", ".join(_ROW + c for c in missing), "missing")
        have = [_ROW + c for c in names]
    df = pl.DataFrame(check.table.select(have))
    return df.rename({c: c[len(_ROW) :] for c in have})


class KeyedRows(Protocol):
    """Rows held by key id: what :class:`JoinState` splits, merges and snapshots."""

    def key_ids(self) -> list[np.ndarray]:
        """The key ids the rows refer to, as arrays to renumber in place."""
        ...

    def subset(self, remap: np.ndarray, *, nulls: bool, n_keys: int) -> Self:
        """The rows whose key id ``k`` has ``remap[k] >= 0``, under key id ``remap[k]``
        (and the rows without a key if ``nulls``), in their order; ``n_keys`` ids."""
        ...

    def concat(self, parts: Sequence[Self], n_keys: int) -> Self:
        """The rows of ``parts`` (under the same key ids), in order, as one; ``self``
        gives the layout."""
        ...

    def snapshot(self) -> pa.Table: ...

    def restored(self, check: StateTable, n_keys: int) -> Self:
        """Rows of this layout from a :meth:`snapshot` table, checked."""
        ...


class JoinSideState:
    """One input's rows kept for future partners, in arrival order: the payload (the
    columns the output takes from this side) and, per row, event time, key id, whether
    it is still live, match bits and (windowed) the first window not yet settled."""

    def __init__(self, schema: pl.Schema) -> None:
        self.schema = schema  # of the payload: the columns the output takes from this side
        self.frames: list[pl.DataFrame] = []
        self._payload: pl.DataFrame | None = None
        self.n = 0
        self.live = 0
        self.t = np.zeros(0, np.int64)
        self.kid = np.zeros(0, np.int32)
        self.alive = np.zeros(0, np.bool_)
        self.bits = np.zeros(0, np.int64)  # matched: bit 0, or bit j for the j-th window
        self.next_j = np.zeros(0, np.int64)  # windowed: the first window not yet settled
        self.low = _I64_MAX  # smallest event time among live rows
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._indexed = 0  # rows 0.._indexed are in the index
        self.settled_n = 0  # windowed: rows when windows were last settled

    @property
    def payload(self) -> pl.DataFrame:
        """The kept rows as one frame. The batches appended since the last rechunk are
        chunks of it until they hold 1/8 of its rows (or there are 16 of them): copying
        every row on each read made a join with large state quadratic (Nexmark q3)."""
        if self._payload is None:
            if not self.frames:
                self._payload = pl.DataFrame(schema=self.schema)
                self.frames = [self._payload]
            elif len(self.frames) == 1:
                self._payload = self.frames[0]
            else:
                tail = sum(f.height for f in self.frames[1:])
                whole = tail * 8 >= self.frames[0].height or len(self.frames) > 16
                self._payload = pl.concat(self.frames, rechunk=whole)
                if whole:
                    self.frames = [self._payload]
        return self._payload

    def invalidate_index(self) -> None:
        self._index = None

    def index(
        self, n_keys: int, probes: int
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]:
        """The live rows sorted by (key, time) (order, times, each key's positions), and
        the first row not in it (rows added since, scanned by the probe).

        Built again when scanning the rows added since would cost ``probes`` rows more
        than sorting everything. Retired rows may stay in it: no probe can match them (a
        probe row is never late, and a row retires only when no such row can match it; a
        windowed probe pairs in open windows only).
        """
        n = self.n
        if self._index is None or (n - self._indexed) * probes > max(n, 4096):
            kid = np.where(self.alive[:n], self.kid[:n], -1).astype(np.int32)
            self._index = sort_by_key_time(kid, self.t[:n], np.int64(n_keys))
            self._indexed = n
        return self._index, self._indexed

    def append(
        self,
        df: pl.DataFrame,
        ts: np.ndarray,
        kid: np.ndarray,
        bits: np.ndarray,
        next_j: np.ndarray | int = 0,
    ) -> None:
        m = df.height
        need = self.n + m
        if need > self.t.shape[0]:
            cap = max(1024, self.t.shape[0])
            while cap < need:
                cap *= 2
            self.t = grown(self.t, cap)
            self.kid = grown(self.kid, cap)
            self.alive = grown(self.alive, cap)
            self.bits = grown(self.bits, cap)
            self.next_j = grown(self.next_j, cap)
        s = slice(self.n, need)
        self.t[s] = ts
        self.kid[s] = kid
        self.alive[s] = True
        self.bits[s] = bits
        self.next_j[s] = next_j
        self.frames.append(df)
        self._payload = None if len(self.frames) > 1 else df
        self.n = need
        self.live += m
        if m:
            self.low = min(self.low, int(ts.min()))

    def compact(self) -> None:
        """Drop retired rows (payload and arrays) and relink the chains."""
        keep = np.flatnonzero(self.alive[: self.n])
        payload = self.payload[keep] if keep.size else self.payload.clear()
        self.frames = [payload]
        self._payload = payload
        m = keep.size
        for name in ("t", "kid", "bits", "next_j"):
            arr = getattr(self, name)
            arr[:m] = arr[keep]
        self.alive[:m] = True
        self.alive[m : self.n] = False
        self._index = None
        self.n = m
        self.live = m

    # ------------------------------------------------------------------ KeyedRows
    def key_ids(self) -> list[np.ndarray]:
        if self.n > self.live:  # retired rows go first: their ids may be dropped
            self.compact()
        return [self.kid[: self.n]]

    def _add_rows(self, other: JoinSideState, rows: np.ndarray, kid: np.ndarray) -> None:
        if rows.size:
            self.append(other.payload[rows], other.t[rows], kid, other.bits[rows])
            self.next_j[self.n - rows.size : self.n] = other.next_j[rows]

    def subset(self, remap: np.ndarray, *, nulls: bool, n_keys: int) -> JoinSideState:
        n = self.n
        kid = _remapped(self.kid[:n], remap)
        keep = self.alive[:n] & ((kid >= 0) | (nulls & (self.kid[:n] < 0)))
        rows = np.flatnonzero(keep)
        out = JoinSideState(self.schema)
        out._add_rows(self, rows, kid[rows])
        return out

    def concat(self, parts: Sequence[JoinSideState], n_keys: int) -> JoinSideState:
        out = JoinSideState(self.schema)
        for p in parts:
            rows = np.flatnonzero(p.alive[: p.n])
            out._add_rows(p, rows, p.kid[rows])
        return out

    def snapshot(self) -> pa.Table:
        """The live rows: payload columns (``row.<column>``), then ``time``, ``key_id``,
        ``matched`` (match bits) and ``next_window``."""
        self.compact()
        m = self.n
        fields: dict[str, np.ndarray] = {
            "time": self.t[:m],
            "key_id": self.kid[:m],
            "matched": self.bits[:m],
            "next_window": self.next_j[:m],
        }
        return _with_fields(self.payload, fields)

    def restored(self, check: StateTable, n_keys: int) -> JoinSideState:
        """A side holding the rows of a :meth:`snapshot` (-1: a row without a key)."""
        why = f"ids of the {n_keys} keys of the key index, -1 for none"
        kid = check.ints("key_id", -1, n_keys - 1, why).astype(np.int32)
        t = check.ints("time")
        bits = check.ints("matched")
        next_j = check.ints("next_window", 0, None, "a window number from the row's first")
        side = JoinSideState(self.schema)
        side.append(_payload_of(check, self.schema.names()), t, kid, bits, next_j)
        return side


class PendingRows:
    """The as-of join's left rows waiting for the right watermark to settle their
    answer: batches with their event times, key ids and smallest time."""

    def __init__(self, schema: pl.Schema) -> None:
        self.schema = schema  # the columns the output takes (a batch may have more)
        self.chunks: list[tuple[pl.DataFrame, np.ndarray, np.ndarray, int]] = []
        self.n = 0

    def append(self, df: pl.DataFrame, ts: np.ndarray, kid: np.ndarray) -> None:
        self.chunks.append((df, ts, kid, int(ts.min())))
        self.n += df.height

    def low(self) -> int:
        """The smallest event time of a waiting row."""
        return min((c[3] for c in self.chunks), default=_I64_MAX)

    def key_ids(self) -> list[np.ndarray]:
        return [c[2] for c in self.chunks]

    def subset(self, remap: np.ndarray, *, nulls: bool, n_keys: int) -> PendingRows:
        out = PendingRows(self.schema)
        for df, ts, kid, _ in self.chunks:
            new = _remapped(kid, remap)
            keep = (new >= 0) | (nulls & (kid < 0))
            if keep.any():
                out.append(df.filter(keep), ts[keep], new[keep])
        return out

    def concat(self, parts: Sequence[PendingRows], n_keys: int) -> PendingRows:
        out = PendingRows(self.schema)
        for p in parts:
            for df, ts, kid, _ in p.chunks:
                out.append(df, ts, kid)
        return out

    def snapshot(self) -> pa.Table:
        """The waiting rows: the batches' columns (``row.<column>``), ``time``,
        ``key_id``."""
        if not self.chunks:
            return _with_fields(
                pl.DataFrame(schema=self.schema),
                {"time": np.zeros(0, np.int64), "key_id": np.zeros(0, np.int32)},
            )
        df = pl.concat([c[0] for c in self.chunks])
        fields: dict[str, np.ndarray] = {
            "time": np.concatenate([c[1] for c in self.chunks]),
            "key_id": np.concatenate([c[2] for c in self.chunks]),
        }
        return _with_fields(df, fields)

    def restored(self, check: StateTable, n_keys: int) -> PendingRows:
        why = f"ids of the {n_keys} keys of the key index, -1 for none"
        kid = check.ints("key_id", -1, n_keys - 1, why).astype(np.int32)
        ts = check.ints("time")
        payload = _payload_of(check, None)
        missing = [c for c in self.schema.names() if c not in payload.columns]
        if missing:
            check.refuse(", ".join(_ROW + c for c in missing), "missing")
        out = PendingRows(self.schema)
        if ts.size:
            out.append(payload, ts, kid)
        return out


class LookupRows:
    """The lookup join's table: the latest row of each key (``rowmap[key id]``, -1 for
    none) in a payload frame, plus the batches appended since it was last one frame."""

    def __init__(self, schema: pl.Schema) -> None:
        self.schema = schema  # the right columns the output takes, then the key columns
        self.rowmap = np.full(1024, -1, np.int64)
        self.payload = pl.DataFrame(schema=schema)
        self.frames: list[pl.DataFrame] = []

    def rows(self) -> int:
        return self.payload.height + sum(f.height for f in self.frames)

    def table(self) -> pl.DataFrame:
        if self.frames:
            self.payload = pl.concat([self.payload, *self.frames], rechunk=True)
            self.frames = []
        return self.payload

    def reserve(self, n_keys: int) -> None:
        """Room in ``rowmap`` for ``n_keys`` key ids."""
        if n_keys > self.rowmap.shape[0]:
            cap = self.rowmap.shape[0]
            while cap < n_keys:
                cap *= 2
            self.rowmap = grown(self.rowmap, cap, -1)

    def put(self, ids: np.ndarray, rows: pl.DataFrame, n_keys: int) -> bool:
        """Make ``rows`` (key ids ``ids``, none -1) the latest of their keys (the last
        row of a key wins). True if the table was compacted."""
        self.reserve(n_keys)
        base = self.rows()
        rev_ids = ids[::-1]
        uniq, first_rev = np.unique(rev_ids, return_index=True)
        self.rowmap[uniq] = base + (ids.size - 1 - first_rev)
        self.frames.append(rows)
        live = int(np.count_nonzero(self.rowmap >= 0))
        if self.rows() > 2 * live + 65_536:
            self.compact()
            return True
        return False

    def compact(self) -> None:
        """Keep the latest row of each key only."""
        table = self.table()
        used = np.flatnonzero(self.rowmap >= 0)
        rows = self.rowmap[used]
        self.payload = table[rows]
        self.rowmap[used] = np.arange(used.size)

    def key_ids(self) -> list[np.ndarray]:
        return []  # the key ids are the positions in rowmap (the join never renumbers)

    def latest(self) -> tuple[np.ndarray, pl.DataFrame]:
        """The key ids with a row, and their rows."""
        table = self.table()
        used = np.flatnonzero(self.rowmap >= 0)
        return used, (table[self.rowmap[used]] if used.size else table.clear())

    def _from(self, kid: np.ndarray, rows: pl.DataFrame, n_keys: int) -> LookupRows:
        out = LookupRows(self.schema)
        out.rowmap = np.full(max(1024, n_keys), -1, np.int64)
        out.rowmap[kid] = np.arange(kid.size)
        out.payload = rows
        return out

    def subset(self, remap: np.ndarray, *, nulls: bool, n_keys: int) -> LookupRows:
        used, rows = self.latest()
        new = _remapped(used, remap)
        keep = new >= 0
        return self._from(new[keep], rows.filter(keep), n_keys)

    def concat(self, parts: Sequence[LookupRows], n_keys: int) -> LookupRows:
        got = [p.latest() for p in parts]
        kid = np.concatenate([np.zeros(0, np.int64), *(g[0] for g in got)])
        return self._from(kid, pl.concat([g[1] for g in got]), n_keys)

    def snapshot(self) -> pa.Table:
        """The latest row of each key: its columns (``row.<column>``) and ``key_id``."""
        used, rows = self.latest()
        return _with_fields(rows, {"key_id": used.astype(np.int32)})

    def restored(self, check: StateTable, n_keys: int) -> LookupRows:
        kid = check.ints("key_id", 0, n_keys - 1, f"ids of the {n_keys} keys of the key index")
        check.distinct({"key_id": kid}, "one row a key")
        return self._from(kid, _payload_of(check, self.schema.names()), n_keys)


class JoinState:
    """The key index of a join (None: no key columns, every row under key id 0) and
    the rows it keeps by key id, as the attributes named in ``ROWS``."""

    ROWS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, keys: KeyIndex | None) -> None:
        self.keys = keys

    @property
    def n_keys(self) -> int:
        return len(self.keys) if self.keys is not None else 1

    def rows(self) -> dict[str, KeyedRows]:
        out: dict[str, KeyedRows] = {name: getattr(self, name) for name in self.ROWS}
        return out

    def replaced(self, keys: KeyIndex | None, rows: dict[str, KeyedRows]) -> Self:
        new = copy.copy(self)
        new.keys = keys
        for name, value in rows.items():
            setattr(new, name, value)
        return new

    def compact_keys(self, live_rows: int) -> bool:
        """Forget keys no kept row has (a join on request ids sees each key once or
        twice): once the index holds many more keys than the state, rebuild it with the
        live ones and renumber. Amortized O(1) a key. True if the ids changed."""
        # at 2x (not 4x) the live keys the hash table stays smaller and cache-friendlier:
        # Nexmark q7 (a key a price) 2.0 -> 1.8 s
        if self.keys is None or len(self.keys) <= 2 * live_rows + 65_536:
            return False  # (every kept row has at most one key: a cheap bound first)
        arrays = [a for rows in self.rows().values() for a in rows.key_ids()]
        used = np.zeros(len(self.keys), np.bool_)
        for a in arrays:
            used[a[a >= 0]] = True
        live = np.flatnonzero(used)  # sorted, as np.unique gave (which sorts: slower)
        if len(self.keys) <= 2 * live.size + 65_536:
            return False
        self.keys, remap = self.keys.compacted(live)
        for a in arrays:
            ok = a >= 0
            a[ok] = remap[a[ok]]
        return True

    def snapshot(self) -> dict[str, pa.Table]:
        """The key index (table ``keys``) and each row set (a table named after it)."""
        out: dict[str, pa.Table] = {}
        if self.keys is not None:
            out["keys"] = self.keys.snapshot()["keys"]
        for name, rows in self.rows().items():
            out[name] = rows.snapshot()
        return out

    def restore(self, tables: dict[str, pa.Table], step: str) -> None:
        """Take back a :meth:`snapshot` (untrusted: a bad table raises
        :class:`~vstream.errors.CheckpointError` naming ``step``)."""
        for name in ("keys", *self.ROWS) if self.keys is not None else self.ROWS:
            StateTable(step, tables, name)  # each there, before anything changes
        keys = self.keys
        if keys is not None:
            keys = KeyIndex(keys.schema)
            keys.restore({"keys": tables["keys"]}, step=f"{step}, key index (table 'keys')")
        n_keys = len(keys) if keys is not None else 1
        rows = {
            name: held.restored(StateTable(step, tables, name), n_keys)
            for name, held in self.rows().items()
        }
        self.keys = keys
        for name, value in rows.items():
            setattr(self, name, value)

    def split(self, key_groups: np.ndarray, ranges: Sequence[tuple[int, int]]) -> list[Self]:
        """One state per half-open range ``[lo, hi)`` of key groups: the rows of the
        keys whose group (``key_groups[key id]``) is in it, under a key index of those
        keys only (rows without a key go with the first part).

        Examples
        --------
        >>> from vstream.state.join import JoinState
        >>> from vstream.state.join import KeyIndex
        >>> from vstream.state.join import LookupJoinState
        >>> import numpy as np, polars as pl
        >>> state = LookupJoinState(
        ...     KeyIndex(pl.Schema({"k": pl.Int64})), pl.Schema({"v": pl.Int64})
        ... )
        >>> keys = pl.DataFrame({"k": [10, 11, 12]})
        >>> ids = state.keys.ids(keys)
        >>> _ = state.table.put(ids, pl.DataFrame({"v": [1, 2, 3]}), state.n_keys)
        >>> low, high = state.split(np.array([0, 1, 0]), [(0, 1), (1, 2)])
        >>> low.keys.keys(np.arange(2))["k"].to_list(), high.table.table()["v"].to_list()
        ([10, 12], [2])
        >>> both = JoinState.merge([low, high])
        >>> sorted(both.table.table()["v"].to_list())
        [1, 2, 3]
        """
        groups = np.asarray(key_groups)
        n = self.n_keys
        if groups.ndim != 1 or groups.shape[0] < n:
            msg = (
                f"join state: key_groups must give the group of each of the {n} key ids "
                f"(a 1-d array of at least {n}), got shape {groups.shape}"
            )
            raise VStreamError(msg)
        groups = groups[:n]
        out = []
        for i, (lo, hi) in enumerate(ranges):
            mine = np.flatnonzero((groups >= lo) & (groups < hi))
            if self.keys is not None:
                keys, remap = self.keys.compacted(mine)
            else:
                keys, remap = None, np.full(1, -1, np.int32)
                remap[mine] = 0
            n_part = len(keys) if keys is not None else 1
            rows = {
                name: held.subset(remap, nulls=i == 0, n_keys=n_part)
                for name, held in self.rows().items()
            }
            out.append(self.replaced(keys, rows))
        return out

    def split_by_groups(self, n_parts: int, n_groups: int = DEFAULT_KEY_GROUPS) -> list[Self]:
        """The state cut into ``n_parts`` as partitions own it: part ``p`` holds the rows
        of the keys in the key groups :func:`~vstream.kernels.keyhash.group_range` gives
        partition ``p`` of ``n_parts``, each key's group from the stable hash of its
        values (:meth:`KeyIndex.key_groups`). Without keys, every row is in part 0.

        Examples
        --------
        >>> from vstream.state.join import JoinState
        >>> from vstream.state.join import KeyIndex
        >>> from vstream.state.join import LookupJoinState
        >>> import polars as pl
        >>> state = LookupJoinState(
        ...     KeyIndex(pl.Schema({"k": pl.Int64})), pl.Schema({"v": pl.Int64})
        ... )
        >>> ids = state.keys.ids(pl.DataFrame({"k": range(100)}))
        >>> _ = state.table.put(ids, pl.DataFrame({"v": range(100)}), state.n_keys)
        >>> parts = state.split_by_groups(2)
        >>> [p.table.rows() for p in parts], JoinState.merge(parts).table.rows()
        ([47, 53], 100)
        """
        if self.keys is not None:
            groups = self.keys.key_groups(n_groups)
        else:
            groups = np.zeros(self.n_keys, np.int32)
        ranges = [group_range(p, n_parts, n_groups) for p in range(n_parts)]
        return self.split(groups, ranges)

    @staticmethod
    def merge(parts: Sequence[JoinState]) -> JoinState:
        """One state holding the rows of ``parts`` (states of the same join, as
        :meth:`split` gives them), under one key index."""
        if not parts:
            msg = "join state: merge needs at least one part"
            raise VStreamError(msg)
        first = parts[0]
        if any(type(p) is not type(first) for p in parts):
            msg = f"join state: cannot merge {sorted({type(p).__name__ for p in parts})}"
            raise VStreamError(msg)
        keys: KeyIndex | None = None
        remaps = [np.zeros(1, np.int32) for _ in parts]
        if first.keys is not None:
            keys = KeyIndex(first.keys.schema)
            remaps = []
            for p in parts:
                assert p.keys is not None
                remaps.append(keys.ids(p.keys.keys(np.arange(len(p.keys)))))
        n = len(keys) if keys is not None else 1
        rows: dict[str, KeyedRows] = {}
        for name, held in first.rows().items():
            moved = [
                p.rows()[name].subset(remap, nulls=True, n_keys=n)
                for p, remap in zip(parts, remaps, strict=True)
            ]
            rows[name] = held.concat(moved, n)
        return first.replaced(keys, rows)


class SymmetricJoinState(JoinState):
    """Interval, windowed and regular joins: the rows each side keeps."""

    ROWS = ("left", "right")

    def __init__(self, keys: KeyIndex | None, schemas: tuple[pl.Schema, pl.Schema]) -> None:
        super().__init__(keys)
        self.left = JoinSideState(schemas[0])
        self.right = JoinSideState(schemas[1])

    @property
    def sides(self) -> tuple[JoinSideState, JoinSideState]:
        return self.left, self.right


class AsofJoinState(JoinState):
    """As-of join: the right rows a left row may still match, and the left rows
    waiting for their answer."""

    ROWS = ("right", "pending")

    def __init__(self, keys: KeyIndex | None, right: pl.Schema, left: pl.Schema) -> None:
        super().__init__(keys)
        self.right = JoinSideState(right)
        self.pending = PendingRows(left)


class LookupJoinState(JoinState):
    """Lookup join: the latest table row of each key."""

    ROWS = ("table",)

    def __init__(self, keys: KeyIndex | None, schema: pl.Schema) -> None:
        super().__init__(keys)
        self.table = LookupRows(schema)
