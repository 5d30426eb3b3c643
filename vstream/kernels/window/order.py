"""Window kernels: rows sorted by (key, value), for firings and session updates."""

from __future__ import annotations

import numpy as np

from vstream.kernels._jit import njit

__all__: list[str] = []


@njit(cache=True, nogil=True)
def _sort_by_key_value(key, value, n_keys):  # type: ignore[no-untyped-def]
    """Indices sorting rows by (key, value): a counting sort by key when the key range is
    small next to the rows (else a merge sort), then an insertion sort by value inside
    each key (values mostly arrive in order: panes, event times)."""
    n = key.shape[0]
    if n_keys <= 4 * n + 1024:
        counts = np.zeros(n_keys + 1, np.int64)
        for r in range(n):
            counts[key[r] + 1] += 1
        for b in range(n_keys):
            counts[b + 1] += counts[b]
        order = np.empty(n, np.int64)
        for r in range(n):
            order[counts[key[r]]] = r
            counts[key[r]] += 1
    else:
        order = np.argsort(key, kind="mergesort")
    g0 = 0
    while g0 < n:
        k = key[order[g0]]
        g1 = g0 + 1
        while g1 < n and key[order[g1]] == k:
            g1 += 1
        for a in range(g0 + 1, g1):
            r = order[a]
            v = value[r]
            b = a - 1
            while b >= g0 and value[order[b]] > v:
                order[b + 1] = order[b]
                b -= 1
            order[b + 1] = r
        g0 = g1
    return order
