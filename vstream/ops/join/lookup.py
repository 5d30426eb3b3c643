"""The lookup join: events enriched from a static table or an update stream."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._dtypes import physical_int64
from vstream.kernels.hashing import dense_lookup
from vstream.ops.base import MAX_WM, Chunk
from vstream.ops.join.base import JoinOperator, gather_rows, key_frame, new_key_index
from vstream.plan.joins import JoinSetup
from vstream.state.join import LookupJoinState


class LookupJoinOp(JoinOperator):
    """Enrich each event with the row of a table for its key: a static table, or the
    latest row per key of an update stream (input 1), read up to its current end before
    each event batch. The output keeps the events' event time and watermark."""

    state: LookupJoinState

    def __init__(self, name: str, setup: JoinSetup, *, updates: bool) -> None:
        self.n_inputs = 2 if updates else 1
        super().__init__(name, setup)
        self._rkeep = list(dict.fromkeys(src for src, _ in setup.right_out))
        self._key_cols = [f"__key_{i}__" for i in range(len(setup.left_keys))]
        schema = pl.Schema(
            {
                **{c: setup.schema[d] for c, d in setup.right_out},
                **dict(zip(self._key_cols, setup.key_schema.dtypes(), strict=True)),
            }
        )
        self.state = LookupJoinState(new_key_index(setup), schema)
        self._dense: np.ndarray | None = None
        self._dense_base = 0
        if setup.table is not None:
            self._update(setup.table)  # one row per key: checked when the join was built

    def state_rows(self) -> int:
        return self.state.table.rows()

    def _update(self, df: pl.DataFrame) -> None:
        ids = self._key_ids(1, df)
        ok = ids >= 0
        if not ok.all():  # a table row with a null key matches nothing
            df, ids = df.filter(ok), ids[ok]
        if not df.height:
            return
        # the keys too (under the left names): a probe checks them on the rows it gathers
        keys = key_frame(df, self.setup.right_keys, self._key_cols)
        rows = pl.concat([df.select(self._rkeep), keys], how="horizontal")
        self.state.table.put(ids, rows, self.n_keys)
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
        rows = self.state.table.rowmap[: values.size][valid]
        values = values[valid]
        lo, hi = int(values.min()), int(values.max())
        if hi - lo >= 4 * values.size + 65_536 or rows.max(initial=0) >= 2**31:
            return
        dense = np.full(hi - lo + 1, -1, np.int32)
        dense[values - lo] = rows
        self._dense, self._dense_base = dense, lo

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
            rowmap = self.state.table.rowmap
            rows = np.where(ids >= 0, rowmap[np.maximum(ids, 0)], -1)
        if st.how == "inner":
            hit = rows >= 0
            if not hit.all():
                df, rows = df.filter(hit), rows[hit]
        right = gather_rows(self.state.table.table(), rows)
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
                right = gather_rows(self.state.table.table(), rows)
        return self._assemble(df, right, df.height)

    def snapshot(self) -> dict[str, pa.Table]:
        return self._base_snapshot()

    def restore(self, state: dict[str, pa.Table]) -> None:
        self._base_restore(state, [])
        self._refresh_dense()
