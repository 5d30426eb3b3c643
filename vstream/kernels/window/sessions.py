"""Window kernels: session windows, per key a linked list of live sessions in slot arrays."""

from __future__ import annotations

import numpy as np

from vstream.kernels._jit import njit
from vstream.kernels.aggregate import apply_rows, combine_slot, copy_slot, init_slot
from vstream.kernels.window.order import _sort_by_key_value

__all__ = ["session_fire", "session_live", "session_order", "session_update"]


@njit(cache=True, nogil=True)
def _order_by_key_time(ts, kid, n_keys):  # type: ignore[no-untyped-def]
    """Row order sorted by (key, time)."""
    return _sort_by_key_value(kid, ts, n_keys)


@njit(cache=True, nogil=True)
def session_update(  # type: ignore[no-untyped-def]
    ts,
    kid,
    n_keys,
    gap,
    lateness,
    wm,
    head,
    nxt,
    s_key,
    s_start,
    s_end,
    s_rev,
    s_final,
    s_dirty,
    free,
    counters,
    F,
    In,
    init_f,
    init_i,
    prog,
    Xf,
    Xi,
    M,
    vmap,
    seq0,
    late,
    merged_into,
):
    """Fold a batch into per-key sessions, merging sessions an event bridges.

    Per key, the batch's events (in time order) form runs (next - prev <= gap); each run
    merges with every live session it overlaps or touches (windows ``[t, t + gap)`` that
    touch merge, as in Flink, Spark and Bytewax). A run that merges with nothing and whose
    session would end at or before ``wm - lateness`` is late: its rows are marked in
    ``late``. ``counters`` = [free slots, slots ever used, late rows]. A session merged
    into another gets ``merged_into[old] = new``. Returns the smallest end among the
    sessions touched (for the next firing) and each row's (run) slot.
    """
    order = _order_by_key_time(ts, kid, n_keys)
    n = ts.shape[0]
    min_end = np.int64(9223372036854775807)
    slots = np.empty(n, np.int32)
    c = 0
    while c < n:
        r0 = order[c]
        k = kid[r0]
        # one run: consecutive rows of key k at most gap apart
        e = c + 1
        # (not next - prev <= gap: the difference of times far apart would wrap)
        while e < n and kid[order[e]] == k and ts[order[e]] <= ts[order[e - 1]] + gap:
            e += 1
        # new slot for the run
        if counters[0] > 0:
            counters[0] -= 1
            slot = free[counters[0]]
        else:
            slot = counters[1]
            counters[1] += 1
        init_slot(F, In, slot, init_f, init_i)
        for a in range(c, e):
            slots[order[a]] = slot
        c = e
    apply_rows(prog, F, In, slots, Xf, Xi, M, vmap, seq0)
    # then merge each run with the live sessions it overlaps
    c = 0
    while c < n:
        r0 = order[c]
        k = kid[r0]
        slot = slots[r0]
        e = c + 1
        while e < n and slots[order[e]] == slot:
            e += 1
        start = ts[r0]
        end = ts[order[e - 1]] + gap
        merged = False
        rev = np.int64(-1)
        final = False
        prev = -1
        j = head[k]
        while j >= 0:
            jn = nxt[j]
            if s_start[j] <= end and start <= s_end[j]:  # overlap or touch
                merged = True
                combine_slot(prog, F, In, slot, F, In, j)
                start = min(start, s_start[j])
                end = max(end, s_end[j])
                rev = max(rev, s_rev[j])
                final = final or s_final[j]
                if merged_into.shape[0]:
                    merged_into[j] = slot
                # unlink and free j
                if prev < 0:
                    head[k] = jn
                else:
                    nxt[prev] = jn
                free[counters[0]] = j
                counters[0] += 1
                # a merge may now overlap sessions already passed: restart the scan
                prev = -1
                j = head[k]
                continue
            prev = j
            j = jn
        if not merged and wm > -9223372036854775807 and end + lateness <= wm:
            for a in range(c, e):
                late[order[a]] = True
            counters[2] += e - c
            free[counters[0]] = slot
            counters[0] += 1
        else:
            s_key[slot] = k
            s_start[slot] = start
            s_end[slot] = end
            s_rev[slot] = rev
            s_final[slot] = final
            s_dirty[slot] = True
            nxt[slot] = head[k]
            head[k] = slot
            min_end = min(min_end, end)
        c = e
    return min_end, slots


