"""Struct-of-arrays aggregate state for windows (and joins later).

Aggregate fields are two matrices, ``F`` (float64) and ``I`` (int64), one row per field
and one column per slot; the kernels in :mod:`vstream.kernels.aggregate` update them. The
window operator snapshots the live columns as Arrow tables.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SlotStore", "grown", "grown_fields"]


class SlotStore:
    """Struct-of-arrays aggregate state, grown by doubling."""

    def __init__(self, nf: int, ni: int, init_f: np.ndarray, init_i: np.ndarray) -> None:
        self.cap = 0
        self.F = np.zeros((nf, 0), np.float64)
        self.I = np.zeros((ni, 0), np.int64)
        self.init_f = init_f
        self.init_i = init_i

    def grow_arrays(self, need: int) -> int:
        """Make room for ``need`` slots; returns the new capacity (0: unchanged)."""
        if need <= self.cap:
            return 0
        cap = max(1024, self.cap)
        while cap < need:
            cap *= 2
        self.F, self.I, self.cap = grown_fields(self.F, cap), grown_fields(self.I, cap), cap
        return cap


def grown(a: np.ndarray, cap: int, fill: int = 0) -> np.ndarray:
    out = np.full(cap, fill, a.dtype)
    out[: a.shape[0]] = a
    return out


def grown_fields(a: np.ndarray, cap: int) -> np.ndarray:
    """``a`` (fields x slots) with room for ``cap`` slots, the new ones zero."""
    out = np.zeros((a.shape[0], cap), a.dtype)
    out[:, : a.shape[1]] = a
    return out
