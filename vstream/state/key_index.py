"""The persistent key index: group keys (one or more columns) to dense int32 ids.

Window and join state is struct-of-arrays indexed by these ids. One integer-like key
column (ints, booleans, dates, datetimes, durations) goes through a numba hash table
directly. Other keys (strings, categoricals, several columns) are hashed to 64 bits
(one String column's strings of at most 12 bytes in numba from their Arrow views, the
rest by the stable key hash of :mod:`vstream.kernels.keyhash`) and the hashes go through
the same table; every row's key is then checked against
the key stored for its id (vectorised, exact), and should two keys ever share a hash the
index switches for good to Polars joins over each batch's distinct keys. Never a Python
loop over rows. A null key is a key like any other (its own
group, as in Polars). Ids are dense, assigned in order of first sight (a null integer key
after the other new keys of its batch); :meth:`KeyIndex.compacted` makes an index of the
live keys only, numbered again, for state whose keys come and go;
:meth:`KeyIndex.key_groups` the key group of every id, from the stable key hash (the
same in every process and run), by which keyed state is split into partitions.
"""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np
import polars as pl
import pyarrow as pa

from vstream._dtypes import integer_like, numpy_int, physical_int64
from vstream.errors import SchemaError, VStreamError
from vstream.kernels.hashing import (
    assign_from,
    dense_lookup,
    find_ids,
    first_rows,
    gather_keys,
    gather_views,
    insert_pairs,
    new_table,
    rehash,
    views_equal,
    views_hash,
)
from vstream.kernels.keyhash import (
    DEFAULT_KEY_GROUPS,
    ROW_SEED,
    combine_cells,
    hashable,
    int_cells,
    key_group,
    key_hash,
)
from vstream.state.slots import StateTable

__all__ = ["KeyIndex"]


def _views(s: pl.Series) -> np.ndarray | None:
    """The Arrow string views of a String Series in one chunk without nulls, as pairs of
    uint64 words (zero-copy; see :func:`vstream.kernels.hashing.views_equal`), else
    None."""
    got = _view_buffers(s)
    return None if got is None else got[0]


def _view_buffers(s: pl.Series) -> tuple[np.ndarray, list[pa.Buffer]] | None:
    """:func:`_views` and the data buffers the views of longer strings point into."""
    if s.dtype != pl.String or s.null_count() or s.n_chunks() != 1 or not s.len():
        return None
    arr = s.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks != 1:
            return None
        arr = arr.chunk(0)
    bufs = arr.buffers()
    if arr.type != pa.string_view() or not len(arr) or bufs[1] is None:
        return None
    words: np.ndarray = np.frombuffer(bufs[1], np.uint64)
    return words[2 * arr.offset : 2 * (arr.offset + len(arr))], bufs[2:]


_ID = "__vstream_key_id__"


def _stable_hash(keys: pl.DataFrame | pl.Series) -> np.ndarray:
    """The stable key hash of every row, as int64 (the hash table's key type)."""
    return key_hash(keys).view(np.int64)


def _no_null_match(keys: pl.DataFrame, ids: np.ndarray) -> None:
    """Set the id of keys with a null to -1 (in a join, nulls match nothing)."""
    if any(keys.get_column(c).null_count() for c in keys.columns):
        ids[keys.select(pl.any_horizontal(pl.all().is_null())).to_series().to_numpy()] = -1


