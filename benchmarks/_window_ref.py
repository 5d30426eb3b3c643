"""A hand-written numba loop for per-host 1 s tumbling windows: the lower bound for Q1.

One compiled function runs the whole input, event by event, the way a specialised C
program would: the host id is the row of dense state arrays, the watermark
(``max ts - bound``) advances with every event, and a ring of ``RING`` open windows
holds each host's count, cpu sum, cpu max and latency sum. A window fires as soon as
the watermark reaches its end: the hosts it touched (kept in a list per window) are
written to the output arrays and their state is cleared for the window that will reuse
the ring slot. It knows nothing of schemas, nulls, expressions or batches; it is what
vstream's generic window operator is measured against.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["RING", "Q1Output", "q1_reference", "q1_reference_frame"]

#: open windows held at once; 1 s windows under a 2 s watermark bound need at most 4
RING = 8


@numba.njit(cache=True, nogil=True)
def _fire(  # type: ignore[no-untyped-def]
    k, size, n_hosts, count, cpu_sum, cpu_max, lat_sum, touched, n_touched,
    out, out_host, out_start, out_len, out_mean, out_max, out_sum,
):  # fmt: skip
    """Write window k's touched hosts to the output, clear them; returns the next row."""
    slot = k % RING
    base = slot * n_hosts
    start = k * size
    for j in range(n_touched[slot]):
        h = touched[base + j]
        e = base + h
        c = count[e]
        out_host[out] = h
        out_start[out] = start
        out_len[out] = c
        out_mean[out] = cpu_sum[e] / c
        out_max[out] = cpu_max[e]
        out_sum[out] = lat_sum[e]
        out += 1
        count[e] = 0
        cpu_sum[e] = 0.0
        lat_sum[e] = 0.0
    n_touched[slot] = 0
    return out


@numba.njit(cache=True, nogil=True)
def _q1_loop(
    ts: np.ndarray,
    host: np.ndarray,
    cpu: np.ndarray,
    latency: np.ndarray,
    n_hosts: int,
    size: int,
    bound: int,
    out_host: np.ndarray,
    out_start: np.ndarray,
    out_len: np.ndarray,
    out_mean: np.ndarray,
    out_max: np.ndarray,
    out_sum: np.ndarray,
) -> tuple[int, int]:
    """Returns ``(rows written, late events dropped)``; rows -1 if the ring overflowed."""
    # state[slot * n_hosts + h]: one window of the ring per block of n_hosts entries
    count = np.zeros(RING * n_hosts, dtype=np.int64)
    cpu_sum = np.zeros(RING * n_hosts, dtype=np.float64)
    cpu_max = np.empty(RING * n_hosts, dtype=np.float64)
    lat_sum = np.zeros(RING * n_hosts, dtype=np.float64)
    touched = np.empty(RING * n_hosts, dtype=np.int32)
    n_touched = np.zeros(RING, dtype=np.int64)

    n = ts.shape[0]
    out = 0
    late = 0
    if n == 0:
        return out, late
    watermark = ts[0] - bound
    # window index k covers [k * size, (k + 1) * size); windows below `first` have fired
    first = watermark // size
    last = first - 1  # newest window opened so far
    for i in range(n):
        t = ts[i]
        if t - bound > watermark:
            watermark = t - bound
            # fire every open window whose end the watermark has reached
            while first <= last and (first + 1) * size <= watermark:
                out = _fire(first, size, n_hosts, count, cpu_sum, cpu_max, lat_sum, touched,
                            n_touched, out, out_host, out_start, out_len, out_mean, out_max,
                            out_sum)  # fmt: skip
                first += 1
            if first > last:
                # nothing open: skip the empty windows in one step
                first = max(first, watermark // size)
        k = t // size
        if k < first:
            late += 1
            continue
        if k > last:
            if k - first >= RING:
                return -1, late
            last = k
        slot = k % RING
        base = slot * n_hosts
        h = host[i]
        e = base + h
        c = count[e]
        x = cpu[i]
        if c == 0:
            touched[base + n_touched[slot]] = h
            n_touched[slot] += 1
            cpu_max[e] = x
        elif x > cpu_max[e]:
            cpu_max[e] = x
        count[e] = c + 1
        cpu_sum[e] += x
        lat_sum[e] += latency[i]
    # end of input: every open window fires, oldest first
    while first <= last:
        out = _fire(first, size, n_hosts, count, cpu_sum, cpu_max, lat_sum, touched,
                    n_touched, out, out_host, out_start, out_len, out_mean, out_max,
                    out_sum)  # fmt: skip
        first += 1
    return out, late


class Q1Output:
    """Preallocated result arrays, one row per event at most, reused between runs."""

    def __init__(self, capacity: int) -> None:
        self.host = np.empty(capacity, dtype=np.int32)
        self.start = np.empty(capacity, dtype=np.int64)
        self.len = np.empty(capacity, dtype=np.uint32)
        self.mean = np.empty(capacity, dtype=np.float64)
        self.max = np.empty(capacity, dtype=np.float64)
        self.sum = np.empty(capacity, dtype=np.float64)
        self.rows = 0
        self.late = 0


def q1_reference(
    ts: np.ndarray,
    host: np.ndarray,
    cpu: np.ndarray,
    latency: np.ndarray,
    *,
    n_hosts: int,
    out: Q1Output,
    size: int = 1000,
    bound: int = 2000,
) -> Q1Output:
    """Run the loop over whole-input arrays into ``out`` (host ids in ``[0, n_hosts)``)."""
    rows, late = _q1_loop(
        ts,
        host,
        cpu,
        latency,
        n_hosts,
        size,
        bound,
        out.host,
        out.start,
        out.len,
        out.mean,
        out.max,
        out.sum,
    )
    if rows < 0:
        msg = f"more than {RING} windows open at once: raise RING"
        raise ValueError(msg)
    out.rows, out.late = rows, late
    return out


def q1_reference_frame(out: Q1Output):  # type: ignore[no-untyped-def]
    """The rows of ``out`` as a Polars DataFrame (for the correctness check only)."""
    import polars as pl

    r = out.rows
    return pl.DataFrame(
        {
            "host_id": out.host[:r],
            "window_start": out.start[:r],
            "len": out.len[:r],
            "cpu": out.mean[:r],
            "cpu_max": out.max[:r],
            "latency_ms": out.sum[:r],
        }
    )
