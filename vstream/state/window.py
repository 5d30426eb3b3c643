"""Window state: what a checkpoint of a window step holds, as objects.

A window step is config (the plan's window spec, resolved as ``WindowSetup``), logic
(:mod:`vstream.ops.window`: what runs on each batch and watermark) and state (this
module): the key index, the aggregate slots and what goes with them. :class:`PaneState`
holds the panes of tumbling and hopping windows, :class:`SessionState` the sessions. The
logic reads and writes their arrays in place (the kernels take them as they are); a
checkpoint holds their :meth:`~PaneState.snapshot` tables.

Aggregate fields are snapshot columns named after the fields (``cpu.mean.sum``: output
``cpu``, aggregate ``mean``, field ``sum``; :class:`WindowFields`), so a new aggregate
needs no new format. State splits by key group, the unit of rescaling, and merges back:
``split(key_groups, ranges)`` and ``merge(parts)``, each part a state of its own keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import polars as pl
import pyarrow as pa

from vstream.errors import VStreamError
from vstream.kernels.keyhash import DEFAULT_KEY_GROUPS, group_range
from vstream.kernels.window import session_order
from vstream.state.key_index import KeyIndex
from vstream.state.slots import SlotStore, StateTable, grown

__all__ = ["PaneState", "SessionState", "WindowFields", "WindowStateConfig"]

_MIN = -(2**63)  # the watermark -inf (a pane below every pane: nothing freed yet)
_I64_MAX = np.iinfo(np.int64).max
_KEY_ID = "__vstream_key_id__"  # the key index's id column (see KeyIndex.snapshot)
_REV_SCHEMA = pl.Schema({"window": pl.Int64, "key": pl.Int32, "emitted": pl.Int64})


@dataclass(frozen=True, eq=False, slots=True)
class WindowFields:
    """The aggregate fields of a window step: the names of the float and int fields
    (rows of ``SlotStore.F`` / ``SlotStore.I``, and snapshot columns), their initial
    values, and the value stores (first / last of non-numeric columns keep a position in
    a store of their values: ``stored`` maps such an int field to its store)."""

    floats: tuple[str, ...]
    ints: tuple[str, ...]
    init_f: np.ndarray
    init_i: np.ndarray
    stored: dict[int, str] = field(default_factory=dict)
    stores: dict[str, pl.DataType] = field(default_factory=dict)


@dataclass(frozen=True, eq=False, slots=True)
class WindowStateConfig:
    """What a window state needs to know of its step: how errors name it, the key
    schema (None: no keys), the fields, and the bounds a restored snapshot is checked
    against: the event times state may hold, the pane geometry (panes of ``pane`` time
    units from ``offset``; window ``k`` covers panes ``[k*s, k*s + n)``) or the gap."""

    step: str
    key_schema: pl.Schema | None
    fields: WindowFields
    times: tuple[int, int]
    pane: int = 1
    s: int = 1
    n: int = 1
    offset: int = 0
    gap: int = 0
    lateness: int = 0


_S = TypeVar("_S", bound="_WindowState")


class _WindowState:
    """What pane and session state share: the key index, the aggregate slots, the
    value stores and the arrival number of the next row (first / last)."""

    #: tables whose column names key ids (remapped by split and merge)
    _KEYED: tuple[tuple[str, str], ...] = ()
    #: the table of slots whose field columns hold store positions
    _SLOTS = ""

    def __init__(self, config: WindowStateConfig) -> None:
        self.config = config
        f = config.fields
        ks = config.key_schema
        self.keys: KeyIndex | None = KeyIndex(ks) if ks is not None else None
        self.slots = SlotStore(len(f.floats), len(f.ints), f.init_f, f.init_i)
        self.stores: dict[str, pl.Series] = {
            name: pl.Series(name, [], dtype=dtype) for name, dtype in f.stores.items()
        }
        self.seq = 0  # arrival number of the next row (first / last)

    def n_keys(self) -> int:
        return len(self.keys) if self.keys is not None else 1

    # ------------------------------------------------------------------ snapshot
    def _fields_of(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        f, sl = self.config.fields, self.slots
        cols = {name: sl.F[a, idx] for a, name in enumerate(f.floats)}
        cols.update({name: sl.I[a, idx] for a, name in enumerate(f.ints)})
        return cols

    def _common(self, out: dict[str, pa.Table]) -> dict[str, pa.Table]:
        if self.keys is not None:
            for k, v in self.keys.snapshot().items():
                out[f"keys.{k}"] = v
        for name, store in self.stores.items():
            out[f"store.{name}"] = store.to_frame().to_arrow()
        return out

    def _restore_common(self, tables: dict[str, pa.Table]) -> None:
        """The key index and the value stores (the slots are checked against both)."""
        step = self.config.step
        if self.keys is not None:
            keys = {k[5:]: v for k, v in tables.items() if k.startswith("keys.")}
            self.keys.restore(keys, step=f"{step}, key index (table 'keys.keys')")
        for name in self.stores:
            store = StateTable(step, tables, f"store.{name}")
            if store.table.num_columns != 1:
                store.refuse(name, f"{store.table.num_columns} columns, not 1")
            self.stores[name] = pl.DataFrame(store.table).to_series()

    def _checked_fields(self, table: StateTable) -> None:
        """The aggregate fields of ``table`` into the slots ``0..rows``, each checked: no
        nulls, and where a field is a position in a store of values (first / last of a
        non-numeric column), inside that store."""
        f, sl = self.config.fields, self.slots
        m = table.rows
        for a, name in enumerate(f.floats):
            sl.F[a, :m] = table.floats(name)
        for a, name in enumerate(f.ints):
            store = f.stored.get(a)
            if store is None:
                sl.I[a, :m] = table.ints(name)
            else:
                size = self.stores[store].len()
                why = f"positions in the {size} stored values of {store!r}"
                sl.I[a, :m] = table.ints(name, 0, size - 1, why)

    def snapshot(self) -> dict[str, pa.Table]:  # pragma: no cover - in the subclasses
        raise NotImplementedError

    def restore(self, tables: dict[str, pa.Table]) -> None:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------------ key groups
    def split(self: _S, key_groups: np.ndarray, ranges: list[tuple[int, int]]) -> list[_S]:
        """The state cut by key group: part ``j`` holds the keys whose group (key id
        ``i``'s is ``key_groups[i]``) is in the half-open range ``ranges[j]``, with their
        windows (without keys, key id 0 stands for the one group). Each part is a state
        of its own, its keys numbered 0.. in the order of their ids here; :meth:`merge`
        of the parts gives this state back (the same results, key ids aside).

        Examples
        --------
        >>> from vstream.state.window import PaneState
        >>> from vstream.state.window import WindowStateConfig
        >>> from vstream.state.window import WindowFields
        >>> import numpy as np, polars as pl, pyarrow as pa
        >>> fields = WindowFields((), ("n.len.rows",), np.zeros(0), np.zeros(1, np.int64))
        >>> config = WindowStateConfig(
        ...     "window 'w'", pl.Schema({"k": pl.String}), fields, (0, 10**6), pane=10
        ... )
        >>> state = PaneState(config)
        >>> state.keys.ids(pl.DataFrame({"k": ["a", "b", "c"]})).tolist()
        [0, 1, 2]
        >>> a, b = state.split(np.array([5, 1, 5]), [(0, 4), (4, 8)])
        >>> len(a.keys), len(b.keys), len(PaneState.merge([a, b]).keys)
        (1, 2, 3)
        """
        n_keys = self.n_keys()
        groups = np.asarray(key_groups)
        if groups.shape != (n_keys,):
            msg = (
                f"{self.config.step}: split by key group: key_groups has shape "
                f"{groups.shape}, not ({n_keys},), one group for each of the state's "
                f"{n_keys} key ids; pass the groups of the key index as it is now"
            )
            raise VStreamError(msg)
        tables = self.snapshot()
        parts = []
        for lo, hi in ranges:
            keep = (groups >= lo) & (groups < hi)
            remap = (np.cumsum(keep) - 1).astype(np.int64)
            remap[~keep] = -1
            part = type(self)(self.config)
            part.restore(self._part_tables(tables, keep, remap))
            parts.append(part)
        return parts

    def split_by_groups(self: _S, n_parts: int, n_groups: int = DEFAULT_KEY_GROUPS) -> list[_S]:
        """The state cut into ``n_parts`` as partitions own it: part ``p`` holds the keys
        of the key groups :func:`~vstream.kernels.keyhash.group_range` gives partition
        ``p`` of ``n_parts``, each key's group from the stable hash of its values
        (:meth:`KeyIndex.key_groups`). Without keys, the one key is in group 0.

        Examples
        --------
        >>> from vstream.state.window import PaneState
        >>> from vstream.state.window import WindowStateConfig
        >>> from vstream.state.window import WindowFields
        >>> import numpy as np, polars as pl
        >>> fields = WindowFields((), ("n.len.rows",), np.zeros(0), np.zeros(1, np.int64))
        >>> config = WindowStateConfig(
        ...     "window 'w'", pl.Schema({"k": pl.Int64}), fields, (0, 10**6), pane=10
        ... )
        >>> state = PaneState(config)
        >>> _ = state.keys.ids(pl.DataFrame({"k": range(100)}))
        >>> parts = state.split_by_groups(3)
        >>> [len(p.keys) for p in parts], len(PaneState.merge(parts).keys)
        ([26, 39, 35], 100)
        """
        groups = self.keys.key_groups(n_groups) if self.keys is not None else np.zeros(1, np.int32)
        ranges = [group_range(p, n_parts, n_groups) for p in range(n_parts)]
        return self.split(groups, ranges)

    def _part_tables(
        self, tables: dict[str, pa.Table], keep: np.ndarray, remap: np.ndarray
    ) -> dict[str, pa.Table]:
        """The tables of the keys ``keep``, their ids ``remap``-ped."""
        out = dict(tables)
        for name, column in self._KEYED:
            if name in out:
                out[name] = _remapped(out[name], column, keep, remap)
        if "keys.keys" in out:
            out["keys.keys"] = _remapped(out["keys.keys"], _KEY_ID, keep, remap)
        # each value store keeps the values its part's slots refer to
        f = self.config.fields
        slots = out[self._SLOTS]
        for store in f.stores:
            cols = [f.ints[a] for a, s in f.stored.items() if s == store]
            refs = [np.asarray(slots.column(c).to_numpy(), np.int64) for c in cols]
            values = tables[f"store.{store}"]
            size = values.num_rows
            inside = [r[(r >= 0) & (r < size)] for r in refs]
            used = np.unique(np.concatenate(inside)) if inside else np.zeros(0, np.int64)
            out[f"store.{store}"] = values.take(pa.array(used))
            for c, r in zip(cols, refs, strict=True):
                # a position outside the store stays outside it (the part's is no
                # larger), for restore to refuse
                moved = np.where((r >= 0) & (r < size), np.searchsorted(used, r), r)
                i = slots.schema.get_field_index(c)
                slots = slots.set_column(i, slots.schema.field(i), pa.array(moved, pa.int64()))
        out[self._SLOTS] = slots
        return out

    @classmethod
    def merge(cls: type[_S], parts: list[_S]) -> _S:
        """One state of the ``parts`` (of one step, over distinct keys: the parts of a
        :meth:`split`); key ids follow the parts' order."""
        if not parts:
            msg = "merge of window states: no parts given (a merge takes at least one)"
            raise VStreamError(msg)
        config = parts[0].config
        snaps = [p.snapshot() for p in parts]
        offsets = np.cumsum([0] + [p.n_keys() for p in parts])[:-1]
        merged = cls(config)
        tables: dict[str, pa.Table] = {}
        keyed = dict(cls._KEYED)
        if parts[0].keys is not None:
            keyed["keys.keys"] = _KEY_ID
        # positions in the value stores follow the stores before them
        starts = {
            name: np.cumsum([0] + [p.stores[name].len() for p in parts])[:-1]
            for name in merged.stores
        }
        stored = {config.fields.ints[a]: s for a, s in config.fields.stored.items()}
        names = dict.fromkeys(name for snap in snaps for name in snap)
        for name in names:
            pieces = []
            for j, snap in enumerate(snaps):
                if name not in snap:
                    continue
                t = snap[name]
                column = keyed.get(name)
                if column is not None and parts[0].keys is not None:
                    t = _shifted(t, column, int(offsets[j]))
                if name == cls._SLOTS:
                    for col, store in stored.items():
                        t = _shifted(t, col, int(starts[store][j]))
                t = merged._shift_positions(name, t, snaps[:j])
                pieces.append(t)
            tables[name] = merged._merged_table(name, pieces)
        merged.restore(tables)
        return merged

    def _shift_positions(
        self, name: str, table: pa.Table, before: list[dict[str, pa.Table]]
    ) -> pa.Table:
        """A part's ``table`` with positions into other tables moved past the rows of
        the parts ``before`` it (none by default)."""
        return table

    def _merged_table(self, name: str, pieces: list[pa.Table]) -> pa.Table:
        """The parts' pieces of table ``name`` as one."""
        if name.startswith("keys.") or name.startswith("store.") or name in dict(self._KEYED):
            return pa.concat_tables(pieces)
        return self._merged_progress(name, pieces)

    def _merged_progress(self, name: str, pieces: list[pa.Table]) -> pa.Table:
        """One-row tables of progress: each column's highest value (a part's watermark
        progress is the step's; the next arrival number after every part's)."""
        cols = {}
        for c in pieces[0].column_names:
            values = [v for t in pieces for v in t.column(c).to_pylist() if v is not None]
            cols[c] = pa.array([max(values) if values else None], pieces[0].schema.field(c).type)
        return pa.table(cols)


def _remapped(table: pa.Table, column: str, keep: np.ndarray, remap: np.ndarray) -> pa.Table:
    """The rows of ``table`` whose key id in ``column`` is kept, ids remapped (a row
    with an id outside the key index is dropped: a snapshot of the state has none)."""
    ids = np.asarray(table.column(column).to_numpy(), np.int64)
    inside = (ids >= 0) & (ids < keep.shape[0])
    rows = inside & keep[np.where(inside, ids, 0)]
    out = table.filter(pa.array(rows))
    i = out.schema.get_field_index(column)
    new = pa.array(remap[ids[rows]], out.schema.field(i).type)
    return out.set_column(i, out.schema.field(i), new)


def _shifted(table: pa.Table, column: str, by: int) -> pa.Table:
    if not by:
        return table
    i = table.schema.get_field_index(column)
    values = np.asarray(table.column(column).to_numpy(), np.int64) + by
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


class PaneState(_WindowState):
    """The panes of tumbling and hopping windows: one slot per (pane, key) with data
    (``slot_pane``, ``slot_key`` and the slot's aggregate fields in ``slots``), the
    revisions emitted per (window, key), n_unique's distinct (pane, key, value) rows,
    and the watermark progress: the last window fired, the highest pane seen, and the
    pane below which slots are free."""

    _KEYED = (("slots", "key"), ("revisions", "key"), ("distinct", "__k"))
    _SLOTS = "slots"

    def __init__(self, config: WindowStateConfig) -> None:
        super().__init__(config)
        self.n_slots = 0
        self.slot_pane = np.zeros(0, np.int64)
        self.slot_key = np.zeros(0, np.int32)
        self.fired_k: int | None = None  # windows with index <= fired_k have fired
        self.free_below = _MIN  # slots of panes below this are free (dropped lazily)
        self.max_pane: int | None = None
        # revisions: emissions so far per (window index, key), while the window is kept
        self.rev = pl.DataFrame(schema=_REV_SCHEMA)
        self.distinct: list[pl.DataFrame] = []  # n_unique: distinct (pane, key, value)

    def reserve(self, need: int) -> int:
        """Room for ``need`` slots; the new capacity (0: unchanged)."""
        cap = self.slots.grow_arrays(need)
        if cap:
            self.slot_pane = grown(self.slot_pane, cap)
            self.slot_key = grown(self.slot_key, cap)
        return cap

    def snapshot(self) -> dict[str, pa.Table]:
        """The live slots (``pane``, ``key`` and the named fields), the revisions, the
        distinct rows of n_unique, the progress, the key index and the value stores."""
        m = self.n_slots
        live = np.flatnonzero(self.slot_pane[:m] >= self.free_below)
        cols: dict[str, np.ndarray] = {"pane": self.slot_pane[live], "key": self.slot_key[live]}
        cols.update(self._fields_of(live))
        progress = pa.table(
            {
                "fired_k": pa.array([self.fired_k], pa.int64()),
                "max_pane": pa.array([self.max_pane], pa.int64()),
                "seq": pa.array([self.seq], pa.int64()),
            }
        )
        out = {"slots": pa.table(cols), "revisions": self.rev.to_arrow(), "counters": progress}
        if self.distinct:
            out["distinct"] = pl.concat(self.distinct).unique().to_arrow()
        return self._common(out)

    def restore(self, tables: dict[str, pa.Table]) -> None:
        """Take back a :meth:`snapshot`. The tables are untrusted (DESIGN.md "Untrusted
        input"): every value a kernel indexes with (key ids, panes, the values' store
        positions) is checked first, vectorised, and a bad one raises
        :class:`~vstream.errors.CheckpointError` naming the table, the column and what
        is wrong."""
        c = self.config
        step = c.step
        self._restore_common(tables)
        slots = StateTable(step, tables, "slots")
        m = slots.rows
        n_keys = self.n_keys()
        lo, hi = c.times
        p_lo, p_hi = (lo - c.offset) // c.pane, (hi - c.offset) // c.pane
        span = f"panes of the event times the step takes: {p_lo}..{p_hi}"
        key_why = f"ids of the {n_keys} keys of the key index"
        panes = slots.ints("pane", p_lo, p_hi, span)
        keys = slots.ints("key", 0, n_keys - 1, key_why)
        slots.distinct({"pane": panes, "key": keys}, "one slot a pane and key")
        rev_t = StateTable(step, tables, "revisions")
        k_lo, k_hi = (p_lo - c.n) // c.s, p_hi // c.s + 1
        windows = rev_t.ints("window", k_lo, k_hi, f"window numbers {k_lo}..{k_hi}")
        rev_keys = rev_t.ints("key", 0, n_keys - 1, key_why)
        rev_t.ints("emitted", 0)
        rev_t.distinct({"window": windows, "key": rev_keys}, "one count a window and key")
        prog = StateTable(step, tables, "counters")
        if prog.rows != 1:
            prog.refuse("fired_k", f"{prog.rows} rows, not 1")
        seq = int(prog.ints("seq", 0)[0])
        meta = prog.table.to_pylist()[0]
        fired_k, max_pane = meta.get("fired_k"), meta.get("max_pane")
        for name, v in (("fired_k", fired_k), ("max_pane", max_pane)):
            if v is not None and not isinstance(v, int):
                prog.refuse(name, f"{v!r} is not an integer")
        if m and (max_pane is None or max_pane < int(panes.max())):
            prog.refuse("max_pane", f"{max_pane} is below the slots' pane {panes.max()}")
        if max_pane is not None and not p_lo <= max_pane <= p_hi:
            prog.refuse("max_pane", f"{max_pane} is not one of the {span}")
        # the last window fired follows the watermark, which other inputs or the wall
        # clock may take past the event times the step takes: any int64 watermark's
        w_lo = ((_MIN - c.offset) // c.pane - c.n) // c.s
        w_hi = (_I64_MAX - c.offset) // c.pane // c.s
        if fired_k is not None and not w_lo <= fired_k <= w_hi:
            prog.refuse("fired_k", f"{fired_k} is no watermark's window: {w_lo}..{w_hi}")
        distinct = None
        if "distinct" in tables:
            d = StateTable(step, tables, "distinct")
            d.ints("__p", p_lo, p_hi, span)
            d.ints("__k", 0, n_keys - 1, key_why)
            distinct = pl.DataFrame(d.table)
        # checked: into the arrays
        self.n_slots = 0
        self.reserve(m)
        self.slot_pane[:m] = panes
        self.slot_key[:m] = keys
        self._checked_fields(slots)
        self.n_slots = m
        self.free_below = _MIN  # the snapshot holds live slots only
        self.rev = pl.DataFrame(rev_t.table, schema=_REV_SCHEMA)
        self.fired_k, self.max_pane, self.seq = fired_k, max_pane, seq
        self.distinct = [distinct] if distinct is not None else []


#: the session arrays, one entry a slot
SESSION_ARRAYS = ("nxt", "s_key", "s_start", "s_end", "s_rev", "s_final", "s_dirty", "free")


class SessionState(_WindowState):
    """Session windows: per key a linked list of live sessions (``head`` per key id,
    ``nxt`` per slot) with their bounds, emissions so far, whether they fired and
    changed since, the free slots, and n_unique's distinct (slot, value) rows."""

    _KEYED = (("sessions", "key"),)
    _SLOTS = "sessions"

    def __init__(self, config: WindowStateConfig) -> None:
        super().__init__(config)
        self.head = np.full(0, -1, np.int32)
        self.cap = 0
        self.nxt = np.zeros(0, np.int32)
        self.s_key = np.zeros(0, np.int32)
        self.s_start = np.zeros(0, np.int64)
        self.s_end = np.zeros(0, np.int64)
        self.s_rev = np.zeros(0, np.int64)
        self.s_final = np.zeros(0, np.bool_)
        self.s_dirty = np.zeros(0, np.bool_)
        self.free = np.zeros(0, np.int32)
        self.counters = np.zeros(3, np.int64)  # free slots, slots used, late rows
        self.next_end = _I64_MAX
        self.distinct: pl.DataFrame | None = None

    def reserve(self, more: int) -> None:
        """Room for ``more`` sessions, and a head for every key id."""
        need = int(self.counters[1]) + more
        cap = self.slots.grow_arrays(need)
        if cap:
            for name in SESSION_ARRAYS:
                setattr(self, name, grown(getattr(self, name), cap))
            self.cap = cap
        nk = self.n_keys()
        if self.head.shape[0] < nk:
            size = max(1024, self.head.shape[0])
            while size < nk:
                size *= 2
            self.head = grown(self.head, size, -1)

    def live_order(self) -> np.ndarray:
        """The slots of the live sessions, key by key, each key's list from its head."""
        self.reserve(0)  # a head for every key
        n_live = int(self.counters[1] - self.counters[0])
        order: np.ndarray = session_order(self.head, self.nxt, self.n_keys(), n_live)
        return order

    def snapshot(self) -> dict[str, pa.Table]:
        """The live sessions in list order (``key``, ``start``, ``end``, ``emitted``,
        ``final``, ``dirty`` and the named fields), n_unique's rows by the session's
        position in that table, the progress, the key index and the value stores."""
        idx = self.live_order()
        cols: dict[str, np.ndarray] = {
            "key": self.s_key[idx],
            "start": self.s_start[idx],
            "end": self.s_end[idx],
            "emitted": self.s_rev[idx],
            "final": self.s_final[idx],
            "dirty": self.s_dirty[idx],
        }
        cols.update(self._fields_of(idx))
        out = {
            "sessions": pa.table(cols),
            "counters": pa.table({"seq": pa.array([self.seq], pa.int64())}),
        }
        if self.distinct is not None:
            # slots are renumbered on restore: store the session's position instead
            pos = np.full(max(self.cap, 1), -1, np.int64)
            pos[idx] = np.arange(len(idx))
            d = self.distinct.with_columns(__s=pl.Series(pos)[self.distinct["__s"]])
            out["distinct"] = d.to_arrow()
        return self._common(out)

    def restore(self, tables: dict[str, pa.Table]) -> None:
        """Take back a :meth:`snapshot`, checked as :meth:`PaneState.restore` is."""
        c = self.config
        step = c.step
        self._restore_common(tables)
        t = StateTable(step, tables, "sessions")
        m = t.rows
        n_keys = self.n_keys()
        gap = c.gap
        lo, hi = c.times
        keys = t.ints("key", 0, n_keys - 1, f"ids of the {n_keys} keys of the key index")
        start = t.ints("start", lo, hi, "a session starts at an event time the step takes")
        end = t.ints("end", lo + gap, hi + gap, "a session ends an event time + the gap")
        # end - start >= gap, without wrapping: the difference is exact as uint64
        short = (end < start) | ((end - start).view(np.uint64) < np.uint64(gap))
        if short.any():
            j = int(np.flatnonzero(short)[0])
            t.refuse("end", f"session {j} is [{start[j]}, {end[j]}), shorter than the gap {gap}")
        emitted = t.ints("emitted", -1, None, "emissions so far, -1: none")
        final, dirty = t.bools("final"), t.bools("dirty")
        prog = StateTable(step, tables, "counters")
        if prog.rows != 1:
            prog.refuse("seq", f"{prog.rows} rows, not 1")
        seq = int(prog.ints("seq", 0)[0])
        distinct = None
        if "distinct" in tables:
            d = StateTable(step, tables, "distinct")
            pos = d.ints("__s", -1, m - 1, f"positions of the {m} sessions (-1: none)")
            # rows of sessions that were gone at the snapshot belong to none
            distinct = pl.DataFrame(d.table).filter(pl.Series(pos >= 0))
        # checked: into the arrays
        self.counters[:] = 0
        self.reserve(m)
        self.head[:] = -1
        self.s_key[:m] = keys
        self.s_start[:m] = start
        self.s_end[:m] = end
        self.s_rev[:m] = emitted
        self.s_final[:m] = final
        self.s_dirty[:m] = dirty
        self._checked_fields(t)
        # relink: each key's list in slot order, as the snapshot listed it (merges then
        # combine in the same order: the same floats); vectorised, by (key, slot)
        order = np.lexsort((np.arange(m), keys))
        first = np.ones(m, np.bool_)
        first[1:] = keys[order[1:]] != keys[order[:-1]]
        after = np.full(m, -1, np.int32)
        after[:-1] = np.where(first[1:], -1, order[1:])
        self.nxt[order] = after
        self.head[keys[order[first]]] = order[first]
        self.counters[1] = m
        self.distinct = distinct
        self.seq = seq
        # the next watermark with work (see session_fire): an end, or a lateness' end
        waiting = ~self.s_final[:m] | self.s_dirty[:m]
        due = np.where(waiting, self.s_end[:m], self.s_end[:m] + c.lateness)
        self.next_end = int(due.min()) if m else _I64_MAX

    def _part_tables(
        self, tables: dict[str, pa.Table], keep: np.ndarray, remap: np.ndarray
    ) -> dict[str, pa.Table]:
        out = super()._part_tables(tables, keep, remap)
        if "distinct" in tables:
            # n_unique's rows name sessions by position: the kept sessions' new ones
            ids = np.asarray(tables["sessions"].column("key").to_numpy(), np.int64)
            kept = keep[ids]
            pos = np.where(kept, np.cumsum(kept) - 1, -1)
            d = tables["distinct"]
            s = np.asarray(d.column("__s").to_numpy(), np.int64)
            inside = (s >= 0) & (s < pos.shape[0])
            moved = np.where(inside, pos[np.where(inside, s, 0)], -1)
            rows = moved >= 0
            d = d.filter(pa.array(rows))
            i = d.schema.get_field_index("__s")
            out["distinct"] = d.set_column(
                i, d.schema.field(i), pa.array(moved[rows], d.schema.field(i).type)
            )
        return out

    def _shift_positions(
        self, name: str, table: pa.Table, before: list[dict[str, pa.Table]]
    ) -> pa.Table:
        if name != "distinct":
            return table
        return _shifted(table, "__s", sum(b["sessions"].num_rows for b in before))

    def _merged_table(self, name: str, pieces: list[pa.Table]) -> pa.Table:
        if name == "distinct":
            return pa.concat_tables(pieces)
        return super()._merged_table(name, pieces)