class KeyIndex:
    """Maps the key columns of batches to dense int32 ids, across batches.

    Examples
    --------
    >>> from vstream.state.key_index import KeyIndex
    >>> import polars as pl
    >>> index = KeyIndex(pl.Schema({"host": pl.String}))
    >>> index.ids(pl.DataFrame({"host": ["a", "b", "a", None]})).tolist()
    [0, 1, 0, 2]
    >>> index.ids(pl.DataFrame({"host": ["c", "b"]})).tolist()
    [3, 1]
    >>> index.keys([3, 2])["host"].to_list()
    ['c', None]
    """

    def __init__(self, schema: pl.Schema) -> None:
        if not len(schema):
            msg = "a key index needs at least one key column"
            raise SchemaError(msg)
        self.schema = pl.Schema(schema)
        self.columns = list(self.schema.names())
        self._n = 0
        self._key_cache: (
            tuple[pl.DataFrame, pl.DataFrame, np.ndarray | None, list[pa.Buffer]] | None
        ) = None
        self._int = len(self.columns) == 1 and integer_like(self.schema.dtypes()[0])
        # a single integer key's numpy type (not UInt64, kept as int64 bits): gathered
        # from the ids directly while it has no nulls
        dtype0 = self.schema.dtypes()[0]
        self._key_np = numpy_int(dtype0) if self._int and dtype0 != pl.UInt64 else None
        self._typed_values: np.ndarray | None = None  # see key_values
        if self._int:
            size = 1024
            self._table = new_table(size)
            self._values = np.zeros(size // 2, np.int64)  # key of each id
            self._null = np.zeros(size // 2, np.bool_)  # whether id is the null key
            self._null_id = -1
            # keys in a compact range (ids, codes): id = _dense[key - _dense_base], a
            # direct read instead of a hash probe (-1: not a key yet)
            self._dense: np.ndarray | None = None
            self._dense_base = 0
            # the smallest and largest non-null key: whether they fit a dense array is
            # then known without a pass over every key
            self._lo = np.iinfo(np.int64).max
            self._hi = np.iinfo(np.int64).min
        else:
            # key rows in id order (row i is id i); used to check hashes and by keys()
            self._known = pl.DataFrame(schema={**self.schema, _ID: pl.Int32})
            # False after a hash collision (joins from then on), or from the start for
            # a key dtype without a stable hash
            self._hashed = all(hashable(dt) for dt in self.schema.dtypes())
            self._added = 0  # keys appended to _known since it was last one chunk
            size = 1024
            self._table = new_table(size)

    def __len__(self) -> int:
        return self._n

    # ------------------------------------------------------------------ lookups
    def ids(self, df: pl.DataFrame, *, nulls_match: bool = True) -> np.ndarray:
        """The id of every row's key (new keys get new ids). With ``nulls_match=False``
        (joins) a key with a null gets -1."""
        self._check(df)
        if df.height == 0:
            return np.empty(0, np.int32)
        if self._int:
            col = df.get_column(self.columns[0])
            ids = self._int_ids(col)
            if not nulls_match and col.null_count():
                ids[col.is_null().to_numpy()] = -1
            return ids
        keys = self._keys_of(df)
        got = self._hashed_ids(keys) if self._hashed else None
        ids = got if got is not None else self._general_ids(keys)
        if not nulls_match:
            _no_null_match(keys, ids)
        return ids

    def _check(self, df: pl.DataFrame) -> None:
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            msg = f"key index: the batch lacks the key column(s) {missing}"
            raise SchemaError(msg)

    def int_keys(self) -> tuple[np.ndarray, np.ndarray] | None:
        """For one integer-like key column: the key of each id as int64 and whether it is
        the null key (None for other keys)."""
        if not self._int:
            return None
        return self._values[: self._n], self._null[: self._n]

    @property
    def hashed(self) -> bool:
        """Whether lookups go through 64-bit hashes of the keys (strings, several
        columns) rather than the key itself (one integer-like column)."""
        return not self._int and self._hashed

    def find(self, df: pl.DataFrame, *, exact: bool = True) -> np.ndarray:
        """The id of every row's key, or -1 where the key is unknown or has a null (as in
        a join, nulls match nothing). Nothing is inserted.

        With ``exact=False`` an id found through a hash of string or multi-column keys is
        not checked against the stored key: an unknown key whose 64-bit hash equals a
        known key's gets that id. The caller must then compare the keys itself (a lookup
        join does, on the table rows it gathers anyway).

        Examples
        --------
        >>> from vstream.state.key_index import KeyIndex
        >>> import polars as pl
        >>> index = KeyIndex(pl.Schema({"k": pl.Int64}))
        >>> index.ids(pl.DataFrame({"k": [5, 7]})).tolist()
        [0, 1]
        >>> index.find(pl.DataFrame({"k": [7, None, 9]})).tolist()
        [1, -1, -1]
        """
        self._check(df)
        if df.height == 0:
            return np.empty(0, np.int32)
        if self._int:
            s = df.get_column(self.columns[0])
            if not s.null_count():
                return find_ids(self._table, physical_int64(s))
            out = np.full(s.len(), -1, np.int32)
            out[~s.is_null().to_numpy()] = find_ids(self._table, physical_int64(s.drop_nulls()))
            return out
        keys = self._keys_of(df)
        if self._hashed:
            ids = find_ids(self._table, self._hash(keys))
            hit = ids >= 0
            if exact and hit.any():
                # a hash shared by a known key and an unknown one: only exact keys match
                self._gatherable(keys.height)
                taken = pl.Series(np.where(hit, ids, 0).astype(np.uint32))
                stored = self._key_columns()[taken]
                same = (
                    pl.DataFrame(
                        [stored.get_column(c).eq_missing(keys.get_column(c)) for c in self.columns]
                    )
                    .select(pl.all_horizontal(pl.all()))
                    .to_series()
                    .to_numpy()
                )
                ids[hit & ~same] = -1
        else:
            mapped = keys.join(
                self._known, on=self.columns, how="left", nulls_equal=True, maintain_order="left"
            )
            ids = mapped.get_column(_ID).fill_null(-1).to_numpy().astype(np.int32)
        _no_null_match(keys, ids)
        return ids

    def _grow(self, more: int) -> None:
        need = self._n + more + 1
        size = self._table.shape[0]
        if size >= 2 * need:
            return
        while size < 2 * need:
            size *= 2
        self._table = rehash(self._table, size)
        if not self._int:
            return
        for name in ("_values", "_null"):
            old = getattr(self, name)
            new = np.zeros(size // 2, old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def _table_ids(self, keys: np.ndarray) -> tuple[np.ndarray, int]:
        """The ids of int64 keys (integers or string hashes) through the hash table, and
        the next id; new keys are numbered in order of first sight. The table doubles
        whenever new keys fill half of it."""
        keys = np.ascontiguousarray(keys, np.int64)
        ids = np.empty(keys.shape[0], np.int32)
        first, r, n = self._n, 0, self._n
        while True:
            r, n = assign_from(self._table, keys, ids, n, r)
            if r == keys.shape[0]:
                break
            self._n = n
            self._grow(max(n, 1024))
        self._n = first
        return ids, n

    def dense_keys(self, df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, int] | None:
        """For a single integer key in a compact range and a batch without null keys: the
        batch's keys as integers (zero-copy where they are signed), the dense id array
        and its base, ``id = dense[key - base]`` (-1: a key without an id yet, which
        :meth:`ids_of` gives). None otherwise. For kernels that look the ids up
        themselves instead of a pass of their own."""
        if not self._int or self._dense is None:
            return None
        col = df.get_column(self.columns[0])
        if col.null_count():
            return None
        return self._int_values(col), self._dense, self._dense_base

    def ids_of(self, keys: np.ndarray) -> np.ndarray:
        """The ids of integer keys (no nulls; as :meth:`dense_keys` gives them), new keys
        getting new ids."""
        if self._dense is None:
            return self._assign(keys.astype(np.int64, copy=False))
        ids = dense_lookup(keys, np.int64(self._dense_base), self._dense)
        if ids.size and ids.min() < 0:
            # new keys (new auctions, sessions, ...): only they go through the table
            missing = np.flatnonzero(ids < 0)
            ids[missing] = self._assign(keys[missing].astype(np.int64, copy=False))
        return ids

    def _int_values(self, s: pl.Series) -> np.ndarray:
        # signed integers as they are (zero-copy): widening Q1's Int32 host ids to int64
        # first cost as much as the lookup
        return s.to_numpy() if s.dtype.is_signed_integer() else physical_int64(s)

    def _int_ids(self, s: pl.Series) -> np.ndarray:
        nulls = s.null_count()
        valid = s.drop_nulls() if nulls else s
        if self._dense is not None:
            ids = self.ids_of(self._int_values(valid))
        else:
            ids = self._assign(physical_int64(valid))
        if not nulls:
            return ids
        if self._null_id < 0:
            self._grow(1)
            self._null_id = self._n
            self._null[self._n] = True
            self._n += 1
        out = np.full(s.len(), self._null_id, np.int32)
        out[~s.is_null().to_numpy()] = ids
        return out

    def _assign(self, keys: np.ndarray) -> np.ndarray:
        """Ids of integer keys through the hash table, new keys getting new ids."""
        first_new = self._n
        ids, self._n = self._table_ids(keys)
        if self._n > first_new:
            # remember the key of each new id (for keys()); new ids are first_new..
            rows = first_rows(ids, np.int64(first_new), np.int64(self._n - first_new))
            self._values[first_new : self._n] = keys[rows]
            self._add_dense(first_new)
        return ids

    def _add_dense(self, first_new: int) -> None:
        """Put ids ``first_new..`` in the dense array; rebuild or drop it if the key range
        no longer fits (it must stay within a few times the number of keys)."""
        new = np.arange(first_new, self._n)
        new = new[~self._null[new]]
        values = self._values[new]
        if not values.size:
            return
        dense, base = self._dense, self._dense_base
        self._lo = min(self._lo, int(values.min()))
        self._hi = max(self._hi, int(values.max()))
        if dense is not None and self._lo >= base and self._hi < base + dense.shape[0]:
            dense[values - base] = new
            return
        lo, span = self._lo, self._hi - self._lo + 1
        count = self._n - int(self._null_id >= 0)
        if span > 4 * count + 65_536:
            self._dense = None  # prices, hashes: no dense array (found without a pass)
            return
        known = np.flatnonzero(~self._null[: self._n])
        every = self._values[known]
        # room to grow upwards (new ids, sequence numbers) before the next rebuild
        self._dense = np.full(min(2 * span, 8 * every.size + 131_072), -1, np.int32)
        self._dense[every - lo] = known
        self._dense_base = lo

    def _hash(self, keys: pl.DataFrame, views: np.ndarray | None = None) -> np.ndarray:
        """64-bit hashes of the key rows. One String column: strings of at most 12
        bytes are hashed from their Arrow views (``views``, or read here) by
        :func:`~vstream.kernels.hashing.views_hash`, longer ones and nulls by the stable
        :func:`~vstream.kernels.keyhash.key_hash`; every other key by the latter. The
        table only needs the function to be the same within a run (a restore hashes the
        known keys again); neither depends on Polars' hash."""
        if keys.width == 1 and self.schema.dtypes()[0] == pl.String:
            s = keys.to_series()
            if views is None:
                views = _views(s)
            if views is not None:  # one chunk, no nulls
                out = np.empty(s.len(), np.int64)
                rest = views_hash(views, out)
                if rest.size:
                    # the stable hash of every row, not a gather of the long ones: its
                    # pass over the inline views costs less than Polars' gather
                    out[rest] = _stable_hash(s)[rest]
                return out
            if s.len() and (s.null_count() or s.n_chunks() > 1):
                # the non-null rows in one chunk go through the views; nulls hashed apart
                null = s.is_null().to_numpy()
                out = np.empty(s.len(), np.int64)
                if null.any():
                    out[null] = _stable_hash(s.filter(pl.Series(null)))
                if not null.all():
                    out[~null] = self._hash(s.filter(pl.Series(~null)).rechunk().to_frame())
                return out
        return _stable_hash(keys)

    def _keys_of(self, df: pl.DataFrame) -> pl.DataFrame:
        """The key columns of ``df`` (one column: without a Polars select, ~25 µs)."""
        if len(self.columns) == 1:
            return df.get_column(self.columns[0]).to_frame()
        return df.select(self.columns)

    def _key_columns(self) -> pl.DataFrame:
        """The known keys without their ids, made once per version of ``_known`` (a
        select each time cost ~0.1 ms, twice a batch with string keys)."""
        return self._known_version()[1]

    def _known_version(
        self,
    ) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray | None, list[pa.Buffer]]:
        cached = self._key_cache
        if cached is None or cached[0] is not self._known:
            keys = self._keys_of(self._known)
            got = _view_buffers(keys.to_series()) if keys.width == 1 else None
            views, data = got if got is not None else (None, [])
            cached = (self._known, keys, views, data)
            self._key_cache = cached
        return cached

    def _same_views(
        self, keys: pl.DataFrame, ids: np.ndarray, batch: np.ndarray | None = None
    ) -> bool:
        """True if every row of a one-column String batch is, byte for byte, the known
        key of its id, decided on the Arrow string views alone (all of at most 12 bytes,
        no nulls). False: undecided, the caller compares in Polars. Polars' gather and
        ``eq_missing`` cost ~0.5 ms a 65,536-row batch; this ~0.1 ms."""
        known = self._known_version()[2]
        if batch is None and keys.width == 1:
            batch = _views(keys.to_series())
        if known is None or batch is None:
            return False
        return bool(views_equal(batch, known, ids) == 0)

    def _gatherable(self, rows: int) -> None:
        """Make the known keys one chunk before gathering ``rows`` of them, when that is
        worth it: Polars gathers from a chunked string column ~10x slower, and a rechunk
        copies every key (done at once while the index is small against the batches,
        else once the keys added since make up 1/64 of them: amortized O(1) a key)."""
        if self._known.n_chunks() > 1 and (8 * rows >= self._n or 64 * self._added >= self._n):
            self._known = self._known.rechunk()
            self._added = 0

    def _hashed_ids(self, keys: pl.DataFrame) -> np.ndarray | None:
        """Ids through the hash table; None (and joins from now on) on a collision."""
        views = _views(keys.to_series()) if keys.width == 1 else None
        hashes = self._hash(keys, views)
        first_new = self._n
        ids, n = self._table_ids(hashes)
        if n > first_new:
            rows = first_rows(ids, np.int64(first_new), np.int64(n - first_new))
            new = keys[rows].with_columns(pl.int_range(first_new, n, dtype=pl.Int32).alias(_ID))
            self._known = pl.concat([self._known, new], how="vertical")
            self._added += new.height
            self._n = n
        self._gatherable(keys.height)
        if self._same_views(keys, ids, views):
            return ids
        stored = self._key_columns()[pl.Series(ids.astype(np.uint32))]
        same = all(stored.get_column(c).eq_missing(keys.get_column(c)).all() for c in self.columns)
        if same:
            return ids
        # two keys share a hash: the table cannot hold both; ids given so far stay valid
        # (each stored key has its own id), and joins take over
        self._hashed = False
        return None

    def _general_ids(self, keys: pl.DataFrame) -> np.ndarray:
        distinct = keys.unique(maintain_order=True)
        seen = distinct.join(
            self._known, on=self.columns, how="left", nulls_equal=True, maintain_order="left"
        )
        new = seen.filter(pl.col(_ID).is_null()).drop(_ID)
        if new.height:
            new = new.with_columns(
                pl.int_range(self._n, self._n + new.height, dtype=pl.Int32).alias(_ID)
            )
            self._known = pl.concat([self._known, new], how="vertical")
            self._added += new.height
            self._n += new.height
        mapped = keys.join(
            self._known, on=self.columns, how="left", nulls_equal=True, maintain_order="left"
        )
        return mapped.get_column(_ID).to_numpy().astype(np.int32, copy=False)

    def key_values(self) -> np.ndarray | None:
        """The key of every id, ``values[id]``, as an array of the key's own numpy type
        (a single integer key without nulls, not UInt64), for kernels that gather keys
        themselves; None for other keys. Made again only when keys were added."""
        if self._key_np is None or self._null_id >= 0:
            return None
        if self._typed_values is None or self._typed_values.shape[0] != self._n:
            self._typed_values = self._values[: self._n].astype(self._key_np)
        return self._typed_values

    def key_columns(self, ids: np.ndarray) -> list[pl.Series]:
        """The key columns for ``ids``, as :meth:`keys` gives them but without a frame
        (the window step puts them into its output frame: ~20 µs a firing)."""
        if self._key_np is not None and self._null_id < 0:
            return [self._gathered(ids, self._key_np)]
        return list(self.keys(ids).iter_columns())

    def _gathered(self, idx: np.ndarray, typed: Any) -> pl.Series:
        # the key's own type, gathered and checked in one pass
        out = np.empty(idx.size, typed)
        if not gather_keys(self._values, idx, self._n, out):
            self._bad_ids(idx)
        return pl.Series(self.columns[0], out)

    def keys(self, ids: np.ndarray | list[int]) -> pl.DataFrame:
        """The key columns for ``ids`` (e.g. to label window results)."""
        idx = np.asarray(ids)
        if idx.dtype.kind not in "iu":
            idx = idx.astype(np.int64)
        name, dtype = self.columns[0], self.schema.dtypes()[0]
        if self._key_np is not None and self._null_id < 0:
            return pl.DataFrame([self._gathered(idx, self._key_np)])
        typed = numpy_int(dtype) if self._int and self._null_id < 0 else None
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            self._bad_ids(idx)
        if not self._int:
            # rows of _known are in id order: a gather (as a numpy index, never a list)
            self._gatherable(idx.size)
            known = self._key_columns()
            if not idx.size:
                return known.clear()
            if known.width == 1:
                _, _, views, data = self._known_version()
                if views is not None:
                    # the keys' Arrow views gathered in numba (~45 µs for 62 k of 10 k
                    # host names, ~100-280 µs in Polars), pointing into the same buffers
                    picked = gather_views(views, idx)
                    arr = pa.Array.from_buffers(
                        pa.string_view(), idx.size, [None, pa.py_buffer(picked), *data]
                    )
                    return pl.DataFrame([pl.Series(name, arr)])
                # a Series indexed by a numpy array gathers ~2.5x faster than the frame
                # (62 k of 10 k host names: ~60 against ~150 µs)
                return pl.DataFrame([known.to_series()[idx]])
            return known[idx]
        values = self._values[idx]
        if dtype == pl.UInt64:
            values = values.view(np.uint64)
        if typed is not None:  # UInt64, reinterpreted above
            return pl.DataFrame([pl.Series(name, values)])
        if self._null_id >= 0:
            col = pl.Series(name, pa.array(values, mask=self._null[idx]))
        else:
            col = pl.Series(name, values)
        if dtype == pl.Boolean:
            col = col.cast(pl.Int8)
        return pl.DataFrame([col.cast(dtype)])

    def key_groups(self, n_groups: int = DEFAULT_KEY_GROUPS) -> np.ndarray:
        """The key group (int32, in ``[0, n_groups)``) of every id, ``groups[id]``: from
        the stable hash of its key (:mod:`vstream.kernels.keyhash`), so a key is in the
        same group in every process, on every machine and on every run. An integer-like
        key hashes as its int64 value, as :func:`~vstream.kernels.keyhash.key_hash` of
        the key column does.

        Examples
        --------
        >>> from vstream.state.key_index import KeyIndex
        >>> import polars as pl
        >>> from vstream.kernels.keyhash import key_group, key_hash
        >>> df = pl.DataFrame({"host": ["a", "b", "a", None]})
        >>> index = KeyIndex(df.schema)
        >>> ids = index.ids(df)
        >>> groups = index.key_groups(128)
        >>> (groups[ids] == key_group(key_hash(df), 128)).all()
        np.True_
        """
        if self._int:
            n = self._n
            h = np.full(n, ROW_SEED, np.uint64)
            combine_cells(h, int_cells(self._values[:n]), ~self._null[:n])
        else:
            self._gatherable(self._n)
            h = key_hash(self._key_columns())
        return key_group(h, n_groups)

    def _bad_ids(self, idx: np.ndarray) -> NoReturn:
        msg = f"key index: ids must be in [0, {self._n}), got {idx.min()}..{idx.max()}"
        raise VStreamError(msg)

    def compacted(self, keep: np.ndarray) -> tuple[KeyIndex, np.ndarray]:
        """An index of only the keys with ids ``keep`` (new ids 0..len(keep) - 1, in that
        order but for a null integer key, numbered last), and the map from old ids to new
        ones (-1: dropped). State keyed by ids whose keys
        come and go (request ids in a join) renumbers with it to stay bounded.

        Examples
        --------
        >>> from vstream.state.key_index import KeyIndex
        >>> import numpy as np, polars as pl
        >>> index = KeyIndex(pl.Schema({"k": pl.String}))
        >>> index.ids(pl.DataFrame({"k": ["a", "b", "c"]})).tolist()
        [0, 1, 2]
        >>> small, remap = index.compacted(np.array([2, 0]))
        >>> remap.tolist(), small.ids(pl.DataFrame({"k": ["a", "c", "d"]})).tolist()
        ([1, -1, 0], [1, 0, 2])
        """
        keep = np.asarray(keep, np.int64)
        fresh = KeyIndex(self.schema)
        # room for the keys to come until the next compaction (joins compact at 2x the
        # live keys): growing from empty again rehashed 66 times in Nexmark q7
        fresh._grow(2 * keep.size + 65_536)
        remap = np.full(self._n, -1, np.int32)
        if keep.size:
            # the ids the fresh index gave, not 0.. by position: an integer index numbers
            # a batch's null key after its other new keys
            remap[keep] = fresh.ids(self.keys(keep))
        return fresh, remap

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict[str, pa.Table]:
        """Every key with its id, as an Arrow table (``pl.read_ipc`` reads it back)."""
        keys = self.keys(np.arange(self._n)).with_columns(
            pl.Series(_ID, np.arange(self._n, dtype=np.int32))
        )
        return {"keys": keys.to_arrow()}

    def restore(self, state: dict[str, pa.Table], step: str = "key index") -> None:
        """Take back a :meth:`snapshot`: the same keys get the same ids.

        The table is untrusted (DESIGN.md "Untrusted input"): the ids must be 0..n-1,
        each once, and the keys distinct (one null key at most), or a
        :class:`~vstream.errors.CheckpointError` naming ``step`` says what is wrong
        (kernels index the key arrays with these ids, without bounds checks)."""
        if "keys" not in state:
            msg = f"key index: the snapshot lacks the 'keys' table (got {sorted(state)})"
            raise VStreamError(msg)
        check = StateTable(step, state, "keys")
        n = check.rows
        missing = [c for c in self.columns if c not in check.table.column_names]
        if missing:
            check.refuse(", ".join(missing), "missing: the key index has these key columns")
        ids = check.ints(_ID, 0, n - 1, f"the ids of {n} keys are 0..{n - 1}")
        if n:
            counts = np.bincount(ids, minlength=n)
            if (counts != 1).any():
                twice = int(np.flatnonzero(counts > 1)[0])
                check.refuse(_ID, f"id {twice} is given {int(counts[twice])} times (each once)")
        table = pl.from_arrow(check.table)
        assert isinstance(table, pl.DataFrame)
        fresh = KeyIndex(self.schema)
        if not fresh._int:
            known = table.select([*self.columns, _ID]).cast({_ID: pl.Int32}).sort(_ID)
            fresh._known = known
            fresh._n = known.height
            hashes = fresh._hash(known.select(self.columns)) if fresh._hashed else None
            # distinct hashes? a sort finds out in 50 ms for 1 M keys; np.unique (numpy
            # 2.4) took 0.6-0.8 s of a 1 M string-key restore
            ordered = None if hashes is None else np.sort(hashes)
            if (
                hashes is not None
                and ordered is not None
                and not (ordered[1:] == ordered[:-1]).any()
            ):
                fresh._grow(0)
                insert_pairs(fresh._table, hashes, known.get_column(_ID).to_numpy())
            else:  # a hash shared: by two keys (joins from now on), or by a key twice
                shared = known.filter(known.select(self.columns).is_duplicated())
                if shared.height:
                    row = shared.select(self.columns).row(0, named=True)
                    check.refuse(", ".join(self.columns), f"the key {row} is given two ids")
                fresh._hashed = False
        else:
            col = table.get_column(self.columns[0])
            ids = table.get_column(_ID).to_numpy().astype(np.int32)
            fresh._grow(table.height)
            valid = ~col.is_null().to_numpy()
            if (~valid).sum() > 1:
                check.refuse(self.columns[0], f"{(~valid).sum()} null keys (one at most)")
            keys = physical_int64(col.drop_nulls())
            insert_pairs(fresh._table, keys, ids[valid])
            fresh._values[ids[valid]] = keys
            if (~valid).any():
                fresh._null_id = int(ids[~valid][0])
                fresh._null[fresh._null_id] = True
            fresh._n = table.height
            fresh._add_dense(0)
            # a key given two ids keeps one in the dense array, or the first in the
            # table (found by a lookup): the other id differs (1 M keys: ~10 ms dense,
            # ~40 ms through the table, a sort ~50 ms)
            if fresh._dense is not None:
                found = fresh._dense[keys - fresh._dense_base]
            else:
                found = find_ids(fresh._table, keys)
            same = np.flatnonzero(found != ids[valid])
            if same.size:
                check.refuse(self.columns[0], f"the key {keys[same[0]]} is given two ids")
        self.__dict__.update(fresh.__dict__)
