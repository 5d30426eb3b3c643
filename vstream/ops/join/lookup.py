"""The lookup join: events enriched from a static table or an update stream."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._dtypes import physical_int64
from vstream.kernels.hashing import dense_lookup
from vstream.ops.base import MAX_WM, Chunk
from vstream.ops.join.base import KID_COL, JoinOperator, gather_rows, key_frame
from vstream.plan.joins import JoinSetup
from vstream.state.slots import grown


class LookupJoinOp(JoinOperator):
    """Enrich each event with the row of a table for its key: a static table, or the
    latest row per key of an update stream (input 1), read up to its current end before
    each event batch. The output keeps the events' event time and watermark."""

    def __init__(self, name: str, setup: JoinSetup, *, updates: bool) -> None:
        self.n_inputs = 2 if updates else 1
        super().__init__(name, setup)
        self._rkeep = list(dict.fromkeys(src for src, _ in setup.right_out))
        self.rowmap = np.full(1024, -1, np.int64)
        self._key_cols = [f"__key_{i}__" for i in range(len(setup.left_keys))]
        self.payload = pl.DataFrame(
            schema={
                **{c: setup.schema[d] for c, d in setup.right_out},
                **dict(zip(self._key_cols, setup.key_schema.dtypes(), strict=True)),
            }
        )
        self._frames: list[pl.DataFrame] = []
        self._dense: np.ndarray | None = None
        self._dense_base = 0
        if setup.table is not None:
            self._update(setup.table)  # one row per key: checked when the join was built

    def state_rows(self) -> int:
        return self.payload.height + sum(f.height for f in self._frames)

    def _table(self) -> pl.DataFrame:
        if self._frames:
            self.payload = pl.concat([self.payload, *self._frames], rechunk=True)
            self._frames = []
        return self.payload

    def _update(self, df: pl.DataFrame) -> None:
        ids = self._key_ids(1, df)
        ok = ids >= 0
        if not ok.all():  # a table row with a null key matches nothing
            df, ids = df.filter(ok), ids[ok]
        if not df.height:
            return
        n_keys = self.n_keys
        if n_keys > self.rowmap.shape[0]:
            cap = self.rowmap.shape[0]
            while cap < n_keys:
                cap *= 2
            self.rowmap = grown(self.rowmap, cap, -1)
        base = self.state_rows()
        rev_ids = ids[::-1]
        uniq, first_rev = np.unique(rev_ids, return_index=True)
        self.rowmap[uniq] = base + (ids.size - 1 - first_rev)
        # the keys too (under the left names): a probe checks them on the rows it gathers
        keys = key_frame(df, self.setup.right_keys, self._key_cols)
        self._frames.append(pl.concat([df.select(self._rkeep), keys], how="horizontal"))
        live = int(np.count_nonzero(self.rowmap >= 0))
        if self.state_rows() > 2 * live + 65_536:
            self._compact()
        self._refresh_dense()

    def _refresh_dense(self) -> None:
        """For one integer key in a compact range (ids, codes): the table row of each key
        value in a flat array, so a probe is one cache-friendly read, not a hash probe."""
        self._dense = None
        known = self.keys.int_keys() if self.keys is not None else None
        if known is None or not len(known[0]):
            return
        values, null = known
        valid = ~null
        if not valid.any():
            return
        rows = self.rowmap[: values.size][valid]
        values = values[valid]
        lo, hi = int(values.min()), int(values.max())
        if hi - lo >= 4 * values.size + 65_536 or rows.max(initial=0) >= 2**31:
            return
        dense = np.full(hi - lo + 1, -1, np.int32)
        dense[values - lo] = rows
        self._dense, self._dense_base = dense, lo

    def _compact(self) -> None:
        table = self._table()
        used = np.flatnonzero(self.rowmap >= 0)
        rows = self.rowmap[used]
        self.payload = table[rows]
        self.rowmap[used] = np.arange(used.size)
        self._refresh_dense()

    def process(self, port: int, chunk: Chunk | None, watermark: int) -> tuple[list[Chunk], int]:
        out: list[Chunk] = []
        if chunk is not None and chunk.df.height:
            if port == 1:
                self._update(chunk.df)
            else:
                out.append(Chunk(self._probe(chunk.df), chunk.split))
        self._in_wm[port] = max(self._in_wm[port], watermark)
        if port == 0:
            self._out_wm = max(self._out_wm, self._in_wm[0])
            if self._in_wm[0] == MAX_WM:
                self.done = True
        self.peak_state_rows = max(self.peak_state_rows, self.state_rows())
        return out, self._out_wm

    def _probe(self, df: pl.DataFrame) -> pl.DataFrame:
        st = self.setup
        assert self.keys is not None
        if self._dense is not None:
            col = df.get_column(st.left_keys[0])
            nulls = col.null_count()
            values = physical_int64(col.fill_null(self._dense_base - 1) if nulls else col)
            rows = dense_lookup(values, np.int64(self._dense_base), self._dense)
            if nulls:
                rows[col.is_null().to_numpy()] = -1
        else:
            # hashed keys: found without the index's own check, which would gather the
            # stored keys; the table rows gathered below carry the keys to compare
            ids = self.keys.find(df.select(st.left_keys), exact=False)
            rows = np.where(ids >= 0, self.rowmap[np.maximum(ids, 0)], -1)
        if st.how == "inner":
            hit = rows >= 0
            if not hit.all():
                df, rows = df.filter(hit), rows[hit]
        right = gather_rows(self._table(), rows)
        if self._dense is None and self.keys.hashed:
            same = right.select(
                pl.all_horizontal(
                    pl.col(k).eq_missing(df.get_column(c))
                    for k, c in zip(self._key_cols, st.left_keys, strict=True)
                )
            ).to_series()
            wrong = (rows >= 0) & ~same.to_numpy()
            if wrong.any():  # an unknown key shares a known key's hash: no match
                rows[wrong] = -1
                if st.how == "inner":
                    df, rows = df.filter(~wrong), rows[~wrong]
                right = gather_rows(self._table(), rows)
        return self._assemble(df, right, df.height)

    def snapshot(self) -> dict[str, pa.Table]:
        out = self._base_snapshot()
        table = self._table()
        used = np.flatnonzero(self.rowmap >= 0)
        rows = table[self.rowmap[used]] if used.size else table.clear()
        out["table"] = rows.with_columns(pl.Series(KID_COL, used.astype(np.int32))).to_arrow()
        return out

    def restore(self, state: dict[str, pa.Table]) -> None:
        self._base_restore(state, ["table"])
        table = pl.DataFrame(state["table"])
        kid = table.get_column(KID_COL).to_numpy().astype(np.int64)
        self.rowmap = np.full(max(1024, self.n_keys), -1, np.int64)
        self.rowmap[kid] = np.arange(kid.size)
        self.payload = table.drop(KID_COL)
        self._refresh_dense()
        self._frames = []