@njit(cache=True, nogil=True)
def session_fire(  # type: ignore[no-untyped-def]
    head,
    nxt,
    s_key,
    s_start,
    s_end,
    s_rev,
    s_final,
    s_dirty,
    free,
    counters,
    F,
    In,
    n_keys,
    wm,
    lateness,
    early,
):
    """Emit sessions: those the watermark closed (``end <= wm``) that are new or changed
    since their last emission, plus (``early``) every open changed session. Then free the
    sessions past their lateness. Returns the emitted rows (with their slots) and the
    next watermark at which a call has work (a session's end, or the end of a fired
    session's lateness)."""
    m = 0
    for rnd in range(2):
        if rnd == 1:
            out_key = np.empty(m, np.int32)
            out_start = np.empty(m, np.int64)
            out_end = np.empty(m, np.int64)
            out_rev = np.empty(m, np.int64)
            out_slot = np.empty(m, np.int64)
            Fo = np.empty((F.shape[0], m), np.float64)
            Io = np.empty((In.shape[0], m), np.int64)
        w = 0
        for k in range(n_keys):
            j = head[k]
            while j >= 0:
                due = s_end[j] <= wm
                if s_dirty[j] and (due or early):
                    if rnd == 1:
                        s_rev[j] += 1
                        out_key[w] = k
                        out_start[w] = s_start[j]
                        out_end[w] = s_end[j]
                        out_rev[w] = s_rev[j]
                        out_slot[w] = j
                        copy_slot(Fo, Io, w, F, In, j)
                        s_dirty[j] = False
                        if due:
                            s_final[j] = True
                    w += 1
                j = nxt[j]
        m = w
    # free what is past its lateness; find the next end to wait for
    next_end = np.int64(9223372036854775807)
    for k in range(n_keys):
        prev = -1
        j = head[k]
        while j >= 0:
            jn = nxt[j]
            if s_end[j] + lateness <= wm:
                if prev < 0:
                    head[k] = jn
                else:
                    nxt[prev] = jn
                free[counters[0]] = j
                counters[0] += 1
            else:
                # the next watermark with work: the session's end while it is still to
                # be emitted, else the end of its lateness, when it is freed (a session
                # kept past it would take events late beyond the lateness)
                if not s_final[j] or s_dirty[j]:
                    next_end = min(next_end, s_end[j])
                else:
                    next_end = min(next_end, s_end[j] + lateness)
                prev = j
            j = jn
    return out_key, out_start, out_end, out_rev, out_slot, Fo, Io, next_end


@njit(cache=True, nogil=True)
def session_live(head, nxt, n_keys, cap):  # type: ignore[no-untyped-def]
    """Which slots hold a live session."""
    live = np.zeros(cap, np.bool_)
    for k in range(n_keys):
        j = head[k]
        while j >= 0:
            live[j] = True
            j = nxt[j]
    return live


@njit(cache=True, nogil=True)
def session_order(head, nxt, n_keys, n_live):  # type: ignore[no-untyped-def]
    """The slots of the ``n_live`` live sessions, key by key, each key's list from its
    head (a snapshot's order: relinked backwards, every list comes back the same)."""
    out = np.empty(n_live, np.int64)
    w = 0
    for k in range(n_keys):
        j = head[k]
        while j >= 0 and w < n_live:
            out[w] = j
            w += 1
            j = nxt[j]
    return out[:w]
