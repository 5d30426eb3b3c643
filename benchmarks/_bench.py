"""State shared by the benchmark modules: sizes, measured results, peer pairs."""

from __future__ import annotations

import os

QUICK = os.environ.get("VSTREAM_BENCH_QUICK", "") not in ("", "0")
#: a fraction of the full sizes (VSTREAM_BENCH_SCALE=0.2): A/B rounds (benchmarks/ab.py)
#: that keep every fixed cost's share but take a fifth of the time
SCALE = float(os.environ.get("VSTREAM_BENCH_SCALE", "1"))


def q1_aggs() -> tuple[object, ...]:
    """Q1's aggregates (test_windows.py, test_checkpoint.py): len, mean and max of cpu,
    sum of latency_ms."""
    import polars as pl

    return (
        pl.len(),
        pl.col("cpu").mean(),
        pl.col("cpu").max().alias("cpu_max"),
        pl.col("latency_ms").sum(),
    )


#: name -> (seconds per round, events per round, bytes per round)
RESULTS: dict[str, tuple[float, int, int]] = {}

#: (ours, peer) pairs whose ratio the summary reports
PAIRS: list[tuple[str, str]] = []


def size(full: int, quick: int) -> int:
    """The full size (times VSTREAM_BENCH_SCALE), or the quick one under
    VSTREAM_BENCH_QUICK=1."""
    return quick if QUICK else max(quick, int(full * SCALE))


def paired(
    benchmark,
    ours,
    peer,
    *,
    name: str,
    peer_name: str,
    events: int,  # type: ignore[no-untyped-def]
    rounds: int = 15,
    nbytes: int = 0,
) -> None:
    """Time ``ours`` and ``peer`` in alternating rounds and record both (best round each).

    Separate tests see the machine at different moments (a shared VM varies by 30 % and
    more); alternating rounds make the ratio between the two stable.
    """
    import time

    best = {name: float("inf"), peer_name: float("inf")}

    def one_round() -> None:
        for label, fn in ((name, ours), (peer_name, peer)):
            t = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - t)

    if getattr(benchmark, "disabled", False):
        # quick mode: run both once so the code stays exercised
        benchmark.pedantic(one_round, rounds=1, iterations=1)
        return
    ours(), peer()  # warm-up: JIT, caches, lazy imports
    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    for label in (name, peer_name):
        RESULTS[label] = (best[label], events, nbytes)
        # each callable's own best, in the JSON report: benchmarks/ab.py compares these
        # (the benchmark's own stats time a whole round, the peer included)
        benchmark.extra_info[f"best ms {label}"] = best[label] * 1e3
    if (name, peer_name) not in PAIRS:
        PAIRS.append((name, peer_name))
    benchmark.extra_info["ratio"] = best[peer_name] / best[name]


#: free-form result lines (memory, compile time, derived ratios) the summary prints
NOTES: list[str] = []


def note(line: str) -> None:
    """Print ``line`` now and again in the summary."""
    print(line)
    NOTES.append(line)


def compared(
    benchmark,  # type: ignore[no-untyped-def]
    runs: dict[str, object],
    *,
    events: int,
    pairs: tuple[tuple[str, str], ...] = (),
    rounds: int = 5,
    nbytes: int = 0,
) -> dict[str, float]:
    """Like :func:`paired` for any number of callables: rounds alternate between all of
    them, each records its best round, and every ``(ours, peer)`` of ``pairs`` goes to
    the summary's ratios. Returns the best seconds by name (empty in quick mode)."""
    import time

    best = dict.fromkeys(runs, float("inf"))

    def one_round() -> None:
        for label, fn in runs.items():
            t = time.perf_counter()
            fn()  # type: ignore[operator]
            best[label] = min(best[label], time.perf_counter() - t)

    if getattr(benchmark, "disabled", False):
        benchmark.pedantic(one_round, rounds=1, iterations=1)
        return {}
    for fn in runs.values():
        fn()  # type: ignore[operator]  # warm-up: JIT, caches, lazy imports
    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    for label in runs:
        RESULTS[label] = (best[label], events, nbytes)
        # each callable's own best, in the JSON report: benchmarks/ab.py compares these
        # (the benchmark's own stats time a whole round, the peer included)
        benchmark.extra_info[f"best ms {label}"] = best[label] * 1e3
    for pair in pairs:
        if pair not in PAIRS:
            PAIRS.append(pair)
        benchmark.extra_info[f"ratio {pair[0]} / {pair[1]}"] = best[pair[1]] / best[pair[0]]
    return best
